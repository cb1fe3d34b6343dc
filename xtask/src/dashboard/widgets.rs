//! The deployed dashboard's metric widgets, read from `GatewayDashboard` in template.yaml
//! and turned into queries the emulator can answer: the metrics-array shorthand expanded,
//! and each `SEARCH` expression reduced to the ListMetrics filter it stands for.

use serde_json::Value;

use crate::{Result, aws};

pub const DASHBOARD_LOGICAL_ID: &str = "GatewayDashboard";
/// Stands in for `${AWS::StackName}` when the body names its stack.
const LOCAL_STACK_NAME: &str = "local";

#[derive(Debug, Clone, PartialEq)]
pub struct Widget {
    pub title: String,
    /// Position on CloudWatch's 24-column grid, kept so the page lays charts out alike.
    pub x: u64,
    pub y: u64,
    pub width: u64,
    pub y_min: Option<f64>,
    pub y_max: Option<f64>,
    pub queries: Vec<Query>,
}

impl Widget {
    /// `AWS/` namespaces are written only by the services: PutMetricData refuses them, on the
    /// emulator as on AWS, so a chart reading nothing else has data only once the emulator's
    /// runtime answered a call.
    pub fn reads_only_aws_namespaces(&self) -> bool {
        !self.queries.is_empty() && self.queries.iter().all(|q| q.namespace().starts_with("AWS/"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Metric(MetricQuery),
    Search(SearchQuery),
}

impl Query {
    pub fn namespace(&self) -> &str {
        match self {
            Query::Metric(query) => &query.metric.namespace,
            Query::Search(query) => &query.namespace,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Metric {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    Left,
    Right,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub metric: Metric,
    pub stat: String,
    pub period: u64,
    pub axis: Axis,
    /// The legend text; CloudWatch derives one from the metric when the widget sets none.
    pub label: String,
}

/// `SEARCH('{Namespace,Dim1,...} MetricName="X"', 'Stat', Period)`: the metrics of the
/// namespace whose dimension names are exactly the listed ones.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub expression: String,
    pub namespace: String,
    pub dimension_names: Vec<String>,
    pub metric_name: Option<String>,
    pub stat: String,
    pub period: u64,
    pub axis: Axis,
}

impl SearchQuery {
    pub fn matches(&self, metric: &Metric) -> bool {
        let mut wanted: Vec<&str> = self.dimension_names.iter().map(String::as_str).collect();
        let mut found: Vec<&str> = metric.dimensions.iter().map(|(name, _)| name.as_str()).collect();
        wanted.sort_unstable();
        found.sort_unstable();
        metric.namespace == self.namespace
            && self.metric_name.as_ref().is_none_or(|name| *name == metric.name)
            && wanted == found
    }

    /// A found metric's series: named by its dimension values, which is what tells the
    /// series of one search apart.
    pub fn series_for(&self, metric: Metric) -> MetricQuery {
        let values: Vec<&str> = metric.dimensions.iter().map(|(_, value)| value.as_str()).collect();
        let label = if values.is_empty() { metric.name.clone() } else { values.join(" ") };
        MetricQuery { metric, stat: self.stat.clone(), period: self.period, axis: self.axis, label }
    }
}

/// The metric widgets of the template's dashboard, in the order CloudWatch lays them out.
pub fn from_template(template: &Value) -> Result<Vec<Widget>> {
    let body = template
        .pointer(&format!("/Resources/{DASHBOARD_LOGICAL_ID}/Properties/DashboardBody"))
        .ok_or_else(|| format!("template has no Resources.{DASHBOARD_LOGICAL_ID}.Properties.DashboardBody"))?;
    let text = match body {
        Value::String(text) => text.clone(),
        Value::Object(sub) if sub.len() == 1 && sub.get("Fn::Sub").is_some_and(Value::is_string) => {
            substitute_pseudo_parameters(sub.get("Fn::Sub").and_then(Value::as_str).unwrap_or_default())?
        }
        _ => return Err(format!("{DASHBOARD_LOGICAL_ID}.DashboardBody is neither a string nor a plain !Sub").into()),
    };
    let body: Value =
        serde_json::from_str(&text).map_err(|e| format!("{DASHBOARD_LOGICAL_ID}.DashboardBody is not JSON: {e}"))?;
    let widgets = body.get("widgets").and_then(Value::as_array).ok_or("the dashboard body has no widgets list")?;
    let mut parsed = Vec::new();
    for widget in widgets {
        if widget.get("type").and_then(Value::as_str) == Some("metric") {
            parsed.push(parse_widget(widget)?);
        }
    }
    parsed.sort_by_key(|w| (w.y, w.x));
    Ok(parsed)
}

/// `!Sub` over the pseudo parameters a dashboard body uses; anything else would need a
/// deployed stack to resolve, so it is refused by name.
pub fn substitute_pseudo_parameters(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // `${!Name}` is !Sub's escape for a literal `${Name}`.
        if let Some(literal) = after.strip_prefix('!') {
            out.push_str("${");
            rest = literal;
            continue;
        }
        let end = after.find('}').ok_or("unterminated ${ in the dashboard body")?;
        let value = match &after[..end] {
            "AWS::Region" => aws::REGION,
            "AWS::AccountId" => aws::ACCOUNT_ID,
            "AWS::StackName" => LOCAL_STACK_NAME,
            "AWS::URLSuffix" => "amazonaws.com",
            other => return Err(format!("the dashboard body uses ${{{other}}}, which has no local value").into()),
        };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_widget(widget: &Value) -> Result<Widget> {
    let properties = widget.get("properties").and_then(Value::as_object).ok_or("a metric widget has no properties")?;
    let title = properties.get("title").and_then(Value::as_str).unwrap_or("(untitled)").to_string();
    let defaults = Defaults {
        stat: properties.get("stat").and_then(Value::as_str).unwrap_or("Average").to_string(),
        period: properties.get("period").and_then(Value::as_u64).unwrap_or(300),
    };
    let rows = properties
        .get("metrics")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("widget {title:?} has no metrics"))?;
    let queries = expand_rows(rows, &defaults).map_err(|e| format!("widget {title:?}: {e}"))?;
    let left = properties.get("yAxis").and_then(|y| y.get("left"));
    let coordinate = |key: &str, default: u64| widget.get(key).and_then(Value::as_u64).unwrap_or(default);
    Ok(Widget {
        title,
        x: coordinate("x", 0),
        y: coordinate("y", 0),
        width: coordinate("width", 6),
        y_min: left.and_then(|l| l.get("min")).and_then(Value::as_f64),
        y_max: left.and_then(|l| l.get("max")).and_then(Value::as_f64),
        queries,
    })
}

#[derive(Debug)]
pub struct Defaults {
    pub stat: String,
    pub period: u64,
}

/// Expands a widget's `metrics` rows. A row is `[namespace, name, dim, value, ..., {options}?]`
/// where `"."` repeats the previous row's field at the same position and `"..."` stands for
/// every previous field the row does not spell out; a row of options alone with an
/// `expression` is a SEARCH. Rows with `"visible": false` draw nothing and are dropped.
pub fn expand_rows(rows: &[Value], defaults: &Defaults) -> Result<Vec<Query>> {
    let mut previous: Vec<String> = Vec::new();
    let mut queries = Vec::new();
    for row in rows {
        let items = row.as_array().ok_or("a metrics row is not a list")?;
        let (fields, options) = match items.split_last() {
            Some((Value::Object(options), fields)) => (fields, Some(options)),
            _ => (items.as_slice(), None),
        };
        let options = options.cloned().unwrap_or_default();
        if options.get("visible").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let stat = options.get("stat").and_then(Value::as_str).map(str::to_string);
        let period = options.get("period").and_then(Value::as_u64).unwrap_or(defaults.period);
        let axis = if options.get("yAxis").and_then(Value::as_str) == Some("right") { Axis::Right } else { Axis::Left };
        if let Some(expression) = options.get("expression").and_then(Value::as_str) {
            let mut search = parse_search(expression)?;
            search.axis = axis;
            queries.push(Query::Search(search));
            continue;
        }
        let fields = fields
            .iter()
            .map(|f| f.as_str().map(str::to_string).ok_or("a metrics row field is not a string"))
            .collect::<Result<Vec<_>, _>>()?;
        let expanded = expand_shorthand(&fields, &previous)?;
        let metric = metric_from_fields(&expanded)?;
        let label = match options.get("label").and_then(Value::as_str) {
            Some(label) => label.to_string(),
            None => default_label(&metric, stat.as_deref()),
        };
        queries.push(Query::Metric(MetricQuery {
            metric,
            stat: stat.unwrap_or_else(|| defaults.stat.clone()),
            period,
            axis,
            label,
        }));
        previous = expanded;
    }
    Ok(queries)
}

pub fn expand_shorthand(fields: &[String], previous: &[String]) -> Result<Vec<String>> {
    let from_previous = |index: usize| {
        previous.get(index).cloned().ok_or_else(|| format!("\".\" at position {index} has no previous value"))
    };
    let spread = fields.iter().position(|f| f == "...");
    let mut expanded = Vec::new();
    match spread {
        None => {
            for (index, field) in fields.iter().enumerate() {
                expanded.push(if field == "." { from_previous(index)? } else { field.clone() });
            }
        }
        Some(at) => {
            let (before, after) = (&fields[..at], &fields[at + 1..]);
            let kept = previous
                .len()
                .checked_sub(after.len())
                .filter(|end| *end >= before.len())
                .ok_or("\"...\" has fewer previous fields than the row replaces")?;
            for (index, field) in before.iter().enumerate() {
                expanded.push(if field == "." { from_previous(index)? } else { field.clone() });
            }
            expanded.extend_from_slice(&previous[before.len()..kept]);
            let offset = kept;
            for (index, field) in after.iter().enumerate() {
                expanded.push(if field == "." { from_previous(offset + index)? } else { field.clone() });
            }
        }
    }
    Ok(expanded)
}

fn metric_from_fields(fields: &[String]) -> Result<Metric> {
    let [namespace, name, dimensions @ ..] = fields else {
        return Err(format!("metrics row {fields:?} needs a namespace and a metric name").into());
    };
    if dimensions.len() % 2 != 0 {
        return Err(format!("metrics row {fields:?} has a dimension name without a value").into());
    }
    Ok(Metric {
        namespace: namespace.clone(),
        name: name.clone(),
        dimensions: dimensions.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect(),
    })
}

/// The metric's name and dimension values, and the statistic when the row chose its own
/// (three latency percentiles of one metric would otherwise read alike).
fn default_label(metric: &Metric, own_stat: Option<&str>) -> String {
    let mut parts = vec![metric.name.as_str()];
    parts.extend(metric.dimensions.iter().map(|(_, value)| value.as_str()));
    parts.extend(own_stat);
    parts.join(" ")
}

/// Parses the one SEARCH form a dashboard of fixed schemas needs:
/// `SEARCH('{Namespace,Dim,...} MetricName="Name"', 'Stat', Period)`.
pub fn parse_search(expression: &str) -> Result<SearchQuery> {
    let refuse = |why: &str| format!("cannot resolve {expression:?} locally: {why}");
    let inner = expression
        .trim()
        .strip_prefix("SEARCH(")
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| refuse("only SEARCH(...) expressions are supported (the emulator has no metric math)"))?;
    let (search_term, rest) = quoted(inner.trim_start()).ok_or_else(|| refuse("the search term is not quoted"))?;
    let rest = rest.trim_start().strip_prefix(',').ok_or_else(|| refuse("no statistic"))?;
    let (stat, rest) = quoted(rest.trim_start()).ok_or_else(|| refuse("the statistic is not quoted"))?;
    let period = rest
        .trim_start()
        .strip_prefix(',')
        .map(str::trim)
        .ok_or_else(|| refuse("no period"))?
        .parse::<u64>()
        .map_err(|_| refuse("the period is not a whole number of seconds"))?;

    let term = search_term.trim();
    let schema = term.strip_prefix('{').ok_or_else(|| refuse("the search term does not start with a {schema}"))?;
    let (schema, filter) = schema.split_once('}').ok_or_else(|| refuse("the schema has no closing brace"))?;
    let mut names = schema.split(',').map(|part| part.trim().trim_matches('"').to_string());
    let namespace = names.next().filter(|n| !n.is_empty()).ok_or_else(|| refuse("the schema names no namespace"))?;
    let dimension_names: Vec<String> = names.filter(|n| !n.is_empty()).collect();
    let filter = filter.trim();
    let metric_name = if filter.is_empty() {
        None
    } else {
        let value = filter
            .strip_prefix("MetricName=")
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
            .ok_or_else(|| refuse("only a MetricName=\"...\" filter is supported after the schema"))?;
        Some(value)
    };
    Ok(SearchQuery {
        expression: expression.to_string(),
        namespace,
        dimension_names,
        metric_name,
        stat: stat.to_string(),
        period,
        axis: Axis::Left,
    })
}

/// A single-quoted string at the start of `text`, and what follows it.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix('\'')?;
    let end = body.find('\'')?;
    Some((&body[..end], &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn defaults() -> Defaults {
        Defaults { stat: "Sum".into(), period: 60 }
    }

    fn metric_queries(queries: Vec<Query>) -> Vec<MetricQuery> {
        queries
            .into_iter()
            .map(|q| match q {
                Query::Metric(m) => m,
                Query::Search(s) => panic!("unexpected search {s:?}"),
            })
            .collect()
    }

    #[test]
    fn dots_repeat_fields_by_position_and_the_ellipsis_fills_the_rest() {
        let first = strings(&["BedrockGateway", "SavedUsd", "SavingsSource", "cache"]);
        assert_eq!(
            expand_shorthand(&strings(&["...", "routing"]), &first).unwrap(),
            strings(&["BedrockGateway", "SavedUsd", "SavingsSource", "routing"])
        );
        assert_eq!(expand_shorthand(&strings(&["..."]), &first).unwrap(), first);
        assert_eq!(
            expand_shorthand(&strings(&[".", "CostUsd"]), &first).unwrap(),
            strings(&["BedrockGateway", "CostUsd"])
        );
        assert_eq!(
            expand_shorthand(&strings(&["Other", "...", ".", "batch"]), &first).unwrap(),
            strings(&["Other", "SavedUsd", "SavingsSource", "batch"])
        );
        assert!(expand_shorthand(&strings(&[".", "X"]), &[]).is_err());
        assert!(expand_shorthand(&strings(&["...", "a", "b", "c", "d", "e"]), &first).is_err());
    }

    #[test]
    fn rows_take_the_widget_defaults_unless_their_options_say_otherwise() {
        let rows = json!([
            ["BedrockGateway", "Latency", {"stat": "p50"}],
            ["...", {"stat": "p90", "period": 300}],
            [".", "GoodputTokens", {"yAxis": "right"}],
            [".", "Hidden", {"visible": false}],
            [".", "CostUsd", "Tenant", "acme", {"label": "acme's cost"}],
        ]);
        let queries = metric_queries(expand_rows(rows.as_array().unwrap(), &defaults()).unwrap());
        let summary: Vec<(&str, &str, u64, Axis, &str)> = queries
            .iter()
            .map(|q| (q.metric.name.as_str(), q.stat.as_str(), q.period, q.axis, q.label.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("Latency", "p50", 60, Axis::Left, "Latency p50"),
                ("Latency", "p90", 300, Axis::Left, "Latency p90"),
                ("GoodputTokens", "Sum", 60, Axis::Right, "GoodputTokens"),
                ("CostUsd", "Sum", 60, Axis::Left, "acme's cost"),
            ]
        );
        assert_eq!(queries[3].metric.dimensions, [("Tenant".to_string(), "acme".to_string())]);
        assert!(expand_rows(json!([["BedrockGateway", "X", "Dim"]]).as_array().unwrap(), &defaults()).is_err());
    }

    #[test]
    fn search_expressions_become_a_schema_filter() {
        let search =
            parse_search(r#"SEARCH('{BedrockGateway,Quota} MetricName="TpmUtilization"', 'Maximum', 60)"#).unwrap();
        assert_eq!(search.namespace, "BedrockGateway");
        assert_eq!(search.dimension_names, ["Quota"]);
        assert_eq!(search.metric_name.as_deref(), Some("TpmUtilization"));
        assert_eq!((search.stat.as_str(), search.period), ("Maximum", 60));

        let metric = |name: &str, dims: &[(&str, &str)]| Metric {
            namespace: "BedrockGateway".into(),
            name: name.into(),
            dimensions: dims.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        };
        assert!(search.matches(&metric("TpmUtilization", &[("Quota", "q1")])));
        assert!(!search.matches(&metric("TpmUtilization", &[])));
        assert!(!search.matches(&metric("TpmUtilization", &[("Quota", "q1"), ("Tier", "t")])));
        assert!(!search.matches(&metric("RpmUtilization", &[("Quota", "q1")])));
        assert_eq!(search.series_for(metric("TpmUtilization", &[("Quota", "q1")])).label, "q1");

        let all = parse_search("SEARCH('{AWS/Bedrock,ModelId}', 'Sum', 300)").unwrap();
        assert_eq!((all.namespace.as_str(), all.metric_name, all.period), ("AWS/Bedrock", None, 300));
        for unsupported in [
            "SUM(METRICS())",
            "SEARCH('BedrockGateway Latency', 'Sum', 60)",
            "SEARCH('{BedrockGateway} MetricName=\"A\" OR MetricName=\"B\"', 'Sum', 60)",
            "SEARCH('{BedrockGateway}', 'Sum', sixty)",
        ] {
            assert!(parse_search(unsupported).is_err(), "{unsupported}");
        }
    }

    #[test]
    fn expression_rows_keep_their_axis() {
        let row = json!([[{"expression": "SEARCH('{N,D}', 'Sum', 60)", "yAxis": "right"}]]);
        let queries = expand_rows(row.as_array().unwrap(), &defaults()).unwrap();
        assert!(matches!(&queries[0], Query::Search(s) if s.axis == Axis::Right && s.dimension_names == ["D"]));
    }

    #[test]
    fn pseudo_parameters_are_substituted_and_others_refused() {
        assert_eq!(
            substitute_pseudo_parameters("{\"region\": \"${AWS::Region}\", \"x\": \"${!Literal}\"}").unwrap(),
            "{\"region\": \"us-east-1\", \"x\": \"${Literal}\"}"
        );
        let error = substitute_pseudo_parameters("${HttpApi}").unwrap_err();
        assert!(error.to_string().contains("${HttpApi}"), "{error}");
    }

    #[test]
    fn repository_dashboard_has_eight_charts_with_resolvable_queries() {
        let template = crate::template::load_template(&crate::paths::repo_root().join("template.yaml")).unwrap();
        let widgets = from_template(&template).unwrap();
        assert_eq!(widgets.len(), 8);
        assert_eq!(widgets[0].title, "Quota utilisation (TPM %)");
        assert_eq!((widgets[0].y_min, widgets[0].y_max), (Some(0.0), Some(100.0)));
        let savings = widgets.iter().find(|w| w.title == "Cost and savings (USD)").unwrap();
        let labels: Vec<String> = metric_queries(savings.queries.clone()).into_iter().map(|q| q.label).collect();
        assert_eq!(labels, ["CostUsd", "SavedUsd cache", "SavedUsd routing", "SavedUsd batch"]);
        let searches = widgets.iter().flat_map(|w| &w.queries).filter(|q| matches!(q, Query::Search(_))).count();
        assert_eq!(searches, 4);
    }
}
