//! The test command's browser check of the dashboard: known datums go into the emulator's
//! CloudWatch, the page is written from it and loaded in headless Chromium, and the page
//! must have drawn every chart with the data and the figures the seeding implies, without
//! a console error, an exception or a failed load.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::widgets::{self, Metric, Query, Widget};
use super::{DashboardSummary, cloudwatch, write};
use crate::browser::{self, Inspection};
use crate::{Result, paths, template, tools};

/// The minutes seeded, ending with the last whole minute.
const SEEDED_MINUTES: i64 = 30;
/// A little more than the seeded span, so the lines fill most of each chart.
const CHECK_WINDOW: Duration = Duration::from_secs(40 * 60);
/// Each datum is this distribution times the metric's value of the minute: ten values whose
/// every statistic is known (Sum 17x, Maximum 4x, p50 x, p90 2x, p99 4x).
const VALUES: [f64; 3] = [1.0, 2.0, 4.0];
const COUNTS: [f64; 3] = [5.0, 4.0, 1.0];

const READY: &str = "document.body !== null && document.body.dataset.ready === 'true'";
const STATE: &str = r#"JSON.stringify({
  ready: document.body.dataset.ready === "true",
  errors: Number(document.body.dataset.errors || 0),
  charts: Array.from(document.querySelectorAll("section.chart")).map(function (section) {
    return {
      title: section.dataset.title,
      points: Number(section.dataset.points),
      lines: section.querySelectorAll("svg path.line").length,
      empty: section.querySelector(".empty") !== null,
      series: Array.from(section.querySelectorAll("li.series")).map(function (item) {
        return {
          label: item.dataset.label,
          latest: item.dataset.latest === undefined ? null : Number(item.dataset.latest),
          total: item.dataset.total === undefined ? null : Number(item.dataset.total),
          text: item.textContent
        };
      })
    };
  })
})"#;

pub fn browser_check(cloudwatch_url: &str) -> Result<bool> {
    tools::ensure_chromium()?;
    let template = template::load_template(&paths::repo_root().join("template.yaml"))?;
    let widgets = widgets::from_template(&template)?;
    let now = cloudwatch::now_epoch_seconds();
    // A tag of this run names the dimension values the searches find, so figures of an
    // earlier run on the same emulator cannot mix into the ones checked.
    let seed = Seed::plan(&widgets, &format!("check-{now}"), now);
    for (namespace, datums) in seed.datums() {
        cloudwatch::put_metric_data(cloudwatch_url, &namespace, &datums)?;
    }
    println!("dashboard check: seeded {} metrics over the last {SEEDED_MINUTES} minutes", seed.values.len());

    let page = paths::target_dir().join("dashboard.html");
    let screenshot = paths::target_dir().join("dashboard.png");
    let summary = write(cloudwatch_url, CHECK_WINDOW, &page)?;
    println!(
        "dashboard check: {} charts, {} with data: {}",
        summary.charts, summary.charts_with_data, summary.file_url
    );
    let report = browser::inspect(&Inspection {
        url: &summary.file_url,
        ready_expression: READY,
        state_expression: STATE,
        ready_timeout: Duration::from_secs(15),
        screenshot: Some(&screenshot),
    })?;
    println!("dashboard check: screenshot {}", screenshot.display());

    let aws_only: Vec<bool> = widgets.iter().map(Widget::reads_only_aws_namespaces).collect();
    let mut failures = verify(&summary, &aws_only, &seed.expectations(&widgets), &report.state);
    failures.extend(report.problems.iter().map(|problem| format!("the page logged {problem}")));
    for failure in &failures {
        eprintln!("dashboard check: {failure}");
    }
    if failures.is_empty() {
        println!("dashboard check: every chart drawn, seeded figures shown, no console errors");
    }
    Ok(failures.is_empty())
}

/// What gets written: a base value per metric, scaled per minute by `factors`.
#[derive(Debug)]
struct Seed {
    tag: String,
    timestamps: Vec<i64>,
    factors: Vec<f64>,
    values: BTreeMap<Metric, f64>,
}

