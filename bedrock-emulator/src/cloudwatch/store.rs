//! The metrics in memory and their statistics.
//!
//! Each metric (namespace, name, dimension set) keeps its datums by timestamp, and one index
//! over (timestamp, metric) across all of them makes both retention and the memory bound a
//! matter of popping the oldest entries, whatever the number of metrics.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

/// CloudWatch answers for two weeks of data; a day more keeps a query of the last 14 days
/// whole whatever the moment it runs.
pub const RETENTION_MS: i64 = 15 * 24 * 3600 * 1000;

/// Stored values (a raw value, or a statistic set, counts one) past which the oldest are
/// dropped: about 100 MB at the most, and a day of the load generator's publishing.
pub const MAX_STORED_VALUES: usize = 2_000_000;

/// A metric's identity. Dimensions are sorted by name: CloudWatch treats them as a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

impl MetricKey {
    pub fn new(namespace: String, name: String, mut dimensions: Vec<(String, String)>) -> Self {
        dimensions.sort();
        MetricKey { namespace, name, dimensions }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// Raw values with their counts (a single `Value` is one value of count 1).
    Values(Vec<(f64, f64)>),
    /// A pre-aggregated statistic set: only the four figures survive.
    Set { count: f64, sum: f64, min: f64, max: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    /// `None` when the caller gave no unit, as CloudWatch stores it.
    pub unit: String,
    pub sample: Sample,
}

impl Datum {
    fn weight(&self) -> usize {
        match &self.sample {
            Sample::Values(values) => values.len().max(1),
            Sample::Set { .. } => 1,
        }
    }
}

#[derive(Debug)]
struct Series {
    key: MetricKey,
    points: BTreeMap<i64, Vec<Datum>>,
}

#[derive(Debug, Default)]
pub struct Store {
    ids: BTreeMap<MetricKey, u64>,
    series: HashMap<u64, Series>,
    by_time: BTreeSet<(i64, u64)>,
    stored: usize,
    next_id: u64,
    max_stored: usize,
}

impl Store {
    pub fn new(max_stored: usize) -> Self {
        Store { max_stored, ..Store::default() }
    }

    pub fn insert(&mut self, key: MetricKey, timestamp_ms: i64, datum: Datum) {
        let id = match self.ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.ids.insert(key.clone(), id);
                self.series.insert(id, Series { key, points: BTreeMap::new() });
                id
            }
        };
        self.stored += datum.weight();
        if let Some(series) = self.series.get_mut(&id) {
            series.points.entry(timestamp_ms).or_default().push(datum);
        }
        self.by_time.insert((timestamp_ms, id));
        while self.stored > self.max_stored {
            let Some(oldest) = self.by_time.pop_first() else { break };
            self.drop_point(oldest);
        }
    }

    /// Drops the datums older than the retention, as of `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(RETENTION_MS);
        while let Some(&(timestamp, id)) = self.by_time.first() {
            if timestamp >= cutoff {
                break;
            }
            self.by_time.pop_first();
            self.drop_point((timestamp, id));
        }
    }

    fn drop_point(&mut self, (timestamp, id): (i64, u64)) {
        let Some(series) = self.series.get_mut(&id) else { return };
        if let Some(datums) = series.points.remove(&timestamp) {
            self.stored -= datums.iter().map(Datum::weight).sum::<usize>();
        }
        if series.points.is_empty()
            && let Some(series) = self.series.remove(&id)
        {
            self.ids.remove(&series.key);
        }
    }

    pub fn clear(&mut self) {
        *self = Store::new(self.max_stored);
    }

    /// The datums of one metric in `[start_ms, end_ms)`, oldest first.
    pub fn datums<'a>(
        &'a self,
        key: &MetricKey,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Iterator<Item = (i64, &'a Datum)> + 'a {
        let points = self
            .ids
            .get(key)
            .and_then(|id| self.series.get(id))
            .filter(|_| start_ms < end_ms)
            .map(|series| series.points.range(start_ms..end_ms));
        points.into_iter().flatten().flat_map(|(timestamp, datums)| datums.iter().map(move |d| (*timestamp, d)))
    }

    /// Every metric with data, in key order, starting after `after`.
    pub fn metrics_after<'a>(&'a self, after: Option<&MetricKey>) -> impl Iterator<Item = &'a MetricKey> + 'a {
        let lower = match after {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Unbounded,
        };
        self.ids.range((lower, Bound::Unbounded)).map(|(key, _)| key)
    }

    #[cfg(test)]
    fn stored(&self) -> usize {
        self.stored
    }
}

