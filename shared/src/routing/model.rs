//! The routing model: linear outputs over the features of [`super::features`] (one per
//! cheaper tier: under v2 Haiku's is a prompt's ease on an item-response scale and Sonnet's
//! its proxy pairs' agreement, under v1 both are pair agreements; then the answer length),
//! the scoring that turns them into each tier's adequacy, and the tolerance tables, stored
//! as one versioned binary artifact embedded in every function.
//!
//! Format (little-endian): magic `BRRM`, format version, hash bits, dense count, output
//! count, feature fingerprint, a length-prefixed description, then f32 arrays: dense means,
//! dense scales, per output its bias and dense weights, per tier (Haiku, Sonnet) its scale
//! `(a, b)` and the output it reads, the scoring (0 = Platt, or 1 and the three tier
//! abilities), the hashed weights interleaved by output (one cache line serves them all),
//! and the calibration tables.

use std::sync::OnceLock;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::features::{BUCKETS, CHARGRAM_BYTES, Conversation, DENSE, DENSE_NAMES, FeatureSink, HASH_BITS, MAX_WORDS};
use super::features::{Extracted, extract};

const MAGIC: &[u8; 4] = b"BRRM";
/// 3 adds the item-response scoring (tier abilities against a predicted difficulty);
/// 2 added the answer-length output and said which output each tier's Platt scale reads;
/// 1 had exactly one logistic output per tier.
pub const FORMAT_VERSION: u32 = 3;
/// Cheaper tiers with a calibration of their own (Haiku and Sonnet, each against Opus).
pub const HEADS: usize = 2;
/// Linear outputs over the features, each with a bias, dense and hashed weights: two
/// logistic outputs the tiers read (which one each reads is in [`RouterModel::tier_output`]),
/// then the answer length.
pub const OUTPUTS: usize = 3;
/// Natural log of the expected answer length in tokens.
pub const LOG_OUTPUT_TOKENS: usize = 2;
/// Tolerance tables hold one entry per whole percent, 0 to 100.
pub const TOLERANCE_STEPS: usize = 101;

static EMBEDDED: &[u8] = include_bytes!("../../router/model.bin");

/// Which cheaper tier a head speaks for, always against the strongest tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// The cheapest tier (Haiku) against the strongest (Opus).
    Weak = 0,
    /// The middle tier (Sonnet) against the strongest.
    Mid = 1,
}

/// Predicted probability that a tier's answer is as good as the strongest tier's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Adequacy {
    pub weak: f64,
    pub mid: f64,
}

/// What the model predicts of one conversation in one pass over its features.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prediction {
    pub adequacy: Adequacy,
    /// Expected length of the answer in tokens, before any `maxTokens` cap.
    pub output_tokens: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("router model artifact is truncated or corrupt: {0}")]
    Corrupt(&'static str),
    #[error("router model artifact has format {found}, this build reads {expected}")]
    Format { found: u32, expected: u32 },
    #[error("router model artifact was trained on other features (retrain with `cargo xtask train-router`)")]
    Features,
}

/// How a tier's adequacy follows from its output's logit `x` and the tier's `(a, b)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scoring {
    /// Router v1: `sigmoid(a·x + b)`, a probability fitted to proxy pairs' agreement.
    Platt,
    /// `a·x + b` is minus the prompt's difficulty `d` on an item-response scale where a tier
    /// of ability θ answers adequately with probability `sigmoid(θ − d)`; the adequacy is
    /// the tier's expected quality relative to the strongest tier's,
    /// `sigmoid(θ_tier − d) / sigmoid(θ_strongest − d)`.
    ItemResponse {
        /// Haiku, Sonnet, Opus.
        abilities: [f32; 3],
    },
}

/// Thresholds on predicted adequacy that keep the quality drop within a tolerance,
/// calibrated on validation data. Index = tolerance in whole percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Two tiers: route to the cheaper one when its adequacy reaches the threshold.
    pub two_tier: [Vec<f32>; HEADS],
    /// Three tiers: weakest when its adequacy reaches the first threshold, else the middle
    /// one when its adequacy reaches the second, else the strongest.
    pub three_tier: Vec<[f32; 2]>,
}

