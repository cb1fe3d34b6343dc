//! What became of each request, and the one-line summary a process prints.

use std::collections::BTreeMap;

use serde::Serialize;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    /// Bedrock still throttled it when the client stopped retrying.
    LostThrottled,
    /// The caller's patience ran out (admission kept refusing, or a call hung).
    LostTimeout,
    /// Any other failure of the call.
    LostError,
}

impl Outcome {
    pub fn is_lost(self) -> bool {
        !matches!(self, Outcome::Answered)
    }
}

/// One request, for `--records` and for the summary. Times are Unix milliseconds, so that
/// records of several processes and a test's own events can be put on one time line.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub index: usize,
    pub outcome: Outcome,
    pub scheduled_unix_ms: u64,
    pub ended_unix_ms: u64,
    /// From the scheduled arrival to the end, waits and retries included.
    pub latency_ms: u64,
    /// Bedrock calls this process made for the request (the SDK's own retries are invisible
    /// here; the emulator counts them).
    pub calls: u32,
    /// Calls Bedrock throttled (admission strategy: calls made under a permit).
    pub throttled_calls: u32,
    /// Refusals by admission before the permit.
    pub refusals: u32,
    /// Admission strategy: when the permit that led to the answer was granted.
    pub admitted_unix_ms: Option<u64>,
    /// Admission strategy: the mode of that permit (`shared`, `degraded`, `unlimited`).
    pub mode: Option<String>,
    /// `ModelSpec::quota_tokens` of the answer's usage, as Bedrock settles it.
    pub settled_tokens: u64,
    /// The last error's label when the request was lost.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub strategy: &'static str,
    pub instance: String,
    pub requests: usize,
    pub answered: usize,
    pub lost: usize,
    pub lost_by: BTreeMap<Outcome, usize>,
    pub calls: u64,
    pub throttled_calls: u64,
    pub refusals: u64,
    pub modes: BTreeMap<String, usize>,
    pub settled_tokens: u64,
    pub dynamodb_ops: u64,
    pub dynamodb_writes: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    /// Latencies of the answered requests, so that a driver of several processes can take
    /// percentiles over all of them.
    pub latencies_ms: Vec<u64>,
    pub elapsed_ms: u64,
}

impl Summary {
    pub fn of(
        strategy: &'static str,
        instance: String,
        records: &[Record],
        (dynamodb_ops, dynamodb_writes): (u64, u64),
        elapsed_ms: u64,
    ) -> Summary {
        let mut lost_by = BTreeMap::new();
        let mut modes = BTreeMap::new();
        for record in records.iter() {
            if record.outcome.is_lost() {
                *lost_by.entry(record.outcome).or_insert(0) += 1;
            }
            if let Some(mode) = &record.mode {
                *modes.entry(mode.clone()).or_insert(0) += 1;
            }
        }
        let mut latencies_ms: Vec<u64> =
            records.iter().filter(|r| !r.outcome.is_lost()).map(|r| r.latency_ms).collect();
        latencies_ms.sort_unstable();
        let answered = latencies_ms.len();
        Summary {
            strategy,
            instance,
            requests: records.len(),
            answered,
            lost: records.len() - answered,
            lost_by,
            calls: records.iter().map(|r| u64::from(r.calls)).sum(),
            throttled_calls: records.iter().map(|r| u64::from(r.throttled_calls)).sum(),
            refusals: records.iter().map(|r| u64::from(r.refusals)).sum(),
            modes,
            settled_tokens: records.iter().map(|r| r.settled_tokens).sum(),
            dynamodb_ops,
            dynamodb_writes,
            p50_ms: percentile(&latencies_ms, 0.50),
            p99_ms: percentile(&latencies_ms, 0.99),
            latencies_ms,
            elapsed_ms,
        }
    }
}

/// The nearest-rank percentile of sorted values; 0 for none.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome, latency_ms: u64) -> Record {
        Record {
            index: 0,
            outcome,
            scheduled_unix_ms: 0,
            ended_unix_ms: latency_ms,
            latency_ms,
            calls: 1,
            throttled_calls: u32::from(outcome == Outcome::LostThrottled),
            refusals: 0,
            admitted_unix_ms: None,
            mode: Some("shared".to_owned()),
            settled_tokens: 10,
            error: None,
        }
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.50), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn the_summary_counts_lost_requests_apart_from_latencies() {
        let records = [
            record(Outcome::Answered, 30),
            record(Outcome::LostThrottled, 5),
            record(Outcome::Answered, 10),
            record(Outcome::LostTimeout, 900),
        ];
        let summary = Summary::of("sdk_standard", "p0".to_owned(), &records, (0, 0), 1_000);
        assert_eq!((summary.requests, summary.answered, summary.lost), (4, 2, 2));
        assert_eq!(summary.latencies_ms, vec![10, 30]);
        assert_eq!(summary.lost_by.get(&Outcome::LostThrottled), Some(&1));
        assert_eq!((summary.throttled_calls, summary.settled_tokens), (1, 40));
        assert_eq!(summary.modes.get("shared"), Some(&4));
    }
}
