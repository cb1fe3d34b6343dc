//! PutMetricData, GetMetricData and ListMetrics over decoded request values: AWS's
//! validation with its error codes, then the store. Protocol-independent: the HTTP layer only
//! decodes, dispatches and encodes.

use std::collections::{BTreeMap, HashSet};

use super::cbor::{Cbor, TIMESTAMP_TAG};
use super::store::{Bucket, Datum, MetricKey, Sample, Statistic, Store};

/// PutMetricData's limits, from the API reference.
const MAX_DATUMS: usize = 1000;
const MAX_DIMENSIONS: usize = 30;
const MAX_VALUES: usize = 150;
const MAX_NAME_LEN: usize = 255;
const MAX_DIMENSION_VALUE_LEN: usize = 1024;
/// CloudWatch rejects magnitudes beyond 2^360 (and NaN and the infinities).
const MAX_MAGNITUDE: f64 = 2.348_542_582_773_833_3e108;
/// A timestamp is accepted up to two weeks back and two hours ahead.
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;
/// GetMetricData's limits and default.
const MAX_QUERIES: usize = 500;
const DEFAULT_MAX_DATAPOINTS: u64 = 100_800;
/// ListMetrics returns 500 metrics a page, and takes at most 10 dimension filters.
const LIST_PAGE: usize = 500;
const MAX_DIMENSION_FILTERS: usize = 10;
/// `RecentlyActive=PT3H`: metrics with a datum in the last three hours.
const RECENTLY_ACTIVE_MS: i64 = 3 * 3600 * 1000;

const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// CloudWatch's errors, by the awsQuery code the SDKs match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CwError {
    InvalidParameterValue(String),
    MissingParameter(String),
    InvalidParameterCombination(String),
    InvalidNextToken(String),
    Throttling,
    InternalServiceFault(String),
    Serialization(String),
    UnknownOperation(String),
}

impl CwError {
    /// The awsQuery error code (`x-amzn-query-error`), which the SDKs prefer over `__type`.
    pub fn code(&self) -> &'static str {
        match self {
            CwError::InvalidParameterValue(_) => "InvalidParameterValue",
            CwError::MissingParameter(_) => "MissingParameter",
            CwError::InvalidParameterCombination(_) => "InvalidParameterCombination",
            CwError::InvalidNextToken(_) => "InvalidNextToken",
            // The code aws-runtime's retry classifier and botocore both treat as throttling.
            CwError::Throttling => "Throttling",
            CwError::InternalServiceFault(_) => "InternalServiceError",
            CwError::Serialization(_) => "SerializationException",
            CwError::UnknownOperation(_) => "UnknownOperationException",
        }
    }

    /// The Smithy shape name, for `__type`.
    pub fn shape(&self) -> &'static str {
        match self {
            CwError::InvalidParameterValue(_) => "InvalidParameterValueException",
            CwError::MissingParameter(_) => "MissingRequiredParameterException",
            CwError::InvalidParameterCombination(_) => "InvalidParameterCombinationException",
            CwError::InvalidNextToken(_) => "InvalidNextToken",
            CwError::Throttling => "ThrottlingException",
            CwError::InternalServiceFault(_) => "InternalServiceFault",
            CwError::Serialization(_) => "SerializationException",
            CwError::UnknownOperation(_) => "UnknownOperationException",
        }
    }

    pub fn message(&self) -> String {
        match self {
            CwError::InvalidParameterValue(m)
            | CwError::MissingParameter(m)
            | CwError::InvalidParameterCombination(m)
            | CwError::InvalidNextToken(m)
            | CwError::InternalServiceFault(m)
            | CwError::Serialization(m)
            | CwError::UnknownOperation(m) => m.clone(),
            CwError::Throttling => "Rate exceeded".into(),
        }
    }
}

type Result<T> = std::result::Result<T, CwError>;

fn invalid(message: impl Into<String>) -> CwError {
    CwError::InvalidParameterValue(message.into())
}

fn required<'a>(input: &'a Cbor, name: &str, path: &str) -> Result<&'a Cbor> {
    input.field(name).ok_or_else(|| CwError::MissingParameter(format!("The parameter {path} is required.")))
}

fn text<'a>(value: &'a Cbor, path: &str) -> Result<&'a str> {
    match value {
        Cbor::Text(s) => Ok(s),
        _ => Err(CwError::Serialization(format!("{path} must be a string."))),
    }
}

