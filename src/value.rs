//! Args: named, typed values carried by requests and responses.
//!
//! A [`Value`] is null, a bool, a 64-bit integer, a float, a UTF-8 string,
//! a byte string, a list or a map; [`Args`] is a map from names to values,
//! kept sorted by name so that printing and comparing are deterministic.
//!
//! # JSON
//!
//! [`Value::to_json`], [`Args::to_json`] and their `from_json`
//! inverses (serde_json underneath) map values to JSON and back:
//!
//! | value            | JSON                                        |
//! |------------------|---------------------------------------------|
//! | `Null`           | `null`                                      |
//! | `Bool`           | `true` / `false`                            |
//! | `Int`            | an integer (`-3`)                           |
//! | `Float`          | a number with a fraction or exponent (`1.5`); NaN and infinities print as `null` |
//! | `Str`            | a string                                    |
//! | `Bytes`          | `{"$bytes":"<hex>"}` (two lowercase hex digits a byte; either case is read) |
//! | `List`           | an array                                    |
//! | `Map`, [`Args`]  | an object, keys in name order               |
//!
//! Reading, an integer beyond the 64-bit signed range is refused rather
//! than rounded to a float, and an object whose only key is `$bytes` is
//! always bytes (so a map cannot have `$bytes` as its only key).

use crate::wire::text::Text;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

mod json;

/// One typed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Value {
    /// No value (Perl's undef, C's NULL).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(#[serde(deserialize_with = "crate::wire::text::deserialize")] String),
    /// Arbitrary bytes.
    Bytes(#[serde(with = "crate::wire::bytes")] Vec<u8>),
    /// An ordered list.
    List(#[serde(deserialize_with = "nesting::list")] Vec<Value>),
    /// A map from names to values.
    Map(#[serde(deserialize_with = "nesting::map")] Args),
}

/// How deep lists and maps may nest in a decoded value. Decoding
/// recurses once per level, so without a bound a peer's payload of a few
/// hundred kilobytes of nested lists would overflow the receiver's stack.
pub const MAX_DEPTH: usize = 128;

/// Counts the nesting of the value being decoded on this thread.
mod nesting {
    use super::{Args, Value, MAX_DEPTH};
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use std::cell::Cell;

    thread_local! {
        static DEPTH: Cell<usize> = const { Cell::new(0) };
    }

    /// One level of nesting, left when dropped (also on error).
    struct Level;

    impl Level {
        fn enter<E: Error>() -> Result<Level, E> {
            DEPTH.with(|depth| {
                if depth.get() >= MAX_DEPTH {
                    return Err(E::custom(format!(
                        "values nested deeper than {MAX_DEPTH} levels"
                    )));
                }
                depth.set(depth.get() + 1);
                Ok(Level)
            })
        }
    }

    impl Drop for Level {
        fn drop(&mut self) {
            DEPTH.with(|depth| depth.set(depth.get() - 1));
        }
    }

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
        let _level = Level::enter()?;
        Vec::deserialize(d)
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<Args, D::Error> {
        let _level = Level::enter()?;
        Args::deserialize(d)
    }
}

/// Named values: the arguments of a request, emit, recall or return.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct Args(BTreeMap<String, Value>);

impl<'de> Deserialize<'de> for Args {
    /// A map, as the derived form would read it, with the names read
    /// through `wire::text` (one copy each, not a zero-filled buffer
    /// first). A repeated name keeps its last value.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Args, D::Error> {
        struct ArgsVisitor;
        impl<'de> serde::de::Visitor<'de> for ArgsVisitor {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of names to values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Args, M::Error> {
                let mut args = BTreeMap::new();
                while let Some((Text(name), value)) = map.next_entry::<Text, Value>()? {
                    args.insert(name, value);
                }
                Ok(Args(args))
            }
        }
        d.deserialize_map(ArgsVisitor)
    }
}

impl Args {
    /// An empty map.
    pub fn new() -> Self {
        Args(BTreeMap::new())
    }

    /// Builder form of [`Args::insert`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(name, value);
        self
    }

    /// Sets `name` to `value`, returning the previous value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.0.insert(name.into(), value.into())
    }

    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Removes and returns the value named `name`.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }
}