/// The statistics GetMetricData computes here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    SampleCount,
    Sum,
    Average,
    Minimum,
    Maximum,
    /// `pNN` or `pNN.NN`, in percent.
    Percentile(f64),
}

impl Statistic {
    pub fn parse(name: &str) -> Option<Statistic> {
        Some(match name {
            "SampleCount" => Statistic::SampleCount,
            "Sum" => Statistic::Sum,
            "Average" => Statistic::Average,
            "Minimum" => Statistic::Minimum,
            "Maximum" => Statistic::Maximum,
            _ => {
                let number = name.strip_prefix('p')?;
                let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
                let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                if whole.is_empty() || whole.len() > 3 || !digits(whole) || fraction.len() > 2 || !digits(fraction) {
                    return None;
                }
                if number.ends_with('.') {
                    return None;
                }
                let percent: f64 = number.parse().ok()?;
                if !(0.0..=100.0).contains(&percent) {
                    return None;
                }
                Statistic::Percentile(percent)
            }
        })
    }
}

/// The datums of one period, folded as they arrive.
#[derive(Debug, Clone)]
pub struct Bucket {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    /// Raw values and weights for percentiles; `None` once a datum makes them unknowable.
    values: Option<Vec<(f64, f64)>>,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket { count: 0.0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY, values: Some(Vec::new()) }
    }
}

impl Bucket {
    pub fn add(&mut self, datum: &Datum) {
        match &datum.sample {
            Sample::Values(values) => {
                for &(value, count) in values {
                    if count <= 0.0 {
                        continue;
                    }
                    self.count += count;
                    self.sum += value * count;
                    self.min = self.min.min(value);
                    self.max = self.max.max(value);
                    if let Some(raw) = &mut self.values {
                        raw.push((value, count));
                    }
                }
            }
            &Sample::Set { count, sum, min, max } => {
                self.count += count;
                self.sum += sum;
                self.min = self.min.min(min);
                self.max = self.max.max(max);
                // AWS documents percentiles of a statistic set only when it stands for one
                // value: a single sample, or samples that are all equal.
                let single = if count == 1.0 {
                    Some((sum, 1.0))
                } else if min == max {
                    Some((min, count))
                } else {
                    None
                };
                match (single, &mut self.values) {
                    (Some(value), Some(raw)) => raw.push(value),
                    _ => self.values = None,
                }
            }
        }
    }

    /// `None` when the statistic has no value for this period: no samples, or a percentile
    /// that the stored data cannot give.
    pub fn statistic(&self, statistic: Statistic) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        match statistic {
            Statistic::SampleCount => Some(self.count),
            Statistic::Sum => Some(self.sum),
            Statistic::Average => Some(self.sum / self.count),
            Statistic::Minimum => Some(self.min),
            Statistic::Maximum => Some(self.max),
            Statistic::Percentile(percent) => percentile(self.values.as_deref()?, percent),
        }
    }
}

