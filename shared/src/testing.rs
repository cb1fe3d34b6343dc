//! In-memory fakes of the ports, for unit tests here and in the functions.
//!
//! They behave like the real adapters where tests rely on it (expiry on read, an item size
//! limit) and can be told to fail or to be slow (or hang), so error paths and deadlines are
//! testable without a network. Delays use tokio's clock: a test with paused time runs them
//! instantly and exactly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::cache::{self, CacheEntry, CacheKey};
use crate::deadline::Deadline;
use crate::ports::{CacheError, CacheStore, InvokeError, ModelInvoker, PutOutcome};
use crate::request::{
    ContentBlock, ConverseMetrics, ConverseOutput, ConverseRequest, ConverseResponse, Message, Role, TokenUsage,
};
use crate::tokens;

/// DynamoDB's item limit, which the fake enforces by default.
const DEFAULT_ITEM_LIMIT: usize = 400 * 1024;

/// A delay that never ends: a store or model that stopped answering.
pub const HANG: Duration = Duration::MAX;

async fn wait(delay: Duration) {
    if delay == HANG {
        std::future::pending::<()>().await;
    } else if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn read_lock<T: Clone + Default>(slot: &Mutex<T>) -> T {
    slot.lock().map(|v| v.clone()).unwrap_or_default()
}

fn write_lock<T>(slot: &Mutex<T>, value: T) {
    if let Ok(mut v) = slot.lock() {
        *v = value;
    }
}

#[derive(Debug)]
pub struct InMemoryCacheStore {
    entries: Mutex<HashMap<CacheKey, (CacheEntry, usize)>>,
    item_limit: AtomicUsize,
    fail_reads: AtomicBool,
    fail_writes: AtomicBool,
    read_delay: Mutex<Duration>,
    write_delay: Mutex<Duration>,
}

impl Default for InMemoryCacheStore {
    fn default() -> Self {
        InMemoryCacheStore {
            entries: Mutex::default(),
            item_limit: AtomicUsize::new(DEFAULT_ITEM_LIMIT),
            fail_reads: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            read_delay: Mutex::new(Duration::ZERO),
            write_delay: Mutex::new(Duration::ZERO),
        }
    }
}

impl InMemoryCacheStore {
    fn entries(&self) -> MutexGuard<'_, HashMap<CacheKey, (CacheEntry, usize)>> {
        // A poisoned lock only means another test thread panicked; the map is still usable.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves every entry's expiry into the past, as if its TTL had run out.
    pub fn expire_all(&self) {
        for (entry, _) in self.entries().values_mut() {
            entry.expires_at = SystemTime::UNIX_EPOCH;
        }
    }

    pub fn set_item_limit(&self, bytes: usize) {
        self.item_limit.store(bytes, Ordering::SeqCst);
    }

    pub fn fail_reads(&self, fail: bool) {
        self.fail_reads.store(fail, Ordering::SeqCst);
    }

    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Every read waits this long before answering; [`HANG`] never answers.
    pub fn delay_reads(&self, delay: Duration) {
        write_lock(&self.read_delay, delay);
    }

    /// Every write waits this long before storing; [`HANG`] never stores.
    pub fn delay_writes(&self, delay: Duration) {
        write_lock(&self.write_delay, delay);
    }
}

fn injected() -> CacheError {
    CacheError::Store("injected failure".into())
}

impl CacheStore for InMemoryCacheStore {
    async fn get(&self, key: &CacheKey, now: SystemTime) -> Result<Option<CacheEntry>, CacheError> {
        wait(read_lock(&self.read_delay)).await;
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(injected());
        }
        Ok(self.entries().get(key).map(|(entry, _)| entry.clone()).filter(|entry| !entry.is_expired(now)))
    }

    async fn put(&self, entry: &CacheEntry) -> Result<PutOutcome, CacheError> {
        wait(read_lock(&self.write_delay)).await;
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(injected());
        }
        let bytes = cache::encode_response(&entry.response).map_err(|e| CacheError::Corrupt(e.to_string()))?.len();
        let limit = self.item_limit.load(Ordering::SeqCst);
        if bytes > limit {
            return Ok(PutOutcome::TooLarge { bytes, limit });
        }
        self.entries().insert(entry.key, (entry.clone(), bytes));
        Ok(PutOutcome::Stored { bytes })
    }
}

type FailureFactory = Box<dyn Fn() -> InvokeError + Send + Sync>;

/// A model that answers instantly and deterministically, counts its calls, and can be made to
/// fail, to be slow or to behave like a prompt router.
#[derive(Default)]
pub struct FakeInvoker {
    calls: AtomicUsize,
    failure: Mutex<Option<FailureFactory>>,
    model_failures: Mutex<Vec<(String, FailureFactory)>>,
    model_delays: Mutex<Vec<(String, Duration)>>,
    routed_to: Mutex<Option<String>>,
    seen_models: Mutex<Vec<String>>,
    seen_time_limits: Mutex<Vec<Duration>>,
    ignores_deadlines: AtomicBool,
}

