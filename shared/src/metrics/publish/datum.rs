//! What the publisher sends: CloudWatch datums, and the split of a minute's datums into
//! PutMetricData calls within CloudWatch's limits.

use crate::metrics::Unit;

/// CloudWatch's limits on one PutMetricData call and one datum.
pub const MAX_DATUMS_PER_CALL: usize = 1_000;
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// The request may be 1 MB; the estimate below is generous, so a margin of a fifth suffices.
pub const MAX_CALL_BYTES: usize = 800_000;

#[derive(Debug, Clone, PartialEq)]
pub enum DatumValue {
    Single(f64),
    /// Distinct values with how often each occurred: CloudWatch computes percentiles from them.
    Distribution {
        values: Vec<f64>,
        counts: Vec<f64>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    pub name: &'static str,
    /// In the order they are declared; CloudWatch treats the set as the metric's identity.
    pub dimensions: Vec<(&'static str, String)>,
    pub timestamp_ms: u64,
    pub unit: Unit,
    pub value: DatumValue,
}

impl MetricDatum {
    pub fn single(name: &'static str, unit: Unit, timestamp_ms: u64, value: f64) -> Self {
        MetricDatum { name, dimensions: Vec::new(), timestamp_ms, unit, value: DatumValue::Single(value) }
    }

    pub fn with(mut self, dimension: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((dimension, value.into()));
        self
    }

    /// The datums of one distribution, each within CloudWatch's 150 distinct values.
    pub fn distribution(
        name: &'static str,
        unit: Unit,
        timestamp_ms: u64,
        dimensions: &[(&'static str, String)],
        weighted: &[(f64, f64)],
    ) -> Vec<MetricDatum> {
        weighted
            .chunks(MAX_VALUES_PER_DATUM)
            .map(|part| MetricDatum {
                name,
                dimensions: dimensions.to_vec(),
                timestamp_ms,
                unit,
                value: DatumValue::Distribution {
                    values: part.iter().map(|(v, _)| *v).collect(),
                    counts: part.iter().map(|(_, c)| *c).collect(),
                },
            })
            .collect()
    }

    /// An upper bound of the datum's size on the wire, in any of CloudWatch's protocols.
    fn wire_bytes(&self) -> usize {
        let dimensions: usize = self.dimensions.iter().map(|(n, v)| n.len() + v.len() + 40).sum();
        let values = match &self.value {
            DatumValue::Single(_) => 30,
            DatumValue::Distribution { values, .. } => values.len() * 60,
        };
        self.name.len() + dimensions + values + 120
    }
}

/// Splits datums into calls of at most [`MAX_DATUMS_PER_CALL`] datums and [`MAX_CALL_BYTES`],
/// keeping their order, so the same datums always make the same calls (what a retried minute
/// relies on to skip the calls that went through).
pub fn into_calls(datums: Vec<MetricDatum>) -> Vec<Vec<MetricDatum>> {
    let mut calls = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for datum in datums {
        let size = datum.wire_bytes();
        if !current.is_empty() && (current.len() == MAX_DATUMS_PER_CALL || bytes + size > MAX_CALL_BYTES) {
            calls.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(datum);
    }
    if !current.is_empty() {
        calls.push(current);
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_hold_at_most_a_thousand_datums_in_order() {
        let datums: Vec<_> =
            (0..2_345).map(|i| MetricDatum::single("Requests", Unit::Count, 0, f64::from(i))).collect();
        let calls = into_calls(datums);
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [1_000, 1_000, 345]);
        assert_eq!(calls[1][0].value, DatumValue::Single(1_000.0));
    }

    #[test]
    fn large_distributions_split_by_size_and_by_150_values() {
        let weighted: Vec<(f64, f64)> = (0..400).map(|i| (f64::from(i), 1.0)).collect();
        let parts = MetricDatum::distribution("Latency", Unit::Milliseconds, 0, &[], &weighted);
        assert_eq!(parts.len(), 3);
        assert!(
            parts.iter().all(|d| matches!(&d.value, DatumValue::Distribution { values, .. } if values.len() <= 150))
        );
        let many: Vec<_> = (0..200).flat_map(|_| parts.clone()).collect();
        let calls = into_calls(many);
        assert!(calls.len() > 1, "600 distributions of up to 150 values exceed 1 MB");
        assert!(calls.iter().all(|c| c.iter().map(MetricDatum::wire_bytes).sum::<usize>() <= MAX_CALL_BYTES));
    }
}
