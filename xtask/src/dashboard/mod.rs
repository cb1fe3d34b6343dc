//! `cargo xtask dashboard`: the deployed CloudWatch dashboard's charts, drawn from the
//! emulator's CloudWatch into one self-contained HTML page, so a person can look at the
//! local figures instead of reading a table.
//!
//! The widgets come from `GatewayDashboard` in template.yaml, so the page charts what a
//! deployed stack would. The emulator evaluates no metric math, so each SEARCH is resolved
//! here: ListMetrics finds the metrics of its schema, and GetMetricData fetches each one.

mod check;
mod cloudwatch;
mod page;
mod widgets;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::process::{interrupted, sleep_interruptibly};
use crate::{Result, paths, template};
pub use check::browser_check;
use cloudwatch::Points;
use widgets::{Axis, MetricQuery, Query, SearchQuery, Widget};

/// Where `cargo xtask stack` and `cargo xtask test` publish the emulator's CloudWatch.
pub const CLOUDWATCH_URL_ENV: &str = "CLOUDWATCH_EMULATOR_URL";
const DEFAULT_MINUTES: u64 = 180;

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// CloudWatch endpoint to read (default: $CLOUDWATCH_EMULATOR_URL; `cargo xtask stack`
    /// prints it).
    #[arg(long)]
    pub cloudwatch_url: Option<String>,
    /// Minutes of data to chart, up to now.
    #[arg(long, default_value_t = DEFAULT_MINUTES)]
    pub minutes: u64,
    /// The page to write (default: target/dashboard.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Serve the page on 127.0.0.1:PORT instead, fetching the data again on every load.
    #[arg(long)]
    pub serve: Option<u16>,
    /// Seed known datums, write the page and check it in headless Chromium, as the test
    /// command does.
    #[arg(long, hide = true)]
    pub check: bool,
}

/// What a written page shows, for callers that report on it (the demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSummary {
    pub charts: usize,
    pub charts_with_data: usize,
    /// Each chart's title and datapoint count, in page order.
    pub chart_points: Vec<(String, usize)>,
    pub file_url: String,
}

pub fn default_output() -> PathBuf {
    paths::target_dir().join("dashboard.html")
}

pub fn run(args: &DashboardArgs) -> Result<bool> {
    let cloudwatch_url = match &args.cloudwatch_url {
        Some(url) => url.clone(),
        None => std::env::var(CLOUDWATCH_URL_ENV).ok().filter(|url| !url.is_empty()).ok_or(
            "no CloudWatch endpoint: pass --cloudwatch-url URL, or set CLOUDWATCH_EMULATOR_URL to the \
             emulator's CloudWatch that `cargo xtask stack` prints",
        )?,
    };
    let cloudwatch_url = cloudwatch_url.trim_end_matches('/').to_string();
    if args.check {
        return browser_check(&cloudwatch_url);
    }
    let window = Duration::from_secs(args.minutes.max(1) * 60);
    if let Some(port) = args.serve {
        serve(&cloudwatch_url, window, port)?;
        return Ok(true);
    }
    let out = args.out.clone().unwrap_or_else(default_output);
    let summary = write(&cloudwatch_url, window, &out)?;
    println!(
        "dashboard: {} charts, {} with data in the last {} minutes",
        summary.charts, summary.charts_with_data, args.minutes
    );
    println!("dashboard: {}", summary.file_url);
    Ok(true)
}

/// Fetches the last `window` of every chart from `cloudwatch_url` and writes the page to `out`.
pub fn write(cloudwatch_url: &str, window: Duration, out: &Path) -> Result<DashboardSummary> {
    let dashboard = fetch(cloudwatch_url, window)?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, page::render(&dashboard, page::Mode::File)?)
        .map_err(|e| format!("could not write {}: {e}", out.display()))?;
    let absolute = crate::stack::absolute(out);
    Ok(summarise(&dashboard, format!("file://{}", absolute.display())))
}

fn summarise(dashboard: &Dashboard, file_url: String) -> DashboardSummary {
    let chart_points: Vec<(String, usize)> =
        dashboard.charts.iter().map(|chart| (chart.title.clone(), chart.points())).collect();
    DashboardSummary {
        charts: chart_points.len(),
        charts_with_data: chart_points.iter().filter(|(_, points)| *points > 0).count(),
        chart_points,
        file_url,
    }
}