impl Calibration {
    /// Tolerances between the table's whole percents round down: the promise never loosens.
    fn index(tolerance_percent: f64) -> usize {
        if tolerance_percent.is_nan() {
            return 0;
        }
        (tolerance_percent.clamp(0.0, 100.0).floor() as usize).min(TOLERANCE_STEPS - 1)
    }

    pub fn two_tier_threshold(&self, head: Head, tolerance_percent: f64) -> f64 {
        f64::from(self.two_tier[head as usize][Self::index(tolerance_percent)])
    }

    pub fn three_tier_thresholds(&self, tolerance_percent: f64) -> (f64, f64) {
        let [weak, mid] = self.three_tier[Self::index(tolerance_percent)];
        (f64::from(weak), f64::from(mid))
    }
}

/// The trained parameters; [`RouterModel::to_bytes`] and [`RouterModel::from_bytes`] are exact inverses.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterModel {
    pub description: String,
    pub dense_mean: [f32; DENSE],
    pub dense_scale: [f32; DENSE],
    pub bias: [f32; OUTPUTS],
    /// Per tier ([`Head`]): the scale from its output's logit to the tier's adequacy.
    pub platt: [(f32, f32); HEADS],
    /// Per tier: the output its Platt scale reads.
    pub tier_output: [u32; HEADS],
    pub scoring: Scoring,
    pub dense_weights: [[f32; DENSE]; OUTPUTS],
    /// `BUCKETS * OUTPUTS` weights, output-interleaved.
    pub hashed: Vec<f32>,
    pub calibration: Calibration,
    version: String,
}

