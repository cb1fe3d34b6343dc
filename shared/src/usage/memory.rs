//! An in-memory [`UsageLedger`] for tests: records by minute, keyed as the real store keys them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Minute, MinuteUsage, UsageError, UsageLedger, UsageRecord, UsageSource};

/// A minute's records under the store's key.
type MinuteRecords = BTreeMap<(UsageSource, String), UsageRecord>;

#[derive(Debug, Default)]
pub struct MemoryUsageLedger {
    minutes: Mutex<BTreeMap<Minute, MinuteRecords>>,
    unreadable: Mutex<BTreeMap<Minute, u64>>,
}

impl MemoryUsageLedger {
    /// Pretends `count` stored items of `minute` do not parse.
    pub fn add_unreadable(&self, minute: Minute, count: u64) {
        if let Ok(mut unreadable) = self.unreadable.lock() {
            *unreadable.entry(minute).or_default() += count;
        }
    }

    /// Every record stored, in minute then key order.
    pub fn all(&self) -> Vec<UsageRecord> {
        self.minutes.lock().map(|m| m.values().flat_map(|r| r.values().cloned()).collect()).unwrap_or_default()
    }
}

impl UsageLedger for MemoryUsageLedger {
    async fn record(&self, record: &UsageRecord) -> Result<(), UsageError> {
        let mut minutes = self.minutes.lock().map_err(|_| UsageError::Store("poisoned".into()))?;
        minutes
            .entry(record.minute())
            .or_default()
            .entry((record.source, record.request_id.clone()))
            .or_insert_with(|| record.clone());
        Ok(())
    }

    async fn minute(&self, minute: Minute) -> Result<MinuteUsage, UsageError> {
        let minutes = self.minutes.lock().map_err(|_| UsageError::Store("poisoned".into()))?;
        let records = minutes.get(&minute).map(|r| r.values().cloned().collect()).unwrap_or_default();
        let unreadable = self.unreadable.lock().map(|u| u.get(&minute).copied().unwrap_or(0)).unwrap_or(0);
        Ok(MinuteUsage { records, unreadable })
    }
}
