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
use crate::ports::{
    CacheError, CacheStore, Claim, ClaimToken, InvokeError, ModelInvoker, ModelStream, Ports, PutOutcome,
};
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
    /// Live and expired claims by key: the holder's token and the claim's expiry.
    claims: Mutex<HashMap<CacheKey, (ClaimToken, SystemTime)>>,
    fail_claims: AtomicBool,
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
            claims: Mutex::default(),
            fail_claims: AtomicBool::new(false),
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

    fn claims(&self) -> MutexGuard<'_, HashMap<CacheKey, (ClaimToken, SystemTime)>> {
        self.claims.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims not yet released, expired ones included (as in DynamoDB until they are overwritten).
    pub fn claim_count(&self) -> usize {
        self.claims().len()
    }

    /// Moves every claim's expiry into the past, as if its holder had crashed long ago.
    pub fn expire_claims(&self) {
        for (_, expires_at) in self.claims().values_mut() {
            *expires_at = SystemTime::UNIX_EPOCH;
        }
    }

    pub fn fail_claims(&self, fail: bool) {
        self.fail_claims.store(fail, Ordering::SeqCst);
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

    async fn claim(&self, key: &CacheKey, now: SystemTime, ttl: Duration) -> Result<Claim, CacheError> {
        if self.fail_claims.load(Ordering::SeqCst) {
            return Err(injected());
        }
        let mut claims = self.claims();
        if claims.get(key).is_some_and(|(_, expires_at)| *expires_at > now) {
            return Ok(Claim::HeldElsewhere);
        }
        let token = ClaimToken::unique();
        claims.insert(*key, (token.clone(), now + ttl));
        Ok(Claim::Acquired(token))
    }

    async fn release(&self, key: &CacheKey, token: &ClaimToken) -> Result<(), CacheError> {
        if self.fail_claims.load(Ordering::SeqCst) {
            return Err(injected());
        }
        let mut claims = self.claims();
        if claims.get(key).is_some_and(|(holder, _)| holder == token) {
            claims.remove(key);
        }
        Ok(())
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
    seen_requests: Mutex<Vec<ConverseRequest>>,
    seen_time_limits: Mutex<Vec<Duration>>,
    ignores_deadlines: AtomicBool,
    stream_cut: Mutex<Option<(usize, FailureFactory)>>,
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

    /// The requests the fake was sent, in order.
    pub fn seen_requests(&self) -> Vec<ConverseRequest> {
        read_lock(&self.seen_requests)
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

    /// Streams fail after their first `events` events with the error `make` builds, as a
    /// stream Bedrock cuts does.
    pub fn cut_streams_after(&self, events: usize, make: impl Fn() -> InvokeError + Send + Sync + 'static) {
        if let Ok(mut slot) = self.stream_cut.lock() {
            *slot = Some((events, Box::new(make)));
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
        if let Ok(mut seen) = self.seen_requests.lock() {
            seen.push(request.clone());
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

    async fn converse_stream(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> Result<ModelStream, InvokeError> {
        let events = crate::stream::replay(&self.converse(model_id, request, deadline).await?);
        let cut = self.stream_cut.lock().ok().and_then(|slot| slot.as_ref().map(|(n, make)| (*n, make())));
        Ok(match cut {
            Some((keep, error)) => {
                ModelStream::from_items(events.into_iter().take(keep).map(Ok).chain(std::iter::once(Err(error))))
            }
            None => ModelStream::from_events(events),
        })
    }
}

/// The ports a test assembles: the fakes by default (shared handles, so the test keeps
/// inspecting them after the gateway takes the bundle), or any mix of fakes, wrappers and
/// real adapters.
#[derive(Debug)]
pub struct TestPorts<C = Arc<InMemoryCacheStore>, M = Arc<FakeInvoker>> {
    pub cache: C,
    pub models: M,
}

impl<C: CacheStore, M: ModelInvoker> TestPorts<C, M> {
    pub fn new(cache: C, models: M) -> Self {
        TestPorts { cache, models }
    }
}

impl TestPorts {
    /// Fresh fakes.
    pub fn fakes() -> Self {
        TestPorts::new(Arc::default(), Arc::default())
    }
}

impl<C: CacheStore, M: ModelInvoker> Ports for TestPorts<C, M> {
    type Cache = C;
    type Models = M;

    fn cache(&self) -> &C {
        &self.cache
    }

    fn models(&self) -> &M {
        &self.models
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

    fn claim(
        &self,
        key: &CacheKey,
        now: SystemTime,
        ttl: Duration,
    ) -> impl Future<Output = Result<Claim, CacheError>> + Send {
        (**self).claim(key, now, ttl)
    }

    fn release(&self, key: &CacheKey, token: &ClaimToken) -> impl Future<Output = Result<(), CacheError>> + Send {
        (**self).release(key, token)
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

    fn converse_stream(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<ModelStream, InvokeError>> + Send {
        (**self).converse_stream(model_id, request, deadline)
    }
}

/// Polls `futures` together on the calling task until all are done, as the concurrent
/// requests of one instance are, and returns their outputs in order.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// A port that takes `delay` before every operation, like a model or a table across a network.
/// Wraps the fakes for tests and benches where concurrent requests must overlap.
#[derive(Debug)]
pub struct Delayed<T> {
    pub inner: T,
    pub delay: Duration,
}

impl<T> Delayed<T> {
    pub fn new(inner: T, delay: Duration) -> Self {
        Delayed { inner, delay }
    }
}

impl<T: CacheStore> CacheStore for Delayed<T> {
    async fn get(&self, key: &CacheKey, now: SystemTime) -> Result<Option<CacheEntry>, CacheError> {
        tokio::time::sleep(self.delay).await;
        self.inner.get(key, now).await
    }

    async fn put(&self, entry: &CacheEntry) -> Result<PutOutcome, CacheError> {
        tokio::time::sleep(self.delay).await;
        self.inner.put(entry).await
    }

    async fn claim(&self, key: &CacheKey, now: SystemTime, ttl: Duration) -> Result<Claim, CacheError> {
        tokio::time::sleep(self.delay).await;
        self.inner.claim(key, now, ttl).await
    }

    async fn release(&self, key: &CacheKey, token: &ClaimToken) -> Result<(), CacheError> {
        tokio::time::sleep(self.delay).await;
        self.inner.release(key, token).await
    }
}

impl<T: ModelInvoker> ModelInvoker for Delayed<T> {
    async fn converse(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> Result<ConverseResponse, InvokeError> {
        tokio::time::sleep(self.delay).await;
        self.inner.converse(model_id, request, deadline).await
    }

    async fn converse_stream(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> Result<ModelStream, InvokeError> {
        tokio::time::sleep(self.delay).await;
        self.inner.converse_stream(model_id, request, deadline).await
    }
}
