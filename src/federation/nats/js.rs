//! The JetStream KV requests the directory needs, over the plain protocol
//! (JSON on `$JS.API.…` subjects, headers on publishes): create the
//! bucket's stream, put with create-if-absent or compare-and-set, get the
//! last value of a key (direct get), delete or purge, and watch the bucket
//! through an ordered push consumer (flow control, idle heartbeats, gap
//! detection). Pure: it builds subjects, headers and payloads and reads
//! answers; the owner sends them with [`NatsClient`](super::NatsClient).

use super::proto::{Headers, Msg};
use serde_json::{json, Value as Json};
use std::fmt;

/// The header of a compare-and-set put: the key's last revision must be
/// this (0: the key must not exist).
pub const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
/// JetStream's error code for a failed compare-and-set ("wrong last
/// sequence"): for a create, the key exists.
pub const ERR_WRONG_LAST_SEQUENCE: u64 = 10071;
/// JetStream's error code for "stream not found".
pub const ERR_STREAM_NOT_FOUND: u64 = 10059;

/// How often a watch's consumer sends an idle heartbeat: a watch that
/// hears nothing for a few of these has lost its consumer.
pub const WATCH_IDLE_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// An error answered by the JetStream API (or an answer that cannot be
/// read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsError {
    /// The HTTP-like code (400, 404, 503…); 0 when the answer was
    /// unreadable.
    pub code: u64,
    /// JetStream's own error code (10071 wrong last sequence…).
    pub err_code: u64,
    /// The server's text.
    pub description: String,
}

impl fmt::Display for JsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JetStream error {} ({}): {}",
            self.code, self.err_code, self.description
        )
    }
}

impl std::error::Error for JsError {}

impl JsError {
    fn unreadable(what: impl Into<String>) -> JsError {
        JsError {
            code: 0,
            err_code: 0,
            description: what.into(),
        }
    }

    /// The error a 503 (no responders) status means: no JetStream
    /// answered (not enabled, or no quorum).
    pub fn no_responders() -> JsError {
        JsError {
            code: 503,
            err_code: 0,
            description: "no JetStream responders".into(),
        }
    }
}

/// Reads a JetStream API answer: its JSON, or the error it carries.
pub fn parse_response(msg: &Msg) -> Result<Json, JsError> {
    if msg.status() == Some(503) {
        return Err(JsError::no_responders());
    }
    let json: Json = serde_json::from_slice(&msg.payload)
        .map_err(|e| JsError::unreadable(format!("bad JetStream answer: {e}")))?;
    if let Some(e) = json.get("error") {
        return Err(JsError {
            code: e.get("code").and_then(Json::as_u64).unwrap_or(0),
            err_code: e.get("err_code").and_then(Json::as_u64).unwrap_or(0),
            description: e
                .get("description")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    Ok(json)
}

/// Reads a publish acknowledgement: the stream sequence (the key's new
/// revision).
pub fn parse_pub_ack(msg: &Msg) -> Result<u64, JsError> {
    let json = parse_response(msg)?;
    json.get("seq")
        .and_then(Json::as_u64)
        .ok_or_else(|| JsError::unreadable("publish ack without seq"))
}

/// What a KV entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    /// A value.
    Put,
    /// A delete marker.
    Delete,
    /// A purge marker (history removed).
    Purge,
}

/// One entry of a bucket: a key's value or its removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value (empty for a delete or purge).
    pub value: Vec<u8>,
    /// The stream sequence of this entry (its revision).
    pub revision: u64,
    /// Put, delete or purge.
    pub op: KvOp,
    /// The entry's headers (a delete carries the reason the owner gave).
    pub headers: Option<Headers>,
}

/// A bucket: the names of its stream and subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    bucket: String,
}

/// Whether `key` is a valid KV key (letters, digits and `-_/=.`, no
/// leading or trailing dot, no empty token).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/=.".contains(&b))
}