fn number(value: &Cbor, path: &str) -> Result<f64> {
    match value {
        Cbor::Float(x) => Ok(*x),
        Cbor::Int(n) => Ok(*n as f64),
        _ => Err(CwError::Serialization(format!("{path} must be a number."))),
    }
}

fn integer(value: &Cbor, path: &str) -> Result<i128> {
    match value {
        Cbor::Int(n) => Ok(*n),
        _ => Err(CwError::Serialization(format!("{path} must be an integer."))),
    }
}

fn list<'a>(value: &'a Cbor, path: &str) -> Result<&'a [Cbor]> {
    match value {
        Cbor::Array(items) => Ok(items),
        _ => Err(CwError::Serialization(format!("{path} must be a list."))),
    }
}

/// Epoch milliseconds of a timestamp: tagged in CBOR, a bare number of seconds in awsJson.
fn timestamp_ms(value: &Cbor, path: &str) -> Result<i64> {
    let seconds = match value {
        Cbor::Tagged(TIMESTAMP_TAG, inner) => number(inner, path)?,
        Cbor::Int(_) | Cbor::Float(_) => number(value, path)?,
        _ => return Err(CwError::Serialization(format!("{path} must be a timestamp."))),
    };
    if !seconds.is_finite() || seconds.abs() > 1e13 {
        return Err(invalid(format!("The value {seconds} for parameter {path} is not a valid timestamp.")));
    }
    Ok((seconds * 1000.0).round() as i64)
}

fn optional_text<'a>(input: &'a Cbor, name: &str, path: &str) -> Result<Option<&'a str>> {
    input.field(name).map(|v| text(v, path)).transpose()
}

fn name_field<'a>(input: &'a Cbor, name: &str, path: &str, max_len: usize) -> Result<&'a str> {
    let value = text(required(input, name, path)?, path)?;
    if value.is_empty() || value.chars().count() > max_len {
        return Err(invalid(format!("The parameter {path} must be between 1 and {max_len} characters long.")));
    }
    Ok(value)
}

fn namespace<'a>(input: &'a Cbor, path: &str) -> Result<&'a str> {
    let namespace = name_field(input, "Namespace", path, MAX_NAME_LEN)?;
    if namespace.starts_with(':') {
        return Err(invalid(format!("The value {namespace} for parameter {path} is invalid.")));
    }
    Ok(namespace)
}

fn unit(input: &Cbor, path: &str) -> Result<Option<String>> {
    match optional_text(input, "Unit", path)? {
        Some(unit) if UNITS.contains(&unit) => Ok(Some(unit.to_owned())),
        Some(unit) => Err(invalid(format!("The value {unit} for parameter {path} is not a valid unit."))),
        None => Ok(None),
    }
}

fn dimensions(input: &Cbor, path: &str, value_required: bool) -> Result<Vec<(String, Option<String>)>> {
    let Some(items) = input.field("Dimensions") else { return Ok(Vec::new()) };
    let items = list(items, path)?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}.member.{}", i + 1);
        let name = name_field(item, "Name", &format!("{at}.Name"), MAX_NAME_LEN)?;
        let value = if value_required {
            Some(name_field(item, "Value", &format!("{at}.Value"), MAX_DIMENSION_VALUE_LEN)?)
        } else {
            match item.field("Value") {
                Some(_) => Some(name_field(item, "Value", &format!("{at}.Value"), MAX_DIMENSION_VALUE_LEN)?),
                None => None,
            }
        };
        if !seen.insert(name) {
            return Err(invalid(format!("The dimension name {name} appears more than once in {path}.")));
        }
        out.push((name.to_owned(), value.map(str::to_owned)));
    }
    Ok(out)
}

fn full_dimensions(input: &Cbor, path: &str) -> Result<Vec<(String, String)>> {
    let dimensions = dimensions(input, path, true)?;
    if dimensions.len() > MAX_DIMENSIONS {
        return Err(invalid(format!("The collection {path} must not have more than {MAX_DIMENSIONS} members.")));
    }
    Ok(dimensions.into_iter().map(|(name, value)| (name, value.unwrap_or_default())).collect())
}

