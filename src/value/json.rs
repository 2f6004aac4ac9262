//! Args and values as JSON, through serde_json: what the command line
//! prints and reads, and what the demo and the examples print.
//!
//! The mapping is documented on the `value` module.

use super::{Args, Value};
use crate::error::{Error, ErrorCode, Result};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::fmt::Write as _;

/// The key of the one-key object that stands for bytes.
pub(crate) const BYTES_KEY: &str = "$bytes";

/// A value seen as JSON (its own `Serialize` is the wire form).
struct Json<'a>(&'a Value);

/// Args seen as a JSON object.
struct JsonMap<'a>(&'a Args);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(n) => s.serialize_i64(*n),
            // serde_json writes NaN and the infinities as null.
            Value::Float(x) => s.serialize_f64(*x),
            Value::Str(text) => s.serialize_str(text),
            Value::Bytes(bytes) => {
                let mut hex = String::with_capacity(bytes.len() * 2);
                for byte in bytes {
                    let _ = write!(hex, "{byte:02x}");
                }
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(BYTES_KEY, &hex)?;
                map.end()
            }
            Value::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            Value::Map(args) => JsonMap(args).serialize(s),
        }
    }
}

impl Serialize for JsonMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0.iter() {
            map.serialize_entry(name, &Json(value))?;
        }
        map.end()
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidArgument, message)
}

/// Parses `text` as one JSON document.
fn parse(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| invalid(format!("bad JSON: {e}")))
}

/// Converts parsed JSON to a value (serde_json has already bounded the
/// nesting at 128 levels, the same as [`crate::MAX_DEPTH`]).
fn from_json_value(json: serde_json::Value) -> Result<Value> {
    Ok(match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if n.is_u64() {
                return Err(invalid(format!(
                    "the integer {n} does not fit in 64 signed bits"
                )));
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(text) => Value::Str(text),
        serde_json::Value::Array(items) => Value::List(
            items
                .into_iter()
                .map(from_json_value)
                .collect::<Result<_>>()?,
        ),
        serde_json::Value::Object(map) => {
            if map.len() == 1 {
                if let Some(hex) = map.get(BYTES_KEY) {
                    return bytes_from_hex(hex).map(Value::Bytes);
                }
            }
            Value::Map(map_from_json(map)?)
        }
    })
}

fn map_from_json(map: serde_json::Map<String, serde_json::Value>) -> Result<Args> {
    map.into_iter()
        .map(|(name, value)| Ok((name, from_json_value(value)?)))
        .collect()
}

fn bytes_from_hex(hex: &serde_json::Value) -> Result<Vec<u8>> {
    let bad = || {
        invalid(format!(
            "{{\"{BYTES_KEY}\":…}} wants a string of hex digits, two a byte, not {hex}"
        ))
    };
    let text = hex.as_str().ok_or_else(bad)?.as_bytes();
    if text.len() % 2 != 0 {
        return Err(bad());
    }
    text.chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

impl Value {
    /// The value as compact JSON (see the [module docs](crate::value) for
    /// the mapping; bytes become `{"$bytes":"<hex>"}`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Json(self)).expect("a value always serializes to JSON")
    }

    /// Reads one JSON document as a value: the inverse of
    /// [`Value::to_json`] for every value but non-finite floats. Bad JSON,
    /// an integer beyond 64 signed bits or a malformed `$bytes` object is
    /// an [`ErrorCode::InvalidArgument`].
    pub fn from_json(text: &str) -> Result<Value> {
        from_json_value(parse(text)?)
    }
}

impl Args {
    /// The args as a compact JSON object, keys in name order (bytes
    /// become `{"$bytes":"<hex>"}`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&JsonMap(self)).expect("args always serialize to JSON")
    }

    /// Reads a JSON object as args (values as in [`Value::from_json`]).
    /// Anything but an object is an [`ErrorCode::InvalidArgument`].
    pub fn from_json(text: &str) -> Result<Args> {
        match parse(text)? {
            serde_json::Value::Object(map) => map_from_json(map),
            other => Err(invalid(format!(
                "args must be a JSON object {{\"name\":value,…}}, not {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_orders_keys() {
        let args = Args::new()
            .with("b", "q\"uote\n\u{1}")
            .with(
                "a",
                vec![Value::Int(1), Value::Null, Value::Float(f64::NAN)],
            )
            .with("c", vec![0xffu8, 0])
            .with("d", Value::Float(1.0));
        assert_eq!(
            args.to_json(),
            r#"{"a":[1,null,null],"b":"q\"uote\n\u0001","c":{"$bytes":"ff00"},"d":1.0}"#
        );
    }

    #[test]
    fn json_reads_back_what_it_prints() {
        let args = Args::new()
            .with(
                "xs",
                vec![Value::Int(1), Value::Float(2.5), Value::Bool(true)],
            )
            .with("m", Args::new().with("k", "v").with("n", Value::Null))
            .with("b", vec![0u8, 0xab, 0xff])
            .with("s", "é\n");
        assert_eq!(Args::from_json(&args.to_json()).unwrap(), args);
        assert_eq!(
            Value::from_json(r#"{"$bytes":"00AbfF"}"#).unwrap(),
            Value::Bytes(vec![0, 0xab, 0xff])
        );
        // With a second key it is a map.
        assert!(matches!(
            Value::from_json(r#"{"$bytes":"00","x":1}"#).unwrap(),
            Value::Map(_)
        ));
    }

    #[test]
    fn bad_json_is_an_invalid_argument() {
        for (text, why) in [
            ("[1,2]", "must be a JSON object"),
            ("{\"a\":", "bad JSON"),
            ("{\"a\":18446744073709551615}", "does not fit"),
            ("{\"a\":{\"$bytes\":\"abc\"}}", "hex digits"),
            ("{\"a\":{\"$bytes\":\"zz\"}}", "hex digits"),
            ("{\"a\":{\"$bytes\":1}}", "hex digits"),
        ] {
            let e = Args::from_json(text).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{text}");
            assert!(e.message.contains(why), "{text}: {}", e.message);
        }
    }
}
