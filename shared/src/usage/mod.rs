//! What the gateway served, one [`UsageRecord`] per answered or failed request (online, batch,
//! or a deferred request run on demand), kept per minute for the metrics publisher.
//!
//! The request path only writes; the publisher reads a closed minute back whole and turns it
//! into CloudWatch figures. A record is keyed by its source and request ID, so a retried
//! write stores it once.

use std::future::Future;

pub mod build;

use crate::catalog::Tier;
use crate::label::ErrorLabel;
use crate::service::CacheResult;

/// Milliseconds since the epoch, as records and minutes count time.
pub fn epoch_ms(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A whole minute since the Unix epoch: the publisher's unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minute(pub u64);

impl Minute {
    pub fn of_ms(epoch_ms: u64) -> Self {
        Minute(epoch_ms / 60_000)
    }

    pub fn start_ms(self) -> u64 {
        self.0 * 60_000
    }

    pub fn next(self) -> Self {
        Minute(self.0 + 1)
    }
}

/// Which path served the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageSource {
    /// `POST /v1/converse` answered at once.
    Online,
    /// A record answered by a Bedrock batch job, priced at batch rates.
    Batch,
    /// A deferred or dropped record that waited too long for a job and ran on demand.
    BatchOnDemand,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Online => "online",
            UsageSource::Batch => "batch",
            UsageSource::BatchOnDemand => "batch_on_demand",
        }
    }
}

/// How the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageOutcome {
    Answered,
    Failed(ErrorLabel),
}

/// What was saved against the price the request would otherwise have paid, in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Savings {
    /// A cache HIT: the price of the call the cached answer replaced.
    pub cache_usd: f64,
    /// A routed request: the served usage priced at the strongest allowed tier, less what it cost.
    pub routing_usd: f64,
    /// A batch record: its on-demand price less its batch price.
    pub batch_usd: f64,
}

/// One request as the publisher counts it. Token counts are Bedrock's (the response's usage);
/// `quota_tokens` is what the calls settled at in Bedrock's quota arithmetic (burndown rates
/// included), the figure quota utilisation is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// Unique per source: the gateway's request ID online, the record ID in a batch.
    pub request_id: String,
    /// When the request finished, milliseconds since the epoch; its minute is the record's.
    pub at_ms: u64,
    /// The tenant's encoded form ([`crate::cache::Tenant::as_str`]).
    pub tenant: String,
    pub source: UsageSource,
    /// The Bedrock ID that served (or last failed); `None` when no model was resolved.
    pub model_id: Option<String>,
    pub tier: Option<Tier>,
    /// The quota ([`crate::quota::QuotaKey`]'s display form) the serving call counted against.
    pub quota: Option<String>,
    pub outcome: UsageOutcome,
    /// `None` when the cache was not consulted (an error before lookup, a batch record).
    pub cache: Option<CacheResult>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub quota_tokens: u64,
    /// Bedrock calls made, fallbacks and continuations included (0 on a HIT).
    pub model_calls: u32,
    /// Calls Bedrock refused with a throttle.
    pub throttles_received: u32,
    /// Calls admission held back or moved to another quota instead of letting Bedrock throttle them.
    pub throttles_avoided: u32,
    /// Admission refused the request: the quota had no room within its wait.
    pub quota_refused: bool,
    pub cost_usd: f64,
    pub saved: Savings,
    pub latency_ms: u64,
}

impl UsageRecord {
    pub fn minute(&self) -> Minute {
        Minute::of_ms(self.at_ms)
    }
}

/// A minute read back: the records that parsed, and how many stored items did not (each
/// logged by the adapter with its key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MinuteUsage {
    pub records: Vec<UsageRecord>,
    pub unreadable: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("usage store throttled: {0}")]
    Throttled(String),
    #[error("usage store failed: {0}")]
    Store(String),
}

impl UsageError {
    pub fn label(&self) -> ErrorLabel {
        match self {
            UsageError::Throttled(_) => ErrorLabel::Throttled,
            UsageError::Store(_) => ErrorLabel::Store,
        }
    }
}

/// The write half of a ledger as a shareable object, so the gateway holds one without a
/// type parameter, as it holds admission.
pub trait Recorder: Send + Sync + std::fmt::Debug {
    fn record<'a>(
        &'a self,
        record: &'a UsageRecord,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), UsageError>> + Send + 'a>>;
}

impl<L: UsageLedger + std::fmt::Debug> Recorder for L {
    fn record<'a>(
        &'a self,
        record: &'a UsageRecord,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), UsageError>> + Send + 'a>> {
        Box::pin(UsageLedger::record(self, record))
    }
}

/// Where usage records are kept.
pub trait UsageLedger: Send + Sync {
    /// Stores `record`; storing the same `(source, request_id)` again changes nothing.
    fn record(&self, record: &UsageRecord) -> impl Future<Output = Result<(), UsageError>> + Send;

    /// Every record of `minute`.
    fn minute(&self, minute: Minute) -> impl Future<Output = Result<MinuteUsage, UsageError>> + Send;
}

#[cfg(any(test, feature = "testing"))]
pub mod memory;