fn metric_value(value: f64, path: &str) -> Result<f64> {
    if !value.is_finite() || value.abs() > MAX_MAGNITUDE {
        return Err(invalid(format!(
            "The value {value} for parameter {path} is invalid: CloudWatch takes finite values within ±2^360."
        )));
    }
    Ok(value)
}

/// Validates every datum first, so that a refused request stores nothing, as in AWS.
pub fn put_metric_data(store: &mut Store, input: &Cbor, now_ms: i64) -> Result<Cbor> {
    let namespace = namespace(input, "Namespace")?;
    if namespace.starts_with("AWS/") {
        return Err(invalid(format!(
            "The value {namespace} for parameter Namespace is invalid: the AWS/ prefix is reserved for AWS services."
        )));
    }
    let data = list(required(input, "MetricData", "MetricData")?, "MetricData")?;
    if data.is_empty() {
        return Err(CwError::MissingParameter("The parameter MetricData is required.".into()));
    }
    if data.len() > MAX_DATUMS {
        return Err(invalid(format!("The collection MetricData must not have more than {MAX_DATUMS} members.")));
    }
    let mut parsed = Vec::with_capacity(data.len());
    for (i, datum) in data.iter().enumerate() {
        parsed.push(metric_datum(namespace, datum, &format!("MetricData.member.{}", i + 1), now_ms)?);
    }
    for (key, timestamp, datum) in parsed {
        store.insert(key, timestamp, datum);
    }
    Ok(Cbor::Map(Vec::new()))
}

fn metric_datum(namespace: &str, input: &Cbor, path: &str, now_ms: i64) -> Result<(MetricKey, i64, Datum)> {
    let name = name_field(input, "MetricName", &format!("{path}.MetricName"), MAX_NAME_LEN)?;
    let dimensions = full_dimensions(input, &format!("{path}.Dimensions"))?;
    let timestamp = match input.field("Timestamp") {
        Some(value) => {
            let at = format!("{path}.Timestamp");
            let timestamp = timestamp_ms(value, &at)?;
            if timestamp < now_ms - MAX_AGE_MS {
                return Err(invalid(format!("The parameter {at} must specify a time within the past two weeks.")));
            }
            if timestamp > now_ms + MAX_AHEAD_MS {
                return Err(invalid(format!(
                    "The parameter {at} must specify a time no more than two hours in the future."
                )));
            }
            timestamp
        }
        None => now_ms,
    };
    if let Some(resolution) = input.field("StorageResolution") {
        let at = format!("{path}.StorageResolution");
        let resolution = integer(resolution, &at)?;
        if resolution != 1 && resolution != 60 {
            return Err(invalid(format!("The value {resolution} for parameter {at} must be 1 or 60.")));
        }
    }
    let unit = unit(input, &format!("{path}.Unit"))?.unwrap_or_else(|| "None".into());
    let given: Vec<&str> =
        ["Value", "StatisticValues", "Values"].into_iter().filter(|f| input.field(f).is_some()).collect();
    if given.len() > 1 {
        return Err(CwError::InvalidParameterCombination(format!(
            "The parameters {path}.{} and {path}.{} are mutually exclusive and you have specified both.",
            given[0], given[1]
        )));
    }
    if input.field("Counts").is_some() && input.field("Values").is_none() {
        return Err(CwError::InvalidParameterCombination(format!(
            "The parameter {path}.Counts must be given with {path}.Values."
        )));
    }
    let sample = match given.first() {
        Some(&"Value") => {
            let at = format!("{path}.Value");
            Sample::Values(vec![(metric_value(number(required(input, "Value", &at)?, &at)?, &at)?, 1.0)])
        }
        Some(&"StatisticValues") => {
            statistic_set(required(input, "StatisticValues", path)?, &format!("{path}.StatisticValues"))?
        }
        Some(_) => values_and_counts(input, path)?,
        None => {
            return Err(CwError::MissingParameter(format!(
                "The parameter {path} must specify one of Value, Values or StatisticValues."
            )));
        }
    };
    Ok((MetricKey::new(namespace.to_owned(), name.to_owned(), dimensions), timestamp, Datum { unit, sample }))
}

