//! What a monitor is told of one frame the broker received
//! ([`TapEvent`]), and how it is shown as a value.
//!
//! Separate because only monitoring uses it; the broker fills it in
//! `broker/monitor.rs`.

use super::Payload;
use crate::error::Error;
use serde::{Deserialize, Serialize};

/// What a monitor is told of one frame the broker received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapEvent {
    /// When the broker read it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The connection that sent it.
    pub from: u64,
    /// The connection it goes to (0: the broker itself, or nobody).
    pub to: u64,
    /// Its kind (`deliver`, `emit`, `recall`, `result`, `cancel`,
    /// `publish`, …).
    pub kind: String,
    /// The session it concerns ("" if none).
    pub session: String,
    /// The method (deliver, recall) or response type (emit, a result's
    /// return type); "" if none.
    pub name: String,
    /// The id as its sender used it.
    pub id: u64,
    /// Its size in bytes, without the length prefix.
    pub size: u32,
    /// The error code of an error result.
    pub error: Option<Error>,
    /// Its payload, when the monitor asked for payloads and it has one.
    pub payload: Option<Payload>,
}

impl TapEvent {
    /// The payload decoded as args, when it was sent along.
    pub fn args(&self) -> Option<Result<crate::Args, Error>> {
        self.payload.as_ref().map(Payload::decode)
    }

    /// The event as a map value, the shape C, Perl and the command
    /// line's JSON see: `time_ms`, `from`, `to`, `kind`, `session`,
    /// `name`, `id`, `size`, with `error` (a map of `code` and
    /// `message`) for an error result and `args` when the payload came
    /// along (`args_error` instead if it does not decode).
    pub fn to_value(&self) -> crate::Value {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut map = crate::Args::new()
            .with("time_ms", int(self.time_ms))
            .with("from", int(self.from))
            .with("to", int(self.to))
            .with("kind", self.kind.as_str())
            .with("session", self.session.as_str())
            .with("name", self.name.as_str())
            .with("id", int(self.id))
            .with("size", self.size);
        if let Some(e) = &self.error {
            let error = crate::Args::new()
                .with("code", e.code.as_str())
                .with("message", e.message.as_str());
            map.insert("error", error);
        }
        match self.args() {
            Some(Ok(args)) => {
                map.insert("args", args);
            }
            Some(Err(e)) => {
                map.insert("args_error", e.message);
            }
            None => {}
        }
        crate::Value::Map(map)
    }
}
