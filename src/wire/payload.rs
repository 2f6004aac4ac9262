//! The opaque payload of a call, a result or a signal: encoded
//! [`crate::Args`], forwarded by the broker without decoding, and decoded
//! by its receiver within a bound.
//!
//! Separate from the frames because the decoding bound is its own
//! concern (a small frame must not decode into a large value).

use super::{bytes, codec, DECODE_FACTOR, DEFAULT_MAX_DECODED};
use crate::error::Error;
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
    pub(crate) fn encode_into(args: &crate::Args, out: &mut Vec<u8>) {
        // Encoding into a Vec cannot fail for our types.
        let _ = bincode::serde::encode_into_std_write(args, out, codec::config());
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
