//! The emulator's CloudWatch seen through the real `aws-sdk-cloudwatch` client, which speaks
//! RPCv2-CBOR: statistics and percentiles, period buckets, paging, typed errors, retries.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricDatum, MetricStat, ScanBy, StandardUnit, StatisticSet,
    StatusCode,
};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::json;

mod common;
use common::http;

const NS: &str = "Gateway/Test";

async fn start() -> (RunningEmulator, Client) {
    let emulator = bedrock_emulator::spawn(EmulatorConfig::instant()).await.unwrap();
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(emulator.cloudwatch_url())
        // Retries as in production, minus the waiting.
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(1)))
        .build();
    (emulator, Client::from_conf(config))
}

/// A minute boundary an hour ago, also on a five-minute boundary: buckets start there.
fn base() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    now / 300 * 300 - 3600
}

fn dimension(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

fn datum(name: &str, at: i64) -> aws_sdk_cloudwatch::types::builders::MetricDatumBuilder {
    MetricDatum::builder().metric_name(name).dimensions(dimension("Model", "m")).timestamp(DateTime::from_secs(at))
}

fn query(id: &str, name: &str, period: i32, stat: &str) -> MetricDataQuery {
    let metric = Metric::builder().namespace(NS).metric_name(name).dimensions(dimension("Model", "m")).build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(MetricStat::builder().metric(metric).period(period).stat(stat).build())
        .build()
}

async fn put(client: &Client, data: Vec<MetricDatum>) {
    client.put_metric_data().namespace(NS).set_metric_data(Some(data)).send().await.unwrap();
}

async fn get(client: &Client, queries: Vec<MetricDataQuery>, from: i64, to: i64) -> GetMetricDataOutput {
    client
        .get_metric_data()
        .set_metric_data_queries(Some(queries))
        .start_time(DateTime::from_secs(from))
        .end_time(DateTime::from_secs(to))
        .send()
        .await
        .unwrap()
}

/// Each result's values by query id, in the order returned.
fn values(output: &GetMetricDataOutput, id: &str) -> Vec<f64> {
    let result = output.metric_data_results().iter().find(|r| r.id() == Some(id)).unwrap();
    assert_eq!(result.status_code(), Some(&StatusCode::Complete), "{id}");
    result.values().to_vec()
}

fn seconds(output: &GetMetricDataOutput, id: &str) -> Vec<i64> {
    let result = output.metric_data_results().iter().find(|r| r.id() == Some(id)).unwrap();
    result.timestamps().iter().map(DateTime::secs).collect()
}

#[tokio::test]
async fn every_statistic_of_raw_values_including_percentiles() {
    let (_emulator, client) = start().await;
    let at = base();
    let raw: Vec<f64> = (1..=100).map(f64::from).collect();
    put(&client, vec![datum("Latency", at + 5).set_values(Some(raw)).unit(StandardUnit::Milliseconds).build()]).await;
    let stats = ["SampleCount", "Sum", "Average", "Minimum", "Maximum", "p90", "p99.5", "p50"];
    let queries = stats.iter().enumerate().map(|(i, s)| query(&format!("q{i}"), "Latency", 60, s)).collect();
    let output = get(&client, queries, at, at + 60).await;
    let got: Vec<Vec<f64>> = (0..stats.len()).map(|i| values(&output, &format!("q{i}"))).collect();
    assert_eq!(got, [[100.0], [5050.0], [50.5], [1.0], [100.0], [90.0], [100.0], [50.0]]);
    assert_eq!(seconds(&output, "q0"), [at]);
    let result = &output.metric_data_results()[0];
    assert_eq!(result.label(), Some("Latency"), "the label defaults to the metric name");

    let metric = Metric::builder().namespace(NS).metric_name("Latency").dimensions(dimension("Model", "m")).build();
    let stat = MetricStat::builder().metric(metric).period(60).stat("SampleCount").unit(StandardUnit::Count).build();
    let other_unit = MetricDataQuery::builder().id("c").metric_stat(stat).build();
    let output = get(&client, vec![other_unit], at, at + 60).await;
    assert_eq!(values(&output, "c"), Vec::<f64>::new(), "a unit filter keeps only datums of that unit");
}

#[tokio::test]
async fn values_with_counts_and_a_single_value_weigh_together() {
    let (_emulator, client) = start().await;
    let at = base();
    put(
        &client,
        vec![
            datum("Tokens", at + 1).values(10.0).values(20.0).counts(3.0).counts(1.0).build(),
            datum("Tokens", at + 2).value(40.0).build(),
        ],
    )
    .await;
    let stats = ["SampleCount", "Sum", "Average", "p50", "p80", "Maximum"];
    let queries = stats.iter().enumerate().map(|(i, s)| query(&format!("q{i}"), "Tokens", 60, s)).collect();
    let output = get(&client, queries, at, at + 60).await;
    let got: Vec<Vec<f64>> = (0..stats.len()).map(|i| values(&output, &format!("q{i}"))).collect();
    // Weighted and sorted: 10 10 10 20 40.
    assert_eq!(got, [[5.0], [90.0], [18.0], [10.0], [20.0], [40.0]]);
}

#[tokio::test]
async fn statistic_sets_give_percentiles_only_when_they_stand_for_one_value() {
    let (_emulator, client) = start().await;
    let at = base();
    let spread = StatisticSet::builder().sample_count(4.0).sum(20.0).minimum(2.0).maximum(8.0).build();
    let equal = StatisticSet::builder().sample_count(3.0).sum(15.0).minimum(5.0).maximum(5.0).build();
    put(
        &client,
        vec![
            datum("Spread", at + 1).statistic_values(spread).build(),
            datum("Equal", at + 1).statistic_values(equal).build(),
        ],
    )
    .await;
    let stats = ["SampleCount", "Sum", "Average", "Minimum", "Maximum", "p50"];
    let mut queries: Vec<MetricDataQuery> =
        stats.iter().enumerate().map(|(i, s)| query(&format!("s{i}"), "Spread", 60, s)).collect();
    queries.push(query("equal", "Equal", 60, "p50"));
    let output = get(&client, queries, at, at + 60).await;
    let got: Vec<Vec<f64>> = (0..stats.len()).map(|i| values(&output, &format!("s{i}"))).collect();
    assert_eq!(got, [vec![4.0], vec![20.0], vec![5.0], vec![2.0], vec![8.0], vec![]]);
    assert_eq!(values(&output, "equal"), [5.0]);
}

#[tokio::test]
async fn periods_bucket_on_the_epoch_and_scan_by_orders_them() {
    let (_emulator, client) = start().await;
    let at = base();
    let data = [(5, 1.0), (30, 2.0), (65, 4.0), (200, 8.0)];
    put(&client, data.iter().map(|(offset, v)| datum("Requests", at + offset).value(*v).build()).collect()).await;

    let output = get(&client, vec![query("m", "Requests", 60, "Sum")], at, at + 300).await;
    assert_eq!(seconds(&output, "m"), [at + 180, at + 60, at], "newest first by default");
    assert_eq!(values(&output, "m"), [8.0, 4.0, 3.0]);

    let ascending = client
        .get_metric_data()
        .metric_data_queries(query("m", "Requests", 60, "Sum"))
        .start_time(DateTime::from_secs(at))
        .end_time(DateTime::from_secs(at + 300))
        .scan_by(ScanBy::TimestampAscending)
        .send()
        .await
        .unwrap();
    assert_eq!(seconds(&ascending, "m"), [at, at + 60, at + 180]);
    assert_eq!(values(&ascending, "m"), [3.0, 4.0, 8.0]);

    let five_minutes = get(&client, vec![query("m", "Requests", 300, "Sum")], at, at + 300).await;
    assert_eq!((seconds(&five_minutes, "m"), values(&five_minutes, "m")), (vec![at], vec![15.0]));

    let window = get(&client, vec![query("m", "Requests", 60, "Sum")], at + 60, at + 200).await;
    assert_eq!(values(&window, "m"), [4.0], "the end time is exclusive");

    let first = client
        .get_metric_data()
        .metric_data_queries(query("m", "Requests", 60, "Sum"))
        .start_time(DateTime::from_secs(at))
        .end_time(DateTime::from_secs(at + 300))
        .max_datapoints(2)
        .send()
        .await
        .unwrap();
    let result = &first.metric_data_results()[0];
    assert_eq!((result.values(), result.status_code()), (&[8.0, 4.0][..], Some(&StatusCode::PartialData)));
    let rest = client
        .get_metric_data()
        .metric_data_queries(query("m", "Requests", 60, "Sum"))
        .start_time(DateTime::from_secs(at))
        .end_time(DateTime::from_secs(at + 300))
        .max_datapoints(2)
        .set_next_token(first.next_token().map(str::to_owned))
        .send()
        .await
        .unwrap();
    assert_eq!(values(&rest, "m"), [3.0]);
    assert_eq!(rest.next_token(), None);
}

#[tokio::test]
async fn list_metrics_filters_and_pages_by_500() {
    let (_emulator, client) = start().await;
    let at = base();
    let requests = |model: &str| MetricDatum::builder().metric_name("Requests").dimensions(dimension("Model", model));
    put(
        &client,
        vec![
            requests("a").dimensions(dimension("Tenant", "t1")).value(1.0).build(),
            requests("b").value(1.0).build(),
            MetricDatum::builder().metric_name("Errors").dimensions(dimension("Model", "a")).value(1.0).build(),
        ],
    )
    .await;
    let names = |output: aws_sdk_cloudwatch::operation::list_metrics::ListMetricsOutput| -> Vec<String> {
        output
            .metrics()
            .iter()
            .map(|m| {
                let dims: Vec<String> =
                    m.dimensions().iter().map(|d| format!("{}={}", d.name().unwrap(), d.value().unwrap())).collect();
                format!("{} {}", m.metric_name().unwrap(), dims.join(","))
            })
            .collect()
    };
    let by_name = client.list_metrics().namespace(NS).metric_name("Requests").send().await.unwrap();
    assert_eq!(names(by_name), ["Requests Model=a,Tenant=t1", "Requests Model=b"]);
    let by_value = client
        .list_metrics()
        .namespace(NS)
        .dimensions(DimensionFilter::builder().name("Model").value("a").build())
        .send()
        .await
        .unwrap();
    assert_eq!(names(by_value), ["Errors Model=a", "Requests Model=a,Tenant=t1"]);
    let by_name_only =
        client.list_metrics().dimensions(DimensionFilter::builder().name("Tenant").build()).send().await.unwrap();
    assert_eq!(names(by_name_only), ["Requests Model=a,Tenant=t1"]);

    // Large enough that the SDK gzips the bodies.
    for chunk in 0..3 {
        let data = (0..400).map(|i| {
            let tenant = format!("tenant-{:04}", chunk * 400 + i);
            MetricDatum::builder()
                .metric_name("Cost")
                .dimensions(dimension("Tenant", &tenant))
                .timestamp(DateTime::from_secs(at))
                .value(0.5)
                .build()
        });
        client.put_metric_data().namespace("Paged").set_metric_data(Some(data.collect())).send().await.unwrap();
    }
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let page = client.list_metrics().namespace("Paged").set_next_token(token).send().await.unwrap();
        pages.push(page.metrics().len());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, [500, 500, 200]);
}

