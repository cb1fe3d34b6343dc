//! The capabilities the core needs from the outside world, one trait each, in domain types.
//!
//! Adapters over the AWS SDK live in [`crate::adapters`]; in-memory fakes in
//! [`crate::testing`]. The traits use `impl Future + Send` rather than `async_trait`: they are
//! only ever used as generic parameters, so no boxing is needed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::cache::{CacheEntry, CacheKey};
use crate::deadline::Deadline;
use crate::label::ErrorLabel;
use crate::request::{ConverseRequest, ConverseResponse};
use crate::stream::{StreamEvent, replay};

/// Every port a [`Gateway`](crate::service::Gateway) uses, bundled: a new port is one more
/// associated type here and one more field in each bundle (`adapters::AwsPorts`,
/// `testing::TestPorts`), not one more type parameter on every gateway, handler, test and bench.
pub trait Ports: Send + Sync {
    type Cache: CacheStore;
    type Models: ModelInvoker;

    fn cache(&self) -> &Self::Cache;
    fn models(&self) -> &Self::Models;
}

/// Where cached answers live.
pub trait CacheStore: Send + Sync {
    /// The live entry for `key`, if any. Entries that expired before `now` are misses even if
    /// the backing store has not deleted them yet.
    fn get(
        &self,
        key: &CacheKey,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<CacheEntry>, CacheError>> + Send;

    fn put(&self, entry: &CacheEntry) -> impl Future<Output = Result<PutOutcome, CacheError>> + Send;

    /// Claims `key` until `now + ttl`, so that other instances missing the same key meanwhile
    /// wait for this one's answer instead of paying for it again. A claim is taken when there
    /// is none or the last one expired; it never blocks anyone beyond its expiry.
    ///
    /// Stores that cannot claim answer [`Claim::Unsupported`] (the default), and the request
    /// is served without waiting.
    fn claim(
        &self,
        key: &CacheKey,
        now: SystemTime,
        ttl: Duration,
    ) -> impl Future<Output = Result<Claim, CacheError>> + Send {
        let _ = (key, now, ttl);
        async { Ok(Claim::Unsupported) }
    }

    /// Gives up a claim taken with `token`, once its answer is stored or its call failed. A
    /// claim another caller took over after it expired is left alone.
    fn release(&self, key: &CacheKey, token: &ClaimToken) -> impl Future<Output = Result<(), CacheError>> + Send {
        let _ = (key, token);
        async { Ok(()) }
    }
}

/// The answer to [`CacheStore::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the key and should make the call.
    Acquired(ClaimToken),
    /// Another caller holds a live claim: its answer should be on the way.
    HeldElsewhere,
    Unsupported,
}

/// Who holds a claim; only the holder's token releases it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// A token no other claim of any instance carries: the process, the clock to the
    /// nanosecond and a per-process counter.
    pub fn unique() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        ClaimToken(format!("{:x}-{nanos:x}-{n:x}", std::process::id()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored {
        bytes: usize,
    },
    /// The answer was too large for one item and was not stored.
    TooLarge {
        bytes: usize,
        limit: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache store request failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cache store is throttling requests")]
    Throttled(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cached item is malformed: {0}")]
    Corrupt(String),
    /// No answer within the cache's budget (or the store client's own timeouts).
    #[error("cache store did not answer in time: {0}")]
    Timeout(String),
}

impl CacheError {
    pub fn label(&self) -> ErrorLabel {
        match self {
            CacheError::Store(_) => ErrorLabel::Store,
            CacheError::Throttled(_) => ErrorLabel::Throttled,
            CacheError::Corrupt(_) => ErrorLabel::Corrupt,
            CacheError::Timeout(_) => ErrorLabel::Timeout,
        }
    }
}

/// Calls a model through Bedrock's Converse API.
pub trait ModelInvoker: Send + Sync {
    /// `model_id` is what Bedrock receives: a model ID, profile ID or ARN. The call must give
    /// up by `deadline` (retries included) and answer [`InvokeError::Timeout`]; the core also
    /// drops the call at the deadline, so an invoker that overruns is cut, not waited for.
    fn converse(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<ConverseResponse, InvokeError>> + Send;

    /// ConverseStream: the answer's events as Bedrock sends them. Failures before the stream
    /// opens (throttling, validation, access) are this call's error; failures after it are
    /// items of the stream. Invokers that cannot stream (the default) make the buffered call
    /// and hand its answer over as the events ConverseStream would have sent; a wrapper
    /// around another invoker must forward this method too, or its streams lose the inner
    /// invoker's own.
    fn converse_stream(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<ModelStream, InvokeError>> + Send {
        async move {
            let response = self.converse(model_id, request, deadline).await?;
            Ok(ModelStream::from_events(replay(&response)))
        }
    }
}

/// What a live stream yields next: an event, a failure inside the stream, or `None` at its end.
pub type NextEvent<'a> = Pin<Box<dyn Future<Output = Option<Result<StreamEvent, InvokeError>>> + Send + 'a>>;

/// A stream an adapter reads from the wire. Dropping it closes the connection, which is how a
/// caller that went away stops the model's generation.
pub trait LiveEvents: Send {
    fn next(&mut self) -> NextEvent<'_>;
}

/// An opened ConverseStream answer.
pub struct ModelStream {
    source: Source,
}

enum Source {
    Ready(VecDeque<Result<StreamEvent, InvokeError>>),
    Live(Box<dyn LiveEvents>),
}

impl ModelStream {
    /// A stream whose events are all known already (a buffered answer, a test's script).
    pub fn from_events(events: impl IntoIterator<Item = StreamEvent>) -> Self {
        ModelStream { source: Source::Ready(events.into_iter().map(Ok).collect()) }
    }

    /// A scripted stream that may fail part way (tests).
    pub fn from_items(items: impl IntoIterator<Item = Result<StreamEvent, InvokeError>>) -> Self {
        ModelStream { source: Source::Ready(items.into_iter().collect()) }
    }

    pub fn live(events: impl LiveEvents + 'static) -> Self {
        ModelStream { source: Source::Live(Box::new(events)) }
    }

    /// The next event; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, InvokeError>> {
        match &mut self.source {
            Source::Ready(items) => items.pop_front(),
            Source::Live(events) => events.next().await,
        }
    }
}

impl std::fmt::Debug for ModelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Ready(items) => write!(f, "ModelStream::Ready({} left)", items.len()),
            Source::Live(_) => f.write_str("ModelStream::Live"),
        }
    }
}

/// Why a model call failed, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("Bedrock throttled the request after retries: {message}")]
    Throttled { message: String, retry_after: Option<Duration> },
    #[error("Bedrock rejected the request: {message}")]
    Rejected { message: String },
    #[error("Bedrock denied access to the model: {message}")]
    AccessDenied { message: String },
    #[error("Bedrock does not know the model: {message}")]
    ModelNotFound { message: String },
    #[error("the model is not ready: {message}")]
    ModelNotReady { message: String },
    #[error("the model failed to answer: {message}")]
    ModelFailed { message: String },
    #[error("the model timed out: {message}")]
    ModelTimeout { message: String },
    #[error("Bedrock is unavailable: {message}")]
    Unavailable { message: String },
    #[error("Bedrock had an internal error: {message}")]
    Internal { message: String },
    #[error("no answer from Bedrock in time")]
    Timeout(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("could not reach Bedrock")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("Bedrock's answer could not be understood: {0}")]
    BadResponse(String),
}

