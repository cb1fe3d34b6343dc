//! The fair order in which requests that do not fit wait: start-time fair queuing by tenant.
//!
//! Every request gets a start tag `max(V, F_tenant)` and its tenant's finish tag moves to
//! `start + tokens / weight`; waiting requests are served in start-tag order and `V` becomes
//! the start tag of the request last admitted. A tenant that sends more than its share
//! therefore queues behind the others while they have work, and takes whatever they leave
//! (unused share is lent): the order only matters when requests wait. Requests admitted at
//! once also move their tenant's tags, so a tenant cannot bank an advantage while the budget
//! is plentiful.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Weights per tenant (`TENANT_SHARES`, e.g. `acme=3,globex=1,*=1`); `*` is every other tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantShares {
    weights: BTreeMap<String, u32>,
    default: u32,
}

impl Default for TenantShares {
    /// Every tenant alike.
    fn default() -> Self {
        TenantShares { weights: BTreeMap::new(), default: 1 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharesError {
    #[error("`{0}` is not `tenant=weight`")]
    Malformed(String),
    #[error("tenant `{tenant}` has share `{weight}`: a share is a whole number from 1 to 1000")]
    BadWeight { tenant: String, weight: String },
    #[error("tenant `{0}` is given a share twice")]
    Repeated(String),
}

/// The largest weight: beyond it the ratio to a share of 1 stops meaning anything.
const MAX_WEIGHT: u32 = 1_000;

impl TenantShares {
    pub fn parse(text: &str) -> Result<TenantShares, SharesError> {
        let mut shares = TenantShares::default();
        let mut default_seen = false;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((tenant, weight)) = part.split_once('=') else {
                return Err(SharesError::Malformed(part.to_owned()));
            };
            let (tenant, weight_text) = (tenant.trim(), weight.trim());
            if tenant.is_empty() {
                return Err(SharesError::Malformed(part.to_owned()));
            }
            let weight =
                weight_text.parse::<u32>().ok().filter(|w| (1..=MAX_WEIGHT).contains(w)).ok_or_else(|| {
                    SharesError::BadWeight { tenant: tenant.to_owned(), weight: weight_text.to_owned() }
                })?;
            if tenant == "*" {
                if std::mem::replace(&mut default_seen, true) {
                    return Err(SharesError::Repeated(tenant.to_owned()));
                }
                shares.default = weight;
            } else if shares.weights.insert(tenant.to_owned(), weight).is_some() {
                return Err(SharesError::Repeated(tenant.to_owned()));
            }
        }
        Ok(shares)
    }

    pub fn weight(&self, tenant: &str) -> u32 {
        self.weights.get(tenant).copied().unwrap_or(self.default)
    }
}

impl fmt::Display for TenantShares {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (tenant, weight) in &self.weights {
            write!(f, "{tenant}={weight},")?;
        }
        write!(f, "*={}", self.default)
    }
}

/// Virtual time in fixed point, so tags order exactly.
type Tag = u128;
const SCALE: Tag = 1 << 20;

/// A place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticket {
    start: Tag,
    seq: u64,
}

#[derive(Debug)]
struct Waiting {
    tenant: String,
    tokens: u64,
    finish: Tag,
}

#[derive(Debug, Default)]
pub(crate) struct FairQueue {
    virtual_time: Tag,
    finish: HashMap<String, Tag>,
    waiting: BTreeMap<Ticket, Waiting>,
    next_seq: u64,
}

/// Finish tags at or behind the virtual time no longer change anyone's order.
const PRUNE_ABOVE: usize = 4_096;

impl FairQueue {
    pub(crate) fn enqueue(&mut self, tenant: &str, weight: u32, tokens: u64) -> Ticket {
        let previous = self.finish.get(tenant).copied().unwrap_or(0);
        let start = previous.max(self.virtual_time);
        let finish = start + Tag::from(tokens.max(1)) * SCALE / Tag::from(weight.max(1));
        self.finish.insert(tenant.to_owned(), finish);
        let ticket = Ticket { start, seq: self.next_seq };
        self.next_seq += 1;
        self.waiting.insert(ticket, Waiting { tenant: tenant.to_owned(), tokens, finish });
        ticket
    }

