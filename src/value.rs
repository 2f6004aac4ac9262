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
use std::sync::{Arc, OnceLock};

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
    Str(#[serde(deserialize_with = "nesting::text")] String),
    /// Arbitrary bytes.
    Bytes(
        #[serde(
            serialize_with = "crate::wire::bytes::serialize",
            deserialize_with = "nesting::bytes"
        )]
        Vec<u8>,
    ),
    /// An ordered list.
    List(#[serde(deserialize_with = "nesting::list")] Vec<Value>),
    /// A map from names to values.
    Map(#[serde(deserialize_with = "nesting::map")] Args),
}

/// How deep lists and maps may nest in a decoded value. Decoding
/// recurses once per level, so without a bound a peer's payload of a few
/// hundred kilobytes of nested lists would overflow the receiver's stack.
pub const MAX_DEPTH: usize = 128;

/// Runs `decode` (a decoding of args on this thread) with `max` bytes
/// of decoded size to spend: lists, maps, strings and bytes charge what
/// they take, and the decoding fails once it is spent.
pub(crate) fn decode_budget<T>(max: usize, decode: impl FnOnce() -> T) -> T {
    nesting::within(max, decode)
}

/// What decoding charges the budget for each element of a list (and
/// once more for its end), for the validating scan to charge alike.
pub(crate) const ELEMENT_CHARGE: usize = nesting::ELEMENT;

/// What decoding charges for each entry of a map (and once more for its
/// end), besides the name's length.
pub(crate) const ENTRY_CHARGE: usize = nesting::ENTRY;

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

    thread_local! {
        /// Bytes the value being decoded on this thread may still take
        /// (None: unbounded), set by [`within`].
        static BUDGET: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// Runs `decode` with `max` bytes of decoded size to spend (see
    /// [`charge`]); the budget before it is restored after.
    pub fn within<T>(max: usize, decode: impl FnOnce() -> T) -> T {
        let outer = BUDGET.with(|b| b.replace(Some(max)));
        let out = decode();
        BUDGET.with(|b| b.set(outer));
        out
    }

    /// Spends `n` bytes of the decoding budget, if one is set: an error
    /// once it is spent, so that a payload of tiny elements (a million
    /// nulls) cannot make the receiver hold many times its size.
    pub fn charge<E: Error>(n: usize) -> Result<(), E> {
        BUDGET.with(|b| match b.get() {
            None => Ok(()),
            Some(left) if left >= n => {
                b.set(Some(left - n));
                Ok(())
            }
            Some(_) => Err(E::custom(
                "its values decode to more than the decoding limit (a small multiple of the payload, and at most the receiver's limit)",
            )),
        })
    }

    /// What one element of a list costs: its slot, twice (a growing
    /// vector's room).
    pub const ELEMENT: usize = 2 * std::mem::size_of::<Value>();

    /// What one entry of a map costs: its key and value, and room for
    /// its slot as a vector grows.
    pub const ENTRY: usize = std::mem::size_of::<(String, Value)>() + 16;

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
        struct ListVisitor;
        impl<'de> serde::de::Visitor<'de> for ListVisitor {
            type Value = Vec<Value>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of values")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<Value>, A::Error> {
                // Room as announced, but never more than a small first
                // batch: the announced length is the peer's word.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                loop {
                    charge::<A::Error>(ELEMENT)?;
                    match seq.next_element::<Value>()? {
                        Some(v) => out.push(v),
                        None => return Ok(out),
                    }
                }
            }
        }
        let _level = Level::enter()?;
        d.deserialize_seq(ListVisitor)
    }

    /// A string, charged its length.
    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let s = crate::wire::text::deserialize(d)?;
        charge::<D::Error>(s.len())?;
        Ok(s)
    }

    /// Bytes, charged their length.
    pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let b = crate::wire::bytes::deserialize(d)?;
        charge::<D::Error>(b.len())?;
        Ok(b)
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<Args, D::Error> {
        let _level = Level::enter()?;
        Args::deserialize(d)
    }
}

