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
//! # Quick start
//!
//! A broker, a service publishing a stage, and a caller, all on one loop
//! (they would usually be three programs, each with its own loop):
//!
//! ```
//! use stagebus::{Args, Broker, BrokerConfig, Client, ClientConfig, EventLoop};
//! use stagebus::{RemoteStage, Request, Stage, Value};
//! use std::{cell::RefCell, rc::Rc, time::Duration};
//!
//! # fn main() -> Result<(), stagebus::Error> {
//! let lp = EventLoop::new().expect("a loop");
//! let broker = Broker::new(&lp, BrokerConfig::listening(["tcp://127.0.0.1:0".parse()?]))?;
//! let address = broker.local_addresses()[0].clone();
//!
//! // The service: a stage with one method, published as `Greeter`.
//! let service = Client::connect(&lp, &address, ClientConfig::default());
//! let greeter = Stage::new(&lp, "Greeter");
//! greeter.on("hello", |ctx| {
//!     let name = ctx.arg("name").and_then(Value::as_str).unwrap_or("stranger");
//!     ctx.ret("return", &Args::new().with("greeting", format!("Hello, {name}!")))
//! });
//! greeter.publish(&service, "Greeter", &["hello"], |r| r.expect("published"));
//!
//! // The caller: subscribe, then request as if the stage were local.
//! let caller = Client::connect(&lp, &address, ClientConfig::default());
//! let remote = Rc::new(RefCell::new(None));
//! let slot = remote.clone();
//! RemoteStage::subscribe(&caller, "Greeter", move |r| *slot.borrow_mut() = r.ok());
//! lp.run_until(Duration::from_secs(5), || remote.borrow().is_some()).unwrap();
//! let remote = remote.take().expect("subscribed");
//!
//! let greeting = Rc::new(RefCell::new(None));
//! let got = greeting.clone();
//! let _request = Request::to(&remote, "hello")
//!     .arg("name", "Ada")
//!     .on("return", move |ctx| {
//!         *got.borrow_mut() = ctx.arg("greeting").and_then(Value::as_str).map(String::from);
//!         Ok(())
//!     })
//!     .send()?;
//! lp.run_until(Duration::from_secs(5), || greeting.borrow().is_some()).unwrap();
//! assert_eq!(greeting.borrow().as_deref(), Some("Hello, Ada!"));
//! # Ok(())
//! # }
//! ```
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
//!
//! # Ownership: who holds whom
//!
//! Handles are reference-counted; what the library keeps internally is
//! arranged so that dropping the program's handles ends everything, even
//! when handlers capture other handles (a service that calls others).
//!
//! * **The loop** is held by every object created on it (brokers,
//!   clients, stages, requests). It holds its sockets' objects only
//!   weakly, and its timers, deferred tasks and posted closures strongly
//!   until they run; [`EventLoop::shutdown`] drops those at once (it is
//!   how `sb_loop_free` ends the cycles of closures that hold the loop).
//! * **A client** ([`Client`]) lives while the program, a [`RemoteStage`]
//!   subscribed through it, or an open remote [`Request`] holds it. Its
//!   publications hold their handlers (the closures given to
//!   [`Client::publish`]) but a published [`Stage`] only **weakly**.
//! * **A stage** lives while the program holds it (or a handler of
//!   another stage captured it), and while a request to it is open: an
//!   open local [`Request`] holds its target stage, and a
//!   [`ServedRequest`] holds its stage until the request ends. Publishing
//!   does not keep a stage: keep your [`Stage`] for as long as it should
//!   be served. When a stage goes away its sessions are rescinded. A
//!   handler needs no handle on its own stage: [`Ctx::stage`] gives it.
//! * **A served request** stays open while the callee holds a
//!   [`ServedRequest`] (clones of the one its handler got), while a
//!   request made on its behalf is open, and after an emit reached the
//!   caller (the caller may recall into it) until the transaction ends.
//!   When none of these is left, it ends at once with `unanswered` for
//!   the caller (see [`ServedRequest`]).
//!
//! What ends each cycle a program can build with these:
//!
//! * a stage whose handler holds its client (or a [`RemoteStage`] on
//!   it): the publication does not hold the stage, so dropping the
//!   program's stage and client handles drops the stage, its handlers,
//!   then the client, which closes and leaves the broker;
//! * a stage whose handler keeps a [`ServedRequest`] of that stage: the
//!   request lets go of its stage when it ends (answered, failed,
//!   cancelled or `unanswered`);
//! * a request kept in its own data, or in its stage's data: the data of
//!   a served request is dropped when it ends, a request made on its
//!   behalf is cancelled with it, and a sub-request lets go of its
//!   parent when the sub-request ends;
//! * closures on the loop (timers, deferred tasks) that hold objects
//!   holding the loop: they run and go, or [`EventLoop::shutdown`] drops
//!   them.
//!
//! What no design can end is a cycle the program builds out of its own
//! handles alone (a stage's handler capturing that same stage, a client
//! stored in its own `on_disconnect` closure): break those as with any
//! `Rc` cycle, or close the client explicitly ([`Client::close`]).

#![deny(missing_docs, missing_debug_implementations)]

pub mod broker;
pub mod client;
#[doc(hidden)]
pub mod demo;
pub mod error;
pub mod event_loop;
// Federation over NATS: work in progress, no stable API yet.
#[doc(hidden)]
pub mod federation;
// The C ABI: its `#[no_mangle]` functions are exported from the cdylib
// and read by cbindgen, but are no part of the Rust API.
mod ffi;
mod id_hash;
pub mod liveness;
pub mod logging;
pub mod pattern;
pub mod report;
pub mod request;
mod transport;
pub mod value;
// Public for the wire tests and the benchmarks' peers only.
#[doc(hidden)]
pub mod wire;

pub use broker::{Broker, BrokerConfig, BrokerStats, Limit, Limits};
pub use federation::config::FederationConfig;

#[doc(hidden)]
pub mod fuzzing;
pub use client::{
    CallEvent, CallId, Client, ClientConfig, ConnectionEvent, ConnectionInfo, Delivery, Inbound,
    MatchId, Name, NameEvent, NameMode, ReconnectPolicy, Signal, WatchId, WhileReconnecting,
    DEFAULT_LINGER,
};
pub use error::{Error, ErrorCode, Result};
pub use event_loop::{EventLoop, FdEvents, LoopRemote, TimerId};
pub use logging::{set_log_handler, LogEntry, LogHandler, LogLevel};
pub use report::StatsReport;
pub use request::{
    unhandled_responses, CallReply, Ctx, HandlerFn, HandlerKind, RemoteStage, Request,
    RequestBuilder, Response, Scope, ServedRequest, Stage, Target,
};
pub use transport::{Address, BrokerTls, ClientTls, InheritedListener};
pub use value::{Args, Value, MAX_DEPTH};
/// A frame the broker saw, as a monitor is told of it (see
/// [`Client::monitor`]).
pub use wire::TapEvent;
/// A published session as a listing reports it (see [`Client::listing`]).
pub use wire::{CallerInfo, SessionInfo};

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