/// The page's data, embedded in it as JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    pub source: String,
    pub region: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub charts: Vec<Chart>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chart {
    pub title: String,
    pub x: u64,
    pub y: u64,
    pub width: u64,
    pub y_min: Option<f64>,
    pub y_max: Option<f64>,
    pub series: Vec<Series>,
    /// Why a query drew nothing, for the chart's "no data" state.
    pub notes: Vec<String>,
    /// See [`Widget::reads_only_aws_namespaces`].
    pub aws_only: bool,
}

impl Chart {
    pub fn points(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub label: String,
    pub stat: String,
    pub period: u64,
    pub axis: Axis,
    pub points: Points,
}

/// A chart whose queries are known but not yet fetched.
#[derive(Debug, Clone)]
struct PlannedChart {
    widget: Widget,
    series: Vec<MetricQuery>,
    notes: Vec<String>,
}

fn fetch(cloudwatch_url: &str, window: Duration) -> Result<Dashboard> {
    let template = template::load_template(&paths::repo_root().join("template.yaml"))?;
    let widgets = widgets::from_template(&template)?;
    let planned = plan(widgets, |search| {
        let listed = cloudwatch::list_metrics(cloudwatch_url, &search.namespace, search.metric_name.as_deref())?;
        Ok(listed.into_iter().filter(|metric| search.matches(metric)).collect())
    })?;
    let now = cloudwatch::now_epoch_seconds();
    // Whole minutes, the current one included, so the newest datum is on the chart.
    let end = (now / 60 + 1) * 60;
    let start = ((now - window.as_secs() as i64) / 60) * 60;
    let queries: Vec<MetricQuery> = planned.iter().flat_map(|chart| chart.series.clone()).collect();
    let points = cloudwatch::get_metric_data(cloudwatch_url, &queries, start, end)?;
    Ok(Dashboard {
        source: cloudwatch_url.to_string(),
        region: crate::aws::REGION.to_string(),
        start_ms: start * 1000,
        end_ms: end * 1000,
        charts: attach(planned, points)?,
    })
}

/// Each widget's series: its metric rows as they are, its searches through `find`.
fn plan(
    widgets: Vec<Widget>,
    mut find: impl FnMut(&SearchQuery) -> Result<Vec<widgets::Metric>>,
) -> Result<Vec<PlannedChart>> {
    let mut planned = Vec::new();
    for widget in widgets {
        let mut series = Vec::new();
        let mut notes = Vec::new();
        for query in &widget.queries {
            match query {
                Query::Metric(metric) => series.push(metric.clone()),
                Query::Search(search) => {
                    let found = find(search)?;
                    if found.is_empty() {
                        notes.push(format!("{} matched no metric", search.expression));
                    }
                    series.extend(found.into_iter().map(|metric| search.series_for(metric)));
                }
            }
        }
        if widget.reads_only_aws_namespaces() && series.is_empty() {
            notes.push(
                "AWS/ namespaces are written only by the services themselves: locally by the emulator's \
                 Bedrock Runtime, once a model has been called in this window"
                    .to_string(),
            );
        }
        planned.push(PlannedChart { widget, series, notes });
    }
    Ok(planned)
}

/// Hands each chart its series' points, which `points` holds in the planned order.
fn attach(planned: Vec<PlannedChart>, points: Vec<Points>) -> Result<Vec<Chart>> {
    let expected: usize = planned.iter().map(|chart| chart.series.len()).sum();
    if points.len() != expected {
        return Err(format!("{} series fetched for {expected} planned", points.len()).into());
    }
    let mut points = points.into_iter();
    let mut charts = Vec::new();
    for chart in planned {
        let aws_only = chart.widget.reads_only_aws_namespaces();
        let series = chart
            .series
            .into_iter()
            .zip(points.by_ref())
            .map(|(query, points)| Series {
                label: query.label,
                stat: query.stat,
                period: query.period,
                axis: query.axis,
                points,
            })
            .collect();
        charts.push(Chart {
            title: chart.widget.title,
            x: chart.widget.x,
            y: chart.widget.y,
            width: chart.widget.width,
            y_min: chart.widget.y_min,
            y_max: chart.widget.y_max,
            series,
            notes: chart.notes,
            aws_only,
        });
    }
    Ok(charts)
}

/// Serves the page on 127.0.0.1:`port` until Ctrl-C; each load of `/` fetches anew.
fn serve(cloudwatch_url: &str, window: Duration, port: u16) -> Result<()> {
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    // Non-blocking accepts, so that Ctrl-C is noticed between requests.
    listener.set_nonblocking(true)?;
    println!("dashboard: serving http://127.0.0.1:{port}/ (data from {cloudwatch_url}); Ctrl-C to stop");
    while !interrupted() {
        match listener.accept() {
            Ok((stream, _)) => {
                match answer(stream, cloudwatch_url, window) {
                    Ok(()) => {}
                    // A browser that went away before its answer is not a failure of the page.
                    Err(error) if is_hang_up(&error) => {}
                    Err(error) => eprintln!("dashboard: a request failed: {error}"),
                }
            }
            // Ctrl-C during the pause is the way out; the loop condition sees it.
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = sleep_interruptibly(Duration::from_millis(100));
            }
            Err(error) => return Err(error.into()),
        }
    }
    println!("\ndashboard: stopped");
    Ok(())
}

