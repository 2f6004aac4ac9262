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

/// The loop's objects are single-threaded, and the compiler holds them
/// to it: none is `Send` (nor `Sync`), so safe Rust cannot hand one to
/// another thread. Only [`LoopRemote`] crosses threads. (The C API,
/// which the compiler cannot see through, checks the thread at run time
/// and returns `SB_WRONG_THREAD`.)
///
/// ```
/// fn send<T: Send + Sync>() {}
/// send::<stagebus::LoopRemote>();
/// // Every type named below exists (so each compile_fail test fails
/// // for the missing `Send` alone).
/// fn named<T>() {}
/// named::<stagebus::EventLoop>();
/// named::<stagebus::Broker>();
/// named::<stagebus::Client>();
/// named::<stagebus::Delivery>();
/// named::<stagebus::Stage>();
/// named::<stagebus::RemoteStage>();
/// named::<stagebus::Request>();
/// named::<stagebus::request::RequestBuilder>();
/// named::<stagebus::ServedRequest>();
/// named::<stagebus::Response>();
/// named::<stagebus::Scope>();
/// named::<stagebus::Target>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::EventLoop>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::Broker>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::Client>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::Delivery>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::Stage>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::RemoteStage>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::Request>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::request::RequestBuilder>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::ServedRequest>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::Response>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::Scope>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<stagebus::Target>();
/// ```
#[allow(dead_code)]
const LOOP_OBJECTS_ARE_NOT_SEND: () = ();

/// The library's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
