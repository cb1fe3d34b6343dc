//! awsJson1_0, the protocol boto3 picks for CloudWatch (it ranks `json` above
//! `smithy-rpc-v2-cbor` among the model's protocols): JSON documents mapped onto the same
//! value tree the CBOR codec yields, so one operation layer serves both. Timestamps are
//! epoch-seconds numbers here, untagged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

use super::cbor::{Cbor, TIMESTAMP_TAG};

pub fn decode(bytes: &[u8]) -> Result<Cbor, serde_json::Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Cbor::Map(Vec::new()));
    }
    serde_json::from_slice::<Value>(bytes).map(|value| from_json(&value))
}

fn from_json(value: &Value) -> Cbor {
    match value {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cbor::Int(i.into()),
            (_, Some(u)) => Cbor::Int(u.into()),
            _ => Cbor::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cbor::Text(s.clone()),
        Value::Array(items) => Cbor::Array(items.iter().map(from_json).collect()),
        Value::Object(entries) => Cbor::Map(entries.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

pub fn encode(value: &Cbor) -> Value {
    match value {
        Cbor::Int(n) => match (i64::try_from(*n), u64::try_from(*n)) {
            (Ok(i), _) => Value::from(i),
            (_, Ok(u)) => Value::from(u),
            _ => float(*n as f64),
        },
        Cbor::Float(x) => float(*x),
        Cbor::Text(s) => Value::String(s.clone()),
        Cbor::Bytes(b) => Value::String(BASE64.encode(b)),
        Cbor::Bool(b) => Value::Bool(*b),
        Cbor::Null => Value::Null,
        Cbor::Array(items) => Value::Array(items.iter().map(encode).collect()),
        Cbor::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.clone(), encode(v))).collect::<Map<_, _>>()),
        Cbor::Tagged(TIMESTAMP_TAG, seconds) => encode(seconds),
        Cbor::Tagged(_, inner) => encode(inner),
    }
}

/// JSON has no NaN or infinity; the operations never produce them, and null is the honest
/// rendering if one slipped through.
fn float(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn maps_json_onto_the_value_tree_and_back() {
        let value = decode(br#"{"Namespace":"N","MetricData":[{"Value":1.5,"Counts":[2]}],"Flag":true}"#).unwrap();
        let datum = &value.field("MetricData").map(|d| match d {
            Cbor::Array(items) => items[0].clone(),
            _ => panic!("{d:?}"),
        });
        assert_eq!(datum.as_ref().unwrap().field("Value"), Some(&Cbor::Float(1.5)));
        let out = encode(&Cbor::map([("T", Cbor::timestamp(1_700_000_000.0)), ("N", Cbor::Int(3))]));
        assert_eq!(out, serde_json::json!({"T": 1_700_000_000.0, "N": 3}));
        assert_eq!(decode(b"").unwrap(), Cbor::Map(Vec::new()));
    }
}