/// Named values: the arguments of a request, emit, recall or return.
///
/// Immutable once shared: the entries sit behind an [`Arc`], so cloning
/// args (as a request's handlers, a return of the args received, or a
/// local link passing them on do) is a reference count, not a copy of
/// every name and value; changing shared args copies them first (copy on
/// write). The entries are one vector kept sorted by name (args hold a
/// handful of names: a search in a short vector costs less than a tree,
/// and decoding them allocates the vector once). Empty args allocate
/// nothing.
///
/// Args received from the network are checked at receipt (a malformed
/// payload fails the call there) and kept as the bytes they came in, in
/// one allocation, until something reads them: the first read (`get`,
/// `iter`, `len`, a comparison, printing) decodes them once for every
/// clone, and args sent on unchanged (an echo's answer, a forward) are
/// written as those bytes again, never decoded. Either way they behave
/// as the same entries would.
#[derive(Clone, Default)]
pub struct Args(Option<Arc<Shared<[u8]>>>);

/// What clones of args share: the entries, and the bytes received args
/// came in. Unsized (`B` is `[u8]` behind the `Arc`), so that short
/// received bytes sit in the same allocation as the rest.
struct Shared<B: ?Sized> {
    /// The entries, sorted by name: set when built here, decoded from
    /// the bytes on the first read when received.
    entries: OnceLock<Vec<(String, Value)>>,
    /// Received bytes too long for the inline room (else empty).
    spilled: Vec<u8>,
    /// How many bytes of `inline` are received bytes (0: none).
    len: usize,
    /// Room for short received bytes, of one of a few sizes.
    inline: B,
}

impl Shared<[u8]> {
    /// Entries built here.
    fn built(entries: Vec<(String, Value)>) -> Arc<Shared<[u8]>> {
        Arc::new(Shared {
            entries: OnceLock::from(entries),
            spilled: Vec::new(),
            len: 0,
            inline: [],
        })
    }

    /// Received bytes (a payload the validating scan accepted), to
    /// decode when first read.
    fn received(bytes: &[u8]) -> Arc<Shared<[u8]>> {
        // A room size is a constant (an array, unsized behind the Arc):
        // a few sizes cover the common short payloads in one allocation.
        fn inline<const N: usize>(bytes: &[u8]) -> Arc<Shared<[u8]>> {
            // Zeroed in place, then filled: no room-sized copy through
            // the stack.
            let mut shared = Arc::new(Shared {
                entries: OnceLock::new(),
                spilled: Vec::new(),
                len: bytes.len(),
                inline: [0u8; N],
            });
            if let Some(s) = Arc::get_mut(&mut shared) {
                s.inline[..bytes.len()].copy_from_slice(bytes);
            }
            shared
        }
        match bytes.len() {
            0..=48 => inline::<48>(bytes),
            49..=112 => inline::<112>(bytes),
            113..=240 => inline::<240>(bytes),
            241..=496 => inline::<496>(bytes),
            _ => Arc::new(Shared {
                entries: OnceLock::new(),
                spilled: bytes.to_vec(),
                len: 0,
                inline: [],
            }),
        }
    }

    /// The bytes these entries were received as, if received.
    fn encoded(&self) -> Option<&[u8]> {
        if !self.spilled.is_empty() {
            Some(&self.spilled)
        } else if self.len > 0 {
            Some(&self.inline[..self.len])
        } else {
            None
        }
    }

    /// The entries, decoded now if not yet.
    fn entries(&self) -> &[(String, Value)] {
        self.entries.get_or_init(|| {
            self.encoded()
                .map_or_else(Vec::new, crate::wire::decode_checked)
        })
    }
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Entries<'a>(&'a Args);
        impl fmt::Debug for Entries<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.iter()).finish()
            }
        }
        f.debug_tuple("Args").field(&Entries(self)).finish()
    }
}

impl PartialEq for Args {
    fn eq(&self, other: &Args) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.entries() == other.entries(),
        }
    }
}

