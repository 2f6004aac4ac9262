//! The opaque payload of a call, a result or a signal: encoded
//! [`crate::Args`], forwarded by the broker without decoding, and decoded
//! by its receiver within a bound.
//!
//! Separate from the frames because the decoding bound is its own
//! concern (a small frame must not decode into a large value).

use super::codec::{put_bytes, put_varint};
use super::{bytes, codec, scan, DECODE_FACTOR, DEFAULT_MAX_DECODED};
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
        // Received args still unchanged are their bytes.
        if let Some(bytes) = args.encoded() {
            out.extend_from_slice(bytes);
            return;
        }
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
    ///
    /// The bytes are checked by the validating scan ([`super::scan`])
    /// and kept, to decode when the args are first read; only a payload
    /// the scan refuses goes through the decoder here, for its error.
    pub(crate) fn decode_bytes(bytes: &[u8], max: usize) -> Result<crate::Args, Error> {
        let budget = Payload::budget(bytes.len(), max);
        match scan::args(bytes, budget) {
            Some(s) if s.entries == 0 => Ok(crate::Args::new()),
            Some(_) => Ok(crate::Args::received(bytes)),
            // The decoder's error (or, should it take what the scan did
            // not, its args).
            None => Payload::decode_eagerly(bytes, budget),
        }
    }

    /// The decoded size a payload of `len` bytes may take, at most `max`.
    fn budget(len: usize, max: usize) -> usize {
        len.saturating_mul(DECODE_FACTOR)
            .saturating_add(4096)
            .min(max)
    }

    /// Decodes args at once with serde's decoder within `budget` bytes
    /// of decoded size: what received args are read with, and the error
    /// of a payload the scan refused.
    pub(crate) fn decode_eagerly(bytes: &[u8], budget: usize) -> Result<crate::Args, Error> {
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

/// The entries of received bytes the scan accepted (see
/// [`crate::Args`]): decoded without a budget, since the scan checked
/// it at receipt.
pub(crate) fn decode_checked(bytes: &[u8]) -> Vec<(String, Value)> {
    match Payload::decode_eagerly(bytes, usize::MAX) {
        Ok(args) => args.into_entries(),
        Err(e) => {
            // The scan accepts only what the decoder does (tested):
            // unreachable, and empty args rather than a panic.
            debug_assert!(false, "scanned args failed to decode: {e}");
            Vec::new()
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

    /// Args of every kind of value, nested and wide.
    fn every_kind() -> Vec<Args> {
        let list = Value::List(vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Float(f64::NAN),
            Value::Float(-0.0),
            Value::Str("é".into()),
            Value::Bytes(vec![0, 255]),
            Value::List(vec![]),
            Value::Map(Args::new()),
        ]);
        let every = Args::new()
            .with("null", Value::Null)
            .with("yes", true)
            .with("int", i64::MAX)
            .with("f", 1.5)
            .with("text", "x".repeat(3000))
            .with("bytes", vec![7u8; 64])
            .with("list", list.clone());
        let mut deep = Value::Int(1);
        for _ in 0..crate::value::MAX_DEPTH {
            deep = Value::List(vec![deep]);
        }
        vec![
            Args::new().with("data", vec![b'x'; 64]),
            Args::new().with("a", 1),
            every.clone(),
            Args::new()
                .with("m", Value::Map(every.clone()))
                .with("l", Value::List(vec![Value::Map(every), list])),
            Args::new().with("deep", deep),
            (0..300).fold(Args::new(), |a, i| a.with(format!("k{i}"), i)),
        ]
    }

    #[test]
    fn received_args_read_as_eagerly_decoded_ones_and_send_as_received() {
        for args in every_kind() {
            let bytes = Payload::encode(&args).0;
            let eager = Payload::decode_eagerly(&bytes, usize::MAX).unwrap();
            let lazy = Payload::decode_bytes(&bytes, DEFAULT_MAX_DECODED).unwrap();
            assert_eq!(lazy.encoded(), Some(&bytes[..]), "kept as received");
            // Sent on unchanged: the same bytes, not decoded.
            let clone = lazy.clone();
            assert_eq!(Payload::encode(&clone).0, bytes);
            assert_eq!(clone.decoded(), Some(false));
            // Read: the same entries (printed, since NaN is not equal to
            // itself), the decoding shared with the clone.
            assert_eq!(format!("{lazy:?}"), format!("{eager:?}"));
            assert_eq!(clone.decoded(), Some(true));
            assert_eq!(lazy.len(), eager.len());
            for (name, value) in eager.iter() {
                assert_eq!(
                    format!("{:?}", lazy.get(name)),
                    format!("{:?}", Some(value))
                );
            }
            assert_eq!(
                serde_json::to_string(&lazy).unwrap(),
                serde_json::to_string(&eager).unwrap()
            );
            assert_eq!(lazy.to_json(), eager.to_json());
            // Changed: no longer the bytes received; the clone keeps them.
            let mut changed = lazy.clone();
            changed.insert("zz", 1);
            assert_eq!(changed.encoded(), None);
            assert_eq!(changed.len(), eager.len() + 1);
            assert_eq!(clone.encoded(), Some(&bytes[..]));
            let mut removed = Payload::decode_bytes(&bytes, DEFAULT_MAX_DECODED).unwrap();
            let first = eager.iter().next().unwrap().0.clone();
            assert!(removed.remove(&first).is_some());
            assert_eq!(removed.len(), eager.len() - 1);
            assert_eq!(
                Payload::encode(&removed).0,
                by_serde(&removed),
                "encoded from the entries"
            );
            // Taken apart: the same entries as the eager ones.
            let a: Vec<_> = lazy.into_iter().map(|(k, v)| format!("{k}{v:?}")).collect();
            let b: Vec<_> = eager
                .into_iter()
                .map(|(k, v)| format!("{k}{v:?}"))
                .collect();
            assert_eq!(a, b);
        }
        // Equal args compare equal whichever way they were decoded.
        let plain = Args::new().with("a", 1).with("b", "x");
        let bytes = Payload::encode(&plain).0;
        let lazy = Payload::decode_bytes(&bytes, DEFAULT_MAX_DECODED).unwrap();
        assert_eq!(lazy, plain);
        assert_eq!(
            plain,
            Payload::decode_bytes(&bytes, DEFAULT_MAX_DECODED).unwrap()
        );
        assert_ne!(lazy, Args::new().with("a", 2).with("b", "x"));
        // Empty args stay empty, with nothing allocated.
        let empty = Payload::decode_bytes(&[0], DEFAULT_MAX_DECODED).unwrap();
        assert_eq!(empty.decoded(), None);
        // Repeated and unsorted names read as the eager decoding has
        // them (the last value kept), and go on as received.
        let repeated = vec![3, 1, b'b', 2, 2, 1, b'a', 2, 4, 1, b'b', 2, 6];
        let lazy = Payload::decode_bytes(&repeated, DEFAULT_MAX_DECODED).unwrap();
        assert_eq!(Payload::encode(&lazy).0, repeated);
        assert_eq!(lazy, Args::new().with("a", 2).with("b", 3));
        assert_eq!(lazy.len(), 2);
    }

    #[test]
    fn malformed_payloads_are_refused_at_receipt_with_the_decoders_error() {
        let good = Payload::encode(&Args::new().with("x", "text").with("y", 1)).0;
        let mut bad_utf8 = good.clone();
        let at = bad_utf8.iter().position(|&b| b == b't').unwrap();
        bad_utf8[at] = 0xff;
        let mut deep = vec![1, 1, b'x'];
        for _ in 0..=crate::value::MAX_DEPTH {
            deep.extend_from_slice(&[6, 1]);
        }
        deep.push(0);
        let mut nulls = vec![1, 1, b'x', 6, 0xfc];
        nulls.extend_from_slice(&(1u32 << 20).to_le_bytes());
        nulls.resize(nulls.len() + (1 << 20), 0);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 1].to_vec(), "too early"),
            ([&good[..], &[0]].concat(), "trailing bytes"),
            (bad_utf8, "UTF-8"),
            (vec![1, 1, b'x', 9], "variant index"),
            (vec![1, 1, b'x', 1, 2], "malformed payload"),
            (deep, "nested deeper than 128"),
            (vec![], "too early"),
        ];
        for (bytes, says) in cases {
            let e = Payload::decode_bytes(&bytes, DEFAULT_MAX_DECODED).unwrap_err();
            let eager =
                Payload::decode_eagerly(&bytes, Payload::budget(bytes.len(), DEFAULT_MAX_DECODED))
                    .unwrap_err();
            assert_eq!(e, eager);
            assert_eq!(e.code, crate::ErrorCode::Protocol);
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
        // Over the decoding limit: refused at receipt too.
        let e = Payload::decode_bytes(&nulls, 8 << 20).unwrap_err();
        assert!(e.message.contains("decoding limit"), "{}", e.message);
    }
}