impl FromIterator<(String, Value)> for Args {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Args(iter.into_iter().collect())
    }
}

impl IntoIterator for Args {
    type Item = (String, Value);
    type IntoIter = std::collections::btree_map::IntoIter<String, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Value {
    /// The integer, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The string, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bool, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as a float, if this is a `Float` or an `Int` (converted,
    /// with the rounding of `as f64` for integers beyond 2^53): a reader
    /// asking for a float takes an integer too, since other programs
    /// (Perl, C) send whole numbers as integers.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(x) => Some(*x),
            Value::Int(n) => Some(*n as f64),
            _ => None,
        }
    }

    /// The bytes of a `Bytes` value, or the UTF-8 bytes of a `Str`: the
    /// raw reading of either kind of text.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s.as_bytes()),
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Parses a command-line word: `null`, `true`, `false`, an integer, a
    /// float, or else the word itself as a string.
    pub fn parse_word(word: &str) -> Value {
        match word {
            "null" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                if let Ok(n) = word.parse::<i64>() {
                    Value::Int(n)
                } else if let Some(f) = word
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && word.contains(['.', 'e', 'E']))
                {
                    Value::Float(f)
                } else {
                    Value::Str(word.to_string())
                }
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

macro_rules! value_from {
    ($($t:ty => $arm:ident via $conv:expr),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$arm($conv(v))
            }
        })*
    };
}

value_from! {
    bool => Bool via |v| v,
    i32 => Int via i64::from,
    i64 => Int via |v| v,
    u32 => Int via i64::from,
    f64 => Float via |v| v,
    String => Str via |v| v,
    &str => Str via |v: &str| v.to_string(),
    Vec<u8> => Bytes via |v| v,
    Vec<Value> => List via |v| v,
    Args => Map via |v| v,
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    /// Args `{x: [[[…null…]]]}` nested `depth` lists deep, as bytes:
    /// built by hand, since building and dropping such a value would
    /// itself recurse that deep.
    fn nested_lists(depth: usize) -> Vec<u8> {
        let mut bytes = vec![1, 1, b'x'];
        for _ in 0..depth {
            bytes.extend_from_slice(&[6, 1]);
        }
        bytes.push(0);
        bytes
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = crate::wire::Payload(nested_lists(MAX_DEPTH)).decode();
        assert!(ok.is_ok(), "{ok:?}");
        for depth in [MAX_DEPTH + 1, 1_000_000] {
            let e = crate::wire::Payload(nested_lists(depth))
                .decode()
                .unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::Protocol);
            assert!(e.message.contains("nested deeper than 128"), "{e:?}");
        }
        // The count is back to zero after an error.
        assert!(crate::wire::Payload(nested_lists(MAX_DEPTH))
            .decode()
            .is_ok());
    }

    use super::*;

    #[test]
    fn words_parse_to_the_narrowest_type() {
        assert_eq!(Value::parse_word("42"), Value::Int(42));
        assert_eq!(Value::parse_word("-1.5"), Value::Float(-1.5));
        assert_eq!(Value::parse_word("true"), Value::Bool(true));
        assert_eq!(Value::parse_word("null"), Value::Null);
        assert_eq!(Value::parse_word("inf"), Value::Str("inf".into()));
        assert_eq!(Value::parse_word("x y"), Value::Str("x y".into()));
    }

    #[test]
    fn a_float_reading_takes_an_integer_and_a_bytes_reading_takes_text() {
        assert_eq!(Value::Float(1.5).as_float(), Some(1.5));
        assert_eq!(Value::Int(-3).as_float(), Some(-3.0));
        assert_eq!(Value::Str("1".into()).as_float(), None);
        assert_eq!(Value::Str("a\0b".into()).as_bytes(), Some(&b"a\0b"[..]));
        assert_eq!(Value::Bytes(vec![0xff]).as_bytes(), Some(&[0xffu8][..]));
        assert_eq!(Value::Int(1).as_bytes(), None);
    }
}