/// Nearest rank over weighted values: the smallest value whose cumulative weight reaches
/// `percent` of the total. Exact, where CloudWatch's own is an approximation within its
/// documented error. AWS gives no percentile for data with a negative value, nor does this.
fn percentile(values: &[(f64, f64)], percent: f64) -> Option<f64> {
    if values.iter().any(|(value, _)| *value < 0.0) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = sorted.iter().map(|(_, weight)| weight).sum();
    let rank = percent / 100.0 * total;
    let mut cumulative = 0.0;
    for (value, weight) in &sorted {
        cumulative += weight;
        if cumulative >= rank {
            return Some(*value);
        }
    }
    sorted.last().map(|(value, _)| *value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn key(name: &str) -> MetricKey {
        MetricKey::new("App".into(), name.into(), vec![("B".into(), "2".into()), ("A".into(), "1".into())])
    }

    fn values(values: &[f64]) -> Datum {
        Datum { unit: "None".into(), sample: Sample::Values(values.iter().map(|v| (*v, 1.0)).collect()) }
    }

    #[test]
    fn dimensions_are_a_set() {
        let a = MetricKey::new("N".into(), "M".into(), vec![("x".into(), "1".into()), ("y".into(), "2".into())]);
        let b = MetricKey::new("N".into(), "M".into(), vec![("y".into(), "2".into()), ("x".into(), "1".into())]);
        assert_eq!(a, b);
    }

    #[test]
    fn the_oldest_values_go_first_past_the_bound_and_at_the_retention() {
        let mut store = Store::new(4);
        store.insert(key("a"), 3_000, values(&[1.0, 2.0]));
        store.insert(key("b"), 1_000, values(&[3.0]));
        store.insert(key("a"), 2_000, values(&[4.0]));
        assert_eq!(store.stored(), 4);
        store.insert(key("b"), 4_000, values(&[5.0]));
        assert_eq!(store.stored(), 4, "the datum at 1s was dropped");
        assert_eq!(store.metrics_after(None).count(), 2);
        assert_eq!(store.datums(&key("b"), 0, 10_000).count(), 1);
        store.expire(RETENTION_MS + 3_500);
        assert_eq!(store.datums(&key("a"), 0, 10_000).count(), 0);
        assert_eq!(store.metrics_after(None).cloned().collect::<Vec<_>>(), vec![key("b")], "an empty metric is gone");
    }

    #[test]
    fn statistics_of_values_counts_and_sets() {
        let mut bucket = Bucket::default();
        bucket.add(&Datum { unit: "None".into(), sample: Sample::Values(vec![(10.0, 3.0), (20.0, 1.0)]) });
        bucket.add(&Datum { unit: "None".into(), sample: Sample::Set { count: 2.0, sum: 10.0, min: 5.0, max: 5.0 } });
        assert_eq!(bucket.statistic(Statistic::SampleCount), Some(6.0));
        assert_eq!(bucket.statistic(Statistic::Sum), Some(60.0));
        assert_eq!(bucket.statistic(Statistic::Average), Some(10.0));
        assert_eq!(bucket.statistic(Statistic::Minimum), Some(5.0));
        assert_eq!(bucket.statistic(Statistic::Maximum), Some(20.0));
        // Sorted with weights: 5 5 10 10 10 20.
        assert_eq!(bucket.statistic(Statistic::Percentile(50.0)), Some(10.0));
        assert_eq!(bucket.statistic(Statistic::Percentile(30.0)), Some(5.0));
        assert_eq!(bucket.statistic(Statistic::Percentile(90.0)), Some(20.0));
        assert_eq!(bucket.statistic(Statistic::Percentile(0.0)), Some(5.0));
        bucket.add(&Datum { unit: "None".into(), sample: Sample::Set { count: 2.0, sum: 3.0, min: 1.0, max: 2.0 } });
        assert_eq!(bucket.statistic(Statistic::Percentile(50.0)), None, "a spread set hides the values");
        assert_eq!(bucket.statistic(Statistic::Minimum), Some(1.0));
        assert_eq!(Bucket::default().statistic(Statistic::Sum), None);
    }

    #[test]
    fn percentile_names() {
        assert_eq!(Statistic::parse("p99"), Some(Statistic::Percentile(99.0)));
        assert_eq!(Statistic::parse("p99.9"), Some(Statistic::Percentile(99.9)));
        assert_eq!(Statistic::parse("p100"), Some(Statistic::Percentile(100.0)));
        for bad in ["p", "p101", "p9.", "p99.999", "P50", "p-1", "tm99", "average"] {
            assert_eq!(Statistic::parse(bad), None, "{bad}");
        }
    }
}
