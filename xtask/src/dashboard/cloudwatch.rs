//! The three CloudWatch calls the dashboard needs, in awsJson1_0 (the protocol boto3 uses,
//! which the emulator serves beside RPCv2-CBOR), so xtask stays without the AWS SDK.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::widgets::{Metric, MetricQuery};
use crate::{Result, aws};

const TARGET_PREFIX: &str = "GraniteServiceVersion20100801";
/// CloudWatch's limit of queries in one GetMetricData call.
const QUERIES_PER_CALL: usize = 500;

fn call(endpoint: &str, operation: &str, body: &Value) -> Result<Value> {
    let reply = aws::json_call(endpoint, "monitoring", &format!("{TARGET_PREFIX}.{operation}"), "1.0", body)
        .map_err(|e| format!("CloudWatch {operation} at {endpoint}: {e}"))?;
    aws::ok_json(operation, reply)
}

/// Every metric of the namespace (and name, if given), through all pages.
pub fn list_metrics(endpoint: &str, namespace: &str, metric_name: Option<&str>) -> Result<Vec<Metric>> {
    let mut metrics = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = json!({"Namespace": namespace});
        if let Some(name) = metric_name {
            request["MetricName"] = json!(name);
        }
        if let Some(token) = &token {
            request["NextToken"] = json!(token);
        }
        let page = call(endpoint, "ListMetrics", &request)?;
        for listed in page.get("Metrics").and_then(Value::as_array).into_iter().flatten() {
            metrics.push(parse_metric(listed)?);
        }
        token = page.get("NextToken").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    metrics.sort();
    metrics.dedup();
    Ok(metrics)
}

fn parse_metric(listed: &Value) -> Result<Metric> {
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let namespace = text(listed, "Namespace").ok_or("ListMetrics returned a metric without Namespace")?;
    let name = text(listed, "MetricName").ok_or("ListMetrics returned a metric without MetricName")?;
    let mut dimensions = Vec::new();
    for dimension in listed.get("Dimensions").and_then(Value::as_array).into_iter().flatten() {
        let pair = text(dimension, "Name").zip(text(dimension, "Value"));
        dimensions.push(pair.ok_or("ListMetrics returned a dimension without Name or Value")?);
    }
    Ok(Metric { namespace, name, dimensions })
}

/// A series' datapoints, oldest first, as (epoch milliseconds, value).
pub type Points = Vec<(i64, f64)>;

/// One GetMetricData series per query, in the queries' order, over `[start, end)` (epoch
/// seconds), following NextToken until every page is in.
pub fn get_metric_data(endpoint: &str, queries: &[MetricQuery], start: i64, end: i64) -> Result<Vec<Points>> {
    let mut all = vec![Points::new(); queries.len()];
    for (batch_index, batch) in queries.chunks(QUERIES_PER_CALL).enumerate() {
        let offset = batch_index * QUERIES_PER_CALL;
        let request_queries: Vec<Value> =
            batch.iter().enumerate().map(|(i, query)| metric_data_query(&query_id(offset + i), query)).collect();
        let mut token: Option<String> = None;
        loop {
            let mut request = json!({
                "MetricDataQueries": request_queries,
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampAscending",
            });
            if let Some(token) = &token {
                request["NextToken"] = json!(token);
            }
            let page = call(endpoint, "GetMetricData", &request)?;
            for (id, points) in parse_results(&page)? {
                let index = id
                    .strip_prefix('q')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|i| *i < all.len())
                    .ok_or_else(|| format!("GetMetricData answered an Id it was not asked: {id}"))?;
                all[index].extend(points);
            }
            token = page.get("NextToken").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    for points in &mut all {
        points.sort_by_key(|(at, _)| *at);
    }
    Ok(all)
}

/// Ids must start with a lower-case letter; the index makes the answer easy to place.
fn query_id(index: usize) -> String {
    format!("q{index}")
}

fn metric_data_query(id: &str, query: &MetricQuery) -> Value {
    let dimensions: Vec<Value> =
        query.metric.dimensions.iter().map(|(name, value)| json!({"Name": name, "Value": value})).collect();
    json!({
        "Id": id,
        "MetricStat": {
            "Metric": {"Namespace": query.metric.namespace, "MetricName": query.metric.name, "Dimensions": dimensions},
            "Period": query.period,
            "Stat": query.stat,
        },
        "ReturnData": true,
    })
}

/// The `MetricDataResults` of one GetMetricData page, by query Id.
pub fn parse_results(page: &Value) -> Result<BTreeMap<String, Points>> {
    let mut results = BTreeMap::new();
    for result in page.get("MetricDataResults").and_then(Value::as_array).into_iter().flatten() {
        let id = result.get("Id").and_then(Value::as_str).ok_or("a MetricDataResult has no Id")?;
        let timestamps = result.get("Timestamps").and_then(Value::as_array).cloned().unwrap_or_default();
        let values = result.get("Values").and_then(Value::as_array).cloned().unwrap_or_default();
        if timestamps.len() != values.len() {
            return Err(format!("result {id} has {} timestamps for {} values", timestamps.len(), values.len()).into());
        }
        let mut points = Points::new();
        for (at, value) in timestamps.iter().zip(&values) {
            let at = at.as_f64().ok_or_else(|| format!("result {id} has a timestamp that is not epoch seconds"))?;
            let value = value.as_f64().ok_or_else(|| format!("result {id} has a value that is not a number"))?;
            points.push(((at * 1000.0).round() as i64, value));
        }
        results.entry(id.to_string()).or_insert_with(Points::new).extend(points);
    }
    Ok(results)
}

/// Stores datums, at most CloudWatch's 1,000 per call.
pub fn put_metric_data(endpoint: &str, namespace: &str, datums: &[Value]) -> Result<()> {
    for chunk in datums.chunks(1000) {
        call(endpoint, "PutMetricData", &json!({"Namespace": namespace, "MetricData": chunk}))?;
    }
    Ok(())
}

pub fn now_epoch_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_read_by_id_in_milliseconds() {
        let page = json!({"MetricDataResults": [
            {"Id": "q1", "Timestamps": [1_700_000_060.0, 1_700_000_000], "Values": [2.5, 1], "StatusCode": "Complete"},
            {"Id": "q0", "Timestamps": [], "Values": []},
        ]});
        let results = parse_results(&page).unwrap();
        assert_eq!(results["q1"], vec![(1_700_000_060_000, 2.5), (1_700_000_000_000, 1.0)]);
        assert!(results["q0"].is_empty());
        let uneven = json!({"MetricDataResults": [{"Id": "q0", "Timestamps": [1], "Values": []}]});
        assert!(parse_results(&uneven).is_err());
    }
}