fn statistic_set(input: &Cbor, path: &str) -> Result<Sample> {
    let field = |name: &str| -> Result<f64> {
        let at = format!("{path}.{name}");
        metric_value(number(required(input, name, &at)?, &at)?, &at)
    };
    let (count, sum, min, max) = (field("SampleCount")?, field("Sum")?, field("Minimum")?, field("Maximum")?);
    if count <= 0.0 {
        return Err(invalid(format!("The parameter {path}.SampleCount must be greater than 0.")));
    }
    if min > max {
        return Err(invalid(format!("The parameter {path}.Minimum must not be greater than {path}.Maximum.")));
    }
    Ok(Sample::Set { count, sum, min, max })
}

fn values_and_counts(input: &Cbor, path: &str) -> Result<Sample> {
    let values_at = format!("{path}.Values");
    let values = list(required(input, "Values", &values_at)?, &values_at)?;
    if values.is_empty() {
        return Err(CwError::MissingParameter(format!("The parameter {values_at} must have at least one member.")));
    }
    if values.len() > MAX_VALUES {
        return Err(invalid(format!("The collection {values_at} must not have more than {MAX_VALUES} members.")));
    }
    let counts = match input.field("Counts") {
        Some(counts) => {
            let counts_at = format!("{path}.Counts");
            let counts = list(counts, &counts_at)?;
            if counts.len() != values.len() {
                return Err(invalid(format!(
                    "The parameters {values_at} and {counts_at} must have the same number of members."
                )));
            }
            let mut parsed = Vec::with_capacity(counts.len());
            for (i, count) in counts.iter().enumerate() {
                let at = format!("{counts_at}.member.{}", i + 1);
                let count = metric_value(number(count, &at)?, &at)?;
                if count < 0.0 {
                    return Err(invalid(format!("The parameter {at} must not be negative.")));
                }
                parsed.push(count);
            }
            parsed
        }
        None => vec![1.0; values.len()],
    };
    let mut pairs = Vec::with_capacity(values.len());
    for (i, (value, count)) in values.iter().zip(counts).enumerate() {
        let at = format!("{values_at}.member.{}", i + 1);
        pairs.push((metric_value(number(value, &at)?, &at)?, count));
    }
    Ok(Sample::Values(pairs))
}

/// One metric query, validated.
#[derive(Debug)]
struct Query {
    id: String,
    label: String,
    key: MetricKey,
    period_ms: i64,
    statistic: Statistic,
    unit: Option<String>,
    return_data: bool,
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && id.len() <= 255
}

fn valid_period(period: i128) -> bool {
    matches!(period, 1 | 5 | 10 | 20 | 30) || (period >= 60 && period % 60 == 0)
}

fn query(input: &Cbor, path: &str) -> Result<Query> {
    let id = text(required(input, "Id", &format!("{path}.Id"))?, &format!("{path}.Id"))?;
    if !valid_id(id) {
        return Err(invalid(format!(
            "The value {id} for parameter {path}.Id is invalid: it must start with a lowercase letter and contain only letters, digits and underscores."
        )));
    }
    if input.field("Expression").is_some() {
        return Err(invalid(format!(
            "The query {id} has an Expression: the emulator does not evaluate metric math, only MetricStat queries."
        )));
    }
    let stat_at = format!("{path}.MetricStat");
    let stat = required(input, "MetricStat", &stat_at)?;
    let metric_at = format!("{stat_at}.Metric");
    let metric = required(stat, "Metric", &metric_at)?;
    let namespace = namespace(metric, &format!("{metric_at}.Namespace"))?;
    let name = name_field(metric, "MetricName", &format!("{metric_at}.MetricName"), MAX_NAME_LEN)?;
    let dimensions = full_dimensions(metric, &format!("{metric_at}.Dimensions"))?;
    let period_at = format!("{stat_at}.Period");
    let period = integer(required(stat, "Period", &period_at)?, &period_at)?;
    if !valid_period(period) {
        return Err(invalid(format!(
            "The value {period} for parameter {period_at} is invalid: it must be 1, 5, 10, 20, 30 or a multiple of 60."
        )));
    }
    let stat_name_at = format!("{stat_at}.Stat");
    let stat_name = text(required(stat, "Stat", &stat_name_at)?, &stat_name_at)?;
    let statistic = Statistic::parse(stat_name).ok_or_else(|| {
        invalid(format!(
            "The value {stat_name} for parameter {stat_name_at} is not supported: the emulator computes SampleCount, Sum, Average, Minimum, Maximum and percentiles pNN or pNN.NN."
        ))
    })?;
    let unit = unit(stat, &format!("{stat_at}.Unit"))?;
    let label = optional_text(input, "Label", &format!("{path}.Label"))?.unwrap_or(name).to_owned();
    let return_data = match input.field("ReturnData") {
        Some(Cbor::Bool(b)) => *b,
        Some(_) => return Err(CwError::Serialization(format!("{path}.ReturnData must be a boolean."))),
        None => true,
    };
    Ok(Query {
        id: id.to_owned(),
        label,
        key: MetricKey::new(namespace.to_owned(), name.to_owned(), dimensions),
        period_ms: i64::try_from(period).unwrap_or(i64::MAX / 1000) * 1000,
        statistic,
        unit,
        return_data,
    })
}

