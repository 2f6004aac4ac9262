//! stagebus: an embeddable message broker and request/response library.
//!
//! It re-creates two Perl systems as one library with a C ABI:
//! POEx::ProxySession (a [`Broker`] where programs publish named sessions
//! with their methods, list them, subscribe to them and deliver calls) and
//! POE::Request / POE::Stage (requests between stages with emit, return,
//! recall and cascading cancel).
//!
//! Everything lives on an [`EventLoop`]: single-threaded, drivable by
//! `run`, by a host loop (fd + timeout + `dispatch`), or woken from other
//! threads. See the module docs of [`event_loop`] for the contract.
//!
//! # Closing
//!
//! Closing a [`Client`] ([`Client::close`], or dropping its last handle)
//! first writes out what it already accepted for sending, so an answer
//! given just before a close still reaches its caller; the flush runs on
//! the loop, bounded by [`ClientConfig::linger`].
//! [`Client::close_gracefully`] reports when it is done. A stopped loop
//! keeps such output for its next run; [`EventLoop::shutdown`] (what
//! `sb_loop_free` does) drops it.

#![deny(missing_docs, missing_debug_implementations)]

pub mod broker;
pub mod client;
pub mod demo;
pub mod error;
pub mod event_loop;
pub mod ffi;
mod id_hash;
pub mod request;
pub mod transport;
pub mod value;
pub mod wire;

pub use broker::{Broker, BrokerConfig, BrokerStats, Limits};
pub use client::{CallEvent, CallId, Client, ClientConfig, ConnectionInfo, Delivery, Inbound};
pub use error::{Error, ErrorCode, Result};
pub use event_loop::{EventLoop, LoopRemote, TimerId};
pub use request::{Ctx, RemoteStage, Request, Response, Scope, ServedRequest, Stage, Target};
pub use transport::Address;
pub use value::{Args, Value};

/// The library's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