#[tokio::test]
async fn validation_errors_surface_as_the_sdks_typed_errors() {
    let (_emulator, client) = start().await;
    let reserved = client
        .put_metric_data()
        .namespace("AWS/Bedrock")
        .metric_data(datum("X", base()).value(1.0).build())
        .send()
        .await;
    let error = reserved.unwrap_err().into_service_error();
    assert!(matches!(error, PutMetricDataError::InvalidParameterValueException(_)), "{error:?}");
    assert_eq!(error.code(), Some("InvalidParameterValue"));

    let both = datum("X", base()).value(1.0).values(2.0).build();
    let error = client.put_metric_data().namespace(NS).metric_data(both).send().await.unwrap_err().into_service_error();
    assert!(matches!(error, PutMetricDataError::InvalidParameterCombinationException(_)), "{error:?}");

    let nan = datum("X", base()).value(f64::NAN).build();
    let error = client.put_metric_data().namespace(NS).metric_data(nan).send().await.unwrap_err().into_service_error();
    assert!(matches!(error, PutMetricDataError::InvalidParameterValueException(_)), "{error:?}");

    let math = MetricDataQuery::builder().id("e1").expression("SUM(METRICS())").build();
    let error = client
        .get_metric_data()
        .metric_data_queries(math)
        .start_time(DateTime::from_secs(base()))
        .end_time(DateTime::from_secs(base() + 60))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error.code(), Some("InvalidParameterValue"));
    assert!(error.message().unwrap().contains("does not evaluate metric math"), "{error:?}");

    let bad_id = query("Upper", "X", 60, "Sum");
    let error = client
        .get_metric_data()
        .metric_data_queries(bad_id)
        .start_time(DateTime::from_secs(base()))
        .end_time(DateTime::from_secs(base() + 60))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error.code(), Some("InvalidParameterValue"));
}

