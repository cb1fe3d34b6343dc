//! The publisher's CloudWatch ports over `aws-sdk-cloudwatch` (Smithy RPCv2-CBOR): the sink
//! (PutMetricData) and Bedrock's own figures (GetMetricData over `AWS/Bedrock`).
//!
//! Retries are the SDK's (standard mode, throttles included); what still fails is classified
//! for the use case: a throttle or an unreachable service defers the minute, a refused
//! request is the datums' fault and is not retried.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StandardUnit};
use aws_smithy_types::DateTime;

use crate::metrics::Unit;
use crate::metrics::publish::{BedrockMetrics, BedrockMinute, DatumValue, MetricDatum, MetricSink, MetricsError};
use crate::usage::Minute;

/// GetMetricData's limit of queries per call.
const QUERIES_PER_CALL: usize = 500;
const BEDROCK_NAMESPACE: &str = "AWS/Bedrock";
/// The `AWS/Bedrock` metrics read per model, in [`BedrockMinute`]'s order.
const BEDROCK_METRICS: [&str; 4] = ["Invocations", "InvocationThrottles", "InputTokenCount", "OutputTokenCount"];

#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchMetrics {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        CloudWatchMetrics { client }
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(error: SdkError<E>) -> MetricsError {
    let detail = match error.code() {
        Some(code) => format!("{code}: {}", error.message().unwrap_or("")),
        None => format!("{error}: {}", std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default()),
    };
    match error.code() {
        Some("Throttling" | "ThrottlingException" | "RequestLimitExceeded") => MetricsError::Throttled(detail),
        Some(
            "InvalidParameterValue"
            | "InvalidParameterValueException"
            | "MissingParameter"
            | "MissingRequiredParameterException"
            | "InvalidParameterCombination"
            | "InvalidParameterCombinationException",
        ) => MetricsError::Rejected(detail),
        _ => MetricsError::Unavailable(detail),
    }
}

fn unit(unit: Unit) -> StandardUnit {
    match unit {
        Unit::Count => StandardUnit::Count,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::Microseconds => StandardUnit::Microseconds,
        Unit::Percent => StandardUnit::Percent,
        Unit::CountPerSecond => StandardUnit::CountSecond,
        Unit::None => StandardUnit::None,
    }
}

fn to_sdk(datum: &MetricDatum) -> aws_sdk_cloudwatch::types::MetricDatum {
    let timestamp = DateTime::from_millis(i64::try_from(datum.timestamp_ms).unwrap_or(i64::MAX));
    let dimensions =
        datum.dimensions.iter().map(|(name, value)| Dimension::builder().name(*name).value(value).build()).collect();
    let builder = aws_sdk_cloudwatch::types::MetricDatum::builder()
        .metric_name(datum.name)
        .set_dimensions(Some(dimensions))
        .timestamp(timestamp)
        .unit(unit(datum.unit));
    match &datum.value {
        DatumValue::Single(value) => builder.value(*value),
        DatumValue::Distribution { values, counts } => {
            builder.set_values(Some(values.clone())).set_counts(Some(counts.clone()))
        }
    }
    .build()
}

impl MetricSink for CloudWatchMetrics {
    async fn put(&self, namespace: &str, datums: &[MetricDatum]) -> Result<(), MetricsError> {
        self.client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(datums.iter().map(to_sdk).collect()))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

impl BedrockMetrics for CloudWatchMetrics {
    async fn minute(&self, minute: Minute, model_ids: &[String]) -> Result<Vec<BedrockMinute>, MetricsError> {
        let start = DateTime::from_millis(i64::try_from(minute.start_ms()).unwrap_or(i64::MAX));
        let end = DateTime::from_millis(i64::try_from(minute.next().start_ms()).unwrap_or(i64::MAX));
        // Query IDs must start with a lower-case letter: `m<model index>_<metric index>`.
        let queries: Vec<(String, usize, usize)> = (0..model_ids.len())
            .flat_map(|m| (0..BEDROCK_METRICS.len()).map(move |k| (format!("m{m}_{k}"), m, k)))
            .collect();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for batch in queries.chunks(QUERIES_PER_CALL) {
            let sdk_queries: Vec<MetricDataQuery> = batch
                .iter()
                .map(|(id, m, k)| {
                    let metric = Metric::builder()
                        .namespace(BEDROCK_NAMESPACE)
                        .metric_name(BEDROCK_METRICS[*k])
                        .dimensions(Dimension::builder().name("ModelId").value(&model_ids[*m]).build())
                        .build();
                    MetricDataQuery::builder()
                        .id(id)
                        .metric_stat(MetricStat::builder().metric(metric).period(60).stat("Sum").build())
                        .return_data(true)
                        .build()
                })
                .collect();
            let mut next_token: Option<String> = None;
            loop {
                let output = self
                    .client
                    .get_metric_data()
                    .set_metric_data_queries(Some(sdk_queries.clone()))
                    .start_time(start)
                    .end_time(end)
                    .set_next_token(next_token.take())
                    .send()
                    .await
                    .map_err(classify)?;
                for result in output.metric_data_results() {
                    if let Some(id) = result.id() {
                        *sums.entry(id.to_string()).or_default() += result.values().iter().sum::<f64>();
                    }
                }
                match output.next_token() {
                    Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                    _ => break,
                }
            }
        }
        let figure = |m: usize, k: usize| sums.get(&format!("m{m}_{k}")).copied().unwrap_or(0.0);
        Ok(model_ids
            .iter()
            .enumerate()
            .map(|(m, id)| BedrockMinute {
                model_id: id.clone(),
                invocations: figure(m, 0),
                throttles: figure(m, 1),
                input_tokens: figure(m, 2),
                output_tokens: figure(m, 3),
            })
            .filter(|b| b.invocations + b.throttles + b.input_tokens + b.output_tokens > 0.0)
            .collect())
    }
}
