//! Per-prompt choice of Claude tier: the cheapest tier whose answer is predicted to be as
//! good as the strongest allowed tier's, within the deployer's quality tolerance.
//!
//! * [`features`]: what the router reads of a conversation, in bounded time.
//! * [`model`]: the embedded, versioned weights and their calibration.
//! * [`policy`]: tiers, knobs and overrides turned into a [`RouteDecision`].
//! * `dataset` and `train` (feature `training`): the shipped outcome data and the
//!   deterministic training that produces the artifact.

pub mod eval;
pub mod features;
pub mod model;
pub mod policy;

#[cfg(feature = "training")]
pub mod candidate;
#[cfg(feature = "training")]
pub mod dataset;
#[cfg(feature = "training")]
pub mod irt;
#[cfg(feature = "training")]
pub mod train;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use features::{Conversation, Speaker, Turn};
pub use model::{Adequacy, Calibration, Head, ModelError, Prediction, RouterModel};
pub use policy::{RouteDecision, RouteError, RouteOverrides, RouteReason, Router, RoutingPolicy, TierEstimate};

/// The fixed partition of outcome data: 60 % train, 20 % validation, 20 % test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// The split a prompt belongs to, from a hash of its trimmed text: the same prompt lands in
/// the same split in every dataset and every run, so a prompt repeated across datasets can
/// never be trained on and tested on.
pub fn split_of(prompt: &str) -> Split {
    let digest = Sha256::digest(prompt.trim().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    match u64::from_le_bytes(first) % 100 {
        0..60 => Split::Train,
        60..80 => Split::Validation,
        _ => Split::Test,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_stable_and_roughly_proportional() {
        assert_eq!(split_of("What is 2+2?"), split_of("  What is 2+2?\n"));
        let mut counts = [0usize; 3];
        for i in 0..3_000 {
            counts[split_of(&format!("prompt {i}")) as usize] += 1;
        }
        assert!((1_650..1_950).contains(&counts[0]), "{counts:?}");
        assert!((500..700).contains(&counts[1]), "{counts:?}");
        assert!((500..700).contains(&counts[2]), "{counts:?}");
    }
}
