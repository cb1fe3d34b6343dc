//! The in-process targets and their oracles. Each check gets the input bytes alone (any
//! choice it makes is derived from them), so a saved input replays exactly.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::HeaderValue;
use bedrock_emulator::eventstream;
use gateway_core::cache::{self, CacheKey, Tenant};
use gateway_core::catalog::{Catalog, Tier};
use gateway_core::request::{
    ContentBlock, ConverseOutput, ConverseRequest, ConverseResponse, Message, Role, TokenUsage,
};
use gateway_core::routing::features::{CollectSink, extract};
use gateway_core::routing::{Conversation, RouteOverrides, Router, RouterModel, RoutingPolicy};
use gateway_core::splitmix::SplitMix64;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest string header value the event-stream format can carry (`i16::MAX`, as the CRT,
/// Java and Go implementations limit it).
const MAX_HEADER_VALUE_LEN: usize = i16::MAX as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Request,
    Cache,
    Routing,
    EventStream,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Request, Target::Cache, Target::Routing, Target::EventStream];

    pub fn name(self) -> &'static str {
        match self {
            Target::Request => "request",
            Target::Cache => "cache",
            Target::Routing => "routing",
            Target::EventStream => "eventstream",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Seeds a generator from the input itself, for choices that must replay with it.
pub fn input_rng(input: &[u8]) -> SplitMix64 {
    let digest = Sha256::digest(input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    SplitMix64::new(u64::from_le_bytes(first))
}

#[derive(Debug)]
pub struct Harness {
    router: Router,
}

impl Harness {
    pub fn new() -> Result<Harness, String> {
        let model = RouterModel::embedded().map_err(|e| format!("the embedded router model: {e}"))?;
        let catalog = Arc::new(Catalog::embedded().map_err(|e| format!("the embedded catalog: {e}"))?);
        let tiers: BTreeMap<Tier, String> =
            Tier::ALL.iter().map(|t| (*t, catalog.tier_default(*t).to_owned())).collect();
        Ok(Harness { router: Router::new(model, catalog, tiers, RoutingPolicy::default()) })
    }

    /// `Err` names the broken invariant; a panic is caught by the caller.
    pub fn check(&self, target: Target, input: &[u8]) -> Result<(), String> {
        match target {
            Target::Request => check_request(input),
            Target::Cache => check_cache(input),
            Target::Routing => self.check_routing(input),
            Target::EventStream => check_eventstream(input),
        }
    }

    fn check_routing(&self, input: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(input);
        for conversation in [Conversation::from_text(&text), Conversation::from_prompt_cell(&text)] {
            let mut sink = CollectSink::default();
            let extracted = extract(&conversation, &mut sink);
            if let Some(i) = extracted.dense.iter().position(|v| !v.is_finite()) {
                return Err(format!("dense feature {i} is {}", extracted.dense[i]));
            }
            let adequacy = self.router.model().adequacy(&conversation);
            check_probability("adequacy.weak", adequacy.weak)?;
            check_probability("adequacy.mid", adequacy.mid)?;
        }
        let Ok(request) = ConverseRequest::from_json(input) else {
            return Ok(());
        };
        let mut rng = input_rng(input);
        const TIERS: &[&str] = &["haiku", "sonnet", "opus", "Haiku", "", "gpt", "opus "];
        const TOLERANCES: &[&str] = &["0", "10", "100", "-1", "101", "NaN", "inf", "1e999", "5.5", "x", ""];
        let mut choose = |values: &[&'static str]| {
            (rng.below(3) != 0)
                .then(|| values.get(rng.below(values.len() as u64) as usize).copied().unwrap_or_default())
        };
        let (min, max, tolerance) = (choose(TIERS), choose(TIERS), choose(TOLERANCES));
        let Ok(overrides) = RouteOverrides::parse(min, max, tolerance) else {
            return Ok(());
        };
        let decision = self.router.decide(&request, &overrides);
        let (low, high) = self.router.bounds(&overrides);
        if (decision.min_tier, decision.max_tier) != (low, high) || !(low..=high).contains(&decision.tier) {
            return Err(format!(
                "tier {:?} outside the bounds {low:?}..={high:?} (decision says {:?}..={:?})",
                decision.tier, decision.min_tier, decision.max_tier
            ));
        }
        if !(0.0..=100.0).contains(&decision.quality_tolerance) {
            return Err(format!("quality tolerance {} outside 0-100", decision.quality_tolerance));
        }
        if decision.tiers.len() != Tier::ALL.len() {
            return Err(format!("{} tier estimates", decision.tiers.len()));
        }
        for estimate in &decision.tiers {
            check_probability("tier adequacy", estimate.adequacy)?;
            if estimate.expected_cost_usd.is_some_and(|c| !c.is_finite() || c < 0.0) {
                return Err(format!("expected cost {:?} for {:?}", estimate.expected_cost_usd, estimate.tier));
            }
        }
        Ok(())
    }
}

fn check_probability(what: &str, value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) { Ok(()) } else { Err(format!("{what} is {value}, not a probability")) }
}

/// Anything the parser accepts survives serialize -> parse unchanged and keys the cache the
/// same way; anything it rejects is an error, never a panic.
fn check_request(input: &[u8]) -> Result<(), String> {
    if let Ok(value) = serde_json::from_slice::<Value>(input) {
        let canonical = cache::canonical_json(&value);
        serde_json::from_slice::<Value>(&canonical).map_err(|e| format!("canonical JSON does not parse: {e}"))?;
    }
    let Ok(request) = ConverseRequest::from_json(input) else {
        return Ok(());
    };
    let written = serde_json::to_vec(&request).map_err(|e| format!("an accepted request does not serialize: {e}"))?;
    let again = ConverseRequest::from_json(&written)
        .map_err(|e| format!("the serialized form of an accepted request is rejected: {e}"))?;
    if again != request {
        return Err("parse -> serialize -> parse changed the request".into());
    }
    let tenant = Tenant::anonymous();
    if CacheKey::compute(&tenant, "model", &request) != CacheKey::compute(&tenant, "model", &again) {
        return Err("the round-tripped request keys the cache differently".into());
    }
    Ok(())
}

/// decode(encode(x)) == x for every answer, and corrupt stored bytes are an error.
fn check_cache(input: &[u8]) -> Result<(), String> {
    if let Ok(decoded) = cache::decode_response(input) {
        round_trip(&decoded)?;
    }
    let response = match serde_json::from_slice::<ConverseResponse>(input) {
        Ok(response) => Some(response),
        Err(_) => ConverseRequest::from_json(input).ok().map(|request| {
            let content: Vec<ContentBlock> = request.messages.last().map(|m| m.content.clone()).unwrap_or_default();
            let tokens = i64::try_from(input.len()).unwrap_or(i64::MAX);
            ConverseResponse {
                output: ConverseOutput { message: Message { role: Role::Assistant, content } },
                stop_reason: "end_turn".into(),
                usage: TokenUsage {
                    input_tokens: tokens,
                    output_tokens: 1,
                    total_tokens: tokens,
                    ..TokenUsage::default()
                },
                metrics: Default::default(),
                additional_model_response_fields: request.additional_model_request_fields.clone(),
                trace: None,
                performance_config: request.performance_config.clone(),
                service_tier: request.service_tier.clone(),
            }
        }),
    };
    if let Some(response) = response {
        let encoded = round_trip(&response)?;
        // A stored item damaged in one place: decoding may fail, but only with an error.
        if !encoded.is_empty() {
            let mut damaged = encoded;
            let mut rng = input_rng(input);
            let at = rng.below(damaged.len() as u64) as usize;
            if let Some(byte) = damaged.get_mut(at) {
                *byte ^= 1 << rng.below(8);
            }
            damaged.truncate(damaged.len() - rng.below(2) as usize);
            let _ = cache::decode_response(&damaged);
        }
    }
    Ok(())
}

fn round_trip(response: &ConverseResponse) -> Result<Vec<u8>, String> {
    let encoded = cache::encode_response(response).map_err(|e| format!("encode failed: {e}"))?;
    let decoded = cache::decode_response(&encoded).map_err(|e| format!("decode of a fresh encoding failed: {e}"))?;
    if &decoded != response {
        return Err("decode(encode(answer)) differs from the answer".into());
    }
    Ok(encoded)
}

/// Frames the emulator writes decode back, with the SDK's own decoder, to the same headers
/// and payload; frames it cannot write are only those the format cannot hold.
fn check_eventstream(input: &[u8]) -> Result<(), String> {
    // Arbitrary bytes through the SDK's frame decoder: errors only.
    let _ = read_message_from(bytes::Bytes::copy_from_slice(input));

    let (type_name, rest) = match input.split_first() {
        // 0xff asks for the whole rest as the type name, to reach the header-length limit.
        Some((0xff, rest)) => (String::from_utf8_lossy(rest).repeat(1 + rest.len() % 4), rest),
        Some((n, rest)) => {
            let split = usize::from(*n).min(rest.len());
            (String::from_utf8_lossy(&rest[..split]).into_owned(), &rest[split..])
        }
        None => (String::new(), input),
    };
    let payload = serde_json::from_slice::<Value>(rest)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(rest).into_owned()));
    let exception = input.len() % 2 == 1;
    let (message_type, type_header, frame) = if exception {
        ("exception", ":exception-type", eventstream::exception(&type_name, &payload))
    } else {
        ("event", ":event-type", eventstream::event(&type_name, &payload))
    };
    if frame.is_empty() {
        if type_name.len() > MAX_HEADER_VALUE_LEN {
            return Ok(());
        }
        return Err(format!(
            "no frame written for a {}-byte type name and a {}-byte payload",
            type_name.len(),
            payload.to_string().len()
        ));
    }
    let message = read_message_from(frame).map_err(|e| format!("the emulator's frame does not decode: {e}"))?;
    let header = |name: &str| {
        message.headers().iter().find(|h| h.name().as_str() == name).map(|h| match h.value() {
            HeaderValue::String(s) => Ok(s.as_str().to_owned()),
            other => Err(format!("header {name} is {other:?}, not a string")),
        })
    };
    let expect = |name: &str, want: &str| -> Result<(), String> {
        match header(name) {
            Some(Ok(got)) if got == want => Ok(()),
            Some(Ok(got)) => Err(format!("header {name} decodes as {got:?}, wrote {want:?}")),
            Some(Err(e)) => Err(e),
            None => Err(format!("header {name} is missing")),
        }
    };
    expect(":message-type", message_type)?;
    expect(type_header, &type_name)?;
    expect(":content-type", "application/json")?;
    if message.payload().as_ref() != payload.to_string().as_bytes() {
        return Err("the payload decodes differently from what was written".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_accepts_its_seeds_and_the_oracles_can_fail() {
        let harness = Harness::new().unwrap();
        let seed = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        for target in Target::ALL {
            harness.check(target, seed).unwrap();
            harness.check(target, b"\xff\x00{").unwrap();
            assert_eq!(Target::from_name(target.name()), Some(target));
        }
        assert!(check_probability("p", f64::NAN).is_err());
        assert!(check_probability("p", 1.5).is_err());
    }

    #[test]
    fn event_type_names_beyond_the_format_limit_are_the_only_unwritable_frames() {
        let mut input = vec![0xff];
        input.extend(std::iter::repeat_n(b'a', MAX_HEADER_VALUE_LEN));
        // Repeated 1 + len % 4 = 4 times: over the limit, so an empty frame is expected.
        assert_eq!(check_eventstream(&input), Ok(()));
    }
}