impl Kv {
    /// A bucket named `bucket` (letters, digits, `-` and `_`).
    pub fn new(bucket: &str) -> Result<Kv, String> {
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "bad KV bucket name {bucket:?} (letters, digits, - and _)"
            ));
        }
        Ok(Kv {
            bucket: bucket.to_string(),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The stream holding the bucket: `KV_<bucket>`.
    pub fn stream(&self) -> String {
        format!("KV_{}", self.bucket)
    }

    /// The request creating the bucket's stream (`replicas` copies, one
    /// value per key, direct gets allowed). Creating a stream that exists
    /// with the same settings succeeds.
    pub fn create_request(&self, replicas: u32) -> (String, Vec<u8>) {
        let config = json!({
            "name": self.stream(),
            "subjects": [format!("$KV.{}.>", self.bucket)],
            "retention": "limits",
            "max_consumers": -1,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": 0,
            "max_msg_size": -1,
            "max_msgs_per_subject": 1,
            "storage": "file",
            "discard": "new",
            "num_replicas": replicas.max(1),
            "duplicate_window": 120_000_000_000u64,
            "allow_rollup_hdrs": true,
            "deny_delete": true,
            "deny_purge": false,
            "allow_direct": true,
        });
        (
            format!("$JS.API.STREAM.CREATE.{}", self.stream()),
            config.to_string().into_bytes(),
        )
    }

    /// The subject a put of `key` goes to.
    pub fn key_subject(&self, key: &str) -> Result<String, String> {
        if !valid_key(key) {
            return Err(format!("bad KV key {key:?}"));
        }
        Ok(format!("$KV.{}.{key}", self.bucket))
    }

    /// Headers of a put that succeeds only if the key's last revision is
    /// `revision` (0: only if the key has none: create-if-absent).
    pub fn expect_revision(revision: u64) -> Headers {
        let mut h = Headers::new();
        h.insert(EXPECTED_LAST_SUBJECT_SEQ, revision.to_string());
        h
    }

    /// Headers of a delete marker, with the revision it must follow (a
    /// compare-and-set delete) and extra fields (a reason).
    pub fn delete_headers(revision: Option<u64>, extra: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        h.insert("KV-Operation", "DEL");
        if let Some(r) = revision {
            h.insert(EXPECTED_LAST_SUBJECT_SEQ, r.to_string());
        }
        for (n, v) in extra {
            h.insert(*n, *v);
        }
        h
    }

    /// Headers of a purge marker (the key's history goes).
    pub fn purge_headers() -> Headers {
        let mut h = Headers::new();
        h.insert("KV-Operation", "PURGE");
        h.insert("Nats-Rollup", "sub");
        h
    }

    /// The direct-get request for the last entry of `key` (the answer is
    /// the message itself, or a 404 status).
    pub fn get_request(&self, key: &str) -> Result<String, String> {
        let subject = self.key_subject(key)?;
        Ok(format!("$JS.API.DIRECT.GET.{}.{subject}", self.stream()))
    }

    /// Reads a direct-get answer: the entry, `None` for no such key (or a
    /// key whose last entry is a delete or purge).
    pub fn parse_get(&self, msg: &Msg) -> Result<Option<KvEntry>, JsError> {
        Ok(self.parse_get_any(msg)?.filter(|e| e.op == KvOp::Put))
    }

    /// Reads a direct-get answer: the key's last entry, delete and purge
    /// markers included (a create must name a marker's revision), `None`
    /// for a key never written.
    pub fn parse_get_any(&self, msg: &Msg) -> Result<Option<KvEntry>, JsError> {
        match msg.status() {
            Some(404) => return Ok(None),
            Some(503) => return Err(JsError::no_responders()),
            Some(code) if code >= 400 => {
                return Err(JsError {
                    code: u64::from(code),
                    err_code: 0,
                    description: msg
                        .headers
                        .as_ref()
                        .map(|h| h.description.clone())
                        .unwrap_or_default(),
                })
            }
            _ => {}
        }
        let headers = msg.headers.as_ref();
        let subject = headers
            .and_then(|h| h.get("Nats-Subject"))
            .ok_or_else(|| JsError::unreadable("direct get answer without Nats-Subject"))?;
        let revision = headers
            .and_then(|h| h.get("Nats-Sequence"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| JsError::unreadable("direct get answer without Nats-Sequence"))?;
        Ok(Some(self.entry(subject, revision, msg)?))
    }

    fn entry(&self, subject: &str, revision: u64, msg: &Msg) -> Result<KvEntry, JsError> {
        let prefix = format!("$KV.{}.", self.bucket);
        let key = subject
            .strip_prefix(&prefix)
            .ok_or_else(|| JsError::unreadable(format!("entry of another bucket: {subject}")))?;
        let op = match msg.headers.as_ref().and_then(|h| h.get("KV-Operation")) {
            Some("DEL") => KvOp::Delete,
            Some("PURGE") => KvOp::Purge,
            _ => KvOp::Put,
        };
        Ok(KvEntry {
            key: key.to_string(),
            value: msg.payload.clone(),
            revision,
            op,
            headers: msg.headers.clone(),
        })
    }

    /// The request creating an ordered push consumer that delivers the
    /// bucket to `deliver_subject`: the last entry of every key, then
    /// every change (`from` = `None`), or every entry from stream
    /// sequence `from` on (a restart after a gap).
    pub fn watch_request(&self, deliver_subject: &str, from: Option<u64>) -> (String, Vec<u8>) {
        let mut config = json!({
            "deliver_subject": deliver_subject,
            "ack_policy": "none",
            "max_deliver": 1,
            "replay_policy": "instant",
            "flow_control": true,
            "idle_heartbeat": WATCH_IDLE_HEARTBEAT.as_nanos() as u64,
            "filter_subject": format!("$KV.{}.>", self.bucket),
            "mem_storage": true,
            "num_replicas": 1,
            "inactive_threshold": 5_000_000_000u64,
        });
        match from {
            None => config["deliver_policy"] = json!("last_per_subject"),
            Some(seq) => {
                config["deliver_policy"] = json!("by_start_sequence");
                config["opt_start_seq"] = json!(seq);
            }
        }
        let body = json!({ "stream_name": self.stream(), "config": config });
        (
            format!("$JS.API.CONSUMER.CREATE.{}", self.stream()),
            body.to_string().into_bytes(),
        )
    }
}

/// What one message on a watch's deliver subject means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchStep {
    /// An entry, in order. `caught_up` is true when no older entry is
    /// still pending (the initial load is complete).
    Entry {
        /// The entry.
        entry: KvEntry,
        /// Nothing pending behind it.
        caught_up: bool,
    },
    /// The server asks for a flow-control answer: publish an empty
    /// message to this subject.
    Answer(String),
    /// An idle heartbeat with nothing missed.
    Heartbeat,
    /// Entries were missed: delete the consumer (or let it expire) and
    /// create a new one with `Kv::watch_request(…, Some(from))`.
    Gap {
        /// The first stream sequence to deliver again.
        from: u64,
    },
    /// Not for this watch (another subject), ignored.
    Ignore,
}

/// The state of an ordered consumer on the watch side: the consumer and
/// stream sequences seen, to find gaps.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// The last consumer sequence delivered (0 before the first).
    last_consumer_seq: u64,
    /// The last stream sequence delivered.
    last_stream_seq: u64,
}

