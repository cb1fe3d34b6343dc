//! The quotas the emulator enforces: Bedrock's window arithmetic from
//! [`gateway_core::quota`], one window per quota, with the limits of the catalog, of the
//! config file and of the admin API.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gateway_core::catalog::Quota;
use gateway_core::quota::{Ledger, QuotaKey, Throttle, WindowUsage};

use crate::config::QuotaOverride;

/// Every quota's window plus the quota overrides, behind one lock: the critical sections
/// are a few arithmetic operations, so contention is not a concern.
#[derive(Debug)]
pub struct QuotaBook {
    window: Duration,
    configured: HashMap<QuotaKey, QuotaOverride>,
    inner: Mutex<BookInner>,
}

#[derive(Debug, Default)]
struct BookInner {
    ledgers: HashMap<QuotaKey, Ledger>,
    runtime: HashMap<QuotaKey, QuotaOverride>,
    next_id: u64,
}

impl QuotaBook {
    pub fn new(window: Duration, configured: HashMap<QuotaKey, QuotaOverride>) -> QuotaBook {
        QuotaBook { window, configured, inner: Mutex::new(BookInner::default()) }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn lock(&self) -> MutexGuard<'_, BookInner> {
        // The state stays consistent even if a holder panicked: every update is a handful
        // of infallible integer operations.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The limits in force: the catalog's, then the config file's, then the runtime
    /// override set through the admin API.
    pub fn limits(&self, key: &QuotaKey, catalog_quota: Option<Quota>) -> Option<Quota> {
        let runtime = self.lock().runtime.get(key).copied();
        effective(catalog_quota, [self.configured.get(key).copied(), runtime])
    }

    /// Admits a request and returns its reservation ID.
    pub fn try_admit(
        &self,
        key: &QuotaKey,
        catalog_quota: Option<Quota>,
        reserve: u64,
        now: Instant,
    ) -> Result<u64, Throttle> {
        let mut inner = self.lock();
        let runtime = inner.runtime.get(key).copied();
        let quota = effective(catalog_quota, [self.configured.get(key).copied(), runtime]);
        inner.next_id += 1;
        let id = inner.next_id;
        inner.ledgers.entry(key.clone()).or_default().try_admit(id, reserve, quota, now, self.window)?;
        Ok(id)
    }

    pub fn settle(&self, key: &QuotaKey, id: u64, tokens: u64, now: Instant) {
        if let Some(ledger) = self.lock().ledgers.get_mut(key) {
            ledger.settle(id, tokens, now);
        }
    }

    pub fn usage(&self, key: &QuotaKey, now: Instant) -> WindowUsage {
        let window = self.window;
        self.lock().ledgers.get_mut(key).map(|l| l.usage(now, window)).unwrap_or_default()
    }

    /// Sets a runtime override and starts the quota's window afresh, so that a test can
    /// count from zero against the new limits.
    pub fn set_runtime(&self, key: &QuotaKey, quota: QuotaOverride) {
        let mut inner = self.lock();
        inner.runtime.insert(key.clone(), quota);
        inner.ledgers.remove(key);
    }

    /// Forgets a quota's window and runtime override.
    pub fn reset_bucket(&self, key: &QuotaKey) {
        let mut inner = self.lock();
        inner.runtime.remove(key);
        inner.ledgers.remove(key);
    }

    pub fn reset_all(&self) {
        let mut inner = self.lock();
        inner.runtime.clear();
        inner.ledgers.clear();
    }
}

fn effective(base: Option<Quota>, overrides: [Option<QuotaOverride>; 2]) -> Option<Quota> {
    overrides.into_iter().flatten().fold(base, |quota, o| {
        if o.tpm.is_none() && o.rpm.is_none() {
            return quota;
        }
        // A quota without a catalog default becomes limited only in what the override names.
        let unlimited = Quota { tpm: Quota::UNLIMITED, rpm: Quota::UNLIMITED };
        let q = quota.unwrap_or(unlimited);
        Some(Quota { tpm: o.tpm.unwrap_or(q.tpm), rpm: o.rpm.unwrap_or(q.rpm) })
    })
}

#[cfg(test)]
mod tests {
    use gateway_core::catalog::Scope;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn quota(tpm: u64, rpm: u64) -> Option<Quota> {
        Some(Quota { tpm, rpm })
    }

    #[test]
    fn overrides_apply_in_order_and_reset_restores_the_configured_limits() {
        let key = QuotaKey::new("m", Scope::Geo("us".into()));
        let configured = HashMap::from([(key.clone(), QuotaOverride { tpm: None, rpm: Some(5) })]);
        let book = QuotaBook::new(MINUTE, configured);
        let catalog = quota(100, 50);
        assert_eq!(book.limits(&key, catalog), quota(100, 5));
        book.set_runtime(&key, QuotaOverride { tpm: Some(7), rpm: None });
        assert_eq!(book.limits(&key, catalog), quota(7, 5));
        book.reset_bucket(&key);
        assert_eq!(book.limits(&key, catalog), quota(100, 5));
        let other = QuotaKey::new("m", Scope::Global);
        assert_eq!(book.limits(&other, None), None);
    }

    #[test]
    fn quotas_are_independent() {
        let t0 = Instant::now();
        let book = QuotaBook::new(MINUTE, HashMap::new());
        let us = QuotaKey::new("m", Scope::Geo("us".into()));
        let global = QuotaKey::new("m", Scope::Global);
        book.try_admit(&us, quota(10, 1), 1, t0).unwrap();
        assert_eq!(book.try_admit(&us, quota(10, 1), 1, t0), Err(Throttle::Requests));
        book.try_admit(&global, quota(10, 1), 1, t0).unwrap();
    }
}