impl Seed {
    /// Every metric a chart reads outside `AWS/` (which PutMetricData refuses), and for each
    /// SEARCH one metric of its schema whose dimension values are `tag`.
    fn plan(widgets: &[Widget], tag: &str, now: i64) -> Self {
        let mut metrics = Vec::new();
        for query in widgets.iter().flat_map(|w| &w.queries) {
            if query.namespace().starts_with("AWS/") {
                continue;
            }
            let metric = match query {
                Query::Metric(query) => query.metric.clone(),
                Query::Search(search) => match &search.metric_name {
                    Some(name) => seeded_search_metric(search, name, tag),
                    None => continue,
                },
            };
            if !metrics.contains(&metric) {
                metrics.push(metric);
            }
        }
        let values = metrics.into_iter().enumerate().map(|(i, metric)| (metric, (i + 1) as f64)).collect();
        let last_minute = (now / 60 - 1) * 60;
        let timestamps = (0..SEEDED_MINUTES).map(|k| last_minute - (SEEDED_MINUTES - 1 - k) * 60).collect();
        // 1, 3, 5, 2, 4, ...: lines that rise and fall, each factor six times in 30 minutes.
        let factors = (0..SEEDED_MINUTES).map(|k| (1 + (7 * k) % 5) as f64).collect();
        Seed { tag: tag.to_string(), timestamps, factors, values }
    }

    fn datums(&self) -> BTreeMap<String, Vec<Value>> {
        let mut by_namespace: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (metric, base) in &self.values {
            let dimensions: Vec<Value> =
                metric.dimensions.iter().map(|(name, value)| json!({"Name": name, "Value": value})).collect();
            for (at, factor) in self.timestamps.iter().zip(&self.factors) {
                let values: Vec<f64> = VALUES.iter().map(|v| v * base * factor).collect();
                by_namespace.entry(metric.namespace.clone()).or_default().push(json!({
                    "MetricName": metric.name,
                    "Dimensions": dimensions,
                    "Timestamp": at,
                    "Values": values,
                    "Counts": COUNTS,
                }));
            }
        }
        by_namespace
    }

    /// The figures each tagged series must show: a sum's total over the window, and for
    /// one-minute periods the latest minute's statistic.
    fn expectations(&self, widgets: &[Widget]) -> Vec<Expectation> {
        let mut expectations = Vec::new();
        for widget in widgets {
            for query in &widget.queries {
                let Query::Search(search) = query else { continue };
                let Some(name) = &search.metric_name else { continue };
                let metric = seeded_search_metric(search, name, &self.tag);
                let Some(base) = self.values.get(&metric) else { continue };
                let series = search.series_for(metric.clone());
                let total = (series.stat == "Sum")
                    .then(|| self.factors.iter().map(|f| minute_statistic("Sum", base * f)).sum::<Option<f64>>())
                    .flatten();
                let latest = (series.period == 60)
                    .then(|| self.factors.last().and_then(|f| minute_statistic(&series.stat, base * f)))
                    .flatten();
                if total.is_some() || latest.is_some() {
                    expectations.push(Expectation { chart: widget.title.clone(), label: series.label, total, latest });
                }
            }
        }
        expectations
    }
}

fn seeded_search_metric(search: &widgets::SearchQuery, name: &str, tag: &str) -> Metric {
    Metric {
        namespace: search.namespace.clone(),
        name: name.to_string(),
        dimensions: search.dimension_names.iter().map(|d| (d.clone(), tag.to_string())).collect(),
    }
}

