//! The shared book of leases for one quota, and how an instance resizes its own.
//!
//! One book per [`QuotaKey`](crate::quota::QuotaKey): every instance's lease (tokens and
//! requests it may have in Bedrock's window, until when) and its published demand. The
//! invariant kept by every write is `Σ leases ≤ capacity` over leases not yet expired, where
//! capacity is the quota less the headroom; a lease keeps counting until its expiry whether
//! or not its instance still runs.

use std::collections::BTreeMap;

/// One instance's share of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lease {
    pub tokens: u64,
    pub requests: u64,
    /// Epoch milliseconds after which nobody counts this lease any more.
    pub expires_at_ms: u64,
    /// Tokens and requests the instance asked for over about one window (decayed), waiting
    /// and refused requests included: what it would use if it could.
    pub demand_tokens: u64,
    pub demand_requests: u64,
}

/// Every lease of one quota, with the version that orders writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseBook {
    /// 0 for a book never written.
    pub version: u64,
    pub leases: BTreeMap<String, Lease>,
}

/// An amount in both of a quota's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amount {
    pub tokens: u64,
    pub requests: u64,
}

/// What one instance brings to a resize.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub instance: &'a str,
    /// What its window holds now: the lease may not shrink below it.
    pub usage: Amount,
    pub demand: Amount,
    pub expires_at_ms: u64,
}

/// A lease larger than this many times an instance's demand is more than it can use before
/// its next resize; the rest stays free for instances that arrive meanwhile.
const GROWTH: u64 = 2;

/// The book after `claim` resized its instance's lease at `now_ms`: expired leases of others
/// are dropped, and the lease becomes the instance's demand-proportional part of `capacity`
/// (at most twice its demand, at least its current usage, never more than the others leave).
///
/// Also says whether what the others hold cut the lease below what the instance wanted:
/// then the quota is contended and resizing again soon would not help.
pub(crate) fn resize(book: &LeaseBook, claim: Claim<'_>, capacity: Amount, now_ms: u64) -> (LeaseBook, bool) {
    let others: BTreeMap<String, Lease> = book
        .leases
        .iter()
        .filter(|(instance, lease)| instance.as_str() != claim.instance && lease.expires_at_ms >= now_ms)
        .map(|(instance, lease)| (instance.clone(), *lease))
        .collect();
    let dimension = |capacity: u64, usage: u64, demand: u64, held: fn(&Lease) -> u64, wanted: fn(&Lease) -> u64| {
        let others_hold: u64 = others.values().map(held).sum();
        let free = capacity.saturating_sub(others_hold);
        let total_demand: u128 = others.values().map(|l| u128::from(wanted(l))).sum::<u128>() + u128::from(demand);
        let proportional = (u128::from(capacity) * u128::from(demand))
            .checked_div(total_demand)
            .map_or(0, |share| u64::try_from(share).unwrap_or(capacity));
        let want = proportional.min(demand.saturating_mul(GROWTH)).max(usage);
        (want.min(free), want > free)
    };
    let (tokens, tokens_cut) =
        dimension(capacity.tokens, claim.usage.tokens, claim.demand.tokens, |l| l.tokens, |l| l.demand_tokens);
    let (requests, requests_cut) = dimension(
        capacity.requests,
        claim.usage.requests,
        claim.demand.requests,
        |l| l.requests,
        |l| l.demand_requests,
    );
    let mut leases = others;
    leases.insert(
        claim.instance.to_owned(),
        Lease {
            tokens,
            requests,
            expires_at_ms: claim.expires_at_ms,
            demand_tokens: claim.demand.tokens,
            demand_requests: claim.demand.requests,
        },
    );
    (LeaseBook { version: book.version + 1, leases }, tokens_cut || requests_cut)
}

/// What the unexpired leases of a book hold together.
pub fn held(book: &LeaseBook, now_ms: u64) -> Amount {
    book.leases
        .values()
        .filter(|l| l.expires_at_ms >= now_ms)
        .fold(Amount::default(), |sum, l| Amount { tokens: sum.tokens + l.tokens, requests: sum.requests + l.requests })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Amount = Amount { tokens: 1_000, requests: 100 };

    fn claim(instance: &str, demand_tokens: u64, usage_tokens: u64) -> Claim<'_> {
        Claim {
            instance,
            usage: Amount { tokens: usage_tokens, requests: 0 },
            demand: Amount { tokens: demand_tokens, requests: 10 },
            expires_at_ms: 10_000,
        }
    }

    #[test]
    fn a_lone_instance_takes_twice_its_demand_and_leaves_the_rest_free() {
        let book = resize(&LeaseBook::default(), claim("a", 200, 0), CAP, 0).0;
        assert_eq!(book.version, 1);
        assert_eq!(book.leases["a"].tokens, 400);
        let busy = resize(&book, claim("a", 5_000, 0), CAP, 0).0;
        assert_eq!(busy.leases["a"].tokens, 1_000, "never more than the capacity");
    }

    #[test]
    fn the_sum_never_exceeds_capacity_and_shares_follow_demand() {
        let mut book = LeaseBook::default();
        book = resize(&book, claim("a", 5_000, 0), CAP, 0).0;
        assert_eq!(book.leases["a"].tokens, 1_000);
        // b arrives: a holds everything, so b gets nothing until a gives some back.
        book = resize(&book, claim("b", 5_000, 0), CAP, 0).0;
        assert_eq!(book.leases["b"].tokens, 0);
        // a resizes to its demand-proportional half, b then takes the rest.
        book = resize(&book, claim("a", 5_000, 100), CAP, 0).0;
        assert_eq!(book.leases["a"].tokens, 500);
        book = resize(&book, claim("b", 5_000, 0), CAP, 0).0;
        assert_eq!(book.leases["b"].tokens, 500);
        assert!(held(&book, 0).tokens <= CAP.tokens);
    }

    #[test]
    fn a_lease_never_shrinks_below_usage() {
        let mut book = resize(&LeaseBook::default(), claim("a", 5_000, 0), CAP, 0).0;
        book = resize(&book, claim("b", 5_000, 0), CAP, 0).0;
        book = resize(&book, claim("a", 5_000, 900), CAP, 0).0;
        assert_eq!(book.leases["a"].tokens, 900);
    }

    #[test]
    fn expired_leases_stop_counting_and_are_dropped() {
        let mut book = resize(&LeaseBook::default(), claim("a", 5_000, 0), CAP, 0).0;
        assert_eq!(held(&book, 10_000).tokens, 1_000, "a lease counts until its expiry, inclusive");
        assert_eq!(held(&book, 10_001).tokens, 0);
        book = resize(&book, Claim { expires_at_ms: 20_000, ..claim("b", 5_000, 0) }, CAP, 10_001).0;
        assert_eq!(book.leases.len(), 1);
        assert_eq!(book.leases["b"].tokens, 1_000);
    }
}
