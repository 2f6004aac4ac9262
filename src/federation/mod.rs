//! Federation of brokers over a NATS cluster (design:
//! `FEDERATION.md`, issue 19). Not part of the stable API yet: hidden,
//! and free to change.
//!
//! # What exists
//!
//! * [`nats`]: a NATS client written for the broker's own loop, with no
//!   thread and no async runtime. The protocol parser and encoder
//!   ([`nats::proto`], tested split at every byte and with random
//!   input), the connection ([`nats::conn`]: `CONNECT` with user and
//!   password or a token, `SUB`/`UNSUB`/`PUB`/`HPUB`, request inboxes
//!   with no-responders statuses, `PING`/`PONG` keepalive, `max_payload`
//!   from `INFO`, reconnect across the server list and the servers the
//!   cluster announces, with back-off; every connection is an *epoch*
//!   its owner sees begin and end), and the JetStream KV requests a
//!   directory needs ([`nats::js`]: bucket stream creation, put with
//!   create-if-absent or compare-and-set, direct get, delete and purge
//!   markers, an ordered push consumer watch with flow control and gap
//!   detection). Tested against a real `nats-server` in
//!   `tests/nats_client.rs`.
//!
//! # What does not exist yet
//!
//! The broker does not federate: there is no `--federate` option, no
//! link layer, no directory and no calls across brokers. Lame-duck mode
//! is reported ([`nats::NatsEvent::LameDuck`]) but the client does not
//! move by itself; TLS, NKeys and `.creds` are not supported (a
//! `tls://` URL is refused).

pub mod config;
pub(crate) mod directory;
pub mod link;
pub mod nats;
pub(crate) mod node;
