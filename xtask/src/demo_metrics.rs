//! The demo's CloudWatch section: once the metrics publisher (invoked by the pump's
//! schedule, as EventBridge Scheduler invokes it deployed) has published every minute the run
//! sent requests in, the figures in the emulator's CloudWatch must agree with what the demo
//! itself saw: each workload tenant's requests and cost, the run's requests and cache hits.
//! The figures are read back with GetMetricData, as a dashboard or an alarm reads them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::process::{check_interrupted, sleep_interruptibly};
use crate::report::Outcome;
use crate::stack::{self, Stack};
use crate::{Result, aws, dynamo};

pub const NAMESPACE: &str = "BedrockGateway";
/// A minute closes `METRICS_SETTLE_SECONDS` after it ends and the pump runs the publisher
/// every few seconds; a cold `cargo lambda watch` may also start the function first.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(4 * 60);
/// Sums of a few hundred prices in another order differ in the last bits only.
const USD_TOLERANCE: f64 = 1e-9;

/// What the run's own client saw, in the publisher's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    /// By tenant as the workload named it: requests sent and the cost the answers reported.
    pub tenants: BTreeMap<String, (u64, f64)>,
    /// Every request invoke-with-cache served in the window, the workload's and any other.
    pub requests: u64,
    pub cache_hits: u64,
    /// On-demand price less batch price of the batch answers in the window.
    pub batch_saved_usd: f64,
}

impl Expected {
    /// The workload's outcomes, plus requests outside it (a warm-up, the batch section's
    /// online repeats and lines) of which `extra_hits` were HITs.
    pub fn from_outcomes(outcomes: &[Outcome], extra_requests: u64, extra_hits: u64, batch_saved_usd: f64) -> Self {
        let mut tenants: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        for outcome in outcomes {
            let entry = tenants.entry(outcome.tenant.clone()).or_default();
            entry.0 += 1;
            entry.1 += outcome.cost_usd.unwrap_or(0.0);
        }
        let hits = outcomes.iter().filter(|o| o.is_hit()).count() as u64;
        Expected {
            tenants,
            requests: outcomes.len() as u64 + extra_requests,
            cache_hits: hits + extra_hits,
            batch_saved_usd,
        }
    }
}

/// One published figure beside the demo's own count of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub name: String,
    pub expected: f64,
    pub published: Option<f64>,
    pub tolerance: f64,
}

impl Figure {
    pub fn agrees(&self) -> bool {
        self.published.is_some_and(|p| (p - self.expected).abs() <= self.tolerance)
    }
}

#[derive(Debug, Default)]
pub struct MetricsReport {
    pub minutes: u64,
    pub wait_seconds: f64,
    pub figures: Vec<Figure>,
    pub errors: Vec<String>,
}

impl MetricsReport {
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && !self.figures.is_empty() && self.figures.iter().all(Figure::agrees)
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "CloudWatch (emulator, namespace {NAMESPACE}): {} {} published, {:.0} s after the last request\n",
            self.minutes,
            if self.minutes == 1 { "minute" } else { "minutes" },
            self.wait_seconds
        );
        for figure in &self.figures {
            let published = figure.published.map_or_else(|| "nothing".to_string(), |p| trim(p, figure.tolerance));
            let verdict = if figure.agrees() { "agrees" } else { "DIFFERS" };
            out.push_str(&format!(
                "  {:<30} published {:>12}  demo {:>12}  {verdict}\n",
                figure.name,
                published,
                trim(figure.expected, figure.tolerance)
            ));
        }
        for error in &self.errors {
            out.push_str(&format!("  error: {error}\n"));
        }
        out
    }
}

/// Counts are compared exactly and shown whole; dollars to the micro-dollar.
fn trim(value: f64, tolerance: f64) -> String {
    if tolerance == 0.0 { format!("{value:.0}") } else { format!("{value:.6}") }
}

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Waits for the publisher to mark every minute from `since` to now done, then compares.
pub fn check(stack: &Stack, since: SystemTime, expected: &Expected) -> MetricsReport {
    let mut report = MetricsReport::default();
    if let Err(e) = compare(stack, since, expected, &mut report) {
        report.errors.push(e.to_string());
    }
    report
}