/// Identifies the feature layout the weights belong to.
pub fn feature_fingerprint() -> u64 {
    let mut hasher = Sha256::new();
    for name in DENSE_NAMES {
        hasher.update(name.as_bytes());
        hasher.update([0]);
    }
    hasher.update(HASH_BITS.to_le_bytes());
    hasher.update((MAX_WORDS as u64).to_le_bytes());
    hasher.update((CHARGRAM_BYTES as u64).to_le_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

struct DotSink<'m> {
    weights: &'m [f32],
    acc: [f32; OUTPUTS],
}

impl FeatureSink for DotSink<'_> {
    #[inline]
    fn hashed(&mut self, bucket: usize, sign: f32) {
        let at = bucket * OUTPUTS;
        if let Some(weights) = self.weights.get(at..at + OUTPUTS) {
            for (acc, w) in self.acc.iter_mut().zip(weights) {
                *acc += sign * w;
            }
        }
    }
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Hashed features are scaled by 1/sqrt(count) so that a long prompt's many n-grams do not
/// swamp the dense measurements (which already carry its length).
pub(crate) fn hashed_norm(count: u32) -> f32 {
    if count == 0 { 0.0 } else { 1.0 / (count as f32).sqrt() }
}

impl RouterModel {
    /// The artifact built into this binary, parsed once.
    pub fn embedded() -> Result<&'static RouterModel, &'static ModelError> {
        static MODEL: OnceLock<Result<RouterModel, ModelError>> = OnceLock::new();
        MODEL.get_or_init(|| RouterModel::from_bytes(EMBEDDED)).as_ref()
    }

    /// The artifact's bytes as embedded, for reproducibility checks.
    pub fn embedded_bytes() -> &'static [u8] {
        EMBEDDED
    }

    /// `v1-` and the first 12 hex digits of the artifact's SHA-256: changes with any weight.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    pub fn adequacy(&self, conversation: &Conversation<'_>) -> Adequacy {
        self.predict(conversation).adequacy
    }

    pub fn predict(&self, conversation: &Conversation<'_>) -> Prediction {
        let mut sink = DotSink { weights: &self.hashed, acc: [0.0; OUTPUTS] };
        let extracted = extract(conversation, &mut sink);
        let outputs = self.logits(&extracted, sink.acc);
        let tier = |head: Head| self.calibrate(head, outputs[self.tier_output[head as usize] as usize]);
        Prediction {
            adequacy: Adequacy { weak: tier(Head::Weak), mid: tier(Head::Mid) },
            output_tokens: outputs[LOG_OUTPUT_TOKENS].clamp(0.0, 20.0).exp(),
        }
    }

    /// Raw outputs from extracted features and the outputs' sums over the hashed features.
    pub(crate) fn logits(&self, extracted: &Extracted, hashed_sums: [f32; OUTPUTS]) -> [f64; OUTPUTS] {
        let z = self.standardize(&extracted.dense);
        let norm = hashed_norm(extracted.hashed);
        let mut out = [0f64; OUTPUTS];
        for (head, logit) in out.iter_mut().enumerate() {
            let dense: f32 = self.dense_weights[head].iter().zip(z.iter()).map(|(w, x)| w * x).sum();
            *logit = f64::from(self.bias[head] + dense + norm * hashed_sums[head]);
        }
        out
    }

    /// A tier's adequacy from the logit of the output it reads.
    pub(crate) fn calibrate(&self, head: Head, logit: f64) -> f64 {
        let (a, b) = self.platt[head as usize];
        let scaled = f64::from(a) * logit + f64::from(b);
        match self.scoring {
            Scoring::Platt => sigmoid(scaled),
            Scoring::ItemResponse { abilities } => {
                let chance = |tier: usize| sigmoid(f64::from(abilities[tier]) + scaled);
                (chance(head as usize) / chance(2).max(f64::MIN_POSITIVE)).min(1.0)
            }
        }
    }

    pub(crate) fn standardize(&self, dense: &[f32; DENSE]) -> [f32; DENSE] {
        let mut z = [0f32; DENSE];
        for d in 0..DENSE {
            z[d] = (dense[d] - self.dense_mean[d]) * self.dense_scale[d];
        }
        z
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.hashed.len() * 4 + 4096);
        out.extend_from_slice(MAGIC);
        for v in [FORMAT_VERSION, HASH_BITS, DENSE as u32, OUTPUTS as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&feature_fingerprint().to_le_bytes());
        out.extend_from_slice(&(self.description.len() as u32).to_le_bytes());
        out.extend_from_slice(self.description.as_bytes());
        let mut floats = |values: &[f32]| {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        };
        floats(&self.dense_mean);
        floats(&self.dense_scale);
        for output in 0..OUTPUTS {
            floats(&[self.bias[output]]);
            floats(&self.dense_weights[output]);
        }
        for head in 0..HEADS {
            floats(&[self.platt[head].0, self.platt[head].1, self.tier_output[head] as f32]);
        }
        match self.scoring {
            Scoring::Platt => floats(&[0.0, 0.0, 0.0, 0.0]),
            Scoring::ItemResponse { abilities } => {
                floats(&[1.0]);
                floats(&abilities);
            }
        }
        floats(&self.hashed);
        for table in &self.calibration.two_tier {
            floats(table);
        }
        for pair in &self.calibration.three_tier {
            floats(pair);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<RouterModel, ModelError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4)? != MAGIC {
            return Err(ModelError::Corrupt("not a router model (bad magic)"));
        }
        let format = reader.u32()?;
        if format != FORMAT_VERSION {
            return Err(ModelError::Format { found: format, expected: FORMAT_VERSION });
        }
        let (bits, dense, heads) = (reader.u32()?, reader.u32()?, reader.u32()?);
        let fingerprint = reader.u64()?;
        if bits != HASH_BITS
            || dense as usize != DENSE
            || heads as usize != OUTPUTS
            || fingerprint != feature_fingerprint()
        {
            return Err(ModelError::Features);
        }
        let description_len = reader.u32()? as usize;
        let description = std::str::from_utf8(reader.take(description_len)?)
            .map_err(|_| ModelError::Corrupt("description is not UTF-8"))?
            .to_owned();
        let dense_mean = reader.array::<DENSE>()?;
        let dense_scale = reader.array::<DENSE>()?;
        let mut bias = [0f32; OUTPUTS];
        let mut dense_weights = [[0f32; DENSE]; OUTPUTS];
        for output in 0..OUTPUTS {
            let [b] = reader.array::<1>()?;
            bias[output] = b;
            dense_weights[output] = reader.array::<DENSE>()?;
        }
        let mut platt = [(0f32, 0f32); HEADS];
        let mut tier_output = [0u32; HEADS];
        for head in 0..HEADS {
            let [a, c, output] = reader.array::<3>()?;
            if !(output == 0.0 || output == 1.0) {
                return Err(ModelError::Corrupt("a tier reads no logistic output"));
            }
            platt[head] = (a, c);
            tier_output[head] = output as u32;
        }
        let [kind, haiku, sonnet, opus] = reader.array::<4>()?;
        let scoring = match kind {
            0.0 => Scoring::Platt,
            1.0 if [haiku, sonnet, opus].iter().all(|v| v.is_finite()) => {
                Scoring::ItemResponse { abilities: [haiku, sonnet, opus] }
            }
            _ => return Err(ModelError::Corrupt("unknown scoring")),
        };
        let hashed = reader.floats(BUCKETS * OUTPUTS)?;
        let two_tier = [reader.floats(TOLERANCE_STEPS)?, reader.floats(TOLERANCE_STEPS)?];
        let mut three_tier = Vec::with_capacity(TOLERANCE_STEPS);
        for _ in 0..TOLERANCE_STEPS {
            three_tier.push(reader.array::<2>()?);
        }
        if reader.at != bytes.len() {
            return Err(ModelError::Corrupt("trailing bytes"));
        }
        let all_finite = hashed.iter().chain(dense_mean.iter()).chain(dense_scale.iter()).all(|v| v.is_finite());
        if !all_finite {
            return Err(ModelError::Corrupt("non-finite weights"));
        }
        let digest = Sha256::digest(bytes);
        let version = format!("v{FORMAT_VERSION}-{}", &hex::encode(digest)[..12]);
        Ok(RouterModel {
            description,
            dense_mean,
            dense_scale,
            bias,
            platt,
            tier_output,
            scoring,
            dense_weights,
            hashed,
            calibration: Calibration { two_tier, three_tier },
            version,
        })
    }

    /// A model built in memory (by training); its version is that of its serialised form.
    pub fn with_computed_version(mut self) -> RouterModel {
        let digest = Sha256::digest(self.to_bytes());
        self.version = format!("v{FORMAT_VERSION}-{}", &hex::encode(digest)[..12]);
        self
    }

    /// An untrained model (every prompt scores 0.5) to start training from.
    pub fn zeroed(description: String) -> RouterModel {
        RouterModel {
            description,
            dense_mean: [0.0; DENSE],
            dense_scale: [1.0; DENSE],
            bias: [0.0; OUTPUTS],
            platt: [(1.0, 0.0); HEADS],
            tier_output: [0, 1],
            scoring: Scoring::Platt,
            dense_weights: [[0.0; DENSE]; OUTPUTS],
            hashed: vec![0.0; BUCKETS * OUTPUTS],
            calibration: Calibration {
                two_tier: [vec![1.0; TOLERANCE_STEPS], vec![1.0; TOLERANCE_STEPS]],
                three_tier: vec![[1.0, 1.0]; TOLERANCE_STEPS],
            },
            version: String::new(),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        let end = self.at.checked_add(n).ok_or(ModelError::Corrupt("length overflow"))?;
        let slice = self.bytes.get(self.at..end).ok_or(ModelError::Corrupt("truncated"))?;
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, ModelError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, ModelError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn floats(&mut self, n: usize) -> Result<Vec<f32>, ModelError> {
        let raw = self.take(n * 4)?;
        Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn array<const N: usize>(&mut self) -> Result<[f32; N], ModelError> {
        let mut out = [0f32; N];
        for (slot, value) in out.iter_mut().zip(self.floats(N)?) {
            *slot = value;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_round_trips_exactly() {
        let mut model = RouterModel::zeroed("test".into());
        model.hashed[7] = 0.25;
        model.dense_weights[1][3] = -1.5;
        model.calibration.three_tier[10] = [0.8, 0.6];
        let model = model.with_computed_version();
        let bytes = model.to_bytes();
        let back = RouterModel::from_bytes(&bytes).unwrap();
        assert_eq!(back, model);
        assert_eq!(back.to_bytes(), bytes);
        assert!(back.version().starts_with("v3-"));

        let mut scored = back.clone();
        scored.scoring = Scoring::ItemResponse { abilities: [-0.5, 0.25, 1.0] };
        let scored = scored.with_computed_version();
        assert_eq!(RouterModel::from_bytes(&scored.to_bytes()).unwrap(), scored);
    }

    /// Item-response adequacy is the tier's chance relative to the strongest's: near 1 on an
    /// easy prompt (everybody answers), lower on a hard one, never above 1.
    #[test]
    fn item_response_adequacy_falls_with_difficulty() {
        let mut model = RouterModel::zeroed(String::new());
        model.scoring = Scoring::ItemResponse { abilities: [0.0, 0.5, 1.0] };
        // a = 1, b = 0: the logit is minus the difficulty.
        let easy = model.calibrate(Head::Weak, 4.0);
        let hard = model.calibrate(Head::Weak, -2.0);
        let mid_hard = model.calibrate(Head::Mid, -2.0);
        assert!(easy > 0.95 && easy <= 1.0, "{easy}");
        assert!(hard < easy && mid_hard > hard, "{hard} {mid_hard}");
        assert!((hard - sigmoid(-2.0) / sigmoid(-1.0)).abs() < 1e-12);
    }

    #[test]
    fn corrupt_artifacts_are_rejected() {
        let bytes = RouterModel::zeroed(String::new()).to_bytes();
        assert!(matches!(RouterModel::from_bytes(&bytes[..bytes.len() - 1]), Err(ModelError::Corrupt(_))));
        assert!(matches!(RouterModel::from_bytes(b"nope"), Err(ModelError::Corrupt(_))));
        let mut wrong_format = bytes.clone();
        wrong_format[4] = 9;
        assert!(matches!(RouterModel::from_bytes(&wrong_format), Err(ModelError::Format { found: 9, .. })));
    }

    #[test]
    fn the_embedded_artifact_loads_and_is_small() {
        let model = RouterModel::embedded().unwrap();
        assert!(RouterModel::embedded_bytes().len() < 2 * 1024 * 1024);
        let easy = model.adequacy(&Conversation::from_text("What is the capital of France?"));
        assert!((0.0..=1.0).contains(&easy.weak) && (0.0..=1.0).contains(&easy.mid));
    }

    /// The answer-length output, learned from the shipped answers' lengths, tells a one-line
    /// request from an essay.
    #[test]
    fn the_embedded_artifact_predicts_answer_lengths() {
        let model = RouterModel::embedded().unwrap();
        let short = model.predict(&Conversation::from_text("Say thank you in Japanese.")).output_tokens;
        let essay = model
            .predict(&Conversation::from_text(
                "Write a detailed essay comparing the economic policies of three countries, with an introduction, \
                 several sections with examples and data, and a conclusion.",
            ))
            .output_tokens;
        eprintln!("predicted answer tokens: short {short:.0}, essay {essay:.0}");
        assert!(short.is_finite() && essay.is_finite() && short >= 1.0);
        assert!(essay > short * 1.5, "short {short}, essay {essay}");
    }

    #[test]
    fn tolerance_lookups_round_down_and_clamp() {
        let mut model = RouterModel::zeroed(String::new());
        model.calibration.two_tier[0] = (0..TOLERANCE_STEPS).map(|i| 1.0 - i as f32 / 100.0).collect();
        let c = &model.calibration;
        assert_eq!(c.two_tier_threshold(Head::Weak, 10.9), f64::from(1.0f32 - 0.10));
        assert_eq!(c.two_tier_threshold(Head::Weak, -5.0), 1.0);
        assert_eq!(c.two_tier_threshold(Head::Weak, 250.0), f64::from(0.0f32));
        assert_eq!(c.two_tier_threshold(Head::Weak, f64::NAN), 1.0);
    }
}
