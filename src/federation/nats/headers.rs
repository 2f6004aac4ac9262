//! The header block of `HPUB`/`HMSG` (`NATS/1.0` and an optional status
//! line, then `Name: value` lines), parsed and written.

use super::proto::{err, ProtoError};

/// Message headers (`NATS/1.0` block of `HPUB`/`HMSG`), with the status
/// line a server puts in its own messages (503 no responders, 100 flow
/// control and idle heartbeats, 404 and 408 from JetStream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// The status code after `NATS/1.0`, when there is one.
    pub status: Option<u16>,
    /// The text after the status code.
    pub description: String,
    /// Every `Name: value` line, in order.
    pub fields: Vec<(String, String)>,
}

impl Headers {
    /// An empty header block (no status) to fill with [`Headers::insert`].
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Adds a field (kept in order; a name may repeat).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// The first value of field `name` (names compared without case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses a header block (the first `header_len` bytes of an `HMSG`).
    pub fn parse(block: &[u8]) -> Result<Headers, ProtoError> {
        let text = match std::str::from_utf8(block) {
            Ok(t) => t,
            Err(_) => return err("header block is not UTF-8"),
        };
        let Some(body) = text.strip_suffix("\r\n\r\n") else {
            return err("header block does not end with an empty line");
        };
        let mut lines = body.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let Some(rest) = first.strip_prefix("NATS/1.0") else {
            return err("header block does not start with NATS/1.0");
        };
        let mut headers = Headers::default();
        let rest = rest.trim_start();
        if !rest.is_empty() {
            let (code, description) = rest.split_once(' ').unwrap_or((rest, ""));
            match code.parse::<u16>() {
                Ok(c) if code.len() == 3 => headers.status = Some(c),
                _ => return err(format!("bad header status {code:?}")),
            }
            headers.description = description.trim().to_string();
        }
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return err(format!("header line without a colon: {line:?}"));
            };
            if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) {
                return err(format!("bad header name {name:?}"));
            }
            headers
                .fields
                .push((name.to_string(), value.trim().to_string()));
        }
        Ok(headers)
    }

    /// Appends the header block to `out`. Fails on a name or value that
    /// the block cannot carry (a colon or white space in a name, a line
    /// break anywhere).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        out.extend_from_slice(b"NATS/1.0");
        if let Some(status) = self.status {
            if !(100..=999).contains(&status) {
                return err(format!("bad header status {status}"));
            }
            out.extend_from_slice(format!(" {status}").as_bytes());
            if !self.description.is_empty() {
                if self.description.contains(['\r', '\n']) {
                    return err("line break in a header description");
                }
                out.push(b' ');
                out.extend_from_slice(self.description.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.fields {
            if name.is_empty()
                || name
                    .bytes()
                    .any(|b| b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return err(format!("bad header name {name:?}"));
            }
            if value.contains(['\r', '\n']) {
                return err(format!("line break in the value of header {name}"));
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}
