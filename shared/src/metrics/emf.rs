//! The one writer of CloudWatch Embedded Metric Format documents.
//!
//! Every function that prints metrics builds them here, so the envelope (`_aws`, the
//! dimension sets, the metric definitions) has a single shape and a metric cannot be declared
//! without a value or set without a declaration.

use serde_json::{Map, Value, json};

/// CloudWatch's standard units, the ones the gateway's figures use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Count,
    Milliseconds,
    Microseconds,
    Percent,
    CountPerSecond,
    /// USD figures: CloudWatch has no currency unit.
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Microseconds => "Microseconds",
            Unit::Percent => "Percent",
            Unit::CountPerSecond => "Count/Second",
            Unit::None => "None",
        }
    }
}

/// One EMF line under construction: its dimension values and other properties sit at the root
/// (searchable in Logs Insights), its metrics are declared under `_aws.CloudWatchMetrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmfDocument {
    namespace: String,
    timestamp_ms: u64,
    dimension_sets: Vec<Vec<String>>,
    root: Map<String, Value>,
    metrics: Vec<(String, Unit)>,
}

impl EmfDocument {
    pub fn new(namespace: &str, timestamp_ms: u64) -> Self {
        EmfDocument {
            namespace: namespace.to_string(),
            timestamp_ms,
            dimension_sets: Vec::new(),
            root: Map::new(),
            metrics: Vec::new(),
        }
    }

    /// A property that may then name a dimension; it is written whether or not one does.
    pub fn property(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.root.insert(name.to_string(), value.into());
        self
    }

    /// A set of dimensions every metric is aggregated by; each name must be a property.
    pub fn dimension_set(&mut self, names: &[&str]) -> &mut Self {
        self.dimension_sets.push(names.iter().map(|n| (*n).to_string()).collect());
        self
    }

    /// Declares and sets a metric; setting the same name again replaces the value.
    pub fn metric(&mut self, name: &str, unit: Unit, value: f64) -> &mut Self {
        if !self.metrics.iter().any(|(n, _)| n == name) {
            self.metrics.push((name.to_string(), unit));
        }
        self.root.insert(name.to_string(), json!(value));
        self
    }

    /// The document, one JSON object ready to print on its own line. A dimension set that
    /// names a property never written is dropped: CloudWatch would reject the whole line.
    pub fn to_value(&self) -> Value {
        let dimensions: Vec<&Vec<String>> =
            self.dimension_sets.iter().filter(|set| set.iter().all(|name| self.root.contains_key(name))).collect();
        let definitions: Vec<Value> =
            self.metrics.iter().map(|(name, unit)| json!({"Name": name, "Unit": unit.as_str()})).collect();
        let mut root = self.root.clone();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": self.namespace, "Dimensions": dimensions, "Metrics": definitions}]
            }),
        );
        Value::Object(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declares_each_metric_once_with_its_unit_and_value() {
        let mut doc = EmfDocument::new("NS", 7);
        doc.property("Function", "fn").dimension_set(&["Function"]);
        doc.metric("Requests", Unit::Count, 1.0).metric("Latency", Unit::Milliseconds, 3.5);
        doc.metric("Requests", Unit::Count, 2.0);
        let value = doc.to_value();
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "NS");
        assert_eq!(value["_aws"]["Timestamp"], 7);
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "Requests", "Unit": "Count"}, {"Name": "Latency", "Unit": "Milliseconds"}])
        );
        assert_eq!((value["Requests"].as_f64(), value["Latency"].as_f64()), (Some(2.0), Some(3.5)));
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
    }

    #[test]
    fn a_dimension_set_without_its_property_is_left_out() {
        let mut doc = EmfDocument::new("NS", 0);
        doc.property("Function", "fn").dimension_set(&["Function"]).dimension_set(&["Function", "Tier"]);
        assert_eq!(doc.to_value()["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Function"]]));
        doc.property("Tier", "haiku");
        assert_eq!(
            doc.to_value()["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"], ["Function", "Tier"]])
        );
    }
}