impl Serialize for Args {
    /// A map in name order, as a `BTreeMap` of the same entries.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

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
                // Room as announced, but never more than a small first
                // batch: the announced length is the peer's word.
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                loop {
                    nesting::charge::<M::Error>(nesting::ENTRY)?;
                    let Some((Text(name), value)) = map.next_entry::<Text, Value>()? else {
                        break;
                    };
                    nesting::charge::<M::Error>(name.len())?;
                    entries.push((name, value));
                }
                Ok(Args::from_entries(entries))
            }
        }
        d.deserialize_map(ArgsVisitor)
    }
}

impl Args {
    /// An empty map.
    pub fn new() -> Self {
        Args(None)
    }

    /// Args of `entries` in any order; of a repeated name the last value
    /// stays.
    fn from_entries(mut entries: Vec<(String, Value)>) -> Self {
        if entries.is_empty() {
            return Args(None);
        }
        let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
        if !sorted {
            // Stable: of equal names, the last one given is last.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut unique: Vec<(String, Value)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match unique.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => unique.push(entry),
                }
            }
            entries = unique;
        }
        Args(Some(Shared::built(entries)))
    }

    /// Args received as `bytes`: a payload of at least one entry that
    /// the validating scan accepted. Decoded when first read.
    pub(crate) fn received(bytes: &[u8]) -> Self {
        Args(Some(Shared::received(bytes)))
    }

    /// The bytes these args were received as, while unchanged: their
    /// encoding, to send on as they are.
    pub(crate) fn encoded(&self) -> Option<&[u8]> {
        self.0.as_deref().and_then(Shared::encoded)
    }

    /// Whether anything is allocated (`None`: no), and if so whether
    /// the entries are decoded.
    #[cfg(test)]
    pub(crate) fn decoded(&self) -> Option<bool> {
        self.0.as_ref().map(|s| s.entries.get().is_some())
    }

    /// The entries, sorted by name.
    fn entries(&self) -> &[(String, Value)] {
        self.0.as_deref().map_or(&[], Shared::entries)
    }

    /// The entries, owned: taken when no other clone shares them, else
    /// copied.
    pub(crate) fn into_entries(self) -> Vec<(String, Value)> {
        match self.0 {
            None => Vec::new(),
            Some(mut shared) => {
                shared.entries();
                Arc::get_mut(&mut shared)
                    .and_then(|s| s.entries.take())
                    .unwrap_or_else(|| shared.entries().to_vec())
            }
        }
    }

    /// The entries to change: copied first if another clone shares them,
    /// and no longer the bytes they were received as.
    fn entries_mut(&mut self) -> &mut Vec<(String, Value)> {
        let plain = match &mut self.0 {
            Some(shared) => shared.encoded().is_none() && Arc::get_mut(shared).is_some(),
            None => false,
        };
        if !plain {
            let entries = std::mem::take(self).into_entries();
            self.0 = Some(Shared::built(entries));
        }
        let shared = self.0.as_mut().and_then(Arc::get_mut);
        let shared = shared.expect("args made unique just above");
        shared
            .entries
            .get_mut()
            .expect("args built here have their entries")
    }

    /// Where `name` is, or would go.
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries()
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// Builder form of [`Args::insert`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(name, value);
        self
    }

    /// Sets `name` to `value`, returning the previous value. Names that
    /// come in order are appended; one that goes before others moves
    /// them, so building many thousands of names in random order is
    /// faster with `collect()` (one sort).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let (name, value) = (name.into(), value.into());
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.entries_mut()[i].1, value)),
            Err(i) => {
                self.entries_mut().insert(i, (name, value));
                None
            }
        }
    }

    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let i = self.find(name).ok()?;
        Some(&self.entries()[i].1)
    }

    /// Removes and returns the value named `name`.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.find(name).ok()?;
        let (_, value) = self.entries_mut().remove(i);
        if self.is_empty() {
            self.0 = None;
        }
        Some(value)
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// The values in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.entries().iter().map(|(k, v)| (k, v))
    }
}

impl FromIterator<(String, Value)> for Args {
    /// Of a repeated name the last value stays.
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Args::from_entries(iter.into_iter().collect())
    }
}

