//! Admission across instances through the real DynamoDB adapter against moto: several
//! `Admission`s in one process share one lease table, as Lambda instances do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_core::adapters::DynamoBudgetStore;
use gateway_core::admission::{Admission, AdmissionSettings, Ask, BudgetStore, LeaseBook, Saved};
use gateway_core::catalog::{Quota, Scope};
use gateway_core::deadline::Deadline;
use gateway_core::quota::QuotaKey;
use gateway_core::splitmix::SplitMix64;
use integration_tests::{cache_table, dynamodb};
use tokio::time::Instant;

fn quota_key() -> QuotaKey {
    QuotaKey::new("anthropic.claude-haiku-4-5-20251001-v1:0", Scope::Geo("us".into()))
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_nothing_is_overwritten() {
    let client = dynamodb().await;
    let store = DynamoBudgetStore::new(client.clone(), cache_table(&client).await);
    let key = quota_key();
    assert_eq!(store.load(&key).await.unwrap(), LeaseBook::default());
    let first = LeaseBook { version: 1, ..LeaseBook::default() };
    assert_eq!(store.save(&key, &first).await.unwrap(), Saved::Written);
    assert_eq!(store.save(&key, &first).await.unwrap(), Saved::Conflict, "version 1 exists already");
    let mut second = store.load(&key).await.unwrap();
    second.version += 1;
    assert_eq!(store.save(&key, &second).await.unwrap(), Saved::Written);
    assert_eq!(store.load(&key).await.unwrap().version, 2);
}

/// One admitted request as the instance saw it.
#[derive(Debug, Clone, Copy)]
struct Call {
    admitted: Instant,
    settled: Instant,
    reserved: u64,
    settled_tokens: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_one_table_never_exceed_the_quota_together() {
    let client = dynamodb().await;
    let table = cache_table(&client).await;
    let window = Duration::from_secs(2);
    let settings = AdmissionSettings {
        window,
        max_call: Duration::from_millis(300),
        lease_term: Duration::from_secs(4),
        headroom_percent: 0,
        wait: Duration::from_millis(500),
        // moto shares two cores with the test; a production timeout would degrade constantly.
        store_timeout: Duration::from_secs(2),
        renew_interval: Duration::from_millis(100),
        ..AdmissionSettings::default()
    };
    let quota = Quota { tpm: 20_000, rpm: 200 };
    let key = quota_key();
    let instances: Vec<_> = (0..4)
        .map(|i| {
            let store = DynamoBudgetStore::new(client.clone(), table.clone());
            let limits = BTreeMap::from([(key.clone(), quota)]);
            Arc::new(Admission::new(store, settings.clone(), limits, format!("instance-{i}")))
        })
        .collect();
    let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
    let run_until = Instant::now() + Duration::from_secs(6);
    let mut tasks = Vec::new();
    for (i, admission) in instances.iter().enumerate() {
        for worker in 0..4 {
            let (admission, calls, key) = (admission.clone(), calls.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = SplitMix64::new((i * 16 + worker) as u64);
                let mut refused = 0;
                while Instant::now() < run_until {
                    let reserved = 200 + rng.below(800);
                    let ask = Ask {
                        key: &key,
                        tenant: "t",
                        tokens: reserved,
                        deadline: Deadline::after(Duration::from_secs(1)),
                    };
                    match admission.admit(ask).await {
                        Ok(permit) => {
                            let admitted = Instant::now();
                            tokio::time::sleep(Duration::from_millis(20 + rng.below(150))).await;
                            let settled_tokens = reserved / 4 + rng.below(reserved * 3 / 4);
                            let settled = Instant::now();
                            permit.settle(settled_tokens);
                            calls.lock().unwrap().push(Call { admitted, settled, reserved, settled_tokens });
                        }
                        Err(_) => refused += 1,
                    }
                }
                refused
            }));
        }
    }
    let mut refused = 0;
    for task in tasks {
        refused += task.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    let ops: u64 = instances.iter().map(|a| a.store_ops()).sum();
    println!("{} admitted, {refused} refused, {ops} DynamoDB operations", calls.len());
    // The load is well over the quota, so the budget must have been spent, not idle.
    assert!(refused > 0, "the load never met the quota");
    assert!(calls.len() > 100, "only {} admitted", calls.len());

    // Replay Bedrock's window exactly at every instant something entered it.
    let mut instants: Vec<Instant> = calls.iter().flat_map(|c| [c.admitted, c.settled]).collect();
    instants.sort();
    for t in instants {
        let in_flight: u64 = calls.iter().filter(|c| c.admitted <= t && t < c.settled).map(|c| c.reserved).sum();
        let settled: u64 = calls
            .iter()
            .filter(|c| c.settled <= t && t.duration_since(c.settled) < window)
            .map(|c| c.settled_tokens)
            .sum();
        let requests = calls.iter().filter(|c| c.admitted <= t && t.duration_since(c.admitted) < window).count();
        assert!(in_flight + settled <= quota.tpm, "{} tokens in the window at {t:?}", in_flight + settled);
        assert!(requests as u64 <= quota.rpm, "{requests} requests in the window at {t:?}");
    }
}