    pub(crate) fn is_head(&self, ticket: Ticket) -> bool {
        self.waiting.keys().next() == Some(&ticket)
    }

    /// Tokens of the requests that will be served before this one.
    pub(crate) fn tokens_ahead(&self, ticket: Ticket) -> u64 {
        self.waiting.range(..ticket).map(|(_, w)| w.tokens).sum()
    }

    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    pub(crate) fn queued_tokens(&self) -> u64 {
        self.waiting.values().map(|w| w.tokens).sum()
    }

    pub(crate) fn admit(&mut self, ticket: Ticket) {
        if self.waiting.remove(&ticket).is_some() {
            self.virtual_time = self.virtual_time.max(ticket.start);
        }
        if self.finish.len() > PRUNE_ABOVE {
            let now = self.virtual_time;
            self.finish.retain(|_, finish| *finish > now);
        }
    }

    /// A request that gave up or was refused received no service: its tenant's finish tag
    /// goes back if nothing was queued after it.
    pub(crate) fn leave(&mut self, ticket: Ticket) {
        if let Some(waiting) = self.waiting.remove(&ticket)
            && self.finish.get(&waiting.tenant) == Some(&waiting.finish)
        {
            self.finish.insert(waiting.tenant, ticket.start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_and_a_zero_share_names_its_tenant() {
        let shares = TenantShares::parse("acme=3, globex=1,*=2").unwrap();
        assert_eq!(shares.weight("acme"), 3);
        assert_eq!(shares.weight("globex"), 1);
        assert_eq!(shares.weight("initech"), 2);
        assert_eq!(TenantShares::parse("").unwrap(), TenantShares::default());
        let err = TenantShares::parse("acme=3,globex=0").unwrap_err();
        assert!(err.to_string().contains("globex"), "{err}");
        assert!(matches!(TenantShares::parse("acme"), Err(SharesError::Malformed(_))));
        assert!(matches!(TenantShares::parse("=2"), Err(SharesError::Malformed(_))));
        assert!(matches!(TenantShares::parse("acme=1,acme=2"), Err(SharesError::Repeated(_))));
        assert!(matches!(TenantShares::parse("acme=1.5"), Err(SharesError::BadWeight { .. })));
        assert!(matches!(TenantShares::parse("acme=1001"), Err(SharesError::BadWeight { .. })));
        assert_eq!(TenantShares::parse(&shares.to_string()).unwrap(), shares);
    }

    /// Serves the queue head after head, each tenant re-queueing at once: what admission
    /// does when every tenant always has work waiting.
    fn served_by_tenant(weights: &[(&str, u32)], rounds: usize) -> HashMap<String, usize> {
        let mut queue = FairQueue::default();
        let mut served = HashMap::new();
        for (tenant, weight) in weights {
            queue.enqueue(tenant, *weight, 100);
        }
        for _ in 0..rounds {
            let (ticket, tenant) = queue.waiting.iter().next().map(|(t, w)| (*t, w.tenant.clone())).unwrap();
            queue.admit(ticket);
            *served.entry(tenant.clone()).or_insert(0) += 1;
            let weight = weights.iter().find(|(t, _)| *t == tenant).unwrap().1;
            queue.enqueue(&tenant, weight, 100);
        }
        served
    }

    #[test]
    fn backlogged_tenants_are_served_in_proportion_to_their_shares() {
        let served = served_by_tenant(&[("acme", 3), ("globex", 1)], 400);
        assert_eq!(served["acme"], 300);
        assert_eq!(served["globex"], 100);
    }

    #[test]
    fn a_tenant_that_used_the_plentiful_budget_does_not_jump_the_queue_later() {
        let mut queue = FairQueue::default();
        // acme was admitted at once many times while nobody waited.
        for _ in 0..50 {
            let t = queue.enqueue("acme", 1, 100);
            queue.admit(t);
        }
        let acme = queue.enqueue("acme", 1, 100);
        let globex = queue.enqueue("globex", 1, 100);
        assert!(queue.is_head(globex));
        assert_eq!(queue.tokens_ahead(acme), 100);
        queue.leave(globex);
        assert!(queue.is_head(acme), "a lone tenant takes the whole budget");
    }
}