impl InvokeError {
    /// Whether the failure is a shortage of capacity (quota, availability, time) rather than
    /// something wrong with the request or the model; part of [`Self::warrants_fallback`].
    pub fn is_capacity(&self) -> bool {
        matches!(
            self,
            InvokeError::Throttled { .. }
                | InvokeError::ModelNotReady { .. }
                | InvokeError::Unavailable { .. }
                | InvokeError::ModelTimeout { .. }
                | InvokeError::Timeout(_)
        )
    }

    /// Whether a fallback chain should try its next model: capacity trouble, and failures
    /// of the model or the service that persisted through retries. A bad request, missing
    /// access or an unknown model would fail the same way everywhere.
    pub fn warrants_fallback(&self) -> bool {
        self.is_capacity() || matches!(self, InvokeError::Internal { .. } | InvokeError::ModelFailed { .. })
    }

    /// How long the caller should wait before trying again, when Bedrock or the gateway knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            InvokeError::Throttled { retry_after, .. } => *retry_after,
            InvokeError::Rejected { .. }
            | InvokeError::AccessDenied { .. }
            | InvokeError::ModelNotFound { .. }
            | InvokeError::ModelNotReady { .. }
            | InvokeError::ModelFailed { .. }
            | InvokeError::ModelTimeout { .. }
            | InvokeError::Unavailable { .. }
            | InvokeError::Internal { .. }
            | InvokeError::Timeout(_)
            | InvokeError::Transport(_)
            | InvokeError::BadResponse(_) => None,
        }
    }

    /// Bedrock's judgement of the request (`Rejected`) is the caller's invalid request, like
    /// the gateway's own.
    pub fn label(&self) -> ErrorLabel {
        match self {
            InvokeError::Throttled { .. } => ErrorLabel::Throttled,
            InvokeError::Rejected { .. } => ErrorLabel::InvalidRequest,
            InvokeError::AccessDenied { .. } => ErrorLabel::AccessDenied,
            InvokeError::ModelNotFound { .. } => ErrorLabel::ModelNotFound,
            InvokeError::ModelNotReady { .. } => ErrorLabel::ModelNotReady,
            InvokeError::ModelFailed { .. } => ErrorLabel::ModelFailed,
            InvokeError::ModelTimeout { .. } => ErrorLabel::ModelTimeout,
            InvokeError::Unavailable { .. } => ErrorLabel::Unavailable,
            InvokeError::Internal { .. } => ErrorLabel::Internal,
            InvokeError::Timeout(_) => ErrorLabel::Timeout,
            InvokeError::Transport(_) => ErrorLabel::Transport,
            InvokeError::BadResponse(_) => ErrorLabel::BadResponse,
        }
    }
}