impl Watch {
    /// A watch whose consumer was just created (or re-created after a
    /// gap, `last_stream_seq` being what was already seen).
    pub fn new(last_stream_seq: u64) -> Watch {
        Watch {
            last_consumer_seq: 0,
            last_stream_seq,
        }
    }

    /// The last stream sequence delivered.
    pub fn last_stream_seq(&self) -> u64 {
        self.last_stream_seq
    }

    /// Reads one message of the consumer.
    pub fn on_msg(&mut self, kv: &Kv, msg: &Msg) -> WatchStep {
        if msg.status() == Some(100) {
            let headers = msg.headers.as_ref();
            if let Some(reply) = msg.reply.as_ref() {
                // Flow control request.
                return WatchStep::Answer(reply.clone());
            }
            if let Some(stalled) = headers.and_then(|h| h.get("Nats-Consumer-Stalled")) {
                return WatchStep::Answer(stalled.to_string());
            }
            let last = headers
                .and_then(|h| h.get("Nats-Last-Consumer"))
                .and_then(|s| s.parse::<u64>().ok());
            return match last {
                Some(n) if n != self.last_consumer_seq => WatchStep::Gap {
                    from: self.last_stream_seq + 1,
                },
                _ => WatchStep::Heartbeat,
            };
        }
        let Some(reply) = msg.reply.as_deref() else {
            return WatchStep::Ignore;
        };
        let Some((stream_seq, consumer_seq, pending)) = parse_ack_subject(reply) else {
            return WatchStep::Ignore;
        };
        if consumer_seq != self.last_consumer_seq + 1 {
            return WatchStep::Gap {
                from: self.last_stream_seq + 1,
            };
        }
        self.last_consumer_seq = consumer_seq;
        self.last_stream_seq = stream_seq;
        match kv.entry(&msg.subject, stream_seq, msg) {
            Ok(entry) => WatchStep::Entry {
                entry,
                caught_up: pending == 0,
            },
            Err(_) => WatchStep::Ignore,
        }
    }
}