/// A statistic of one seeded minute whose values are `VALUES` times `scale` with `COUNTS`;
/// percentiles are nearest-rank, as the emulator computes them.
fn minute_statistic(stat: &str, scale: f64) -> Option<f64> {
    let count: f64 = COUNTS.iter().sum();
    let sum: f64 = VALUES.iter().zip(COUNTS).map(|(v, c)| v * c).sum::<f64>() * scale;
    match stat {
        "Sum" => Some(sum),
        "SampleCount" => Some(count),
        "Average" => Some(sum / count),
        "Minimum" => Some(VALUES[0] * scale),
        "Maximum" => Some(VALUES[VALUES.len() - 1] * scale),
        percentile => {
            let p: f64 = percentile.strip_prefix('p')?.parse().ok()?;
            let rank = (p / 100.0 * count).ceil().max(1.0);
            let mut seen = 0.0;
            VALUES.iter().zip(COUNTS).find_map(|(value, c)| {
                seen += c;
                (seen >= rank).then_some(value * scale)
            })
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Expectation {
    chart: String,
    label: String,
    total: Option<f64>,
    latest: Option<f64>,
}

/// Every way the page can differ from what was fetched and seeded, one line each.
fn verify(summary: &DashboardSummary, aws_only: &[bool], expectations: &[Expectation], state: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    if state.get("ready") != Some(&Value::Bool(true)) {
        failures.push("the page never set data-ready=\"true\": its script did not finish".to_string());
    }
    let errors = state.get("errors").and_then(Value::as_f64).unwrap_or(0.0);
    if errors > 0.0 {
        failures.push(format!("the page counted {errors} script errors (data-errors)"));
    }
    let charts = state.get("charts").and_then(Value::as_array).cloned().unwrap_or_default();
    if charts.len() != summary.charts {
        failures.push(format!("the page shows {} charts; the dashboard has {}", charts.len(), summary.charts));
    }
    for (index, (title, fetched)) in summary.chart_points.iter().enumerate() {
        let Some(chart) = charts.get(index) else { continue };
        let shown_title = chart.get("title").and_then(Value::as_str).unwrap_or_default();
        if shown_title != title {
            failures.push(format!("chart {} is titled {shown_title:?}, not {title:?}", index + 1));
            continue;
        }
        let points = chart.get("points").and_then(Value::as_u64).unwrap_or(0) as usize;
        let lines = chart.get("lines").and_then(Value::as_u64).unwrap_or(0);
        let empty = chart.get("empty").and_then(Value::as_bool).unwrap_or(false);
        if points != *fetched {
            failures.push(format!("{title:?} shows {points} datapoints of the {fetched} fetched"));
        }
        // The check cannot seed AWS/ namespaces; whatever the emulator's runtime published
        // there must still be drawn, and nothing must show the no-data state.
        if aws_only.get(index).copied().unwrap_or(false) && *fetched == 0 {
            if !empty {
                failures.push(format!("{title:?} has no data but does not show its no-data state"));
            }
            continue;
        }
        if points == 0 || lines == 0 || empty {
            failures.push(format!("{title:?} has no data drawn ({points} datapoints, {lines} lines)"));
        }
        for series in chart.get("series").and_then(Value::as_array).into_iter().flatten() {
            if series.get("latest").is_none_or(Value::is_null) {
                let label = series.get("label").and_then(Value::as_str).unwrap_or_default();
                failures.push(format!("{title:?}: series {label:?} has no datapoints"));
            }
        }
    }
    if expectations.is_empty() {
        failures.push("no seeded series to check the page's figures against".to_string());
    }
    for expected in expectations {
        failures.extend(check_figures(expected, &charts));
    }
    failures
}

fn check_figures(expected: &Expectation, charts: &[Value]) -> Vec<String> {
    let chart = charts.iter().find(|c| c.get("title").and_then(Value::as_str) == Some(expected.chart.as_str()));
    let series = chart
        .and_then(|c| c.get("series"))
        .and_then(Value::as_array)
        .and_then(|all| all.iter().find(|s| s.get("label").and_then(Value::as_str) == Some(expected.label.as_str())));
    let Some(series) = series else {
        return vec![format!("{:?} has no series {:?}", expected.chart, expected.label)];
    };
    let text = series.get("text").and_then(Value::as_str).unwrap_or_default();
    let mut failures = Vec::new();
    for (figure, wanted) in [("total", expected.total), ("latest", expected.latest)] {
        let Some(wanted) = wanted else { continue };
        let shown = series.get(figure).and_then(Value::as_f64);
        let close = shown.is_some_and(|shown| (shown - wanted).abs() <= 1e-9 * wanted.abs().max(1.0));
        if !close || !text.contains(&format!("{figure} {wanted}")) {
            failures.push(format!(
                "{:?} / {:?}: {figure} should read {wanted}, the page has {shown:?} in {text:?}",
                expected.chart, expected.label
            ));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn widgets() -> Vec<Widget> {
        let template = crate::template::load_template(&crate::paths::repo_root().join("template.yaml")).unwrap();
        widgets::from_template(&template).unwrap()
    }

    #[test]
    fn minute_statistics_follow_the_seeded_distribution() {
        let stats: Vec<Option<f64>> =
            ["Sum", "SampleCount", "Average", "Minimum", "Maximum", "p50", "p90", "p99", "tm99"]
                .iter()
                .map(|s| minute_statistic(s, 2.0))
                .collect();
        assert_eq!(
            stats,
            [Some(34.0), Some(10.0), Some(3.4), Some(2.0), Some(8.0), Some(2.0), Some(4.0), Some(8.0), None]
        );
    }

    #[test]
    fn every_non_aws_query_is_seeded_and_each_search_gets_a_tagged_metric() {
        let widgets = widgets();
        let seed = Seed::plan(&widgets, "check-1", 1_800_000_030);
        assert!(seed.values.keys().all(|m| m.namespace == "BedrockGateway"));
        let tagged: Vec<&str> = seed
            .values
            .keys()
            .filter(|m| m.dimensions.iter().any(|(_, v)| v == "check-1"))
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(tagged, ["CostUsd", "TpmUtilization"]);
        assert_eq!(seed.timestamps.last(), Some(&(1_800_000_000 - 60)));
        assert_eq!(seed.factors.iter().sum::<f64>(), 90.0);
        let datums = seed.datums();
        assert_eq!(datums["BedrockGateway"].len(), seed.values.len() * 30);

        let expectations = seed.expectations(&widgets);
        let summary: Vec<(&str, Option<f64>, Option<f64>)> =
            expectations.iter().map(|e| (e.chart.as_str(), e.total, e.latest)).collect();
        let tpm = seed.values.iter().find(|(m, _)| m.name == "TpmUtilization").map(|(_, v)| *v).unwrap();
        let cost = seed.values.iter().find(|(m, _)| m.name == "CostUsd" && !m.dimensions.is_empty()).unwrap().1;
        assert_eq!(
            summary,
            [
                ("Quota utilisation (TPM %)", None, Some(4.0 * tpm * seed.factors[29])),
                ("Cost by tenant (USD)", Some(17.0 * cost * 90.0), None),
            ]
        );
    }

    fn summary() -> DashboardSummary {
        DashboardSummary {
            charts: 2,
            charts_with_data: 1,
            chart_points: vec![("Tenants".into(), 3), ("Bedrock".into(), 0)],
            file_url: "file:///x".into(),
        }
    }

    fn expectation() -> Expectation {
        Expectation { chart: "Tenants".into(), label: "check-1".into(), total: Some(1530.0), latest: None }
    }

    fn state(total: f64, bedrock_empty: bool) -> Value {
        json!({"ready": true, "errors": 0, "charts": [
            {"title": "Tenants", "points": 3, "lines": 1, "empty": false, "series": [
                {"label": "check-1", "latest": 10.0, "total": total, "text": format!("check-1latest 10 · total {total}")},
            ]},
            {"title": "Bedrock", "points": 0, "lines": 0, "empty": bedrock_empty, "series": []},
        ]})
    }

    #[test]
    fn a_page_that_shows_what_was_seeded_passes() {
        assert_eq!(verify(&summary(), &[false, true], &[expectation()], &state(1530.0, true)), Vec::<String>::new());
    }

    #[test]
    fn wrong_figures_missing_data_and_a_broken_script_fail() {
        let wrong = verify(&summary(), &[false, true], &[expectation()], &state(1529.0, true));
        assert!(wrong.iter().any(|f| f.contains("total should read 1530")), "{wrong:?}");

        let mut missing = state(1530.0, false);
        missing["charts"][0]["points"] = json!(0);
        missing["charts"][0]["series"][0]["latest"] = Value::Null;
        let failures = verify(&summary(), &[false, true], &[expectation()], &missing);
        assert!(failures.iter().any(|f| f.contains("\"Tenants\" has no data drawn")), "{failures:?}");
        assert!(failures.iter().any(|f| f.contains("series \"check-1\" has no datapoints")), "{failures:?}");
        assert!(failures.iter().any(|f| f.contains("shows 0 datapoints of the 3")), "{failures:?}");
        assert!(failures.iter().any(|f| f.contains("does not show its no-data state")), "{failures:?}");

        let broken = verify(&summary(), &[false, true], &[expectation()], &json!({"ready": false, "errors": 1}));
        assert!(broken.iter().any(|f| f.contains("data-ready")), "{broken:?}");
        assert!(broken.iter().any(|f| f.contains("shows 0 charts")), "{broken:?}");
    }
}