fn is_hang_up(error: &crate::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset))
}

fn answer(stream: TcpStream, cloudwatch_url: &str, window: Duration) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    // Browsers open spare connections and close them unused; those get no answer.
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    // The headers are read and dropped: nothing in them changes the answer.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let (status, body) = match (method, path) {
        ("GET", "/" | "/index.html") => {
            match fetch(cloudwatch_url, window).and_then(|d| page::render(&d, page::Mode::Served)) {
                Ok(html) => ("200 OK", html),
                Err(error) => ("502 Bad Gateway", page::error_page(&error.to_string())),
            }
        }
        _ => ("404 Not Found", page::error_page(&format!("nothing at {path}: the dashboard is at /"))),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::widgets::{Defaults, Metric};
    use super::*;

    fn widget(title: &str, rows: serde_json::Value) -> Widget {
        let defaults = Defaults { stat: "Sum".into(), period: 60 };
        Widget {
            title: title.into(),
            x: 0,
            y: 0,
            width: 12,
            y_min: None,
            y_max: None,
            queries: widgets::expand_rows(rows.as_array().unwrap(), &defaults).unwrap(),
        }
    }

    #[test]
    fn searches_expand_into_one_series_per_found_metric_and_points_land_in_order() {
        let widgets = vec![
            widget("plain", json!([["BedrockGateway", "Requests"], [".", "Errors"]])),
            widget(
                "tenants",
                json!([[{"expression": "SEARCH('{BedrockGateway,Tenant} MetricName=\"CostUsd\"', 'Sum', 300)"}]]),
            ),
            widget("bedrock", json!([[{"expression": "SEARCH('{AWS/Bedrock,ModelId} MetricName=\"X\"', 'Sum', 60)"}]])),
        ];
        let tenant = |name: &str| Metric {
            namespace: "BedrockGateway".into(),
            name: "CostUsd".into(),
            dimensions: vec![("Tenant".into(), name.into())],
        };
        let planned = plan(widgets, |search| {
            Ok(if search.namespace == "BedrockGateway" { vec![tenant("acme"), tenant("zeta")] } else { vec![] })
        })
        .unwrap();
        let labels: Vec<Vec<&str>> =
            planned.iter().map(|c| c.series.iter().map(|s| s.label.as_str()).collect()).collect();
        assert_eq!(labels, [vec!["Requests", "Errors"], vec!["acme", "zeta"], vec![]]);
        assert_eq!(planned[1].series[0].period, 300);
        assert!(planned[1].notes.is_empty());
        assert_eq!(planned[2].notes.len(), 2, "{:?}", planned[2].notes);

        let points = vec![vec![(0, 1.0)], vec![], vec![(0, 0.5), (60_000, 0.25)], vec![]];
        let charts = attach(planned.clone(), points).unwrap();
        assert_eq!(charts.iter().map(Chart::points).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(charts[1].series[0].points, [(0, 0.5), (60_000, 0.25)]);
        assert!(charts[1].series[1].points.is_empty());
        assert_eq!((charts[0].aws_only, charts[2].aws_only), (false, true));
        assert!(attach(planned, vec![]).is_err());

        let dashboard = Dashboard { source: String::new(), region: String::new(), start_ms: 0, end_ms: 0, charts };
        let summary = summarise(&dashboard, "file:///x".into());
        assert_eq!((summary.charts, summary.charts_with_data), (3, 2));
    }
}
