//! Serde helper: strings read as borrowed text and copied once, for the
//! same reason as [`bytes`](super::bytes) (bincode's owned-string path
//! zero-fills a buffer first). Other formats hand over owned strings as
//! they like.

use serde::de::{Error, Visitor};
use serde::Deserializer;
use std::fmt;

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(TextVisitor)
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

/// A string that deserializes through [`deserialize`], for places
/// where no field attribute reaches (map keys).
#[derive(Debug)]
pub struct Text(pub String);

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        deserialize(d).map(Text)
    }
}