fn compare(stack: &Stack, since: SystemTime, expected: &Expected, report: &mut MetricsReport) -> Result<()> {
    let moto = stack.moto_url.as_deref().ok_or("moto is not running")?;
    let cloudwatch = stack.cloudwatch_url.as_deref().ok_or("the emulator's CloudWatch is not running")?;
    let (first, last) = (epoch_ms(since) / 60_000, epoch_ms(SystemTime::now()) / 60_000);
    report.minutes = last - first + 1;
    println!(
        "demo: waiting for the metrics publisher to publish minutes {first}..={last} \
         (each closes {} s after it ends) ...",
        stack::METRICS_SETTLE_SECONDS
    );
    let started = Instant::now();
    wait_published(moto, first..=last)?;
    report.wait_seconds = started.elapsed().as_secs_f64();

    let window = (first * 60, (last + 1) * 60);
    let tenants = tenant_dimensions(cloudwatch)?;
    let mut queries = vec![
        ("Requests".to_string(), metric_query("Requests", &[])),
        ("CacheHits".to_string(), metric_query("CacheHits", &[])),
        ("SavedUsd batch".to_string(), metric_query("SavedUsd", &[("SavingsSource", "batch")])),
    ];
    for name in expected.tenants.keys() {
        let value = tenants.get(name).ok_or_else(|| {
            format!("no Tenant dimension for {name} in CloudWatch (found {:?})", tenants.keys().collect::<Vec<_>>())
        })?;
        queries.push((format!("Requests {name}"), metric_query("Requests", &[("Tenant", value)])));
        queries.push((format!("CostUsd {name}"), metric_query("CostUsd", &[("Tenant", value)])));
    }
    let sums = sums(cloudwatch, &queries, window)?;
    let figure = |name: &str, expected: f64, tolerance: f64| Figure {
        name: name.to_string(),
        expected,
        published: sums.get(name).copied(),
        tolerance,
    };
    report.figures.push(figure("Requests", expected.requests as f64, 0.0));
    report.figures.push(figure("CacheHits", expected.cache_hits as f64, 0.0));
    let saved = expected.batch_saved_usd;
    report.figures.push(figure("SavedUsd batch", saved, USD_TOLERANCE.max(saved.abs() * 1e-12)));
    for (name, (requests, cost)) in &expected.tenants {
        report.figures.push(figure(&format!("Requests {name}"), *requests as f64, 0.0));
        report.figures.push(figure(&format!("CostUsd {name}"), *cost, USD_TOLERANCE.max(cost.abs() * 1e-12)));
    }
    Ok(())
}

/// The publisher marks a minute done in the usage table once all its calls went through.
fn wait_published(moto: &str, minutes: std::ops::RangeInclusive<u64>) -> Result<()> {
    let started = Instant::now();
    let mut pending: Vec<u64> = minutes.collect();
    loop {
        check_interrupted()?;
        let mut still = Vec::new();
        for minute in pending {
            let key = json!({ "pk": { "S": format!("publish#{minute}") }, "sk": { "S": "progress" } });
            let item = dynamo::get_item(moto, stack::LOCAL_USAGE_TABLE_NAME, &key)?;
            if item.and_then(|i| i.pointer("/done/BOOL").and_then(Value::as_bool)) != Some(true) {
                still.push(minute);
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if started.elapsed() > PUBLISH_TIMEOUT {
            return Err(format!(
                "minutes {still:?} not published after {} s (see the metrics-publisher lines in the cargo-lambda-watch log)",
                PUBLISH_TIMEOUT.as_secs()
            )
            .into());
        }
        pending = still;
        sleep_interruptibly(Duration::from_secs(2))?;
    }
}

fn cloudwatch_call(endpoint: &str, operation: &str, body: &Value) -> Result<Value> {
    aws::ok_json(
        &format!("CloudWatch {operation}"),
        aws::json_call(endpoint, "monitoring", &format!("GraniteServiceVersion20100801.{operation}"), "1.0", body)?,
    )
}

/// Workload tenant names to the `Tenant` dimension values the publisher wrote: the core's
/// encoding of a trusted-header identity ends in `:<name>`.
fn tenant_dimensions(cloudwatch: &str) -> Result<BTreeMap<String, String>> {
    let mut found = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "Namespace": NAMESPACE, "MetricName": "CostUsd", "Dimensions": [{ "Name": "Tenant" }] });
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let reply = cloudwatch_call(cloudwatch, "ListMetrics", &body)?;
        for metric in reply["Metrics"].as_array().into_iter().flatten() {
            for dimension in metric["Dimensions"].as_array().into_iter().flatten() {
                if dimension["Name"] == "Tenant"
                    && let Some(value) = dimension["Value"].as_str()
                    && let Some((_, name)) = value.rsplit_once(':')
                {
                    found.insert(name.to_string(), value.to_string());
                }
            }
        }
        match reply["NextToken"].as_str() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => return Ok(found),
        }
    }
}