impl std::fmt::Debug for FakeInvoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeInvoker").field("calls", &self.calls()).finish_non_exhaustive()
    }
}

impl FakeInvoker {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Model IDs the fake was called with, in order.
    pub fn seen_models(&self) -> Vec<String> {
        read_lock(&self.seen_models)
    }

    /// What each call's deadline left it when the call started, in order.
    pub fn seen_time_limits(&self) -> Vec<Duration> {
        read_lock(&self.seen_time_limits)
    }

    /// Makes delays run their full length whatever the call's deadline, like a client with no
    /// timeout: what the core's own bound is there for.
    pub fn ignore_deadlines(&self, ignore: bool) {
        self.ignores_deadlines.store(ignore, Ordering::SeqCst);
    }

    /// Calls to exactly `model_id` take this long before answering (or failing); [`HANG`]
    /// never answers. Like a real client, the fake gives up at its call's deadline.
    pub fn delay_model(&self, model_id: &str, delay: Duration) {
        if let Ok(mut delays) = self.model_delays.lock() {
            delays.push((model_id.to_owned(), delay));
        }
    }

    /// Every following call fails with the error `make` builds.
    pub fn fail_with(&self, make: impl Fn() -> InvokeError + Send + Sync + 'static) {
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(Box::new(make));
        }
    }

    /// Calls to exactly `model_id` fail with the error `make` builds; others still answer.
    pub fn fail_model(&self, model_id: &str, make: impl Fn() -> InvokeError + Send + Sync + 'static) {
        if let Ok(mut failures) = self.model_failures.lock() {
            failures.push((model_id.to_owned(), Box::new(make)));
        }
    }

    pub fn succeed(&self) {
        if let Ok(mut slot) = self.failure.lock() {
            *slot = None;
        }
        if let Ok(mut failures) = self.model_failures.lock() {
            failures.clear();
        }
        if let Ok(mut delays) = self.model_delays.lock() {
            delays.clear();
        }
    }

    /// Reports `model_id` as the router's choice in `trace.promptRouter.invokedModelId`.
    pub fn route_to(&self, model_id: &str) {
        if let Ok(mut slot) = self.routed_to.lock() {
            *slot = Some(model_id.to_owned());
        }
    }
}

impl ModelInvoker for FakeInvoker {
    async fn converse(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> Result<ConverseResponse, InvokeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut seen) = self.seen_models.lock() {
            seen.push(model_id.to_owned());
        }
        if let Ok(mut seen) = self.seen_time_limits.lock() {
            seen.push(deadline.remaining());
        }
        let delay = self
            .model_delays
            .lock()
            .ok()
            .and_then(|delays| delays.iter().find(|(id, _)| id == model_id).map(|(_, d)| *d));
        if let Some(delay) = delay {
            if self.ignores_deadlines.load(Ordering::SeqCst) {
                wait(delay).await;
            } else if deadline.bound(wait(delay)).await.is_err() {
                return Err(InvokeError::Timeout("the fake model's call ran out of time".into()));
            }
        }
        if let Some(make) = self.failure.lock().ok().as_ref().and_then(|f| f.as_ref()) {
            return Err(make());
        }
        if let Ok(failures) = self.model_failures.lock()
            && let Some((_, make)) = failures.iter().find(|(id, _)| id == model_id)
        {
            return Err(make());
        }
        let last_user_text = request
            .messages
            .iter()
            .rev()
            .flat_map(|m| m.content.iter())
            .find_map(|b| match b {
                ContentBlock::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .unwrap_or_default();
        let text = format!("[{model_id}] You said: {last_user_text}");
        let input = tokens::estimate_request(request) as i64;
        let output = tokens::estimate_text(&text) as i64;
        let trace = self
            .routed_to
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .map(|id| serde_json::json!({"promptRouter": {"invokedModelId": id}}));
        Ok(ConverseResponse {
            output: ConverseOutput {
                message: Message { role: Role::Assistant, content: vec![ContentBlock::Text(text)] },
            },
            stop_reason: "end_turn".to_owned(),
            usage: TokenUsage {
                input_tokens: input,
                output_tokens: output,
                total_tokens: input + output,
                ..TokenUsage::default()
            },
            metrics: ConverseMetrics { latency_ms: 1 },
            additional_model_response_fields: None,
            trace,
            performance_config: None,
            service_tier: None,
        })
    }
}

/// Shared handles let a test keep inspecting a fake after moving it into a gateway.
impl<T: CacheStore> CacheStore for Arc<T> {
    fn get(
        &self,
        key: &CacheKey,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<CacheEntry>, CacheError>> + Send {
        (**self).get(key, now)
    }

    fn put(&self, entry: &CacheEntry) -> impl Future<Output = Result<PutOutcome, CacheError>> + Send {
        (**self).put(entry)
    }
}

impl<T: ModelInvoker> ModelInvoker for Arc<T> {
    fn converse(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<ConverseResponse, InvokeError>> + Send {
        (**self).converse(model_id, request, deadline)
    }
}
