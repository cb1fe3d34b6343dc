//! In-process single-flight: concurrent callers with the same key share one piece of work.
//!
//! The first caller of a key becomes its leader and runs its own `work`; callers arriving
//! while it runs follow and receive what the leader publishes. The leader keeps its own
//! result (`T`) and publishes a shareable view of it (`V`), so a result that cannot be cloned
//! (an error with a boxed source) still reaches every follower.
//!
//! Nothing hangs and nothing leaks: the leader's entry leaves the map when the leader
//! finishes, and also when its future is dropped or unwinds, in which case the channel closes
//! and one of the waiting followers becomes the next leader and runs its own `work`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// What one caller of [`SingleFlight::run`] got.
#[derive(Debug)]
pub enum Flight<T, V> {
    /// This caller ran the work; its own result.
    Led(T),
    /// Another caller ran it; what that leader published.
    Followed(Arc<V>),
}

type Published<V> = watch::Receiver<Option<Arc<V>>>;

/// Work in flight, by key.
#[derive(Debug)]
pub struct SingleFlight<K, V> {
    /// Each entry carries its leader's generation so that a finished leader never removes
    /// the entry of the leader that replaced it.
    in_flight: Mutex<HashMap<K, (u64, Published<V>)>>,
    generation: AtomicU64,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight { in_flight: Mutex::new(HashMap::new()), generation: AtomicU64::new(0) }
    }
}

enum Role<'a, K: Eq + Hash, V> {
    Lead(Leader<'a, K, V>),
    Follow(Published<V>),
}

impl<K: Eq + Hash, V> SingleFlight<K, V> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, (u64, Published<V>)>> {
        // No code panics while holding the lock; a poisoned map is still consistent.
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keys with a leader at work; 0 once every caller has returned or been dropped.
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

impl<K: Eq + Hash + Clone, V> SingleFlight<K, V> {
    /// Runs `work` unless a caller with the same key already runs it, in which case this one
    /// waits for the value that caller publishes. `share` builds that value from the
    /// leader's result and runs only when someone is waiting for it.
    pub async fn run<T, Fut>(&self, key: K, work: impl FnOnce() -> Fut, share: impl FnOnce(&T) -> V) -> Flight<T, V>
    where
        Fut: Future<Output = T>,
    {
        loop {
            let mut published = match self.join(&key) {
                Role::Follow(published) => published,
                Role::Lead(leader) => {
                    let result = work().await;
                    leader.publish(|| share(&result));
                    return Flight::Led(result);
                }
            };
            // The first check sees a value published before this follower subscribed; an
            // error means the leader was dropped without publishing: try to lead instead.
            if let Ok(value) = published.wait_for(Option::is_some).await
                && let Some(value) = value.as_ref()
            {
                return Flight::Followed(value.clone());
            }
        }
    }

    fn join(&self, key: &K) -> Role<'_, K, V> {
        let mut in_flight = self.lock();
        if let Some((_, published)) = in_flight.get(key) {
            return Role::Follow(published.clone());
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = watch::channel(None);
        in_flight.insert(key.clone(), (generation, receiver));
        Role::Lead(Leader { flights: self, key: key.clone(), generation, sender })
    }
}

/// The running leader of one key. Dropping it, published or not, removes its entry.
struct Leader<'a, K: Eq + Hash, V> {
    flights: &'a SingleFlight<K, V>,
    key: K,
    generation: u64,
    sender: watch::Sender<Option<Arc<V>>>,
}

impl<K: Eq + Hash, V> Leader<'_, K, V> {
    fn publish(self, value: impl FnOnce() -> V) {
        self.retire();
        // Removed from the map, the entry gains no new followers: the receivers left are the
        // callers waiting now.
        if self.sender.receiver_count() > 0 {
            self.sender.send_replace(Some(Arc::new(value())));
        }
    }

    fn retire(&self) {
        let mut in_flight = self.flights.lock();
        if in_flight.get(&self.key).is_some_and(|(generation, _)| *generation == self.generation) {
            in_flight.remove(&self.key);
        }
    }
}

impl<K: Eq + Hash, V> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        // Runs before `sender` is dropped, so a follower woken by the closed channel never
        // finds this stale entry again.
        self.retire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::join_all;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    async fn slow(runs: &AtomicUsize, value: u32) -> u32 {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        value
    }

    #[tokio::test]
    async fn concurrent_callers_of_one_key_share_one_run() {
        let flights: SingleFlight<&str, u32> = SingleFlight::default();
        let runs = &AtomicUsize::new(0);
        let outcomes = join_all((0..8).map(|i| flights.run("k", move || slow(runs, i), |v| *v))).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let led: Vec<u32> =
            outcomes.iter().filter_map(|o| if let Flight::Led(v) = o { Some(*v) } else { None }).collect();
        assert_eq!(led.len(), 1);
        for outcome in &outcomes {
            if let Flight::Followed(v) = outcome {
                assert_eq!(**v, led[0]);
            }
        }
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn different_keys_never_share() {
        let flights: SingleFlight<u32, u32> = SingleFlight::default();
        let runs = AtomicUsize::new(0);
        let runs = &runs;
        let outcomes = join_all((0..4).map(|i| flights.run(i, move || slow(runs, i), |v| *v))).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert!(outcomes.iter().all(|o| matches!(o, Flight::Led(_))));
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_over_to_a_follower() {
        let flights: Arc<SingleFlight<&str, u32>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let leader = {
            let (flights, runs) = (flights.clone(), runs.clone());
            tokio::spawn(async move {
                flights
                    .run(
                        "k",
                        || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::future::pending::<u32>().await
                        },
                        |v| *v,
                    )
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let follower = {
            let (flights, runs) = (flights.clone(), runs.clone());
            tokio::spawn(async move { flights.run("k", || slow(&runs, 7), |v| *v).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        let outcome = tokio::time::timeout(Duration::from_secs(2), follower).await.unwrap().unwrap();
        assert!(matches!(outcome, Flight::Led(7)), "the follower took over and ran its own work");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn nothing_is_shared_without_followers_and_nothing_stays_behind() {
        let flights: SingleFlight<&str, String> = SingleFlight::default();
        let shared = AtomicUsize::new(0);
        let outcome = flights
            .run(
                "k",
                || async { 1 },
                |v: &u32| {
                    shared.fetch_add(1, Ordering::SeqCst);
                    v.to_string()
                },
            )
            .await;
        assert!(matches!(outcome, Flight::Led(1)));
        assert_eq!(shared.load(Ordering::SeqCst), 0);
        assert_eq!(flights.in_flight(), 0);
        // A later caller leads a new run instead of reading a stale value.
        assert!(matches!(flights.run("k", || async { 2 }, |v: &u32| v.to_string()).await, Flight::Led(2)));
    }
}
