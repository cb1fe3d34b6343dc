//! Admission on the in-memory store with tokio's paused clock: every wait and expiry is exact.

use std::sync::Arc;

use super::memory::{HANG, MemoryBudgetStore};
use super::*;
use crate::catalog::Scope;

const MODEL: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";

fn quota_key() -> QuotaKey {
    QuotaKey::new(MODEL, Scope::Geo("us".into()))
}

fn settings() -> AdmissionSettings {
    AdmissionSettings { headroom_percent: 0, ..AdmissionSettings::default() }
}

fn admission(
    store: &MemoryBudgetStore,
    settings: AdmissionSettings,
    tpm: u64,
    rpm: u64,
    id: &str,
) -> Admission<MemoryBudgetStore> {
    let limits = BTreeMap::from([(quota_key(), Quota { tpm, rpm })]);
    Admission::new(store.clone(), settings, limits, id.to_owned())
}

fn ask<'a>(key: &'a QuotaKey, tenant: &'a str, tokens: u64) -> Ask<'a> {
    Ask { key, tenant, tokens, deadline: Deadline::after(Duration::from_secs(25)) }
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Lets spawned tasks run until they all wait.
async fn settle_tasks() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn at_a_steady_rate_store_calls_are_a_small_fraction_of_requests() {
    let store = MemoryBudgetStore::new();
    let admission = admission(&store, settings(), 1_000_000, 10_000, "a");
    let key = quota_key();
    let requests = 2_000;
    for _ in 0..requests {
        let permit = admission.admit(ask(&key, "t", 500)).await.unwrap();
        assert_eq!(permit.report().mode, AdmissionMode::Shared);
        assert_eq!(permit.report().waited_ms, 0);
        tokio::time::advance(Duration::from_millis(50)).await;
        permit.settle(250);
    }
    // 100 s at 20 requests a second, within the quota: growth while demand builds, then a
    // refresh every 16.5 s.
    let ops = admission.store_ops();
    assert!(ops * 50 < requests, "{ops} store calls for {requests} requests");
    let lease = store.book(&key).leases["a"];
    assert!(lease.tokens <= 1_000_000, "{lease:?}");
}

#[tokio::test(start_paused = true)]
async fn a_quota_without_a_limit_is_admitted_uncounted() {
    let store = MemoryBudgetStore::new();
    let admission = admission(&store, settings(), 1_000, 10, "a");
    let other = QuotaKey::new(MODEL, Scope::Global);
    let permit = admission.admit(ask(&other, "t", 1_000_000)).await.unwrap();
    assert_eq!(permit.report().mode, AdmissionMode::Unlimited);
    assert_eq!(permit.report().quota, format!("global.{MODEL}"));
    assert_eq!(admission.store_ops(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_reservation_larger_than_the_quota_is_refused_at_once() {
    let store = MemoryBudgetStore::new();
    let admission = admission(&store, AdmissionSettings { headroom_percent: 10, ..settings() }, 1_000, 10, "a");
    let key = quota_key();
    let started = Instant::now();
    // 950 fits the quota but not the 900 it leaves after the headroom.
    let refusal = admission.admit(ask(&key, "t", 950)).await.unwrap_err();
    assert_eq!(refusal.limit, Limit::TooLarge);
    assert_eq!(refusal.retry_after, Duration::ZERO);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(admission.store_ops(), 0);
    assert!(admission.admit(ask(&key, "t", 900)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_when_enough_of_the_window_expires() {
    let store = MemoryBudgetStore::new();
    let no_wait = AdmissionSettings { wait: Duration::ZERO, ..settings() };
    let admission = admission(&store, no_wait, 1_000, 100, "a");
    let key = quota_key();
    // A lone instance leases up to twice its demand: ask enough first that it holds the quota.
    admission.admit(ask(&key, "t", 600)).await.unwrap().settle(600);
    tokio::time::advance(Duration::from_secs(10)).await;
    admission.admit(ask(&key, "t", 300)).await.unwrap().settle(300);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(store.book(&key).leases["a"].tokens, 1_000);

    let refusal = admission.admit(ask(&key, "t", 500)).await.unwrap_err();
    assert_eq!(refusal.limit, Limit::Tokens);
    // 900 used; 500 more needs the 600 settled at t=0 gone, which happens at t=60.
    assert_eq!(refusal.retry_after, Duration::from_secs(40));
    tokio::time::advance(refusal.retry_after - Duration::from_millis(1)).await;
    assert!(admission.admit(ask(&key, "t", 500)).await.is_err(), "not a millisecond early");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(admission.admit(ask(&key, "t", 500)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_requests_quota_is_kept_and_its_retry_after_is_exact() {
    let store = MemoryBudgetStore::new();
    let admission = admission(&store, AdmissionSettings { wait: Duration::ZERO, ..settings() }, 1_000_000, 2, "a");
    let key = quota_key();
    admission.admit(ask(&key, "t", 1)).await.unwrap().settle(1);
    tokio::time::advance(Duration::from_secs(15)).await;
    admission.admit(ask(&key, "t", 1)).await.unwrap().settle(1);
    let refusal = admission.admit(ask(&key, "t", 1)).await.unwrap_err();
    assert_eq!(refusal.limit, Limit::Requests);
    assert_eq!(refusal.retry_after, Duration::from_secs(45));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_request_is_admitted_when_a_settlement_frees_room() {
    let store = MemoryBudgetStore::new();
    let admission = Arc::new(admission(&store, settings(), 1_000, 100, "a"));
    let key = quota_key();
    let first = admission.admit(ask(&key, "t", 1_000)).await.unwrap();
    let waiter = {
        let admission = admission.clone();
        tokio::spawn(async move { admission.admit(ask(&quota_key(), "t", 600)).await.map(|p| p.report()) })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!waiter.is_finished());
    // The call used far less than it reserved.
    first.settle(300);
    let report = waiter.await.unwrap().unwrap();
    assert_eq!(report.waited_ms, 2_000);
    assert_eq!(report.reserved_tokens, 600);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_permit_returns_its_reservation() {
    let store = MemoryBudgetStore::new();
    let admission = admission(&store, AdmissionSettings { wait: Duration::ZERO, ..settings() }, 1_000, 100, "a");
    let key = quota_key();
    let permit = admission.admit(ask(&key, "t", 1_000)).await.unwrap();
    assert!(admission.admit(ask(&key, "t", 1)).await.is_err());
    drop(permit);
    let report = admission.admit(ask(&key, "t", 1_000)).await.unwrap().settle(10);
    assert_eq!(report.settled_tokens, Some(10));
}

#[tokio::test(start_paused = true)]
async fn no_wait_outlasts_the_deadline() {
    let store = MemoryBudgetStore::new();
    let admission = admission(&store, settings(), 1_000, 100, "a");
    let key = quota_key();
    let _full = admission.admit(ask(&key, "t", 1_000)).await.unwrap();
    let started = Instant::now();
    let refusal = admission
        .admit(Ask { deadline: Deadline::after(Duration::from_millis(1_500)), ..ask(&key, "t", 10) })
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(1_500));
    assert_eq!(refusal.waited, Duration::from_millis(1_500));
    // Only the in-flight reservation holds the room: its end is unknown, so one window.
    assert_eq!(refusal.retry_after, Duration::from_secs(60));
}

/// Tenants queue while one request holds the whole quota; each admitted request gives its
/// room back at once, so the order of admission is the queue's.
async fn order_of_admission(shares: &str, waiting: &[(&str, usize)]) -> Vec<String> {
    let store = MemoryBudgetStore::new();
    let shares = TenantShares::parse(shares).unwrap();
    let admission = Arc::new(admission(&store, AdmissionSettings { shares, ..settings() }, 100, 10_000, "a"));
    let key = quota_key();
    let blocker = admission.admit(ask(&key, "blocker", 100)).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (tenant, count) in waiting {
        for _ in 0..*count {
            let (admission, order, tenant) = (admission.clone(), order.clone(), tenant.to_string());
            tasks.push(tokio::spawn(async move {
                let permit = admission.admit(ask(&quota_key(), &tenant, 100)).await.unwrap();
                order.lock().unwrap().push(tenant);
                drop(permit);
            }));
            settle_tasks().await;
        }
    }
    drop(blocker);
    for task in tasks {
        task.await.unwrap();
    }
    order.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn tenants_waiting_together_are_served_by_their_shares() {
    let order = order_of_admission("acme=3,*=1", &[("acme", 12), ("globex", 12)]).await;
    let first_eight: Vec<&str> = order.iter().take(8).map(String::as_str).collect();
    assert_eq!(first_eight.iter().filter(|t| **t == "acme").count(), 6, "{order:?}");
    assert_eq!(first_eight.iter().filter(|t| **t == "globex").count(), 2, "{order:?}");
    assert_eq!(order.len(), 24, "everyone is served in the end");
}

#[tokio::test(start_paused = true)]
async fn a_tenant_that_queued_first_cannot_starve_one_that_arrives_later() {
    // acme queues 10 requests before globex sends its one: globex still goes second.
    let order = order_of_admission("", &[("acme", 10), ("globex", 1)]).await;
    assert_eq!(order.iter().position(|t| t == "globex"), Some(1), "{order:?}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_tenants_share_is_lent_to_the_one_with_work() {
    let order = order_of_admission("acme=1,globex=9", &[("acme", 5)]).await;
    assert_eq!(order, vec!["acme"; 5]);
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_renewed_in_the_background_before_it_stops_admitting() {
    let store = MemoryBudgetStore::new();
    let settings = settings();
    let usable = settings.usable_lease();
    assert_eq!(usable, Duration::from_secs(33));
    let admission = admission(&store, settings.clone(), 1_000_000, 1_000, "a");
    let key = quota_key();
    admission.admit(ask(&key, "t", 100)).await.unwrap().settle(100);
    let first_expiry = store.book(&key).leases["a"].expires_at_ms;
    assert_eq!(admission.store_ops(), 2);
    tokio::time::advance(usable / 2).await;
    // Covered by the lease: admitted without waiting, the resize runs behind it.
    let report = admission.admit(ask(&key, "t", 100)).await.unwrap().settle(100);
    assert_eq!(report.waited_ms, 0);
    settle_tasks().await;
    assert_eq!(admission.store_ops(), 4);
    let renewed = store.book(&key).leases["a"].expires_at_ms;
    assert_eq!(renewed - first_expiry, u64::try_from((usable / 2).as_millis()).unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_frozen_instance_strands_its_lease_for_at_most_one_term() {
    let store = MemoryBudgetStore::new();
    let settings = AdmissionSettings { wait: Duration::from_secs(20), ..settings() };
    let term = settings.lease_term;
    let frozen = admission(&store, settings.clone(), 10_000, 1_000, "frozen");
    let key = quota_key();
    // It takes the whole quota, then is never scheduled again.
    frozen.admit(ask(&key, "t", 6_000)).await.unwrap().settle(6_000);
    let taken_at = Instant::now();
    assert_eq!(store.book(&key).leases["frozen"].tokens, 10_000);

    let live = admission(&store, settings, 10_000, 1_000, "live");
    let mut waited_out = Duration::ZERO;
    loop {
        match live.admit(ask(&key, "t", 5_000)).await {
            Ok(permit) => {
                assert_eq!(permit.report().mode, AdmissionMode::Shared);
                break;
            }
            Err(refusal) => {
                assert!(refusal.limit == Limit::Tokens, "{refusal:?}");
                waited_out += refusal.waited;
                assert!(taken_at.elapsed() <= term + Duration::from_secs(25), "stranded beyond the bound");
            }
        }
    }
    let stranded = taken_at.elapsed();
    // Counted until its expiry (plus the allowance for clock skew), then lent out.
    assert!(stranded > term, "{stranded:?}");
    assert!(stranded <= term + Duration::from_millis(CLOCK_SKEW_MS) + Duration::from_secs(2), "{stranded:?}");
    assert!(waited_out > Duration::ZERO);
    assert!(!store.book(&key).leases.contains_key("frozen"));
    // The frozen instance, thawed, no longer admits under its old lease without a store call.
    let ops = frozen.store_ops();
    let late = frozen.admit(Ask { deadline: Deadline::after(Duration::from_millis(10)), ..ask(&key, "t", 100) }).await;
    assert!(frozen.store_ops() > ops);
    assert!(late.is_err(), "the live instance holds the room now");
}

#[tokio::test(start_paused = true)]
async fn an_instance_past_its_admission_cutoff_stops_using_its_lease() {
    let store = MemoryBudgetStore::new();
    let settings = settings();
    let admission = admission(&store, settings.clone(), 10_000, 1_000, "a");
    let key = quota_key();
    admission.admit(ask(&key, "t", 100)).await.unwrap().settle(100);
    store.fail(true);
    // Within the usable part the lease is used though the store fails.
    tokio::time::advance(settings.usable_lease()).await;
    assert_eq!(admission.admit(ask(&key, "t", 100)).await.unwrap().report().mode, AdmissionMode::Shared);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(admission.admit(ask(&key, "t", 100)).await.unwrap().report().mode, AdmissionMode::Degraded);
}

#[tokio::test(start_paused = true)]
async fn two_instances_racing_for_one_book_both_get_a_lease_and_never_overcommit() {
    let store = MemoryBudgetStore::new();
    store.delay(Duration::from_millis(5));
    let a = Arc::new(admission(&store, settings(), 10_000, 1_000, "a"));
    let b = Arc::new(admission(&store, settings(), 10_000, 1_000, "b"));
    let key = quota_key();
    let (ra, rb) = tokio::join!(a.admit(ask(&key, "t", 2_000)), b.admit(ask(&key, "t", 2_000)));
    assert_eq!(ra.unwrap().report().mode, AdmissionMode::Shared);
    assert_eq!(rb.unwrap().report().mode, AdmissionMode::Shared);
    assert!(store.conflicts() >= 1, "both read version 0; one write must have lost");
    let book = store.book(&key);
    assert_eq!(book.leases.len(), 2);
    assert_eq!(book.version, store.writes() as u64);
    assert!(lease::held(&book, now_ms()).tokens <= 10_000);
}

#[tokio::test(start_paused = true)]
async fn many_instances_share_a_busy_quota_in_proportion_and_never_overcommit() {
    let store = MemoryBudgetStore::new();
    let instances: Vec<_> =
        (0..4).map(|i| Arc::new(admission(&store, settings(), 40_000, 10_000, &format!("i{i}")))).collect();
    let key = quota_key();
    for _round in 0..40 {
        for admission in &instances {
            let _ = admission
                .admit(Ask { deadline: Deadline::after(Duration::from_millis(200)), ..ask(&key, "t", 1_000) })
                .await
                .map(|p| p.settle(1_000));
            let book = store.book(&key);
            assert!(lease::held(&book, now_ms()).tokens <= 40_000, "{book:?}");
        }
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    let book = store.book(&key);
    for (instance, lease) in &book.leases {
        assert!(lease.tokens >= 5_000, "{instance} holds too little of an evenly shared quota: {book:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn instances_starting_together_take_their_leases_without_a_storm_of_store_calls() {
    let store = MemoryBudgetStore::new();
    store.delay(Duration::from_millis(20));
    let instances: Vec<_> =
        (0..8).map(|i| Arc::new(admission(&store, settings(), 1_000_000, 10_000, &format!("i{i}")))).collect();
    let key = quota_key();
    let mut asks = tokio::task::JoinSet::new();
    for admission in &instances {
        for _ in 0..10 {
            let (admission, key) = (admission.clone(), key.clone());
            asks.spawn(async move {
                let ask = Ask { deadline: Deadline::after(Duration::from_secs(5)), ..ask(&key, "t", 1_000) };
                admission.admit(ask).await.map(|permit| permit.settle(1_000)).is_ok()
            });
        }
    }
    let admitted = asks.join_all().await.into_iter().filter(|ok| *ok).count();
    assert_eq!(admitted, 80, "the quota holds every request");
    // Eight instances race for one item: the losers of a round try again once per renew
    // interval, not at once, so each makes a handful of calls rather than hundreds.
    let ops: u64 = instances.iter().map(|a| a.store_ops()).sum();
    assert!(ops <= 8 * 12, "{ops} store calls for 8 instances starting together");
    assert_eq!(store.book(&key).leases.len(), 8);
}

#[tokio::test(start_paused = true)]
async fn requests_out_of_time_do_not_turn_a_slow_store_into_a_storm_of_calls() {
    let store = MemoryBudgetStore::new();
    store.delay(Duration::from_millis(50));
    let admission = admission(&store, settings(), 1_000_000, 10_000, "a");
    let key = quota_key();
    // Two hundred requests whose deadline is already spent, one a millisecond: until the
    // first lease is taken (two 50 ms calls) each is refused at once, and the one resize they
    // share runs to its end; after it, the lease covers them without a wait.
    let mut refused = 0;
    for _ in 0..200 {
        let late = admission.admit(Ask { deadline: Deadline::after(Duration::ZERO), ..ask(&key, "t", 100) }).await;
        refused += usize::from(late.is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        settle_tasks().await;
    }
    assert!((90..=110).contains(&refused), "{refused} refused");
    assert!(admission.store_ops() <= 4, "{} store calls", admission.store_ops());
    assert_eq!(store.book(&key).leases.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_steady_overload_rewrites_no_lease_that_barely_moves() {
    let store = MemoryBudgetStore::new();
    let instances: Vec<_> =
        (0..3).map(|i| Arc::new(admission(&store, settings(), 30_000, 10_000, &format!("i{i}")))).collect();
    let key = quota_key();
    // Each instance asks twice what its third of the quota allows, every second, for five
    // minutes: shares stay even, so resizes only read, and writes come from the refreshes.
    for _second in 0..300 {
        for admission in &instances {
            for _ in 0..2 {
                let ask = Ask { deadline: Deadline::after(Duration::from_millis(10)), ..ask(&key, "t", 100) };
                let _ = admission.admit(ask).await.map(|p| p.settle(100));
            }
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        settle_tasks().await;
    }
    let writes: u64 = instances.iter().map(|a| a.store_writes()).sum();
    let ops: u64 = instances.iter().map(|a| a.store_ops()).sum();
    // A refresh every 16.5 s is 18 writes per instance in 300 s; a write every resize would
    // be one per second.
    assert!(writes <= 3 * 30, "{writes} writes in 300 s of 3 instances");
    assert!(ops <= 3 * 150, "{ops} store calls in 300 s of 3 instances");
    let book = store.book(&key);
    assert!(lease::held(&book, now_ms()).tokens <= 30_000, "{book:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_degrades_to_the_local_share_and_says_so() {
    let store = MemoryBudgetStore::new();
    store.fail(true);
    let admission = admission(&store, AdmissionSettings { wait: Duration::ZERO, ..settings() }, 10_000, 1_000, "a");
    let key = quota_key();
    // 10 % of 10 000.
    let permit = admission.admit(ask(&key, "t", 1_000)).await.unwrap();
    assert_eq!(permit.report().mode, AdmissionMode::Degraded);
    let refusal = admission.admit(ask(&key, "t", 1)).await.unwrap_err();
    assert_eq!(refusal.mode, AdmissionMode::Degraded);
    drop(permit);
    // The store is tried again once per renew interval, and shared admission resumes.
    store.fail(false);
    tokio::time::advance(settings().renew_interval).await;
    let permit = admission.admit(ask(&key, "t", 1_000)).await.unwrap();
    settle_tasks().await;
    let again = admission.admit(ask(&key, "t", 1_000)).await.unwrap();
    assert_eq!(again.report().mode, AdmissionMode::Shared, "{:?}", permit.report());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_costs_one_store_timeout_then_degrades() {
    let store = MemoryBudgetStore::new();
    store.delay(HANG);
    let settings = settings();
    let admission = admission(&store, settings.clone(), 10_000, 1_000, "a");
    let key = quota_key();
    let started = Instant::now();
    let permit = admission.admit(ask(&key, "t", 500)).await.unwrap();
    assert_eq!(permit.report().mode, AdmissionMode::Degraded);
    assert_eq!(started.elapsed(), settings.store_timeout);
    // Later requests do not wait for the store again.
    let started = Instant::now();
    admission.admit(ask(&key, "t", 100)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[test]
fn the_report_speaks_camel_case_and_snake_case_labels() {
    let report = AdmissionReport {
        quota: "q".into(),
        reserved_tokens: 5,
        waited_ms: 7,
        mode: AdmissionMode::Degraded,
        settled_tokens: None,
    };
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        serde_json::json!({"quota": "q", "reservedTokens": 5, "waitedMs": 7, "mode": "degraded", "settledTokens": null})
    );
    assert_eq!(Limit::TooLarge.as_str(), "too_large");
}