#[tokio::test]
async fn the_sdk_retries_through_injected_throttling_and_gives_up_on_lasting_faults() {
    let (emulator, client) = start().await;
    let url = emulator.cloudwatch_url();
    let fault = json!({"error": "throttling", "count": 2});
    let (status, _) = http("PUT", format!("{url}/_emulator/cloudwatch/faults/PutMetricData"), Some(fault)).await;
    assert_eq!(status, 200);
    put(&client, vec![datum("Retried", base()).value(1.0).build()]).await;
    let (_, calls) = http("GET", format!("{url}/_emulator/cloudwatch/calls"), None).await;
    assert_eq!(calls, json!({"PutMetricData": 3}), "two throttled attempts, then the stored one");
    let output = get(&client, vec![query("r", "Retried", 60, "SampleCount")], base(), base() + 60).await;
    assert_eq!(values(&output, "r"), [1.0]);

    let fault = json!({"error": "internal", "count": 5});
    http("PUT", format!("{url}/_emulator/cloudwatch/faults/ListMetrics"), Some(fault)).await;
    let error = client.list_metrics().send().await.unwrap_err().into_service_error();
    assert!(error.is_internal_service_fault(), "{error:?}");
    let (_, calls) = http("GET", format!("{url}/_emulator/cloudwatch/calls"), None).await;
    assert_eq!(calls["ListMetrics"], 3, "the SDK's three attempts");

    let (status, _) = http("POST", format!("{url}/_emulator/cloudwatch/reset"), None).await;
    assert_eq!(status, 200);
    let (_, calls) = http("GET", format!("{url}/_emulator/cloudwatch/calls"), None).await;
    assert_eq!(calls, json!({}));
    assert!(client.list_metrics().send().await.unwrap().metrics().is_empty(), "faults and data are gone");

    let bad = json!({"error": "slow", "count": 1});
    let (status, _) = http("PUT", format!("{url}/_emulator/cloudwatch/faults/ListMetrics"), Some(bad)).await;
    assert_eq!(status, 400);
}
