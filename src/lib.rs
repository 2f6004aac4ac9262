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
