//! The mutation engine: bytewise changes and JSON-aware ones, stacked a few at a time.

use gateway_core::splitmix::SplitMix64;
use serde_json::Value;

use crate::json::{self, Json};

/// Byte sequences no UTF-8 decoder may accept: a lone continuation byte, an overlong
/// encoding, a surrogate, a truncated four-byte sequence, bytes above U+10FFFF.
const INVALID_UTF8: &[&[u8]] =
    &[b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xff\xfe"];

/// Tokens that matter to a JSON reader, inserted at random positions.
const TOKENS: &[&[u8]] =
    &[b"{", b"}", b"[", b"]", b"\"", b",", b":", b"\\", b"\\u", b"\\ud800", b"null", b"-", b"e9999"];

pub fn bytewise(input: &mut Vec<u8>, rng: &mut SplitMix64, donor: &[u8]) {
    let len = input.len() as u64;
    let at = |rng: &mut SplitMix64| rng.below(len + 1) as usize;
    match rng.below(9) {
        0 => {
            if let Some(byte) = input.get_mut(rng.below(len) as usize) {
                *byte ^= 1 << rng.below(8);
            }
        }
        1 => {
            let position = at(rng);
            input.insert(position.min(input.len()), rng.next_u64() as u8);
        }
        2 => {
            let start = at(rng).min(input.len());
            let end = (start + 1 + rng.below(16) as usize).min(input.len());
            input.drain(start..end);
        }
        3 => {
            // Splice: a slice of another input replaces the tail from a random point.
            let start = at(rng).min(input.len());
            let from = rng.below(donor.len() as u64 + 1) as usize;
            input.truncate(start);
            input.extend_from_slice(donor.get(from..).unwrap_or_default());
        }
        4 => input.truncate(at(rng)),
        5 => {
            let position = at(rng).min(input.len());
            let bytes = INVALID_UTF8.get(rng.below(INVALID_UTF8.len() as u64) as usize).copied().unwrap_or_default();
            input.splice(position..position, bytes.iter().copied());
        }
        6 => {
            let position = at(rng).min(input.len());
            let token = TOKENS.get(rng.below(TOKENS.len() as u64) as usize).copied().unwrap_or_default();
            input.splice(position..position, token.iter().copied());
        }
        7 => {
            // Duplicate a range in place: repeated keys, repeated blocks.
            let start = at(rng).min(input.len());
            let end = (start + rng.below(64) as usize).min(input.len());
            let copy: Vec<u8> = input.get(start..end).map(<[u8]>::to_vec).unwrap_or_default();
            input.splice(end..end, copy);
        }
        _ => {
            if let Some(byte) = input.get_mut(rng.below(len) as usize) {
                *byte = [0, 0x7f, 0xff, b' ', b'0', b'9'][rng.below(6) as usize];
            }
        }
    }
}

/// One to four stacked mutations, JSON-aware while the input still parses.
pub fn mutate(seed: &[u8], donor: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut input = seed.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let structural = rng.below(3) != 0;
        let parsed = if structural { serde_json::from_slice::<Value>(&input).ok() } else { None };
        match parsed {
            Some(value) => {
                let mut tree = Json::from(&value);
                let donor_tree = serde_json::from_slice::<Value>(donor).ok().map(|v| Json::from(&v));
                json::mutate(&mut tree, rng, donor_tree.as_ref());
                input = tree.to_text().into_bytes();
            }
            None => bytewise(&mut input, rng, donor),
        }
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_mutations_reach_invalid_utf8_duplicates_and_truncation() {
        let seed = br#"{"messages":[{"role":"user","content":[{"text":"hello"}]}]}"#;
        let mut rng = SplitMix64::new(1);
        let outputs: Vec<Vec<u8>> = (0..4000).map(|_| mutate(seed, seed, &mut rng)).collect();
        assert!(outputs.iter().any(|o| std::str::from_utf8(o).is_err()));
        assert!(outputs.iter().any(|o| o.len() < seed.len() / 2));
        assert!(outputs.iter().any(|o| String::from_utf8_lossy(o).matches("\"role\"").count() > 1));
        assert!(outputs.iter().any(|o| serde_json::from_slice::<Value>(o).is_ok() && o.as_slice() != seed));
    }
}