/// A query's datapoints, newest or oldest first as asked, in buckets aligned to the epoch.
fn datapoints(store: &Store, query: &Query, start_ms: i64, end_ms: i64, ascending: bool) -> Vec<(i64, f64)> {
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    for (timestamp, datum) in store.datums(&query.key, start_ms, end_ms) {
        if query.unit.as_ref().is_some_and(|unit| *unit != datum.unit) {
            continue;
        }
        buckets.entry(timestamp.div_euclid(query.period_ms) * query.period_ms).or_default().add(datum);
    }
    let points = buckets.into_iter().filter_map(|(start, bucket)| Some((start, bucket.statistic(query.statistic)?)));
    if ascending { points.collect() } else { points.rev().collect() }
}

/// Pages cut the concatenation of all returned queries' datapoints: the token is how many
/// of them earlier pages carried.
pub fn get_metric_data(store: &Store, input: &Cbor) -> Result<Cbor> {
    let queries = list(required(input, "MetricDataQueries", "MetricDataQueries")?, "MetricDataQueries")?;
    if queries.is_empty() {
        return Err(CwError::MissingParameter("The parameter MetricDataQueries is required.".into()));
    }
    if queries.len() > MAX_QUERIES {
        return Err(invalid(format!(
            "The collection MetricDataQueries must not have more than {MAX_QUERIES} members."
        )));
    }
    let start_ms = timestamp_ms(required(input, "StartTime", "StartTime")?, "StartTime")?;
    let end_ms = timestamp_ms(required(input, "EndTime", "EndTime")?, "EndTime")?;
    if start_ms >= end_ms {
        return Err(invalid("The parameter StartTime must be less than the parameter EndTime."));
    }
    let ascending = match optional_text(input, "ScanBy", "ScanBy")? {
        None | Some("TimestampDescending") => false,
        Some("TimestampAscending") => true,
        Some(other) => return Err(invalid(format!("The value {other} for parameter ScanBy is invalid."))),
    };
    let max_datapoints = match input.field("MaxDatapoints") {
        Some(value) => {
            let max = integer(value, "MaxDatapoints")?;
            u64::try_from(max).ok().filter(|max| *max > 0).ok_or_else(|| {
                invalid(format!("The value {max} for parameter MaxDatapoints must be greater than 0."))
            })?
        }
        None => DEFAULT_MAX_DATAPOINTS,
    };
    let mut skip: u64 = match optional_text(input, "NextToken", "NextToken")? {
        Some(token) => token
            .strip_prefix("dp-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| CwError::InvalidNextToken(format!("The token {token} is not one this emulator issued.")))?,
        None => 0,
    };
    let mut parsed = Vec::with_capacity(queries.len());
    let mut ids = HashSet::new();
    for (i, q) in queries.iter().enumerate() {
        let q = query(q, &format!("MetricDataQueries.member.{}", i + 1))?;
        if !ids.insert(q.id.clone()) {
            return Err(invalid(format!("The value {} for parameter MetricDataQueries.Id is not unique.", q.id)));
        }
        parsed.push(q);
    }
    let offset = skip;
    let mut room = max_datapoints;
    let mut more = false;
    let mut results = Vec::new();
    for q in parsed.iter().filter(|q| q.return_data) {
        let points = datapoints(store, q, start_ms, end_ms, ascending);
        let total = points.len() as u64;
        let skipped = skip.min(total);
        skip -= skipped;
        let taken = room.min(total - skipped);
        room -= taken;
        let complete = skipped + taken == total;
        more |= !complete;
        let page = points.iter().skip(skipped as usize).take(taken as usize);
        let (timestamps, values): (Vec<Cbor>, Vec<Cbor>) =
            page.map(|(t, v)| (Cbor::timestamp(*t as f64 / 1000.0), Cbor::Float(*v))).unzip();
        results.push(Cbor::map([
            ("Id", Cbor::text(&q.id)),
            ("Label", Cbor::text(&q.label)),
            ("Timestamps", Cbor::Array(timestamps)),
            ("Values", Cbor::Array(values)),
            ("StatusCode", Cbor::text(if complete { "Complete" } else { "PartialData" })),
            ("Messages", Cbor::Array(Vec::new())),
        ]));
    }
    let mut output =
        vec![("MetricDataResults".to_owned(), Cbor::Array(results)), ("Messages".to_owned(), Cbor::Array(Vec::new()))];
    if more {
        output.push(("NextToken".to_owned(), Cbor::text(format!("dp-{}", offset + max_datapoints - room))));
    }
    Ok(Cbor::Map(output))
}

pub fn list_metrics(store: &Store, input: &Cbor, now_ms: i64) -> Result<Cbor> {
    let namespace = match input.field("Namespace") {
        Some(_) => Some(namespace(input, "Namespace")?),
        None => None,
    };
    let metric_name = match input.field("MetricName") {
        Some(_) => Some(name_field(input, "MetricName", "MetricName", MAX_NAME_LEN)?),
        None => None,
    };
    let filters = dimensions(input, "Dimensions", false)?;
    if filters.len() > MAX_DIMENSION_FILTERS {
        return Err(invalid(format!(
            "The collection Dimensions must not have more than {MAX_DIMENSION_FILTERS} members."
        )));
    }
    let recent_since = match optional_text(input, "RecentlyActive", "RecentlyActive")? {
        Some("PT3H") => Some(now_ms - RECENTLY_ACTIVE_MS),
        Some(other) => return Err(invalid(format!("The value {other} for parameter RecentlyActive is invalid."))),
        None => None,
    };
    let after = match optional_text(input, "NextToken", "NextToken")? {
        Some(token) => Some(decode_token(token)?),
        None => None,
    };
    let matches = |key: &MetricKey| {
        namespace.is_none_or(|n| n == key.namespace)
            && metric_name.is_none_or(|n| n == key.name)
            && filters.iter().all(|(name, value)| {
                key.dimensions.iter().any(|(n, v)| n == name && value.as_ref().is_none_or(|value| value == v))
            })
            && recent_since.is_none_or(|since| store.datums(key, since, i64::MAX).next().is_some())
    };
    let page: Vec<&MetricKey> =
        store.metrics_after(after.as_ref()).filter(|key| matches(key)).take(LIST_PAGE + 1).collect();
    let more = page.len() > LIST_PAGE;
    let page = &page[..page.len().min(LIST_PAGE)];
    let metrics = page
        .iter()
        .map(|key| {
            let dimensions = key
                .dimensions
                .iter()
                .map(|(name, value)| Cbor::map([("Name", Cbor::text(name)), ("Value", Cbor::text(value))]))
                .collect();
            Cbor::map([
                ("Namespace", Cbor::text(&key.namespace)),
                ("MetricName", Cbor::text(&key.name)),
                ("Dimensions", Cbor::Array(dimensions)),
            ])
        })
        .collect();
    let mut output = vec![("Metrics".to_owned(), Cbor::Array(metrics))];
    if let (true, Some(last)) = (more, page.last()) {
        output.push(("NextToken".to_owned(), Cbor::text(encode_token(last))));
    }
    Ok(Cbor::Map(output))
}

/// The last metric of a page, so that the next page starts after it even if metrics were
/// added or expired in between.
fn encode_token(key: &MetricKey) -> String {
    let json = serde_json::json!([key.namespace, key.name, key.dimensions]);
    hex::encode(json.to_string())
}

fn decode_token(token: &str) -> Result<MetricKey> {
    let bad = || invalid(format!("The value {token} for parameter NextToken is invalid."));
    let bytes = hex::decode(token).map_err(|_| bad())?;
    let (namespace, name, dimensions): (String, String, Vec<(String, String)>) =
        serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok(MetricKey::new(namespace, name, dimensions))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn datum(fields: Vec<(&str, Cbor)>) -> Cbor {
        let mut entries = vec![("MetricName".to_owned(), Cbor::text("Latency"))];
        entries.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
        Cbor::Map(entries)
    }

    fn put(store: &mut Store, data: Vec<Cbor>) -> Result<Cbor> {
        put_metric_data(store, &Cbor::map([("Namespace", Cbor::text("App")), ("MetricData", Cbor::Array(data))]), NOW)
    }

    #[test]
    fn put_refuses_what_aws_refuses_with_its_codes() {
        let mut store = Store::new(1000);
        let both = datum(vec![("Value", Cbor::Float(1.0)), ("Values", Cbor::Array(vec![Cbor::Float(1.0)]))]);
        assert!(matches!(put(&mut store, vec![both]), Err(CwError::InvalidParameterCombination(_))));
        let none = datum(vec![]);
        assert!(matches!(put(&mut store, vec![none]), Err(CwError::MissingParameter(_))));
        let nan = datum(vec![("Value", Cbor::Float(f64::NAN))]);
        assert!(matches!(put(&mut store, vec![nan]), Err(CwError::InvalidParameterValue(_))));
        let counts = datum(vec![
            ("Values", Cbor::Array(vec![Cbor::Float(1.0), Cbor::Float(2.0)])),
            ("Counts", Cbor::Array(vec![Cbor::Float(1.0)])),
        ]);
        assert!(matches!(put(&mut store, vec![counts]), Err(CwError::InvalidParameterValue(_))));
        let old = datum(vec![
            ("Value", Cbor::Float(1.0)),
            ("Timestamp", Cbor::timestamp((NOW - MAX_AGE_MS - 1000) as f64 / 1000.0)),
        ]);
        assert!(matches!(put(&mut store, vec![old]), Err(CwError::InvalidParameterValue(_))));
        let unit = datum(vec![("Value", Cbor::Float(1.0)), ("Unit", Cbor::text("Furlongs"))]);
        assert!(matches!(put(&mut store, vec![unit]), Err(CwError::InvalidParameterValue(_))));
        let dims =
            (0..31).map(|i| Cbor::map([("Name", Cbor::text(format!("d{i}"))), ("Value", Cbor::text("v"))])).collect();
        let wide = datum(vec![("Value", Cbor::Float(1.0)), ("Dimensions", Cbor::Array(dims))]);
        assert!(matches!(put(&mut store, vec![wide]), Err(CwError::InvalidParameterValue(_))));
        let many = (0..1001).map(|_| datum(vec![("Value", Cbor::Float(1.0))])).collect();
        assert!(matches!(put(&mut store, many), Err(CwError::InvalidParameterValue(_))));
        let good = datum(vec![("Value", Cbor::Float(1.0))]);
        let aws = Cbor::map([("Namespace", Cbor::text("AWS/EC2")), ("MetricData", Cbor::Array(vec![good.clone()]))]);
        assert!(matches!(put_metric_data(&mut store, &aws, NOW), Err(CwError::InvalidParameterValue(_))));
        assert_eq!(store.metrics_after(None).count(), 0, "nothing refused was stored");
        let partly = vec![good, datum(vec![])];
        assert!(put(&mut store, partly).is_err());
        assert_eq!(store.metrics_after(None).count(), 0, "a request is refused whole");
    }

    #[test]
    fn ids_periods_and_expressions() {
        assert!(valid_id("m1") && valid_id("a_B9") && !valid_id("M1") && !valid_id("1a") && !valid_id(""));
        assert!(valid_period(60) && valid_period(300) && valid_period(1) && !valid_period(90) && !valid_period(0));
        let expression = Cbor::map([("Id", Cbor::text("e1")), ("Expression", Cbor::text("SUM(METRICS())"))]);
        let err = query(&expression, "MetricDataQueries.member.1").unwrap_err();
        assert!(err.message().contains("does not evaluate metric math"), "{err:?}");
    }

    #[test]
    fn list_tokens_round_trip() {
        let key = MetricKey::new("N".into(), "M".into(), vec![("a".into(), "1".into())]);
        assert_eq!(decode_token(&encode_token(&key)).unwrap(), key);
        assert!(decode_token("zz").is_err());
    }
}