impl IntoIterator for Args {
    type Item = (String, Value);
    type IntoIter = std::collections::btree_map::IntoIter<String, Value>;
    /// The values in name order; entries another clone shares are copied.
    fn into_iter(self) -> Self::IntoIter {
        self.into_entries()
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
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

    /// Args `{x: [null; n]}` as bytes.
    fn nulls(n: u32) -> Vec<u8> {
        let mut bytes = vec![1, 1, b'x', 6, 0xfc];
        bytes.extend_from_slice(&n.to_le_bytes());
        bytes.resize(bytes.len() + n as usize, 0);
        bytes
    }

    #[test]
    fn decoded_size_is_bounded_by_the_payload_and_a_limit() {
        use crate::wire::{Payload, DECODE_FACTOR};
        let small = Payload(nulls(1000)).decode().unwrap();
        assert_eq!(
            small
                .get("x")
                .map(|v| matches!(v, Value::List(l) if l.len() == 1000)),
            Some(true)
        );
        // Over the receiver's limit: a protocol error, not a huge value.
        let e = Payload(nulls(1 << 20)).decode_within(8 << 20).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::Protocol);
        assert!(e.message.contains("decoding limit"), "{}", e.message);
        // 16 million nulls under the default limit.
        let e = Payload(nulls(16 << 20)).decode().unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::Protocol);
        // Ordinary values of every kind fit the multiple of their size.
        let mut args = Args::new();
        let list: Vec<Value> = (0..10_000).map(Value::Int).collect();
        args.insert("ints", Value::List(list));
        let mut inner = Args::new();
        for i in 0..1000 {
            inner.insert(format!("k{i}"), Value::Null);
        }
        args.insert("map", Value::Map(inner));
        args.insert("s", Value::Str("x".repeat(1000)));
        let p = Payload::encode(&args);
        assert_eq!(p.decode_within(p.0.len() * DECODE_FACTOR).unwrap(), args);
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

#[cfg(test)]
mod args_tests {
    use super::*;

    #[test]
    fn args_stay_sorted_unique_and_shared_until_changed() {
        let mut a = Args::new().with("b", 2).with("a", 1).with("c", 3);
        assert_eq!(a.insert("b", 20), Some(Value::Int(2)));
        let names: Vec<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let shared = a.clone();
        a.insert("d", 4);
        assert_eq!(shared.len(), 3, "a clone keeps what it saw");
        assert_eq!(a.remove("a"), Some(Value::Int(1)));
        assert_eq!(a.remove("a"), None);
        assert_eq!(a.get("b"), Some(&Value::Int(20)));
        for k in ["b", "c", "d"] {
            a.remove(k);
        }
        assert!(a.is_empty());
        assert_eq!(a, Args::new());
        // From an iterator: a repeated name keeps its last value, as a
        // map collected from it does.
        let pairs = vec![
            ("y".to_string(), Value::Int(1)),
            ("x".to_string(), Value::Int(2)),
            ("y".to_string(), Value::Int(3)),
        ];
        let from: Args = pairs.clone().into_iter().collect();
        let map: BTreeMap<String, Value> = pairs.into_iter().collect();
        assert_eq!(
            from.clone().into_iter().collect::<Vec<_>>(),
            map.clone().into_iter().collect::<Vec<_>>()
        );
        // Encoded as the map of the same entries.
        let encoded = crate::wire::Payload::encode(&from);
        let mut plain = Vec::new();
        bincode::serde::encode_into_std_write(&map, &mut plain, bincode::config::standard())
            .unwrap();
        assert_eq!(encoded.0, plain);
        assert_eq!(format!("{from:?}"), r#"Args({"x": Int(2), "y": Int(3)})"#);
    }

    #[test]
    fn decoding_unsorted_or_repeated_names_keeps_the_last() {
        // {b: 1, a: 2, b: 3} as a peer might encode it.
        let bytes = vec![3, 1, b'b', 2, 2, 1, b'a', 2, 4, 1, b'b', 2, 6];
        let args = crate::wire::Payload(bytes).decode().unwrap();
        assert_eq!(args, Args::new().with("a", 2).with("b", 3));
    }
}
