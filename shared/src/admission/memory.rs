//! [`BudgetStore`] in memory, for tests: shared between several [`super::Admission`]s as
//! one table is between instances, and able to fail, stall or hang on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{BudgetError, BudgetStore, LeaseBook, Saved};
use crate::quota::QuotaKey;

/// A delay that never ends: a store that stopped answering.
pub const HANG: Duration = Duration::MAX;

#[derive(Debug, Clone, Default)]
pub struct MemoryBudgetStore {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    books: Mutex<HashMap<String, LeaseBook>>,
    failing: AtomicBool,
    delay: Mutex<Duration>,
    conflicts: AtomicUsize,
    writes: AtomicUsize,
}

impl MemoryBudgetStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call fails (`true`) or works again (`false`).
    pub fn fail(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// Every call first waits this long on tokio's clock ([`HANG`]: forever).
    pub fn delay(&self, delay: Duration) {
        if let Ok(mut d) = self.inner.delay.lock() {
            *d = delay;
        }
    }

    pub fn book(&self, key: &QuotaKey) -> LeaseBook {
        self.inner.books.lock().ok().and_then(|b| b.get(&key.to_string()).cloned()).unwrap_or_default()
    }

    /// Writes refused because another writer came first.
    pub fn conflicts(&self) -> usize {
        self.inner.conflicts.load(Ordering::SeqCst)
    }

    pub fn writes(&self) -> usize {
        self.inner.writes.load(Ordering::SeqCst)
    }

    async fn enter(&self) -> Result<(), BudgetError> {
        let delay = self.inner.delay.lock().map(|d| *d).unwrap_or_default();
        if delay == HANG {
            std::future::pending::<()>().await;
        } else if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.inner.failing.load(Ordering::SeqCst) {
            return Err(BudgetError::Store("injected failure".into()));
        }
        Ok(())
    }
}

impl BudgetStore for MemoryBudgetStore {
    async fn load(&self, key: &QuotaKey) -> Result<LeaseBook, BudgetError> {
        self.enter().await?;
        Ok(self.book(key))
    }

    async fn save(&self, key: &QuotaKey, book: &LeaseBook) -> Result<Saved, BudgetError> {
        self.enter().await?;
        let mut books = self.inner.books.lock().map_err(|_| BudgetError::Store("poisoned".into()))?;
        let stored = books.get(&key.to_string()).map_or(0, |b| b.version);
        if stored + 1 != book.version {
            self.inner.conflicts.fetch_add(1, Ordering::SeqCst);
            return Ok(Saved::Conflict);
        }
        books.insert(key.to_string(), book.clone());
        self.inner.writes.fetch_add(1, Ordering::SeqCst);
        Ok(Saved::Written)
    }
}
