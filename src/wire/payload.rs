//! The opaque payload of a call, a result or a signal: encoded
//! [`crate::Args`], forwarded by the broker without decoding, and decoded
//! by its receiver within a bound.
//!
//! Separate from the frames because the decoding bound is its own
//! concern (a small frame must not decode into a large value).

use super::codec::{put_bytes, put_varint};
use super::{bytes, codec, DECODE_FACTOR, DEFAULT_MAX_DECODED};
use crate::error::Error;
use crate::value::Value;
use serde::{Deserialize, Serialize};

/// An opaque payload: encoded [`crate::Args`]. The broker forwards it
/// without decoding it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Payload(#[serde(with = "bytes")] pub Vec<u8>);

impl Payload {
    /// Encodes args into a payload.
    pub fn encode(args: &crate::Args) -> Payload {
        // Room for typical small args at once, rather than growing
        // through 8, 16, 32… bytes with a reallocation each.
        let mut out = Vec::with_capacity(128);
        Payload::encode_into(args, &mut out);
        Payload(out)
    }

    /// Appends the encoding of args (a payload's bytes) to `out`.
    ///
    /// Written by hand in the form serde gives them through bincode's
    /// standard configuration (a map of names to `Value`s, each `Value`
    /// its variant's index and its data; tested against serde's bytes
    /// below): every call's args are encoded so, and serde's machinery
    /// per element cost more than the bytes.
    pub(crate) fn encode_into(args: &crate::Args, out: &mut Vec<u8>) {
        put_varint(out, args.len() as u64);
        for (name, value) in args.iter() {
            put_bytes(out, name.as_bytes());
            put_value(out, value);
        }
    }

    /// Decodes the args of a payload, within the default decoding limit
    /// ([`Payload::decode_within`] with [`DEFAULT_MAX_DECODED`]).
    pub fn decode(&self) -> Result<crate::Args, Error> {
        self.decode_within(DEFAULT_MAX_DECODED)
    }

    /// Decodes the args of a payload, failing with a `protocol` error
    /// when they would take more than [`DECODE_FACTOR`] times the
    /// payload's size (plus 4 KiB), or more than `max` bytes, in memory:
    /// a payload of tiny elements (16 million nulls) is refused instead
    /// of growing to many times its size.
    pub fn decode_within(&self, max: usize) -> Result<crate::Args, Error> {
        Payload::decode_bytes(&self.0, max)
    }

    /// [`Payload::decode_within`] of a payload's bytes where they lie
    /// (in a received frame).
    pub(crate) fn decode_bytes(bytes: &[u8], max: usize) -> Result<crate::Args, Error> {
        let budget = bytes
            .len()
            .saturating_mul(DECODE_FACTOR)
            .saturating_add(4096)
            .min(max);
        let decoded = crate::value::decode_budget(budget, || {
            bincode::serde::decode_from_slice(bytes, codec::config())
        });
        match decoded {
            Ok((args, used)) if used == bytes.len() => Ok(args),
            Ok(_) => Err(Error::new(
                crate::ErrorCode::Protocol,
                "payload has trailing bytes",
            )),
            Err(e) => Err(Error::new(
                crate::ErrorCode::Protocol,
                format!("malformed payload: {}", codec::decode_error_text(&e)),
            )),
        }
    }
}

/// Appends `value` as its derived serde form writes it: the variant's
/// index in `Value`'s declaration order, then its data (an integer
/// zigzagged to a varint, a float's eight bytes, a length before strings,
/// bytes, lists and maps).
fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => put_varint(out, 0),
        Value::Bool(b) => {
            put_varint(out, 1);
            out.push(u8::from(*b));
        }
        Value::Int(i) => {
            put_varint(out, 2);
            put_varint(out, ((*i << 1) ^ (*i >> 63)) as u64);
        }
        Value::Float(f) => {
            put_varint(out, 3);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Str(s) => {
            put_varint(out, 4);
            put_bytes(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            put_varint(out, 5);
            put_bytes(out, b);
        }
        Value::List(items) => {
            put_varint(out, 6);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Map(args) => {
            put_varint(out, 7);
            Payload::encode_into(args, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Args;

    /// What serde writes for `args` through bincode's configuration.
    fn by_serde(args: &Args) -> Vec<u8> {
        let mut out = Vec::new();
        bincode::serde::encode_into_std_write(args, &mut out, codec::config()).unwrap();
        out
    }

    #[test]
    fn args_encode_by_hand_as_serde_encodes_them() {
        let ints = [
            0,
            1,
            -1,
            125,
            -126,
            250,
            251,
            -300,
            65_535,
            1 << 40,
            i64::MIN,
            i64::MAX,
        ];
        let floats = [0.0, -0.0, 1.5, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE];
        let mut every = Args::new()
            .with("null", Value::Null)
            .with("yes", true)
            .with("no", false)
            .with("text", "é and more")
            .with("long", "x".repeat(70_000))
            .with("bytes", vec![3u8; 300])
            .with("none", Vec::<u8>::new());
        for (i, n) in ints.iter().enumerate() {
            every = every.with(format!("i{i}"), *n);
        }
        for (i, f) in floats.iter().enumerate() {
            every = every.with(format!("f{i}"), *f);
        }
        let list = Value::List(vec![
            Value::Int(-5),
            Value::Str("s".into()),
            Value::List(vec![]),
        ]);
        let nested = every.clone().with("list", list.clone());
        let deep = Args::new()
            .with("map", Value::Map(nested.clone()))
            .with("list", Value::List(vec![Value::Map(nested.clone()), list]));
        let wide = (0..300).fold(Args::new(), |a, i| a.with(format!("k{i}"), i));
        for args in [
            Args::new(),
            Args::new().with("data", vec![b'x'; 64]),
            every,
            nested,
            deep,
            wide,
        ] {
            let mut out = vec![9];
            Payload::encode_into(&args, &mut out);
            assert_eq!(out[1..], by_serde(&args)[..], "{args:?}");
            assert_eq!(
                Payload(out[1..].to_vec()).decode().unwrap().len(),
                args.len()
            );
        }
    }
}
