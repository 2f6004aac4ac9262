//! A NATS client written for the broker's own loop: no thread, no async
//! runtime, one socket among the loop's sources.
//!
//! * [`proto`]: the protocol, pure (parser and encoder);
//! * [`options`]: servers, credentials, timings;
//! * [`conn`]: the connection on an [`EventLoop`](crate::EventLoop), with
//!   reconnects made visible as epochs;
//! * [`js`]: the few JetStream KV requests the directory needs, over the
//!   plain protocol.

pub mod conn;
pub mod headers;
pub mod js;
#[cfg(feature = "tls")]
pub mod nkey;
pub mod options;
pub mod proto;

pub use conn::{NatsClient, NatsError, NatsEvent};
pub use options::{parse_servers, NKeySeed, NatsAuth, NatsOptions, ServerUrl};
pub use proto::{Headers, Msg, ServerInfo};