/// Reads `(stream_seq, consumer_seq, pending)` from a JetStream ack
/// subject (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`,
/// or the newer form with a domain and an account hash).
pub fn parse_ack_subject(subject: &str) -> Option<(u64, u64, u64)> {
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return None;
    }
    let base = if tokens.len() == 9 { 5 } else { 7 };
    let number = |i: usize| tokens.get(i).and_then(|t| t.parse::<u64>().ok());
    Some((number(base)?, number(base + 1)?, number(base + 3)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(subject: &str, reply: Option<&str>, headers: Option<Headers>) -> Msg {
        Msg {
            subject: subject.into(),
            sid: 1,
            reply: reply.map(Into::into),
            headers,
            payload: b"v".to_vec(),
        }
    }

    #[test]
    fn ack_subjects_parse() {
        assert_eq!(
            parse_ack_subject("$JS.ACK.KV_b.c1.1.42.7.1700000000.3"),
            Some((42, 7, 3))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.dom.hash.KV_b.c1.1.42.7.1700000000.0.tok"),
            Some((42, 7, 0))
        );
        assert_eq!(parse_ack_subject("$JS.ACK.x"), None);
    }

    #[test]
    fn a_watch_finds_gaps() {
        let kv = Kv::new("b").unwrap();
        let mut w = Watch::new(0);
        let step = w.on_msg(&kv, &msg("$KV.b.k", Some("$JS.ACK.KV_b.c.1.5.1.0.1"), None));
        assert!(
            matches!(step, WatchStep::Entry { caught_up: false, ref entry } if entry.key == "k" && entry.revision == 5)
        );
        // Consumer sequence 3 after 1: one lost.
        let step = w.on_msg(&kv, &msg("$KV.b.k", Some("$JS.ACK.KV_b.c.1.9.3.0.0"), None));
        assert_eq!(step, WatchStep::Gap { from: 6 });
        let mut hb = Headers::new();
        hb.status = Some(100);
        hb.description = "Idle Heartbeat".into();
        hb.insert("Nats-Last-Consumer", "1");
        assert_eq!(
            w.on_msg(&kv, &msg("x", None, Some(hb.clone()))),
            WatchStep::Heartbeat
        );
        hb.fields[0].1 = "2".into();
        assert_eq!(
            w.on_msg(&kv, &msg("x", None, Some(hb))),
            WatchStep::Gap { from: 6 }
        );
        let mut fc = Headers::new();
        fc.status = Some(100);
        assert_eq!(
            w.on_msg(&kv, &msg("x", Some("fc.reply"), Some(fc))),
            WatchStep::Answer("fc.reply".into())
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(Kv::new("sb_x-1").is_ok());
        assert!(Kv::new("a.b").is_err());
        assert!(Kv::new("").is_err());
        let kv = Kv::new("b").unwrap();
        assert_eq!(kv.key_subject("a/b=").unwrap(), "$KV.b.a/b=");
        for bad in ["", ".a", "a.", "a..b", "a b", "a*"] {
            assert!(kv.key_subject(bad).is_err(), "{bad}");
        }
    }
}