fn metric_query(metric: &str, dimensions: &[(&str, &str)]) -> Value {
    let dimensions: Vec<Value> = dimensions.iter().map(|(n, v)| json!({ "Name": n, "Value": v })).collect();
    json!({
        "MetricStat": {
            "Metric": { "Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dimensions },
            "Period": 60,
            "Stat": "Sum",
        },
        "ReturnData": true,
    })
}

/// The sum over the window of each query's one-minute sums, by the query's name; a metric
/// with no datum in the window has no entry.
fn sums(cloudwatch: &str, queries: &[(String, Value)], window: (u64, u64)) -> Result<BTreeMap<String, f64>> {
    let mut body_queries = Vec::new();
    for (index, (_, query)) in queries.iter().enumerate() {
        let mut query = query.clone();
        query["Id"] = json!(format!("q{index}"));
        body_queries.push(query);
    }
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({
            "MetricDataQueries": body_queries,
            "StartTime": window.0,
            "EndTime": window.1,
            "ScanBy": "TimestampAscending",
        });
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let reply = cloudwatch_call(cloudwatch, "GetMetricData", &body)?;
        for result in reply["MetricDataResults"].as_array().into_iter().flatten() {
            let index: Option<usize> =
                result["Id"].as_str().and_then(|id| id.strip_prefix('q')).and_then(|i| i.parse().ok());
            let Some((name, _)) = index.and_then(|i| queries.get(i)) else {
                return Err(format!("GetMetricData answered an unknown query: {result}").into());
            };
            let values: Vec<f64> =
                result["Values"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            if !values.is_empty() {
                *totals.entry(name.clone()).or_default() += values.iter().sum::<f64>();
            }
        }
        match reply["NextToken"].as_str() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => return Ok(totals),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(tenant: &str, cost: f64, cache: &str) -> Outcome {
        Outcome {
            tenant: tenant.to_string(),
            status: 200,
            cost_usd: Some(cost),
            cache_result: Some(cache.to_string()),
            ..Outcome::default()
        }
    }

    #[test]
    fn expected_figures_count_tenants_hits_and_requests_outside_the_workload() {
        let outcomes = [outcome("acme", 0.5, "MISS"), outcome("acme", 0.0, "HIT"), outcome("globex", 0.25, "MISS")];
        let expected = Expected::from_outcomes(&outcomes, 21, 20, 0.0);
        assert_eq!(expected.tenants["acme"], (2, 0.5));
        assert_eq!(expected.tenants["globex"], (1, 0.25));
        assert_eq!((expected.requests, expected.cache_hits), (24, 21));
    }

    #[test]
    fn a_figure_agrees_only_when_published_and_within_its_tolerance() {
        let figure = |published| Figure { name: "CostUsd acme".into(), expected: 1.0, published, tolerance: 1e-9 };
        assert!(figure(Some(1.0 + 1e-12)).agrees());
        assert!(!figure(Some(1.001)).agrees());
        assert!(!figure(None).agrees());
        let report = MetricsReport { figures: vec![figure(Some(1.0)), figure(None)], ..MetricsReport::default() };
        assert!(!report.passed());
        assert!(report.render().contains("DIFFERS"));
        assert!(!MetricsReport::default().passed(), "no figures is no evidence");
    }
}
