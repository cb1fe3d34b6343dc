//! The CBOR of Smithy RPCv2 as a value tree: decoded generically, then read field by field by
//! the operations, so that one forgiving decoder serves every client's encoding choices
//! (definite or indefinite lengths, half, single or double floats, integer or float epoch
//! seconds).

use std::convert::Infallible;

use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};

/// RFC 8949's tag for epoch-based date/time, the only tag Smithy RPCv2 uses for timestamps.
pub const TIMESTAMP_TAG: u64 = 1;

/// Nested deeper than any CloudWatch shape (a datum's dimension is four levels down), but
/// bounded so that a hostile body cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Cbor {
    Int(i128),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Array(Vec<Cbor>),
    /// Smithy structures and maps always have text keys; the order is the sender's.
    Map(Vec<(String, Cbor)>),
    Bool(bool),
    Null,
    Tagged(u64, Box<Cbor>),
}

impl Cbor {
    /// A structure member; an explicit null counts as absent, as Smithy says it does.
    pub fn field(&self, name: &str) -> Option<&Cbor> {
        match self {
            Cbor::Map(entries) => {
                entries.iter().find(|(key, _)| key == name).map(|(_, value)| value).filter(|v| **v != Cbor::Null)
            }
            _ => None,
        }
    }

    pub fn timestamp(seconds: f64) -> Cbor {
        Cbor::Tagged(TIMESTAMP_TAG, Box::new(Cbor::Float(seconds)))
    }

    pub fn text(value: impl Into<String>) -> Cbor {
        Cbor::Text(value.into())
    }

    pub fn map<const N: usize>(entries: [(&str, Cbor); N]) -> Cbor {
        Cbor::Map(entries.into_iter().map(|(key, value)| (key.to_owned(), value)).collect())
    }
}

/// A body that is not one well-formed CBOR item of the Smithy subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

impl From<minicbor::decode::Error> for DecodeError {
    fn from(e: minicbor::decode::Error) -> Self {
        DecodeError(e.to_string())
    }
}

/// Decodes exactly one item; an empty body is the empty structure, as the protocol allows
/// for inputs without members.
pub fn decode(bytes: &[u8]) -> Result<Cbor, DecodeError> {
    if bytes.is_empty() {
        return Ok(Cbor::Map(Vec::new()));
    }
    let mut decoder = Decoder::new(bytes);
    let value = item(&mut decoder, 0)?;
    if decoder.position() != bytes.len() {
        return Err(DecodeError(format!("{} bytes after the body's CBOR item", bytes.len() - decoder.position())));
    }
    Ok(value)
}

fn item(d: &mut Decoder<'_>, depth: usize) -> Result<Cbor, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    Ok(match d.datatype()? {
        Type::Bool => Cbor::Bool(d.bool()?),
        Type::Null => {
            d.null()?;
            Cbor::Null
        }
        Type::Undefined => {
            d.undefined()?;
            Cbor::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Cbor::Int(i128::from(d.u64()?)),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => Cbor::Int(i128::from(d.int()?)),
        Type::F16 | Type::F32 | Type::F64 => Cbor::Float(d.f64()?),
        Type::String => Cbor::Text(d.str()?.to_owned()),
        Type::StringIndef => {
            let mut text = String::new();
            for chunk in d.str_iter()? {
                text.push_str(chunk?);
            }
            Cbor::Text(text)
        }
        Type::Bytes => Cbor::Bytes(d.bytes()?.to_vec()),
        Type::BytesIndef => {
            let mut bytes = Vec::new();
            for chunk in d.bytes_iter()? {
                bytes.extend_from_slice(chunk?);
            }
            Cbor::Bytes(bytes)
        }
        Type::Array | Type::ArrayIndef => {
            let mut items = Vec::new();
            match d.array()? {
                Some(len) => {
                    for _ in 0..len {
                        items.push(item(d, depth + 1)?);
                    }
                }
                None => {
                    while d.datatype()? != Type::Break {
                        items.push(item(d, depth + 1)?);
                    }
                    d.skip()?;
                }
            }
            Cbor::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let mut entries = Vec::new();
            match d.map()? {
                Some(len) => {
                    for _ in 0..len {
                        entries.push(entry(d, depth)?);
                    }
                }
                None => {
                    while d.datatype()? != Type::Break {
                        entries.push(entry(d, depth)?);
                    }
                    d.skip()?;
                }
            }
            Cbor::Map(entries)
        }
        Type::Tag => {
            let tag = d.tag()?.as_u64();
            Cbor::Tagged(tag, Box::new(item(d, depth + 1)?))
        }
        other => return Err(DecodeError(format!("unexpected CBOR {other} at byte {}", d.position()))),
    })
}

fn entry(d: &mut Decoder<'_>, depth: usize) -> Result<(String, Cbor), DecodeError> {
    let key = match item(d, depth + 1)? {
        Cbor::Text(key) => key,
        other => return Err(DecodeError(format!("a map key that is not text: {other:?}"))),
    };
    Ok((key, item(d, depth + 1)?))
}

/// Definite lengths and 64-bit floats throughout: what every Smithy client decodes. Writing
/// to a Vec cannot fail, but minicbor's error type still has a message case, so it surfaces.
pub fn encode(value: &Cbor) -> Result<Vec<u8>, minicbor::encode::Error<Infallible>> {
    let mut encoder = Encoder::new(Vec::new());
    write(&mut encoder, value)?;
    Ok(encoder.into_writer())
}

fn write(e: &mut Encoder<Vec<u8>>, value: &Cbor) -> Result<(), minicbor::encode::Error<Infallible>> {
    match value {
        Cbor::Int(n) => match (u64::try_from(*n), i64::try_from(*n)) {
            (Ok(u), _) => e.u64(u).map(drop)?,
            (_, Ok(i)) => e.i64(i).map(drop)?,
            // Beyond 64 bits: no CloudWatch member is that wide, so a double is exact enough.
            _ => e.f64(*n as f64).map(drop)?,
        },
        Cbor::Float(x) => e.f64(*x).map(drop)?,
        Cbor::Text(s) => e.str(s).map(drop)?,
        Cbor::Bytes(b) => e.bytes(b).map(drop)?,
        Cbor::Bool(b) => e.bool(*b).map(drop)?,
        Cbor::Null => e.null().map(drop)?,
        Cbor::Array(items) => {
            e.array(items.len() as u64)?;
            for item in items {
                write(e, item)?;
            }
        }
        Cbor::Map(entries) => {
            e.map(entries.len() as u64)?;
            for (key, item) in entries {
                e.str(key)?;
                write(e, item)?;
            }
        }
        Cbor::Tagged(tag, item) => {
            e.tag(Tag::new(*tag))?;
            write(e, item)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn round_trips_the_smithy_subset() {
        let value = Cbor::map([
            ("Namespace", Cbor::text("Gateway")),
            ("Values", Cbor::Array(vec![Cbor::Float(1.5), Cbor::Int(-3), Cbor::Int(u64::MAX.into())])),
            ("Timestamp", Cbor::timestamp(1_700_000_000.25)),
            ("Flag", Cbor::Bool(true)),
            ("Blob", Cbor::Bytes(vec![0, 1, 2])),
        ]);
        assert_eq!(decode(&encode(&value).unwrap()).unwrap(), value);
    }

    #[test]
    fn reads_indefinite_lengths_and_half_floats() {
        // {_ "a": [_ 1.5 (f16), "x" chunked as "x" ], "b": null}
        let bytes = [0xbf, 0x61, b'a', 0x9f, 0xf9, 0x3e, 0x00, 0x7f, 0x61, b'x', 0xff, 0xff, 0x61, b'b', 0xf6, 0xff];
        let value = decode(&bytes).unwrap();
        assert_eq!(value.field("a"), Some(&Cbor::Array(vec![Cbor::Float(1.5), Cbor::text("x")])));
        assert_eq!(value.field("b"), None, "null is absent");
    }

    #[test]
    fn refuses_trailing_bytes_non_text_keys_and_deep_nesting() {
        assert!(decode(&[0xa0, 0x00]).is_err());
        assert!(decode(&[0xa1, 0x01, 0x02]).is_err());
        let deep: Vec<u8> = std::iter::repeat_n(0x81, 100).chain([0x00]).collect();
        assert!(decode(&deep).is_err());
        assert_eq!(decode(&[]).unwrap(), Cbor::Map(Vec::new()));
    }
}
