//! Requests between stages: POE::Request / POE::Stage on the stagebus
//! loop.
//!
//! A [`Request`] goes to a [`Stage`] on this loop or to a [`RemoteStage`]
//! behind a broker; the code is the same on both sides either way. The
//! callee answers with any number of emits and one return (or an error);
//! the caller may recall a method of the callee inside an emit's handler;
//! cancelling a request cancels every request made on its behalf.
//!
//! # Guarantees
//!
//! * One request, one final answer: every request its caller did not
//!   cancel gets exactly one final response (the callee's return, or an
//!   error: `no_such_method`, `timeout`, `publisher_gone`, …).
//! * Cancel cascades: requests made while a handler serves R are R's
//!   children. Cancelling R (or dropping its [`Request`], its timeout, or
//!   its caller's disconnect) cancels every descendant, locally and
//!   across processes; each callee's on-cancel runs once; responses in
//!   flight for a cancelled request are dropped, never delivered.
//! * Location transparency, cancel included: a request cancelled or
//!   dropped before its sender returns to the loop (in the same handler
//!   or callback, or before the loop first runs) never reaches its
//!   callee, on this loop or behind a broker: the callee's method and
//!   on-cancel never run, and the broker keeps no route for it. Once the
//!   sender has returned to the loop, the callee may have started the
//!   request; it then sees the cancel (its on-cancel runs once).
//! * Order: requests to one stage run in the order they were sent, and
//!   the messages of one transaction arrive in order.
//! * No caller waits on a request nobody can answer: a served request
//!   whose last reference goes away while it is open ends with an
//!   `unanswered` error for its caller, once. The callee's references
//!   are its [`ServedRequest`] handles (keep a clone to answer later),
//!   the open requests made on its behalf (their response handlers may
//!   answer it), and any emit already sent: like POE's emits, which hold
//!   the request's id, it keeps the request open for the caller's
//!   recall until the transaction ends. The machinery's own records (the
//!   caller's link, a publication's table of calls, queued tasks) do not
//!   count. Locally and through a broker alike.
//! * Per-request data on both sides ([`Request::data`] / [`Response::data`]
//!   for the caller, [`ServedRequest::data`] for the callee) is dropped
//!   exactly once, when that side ends.
//!
//! # What a publication exports
//!
//! [`Stage::publish`] exports the method list given, or without one the
//! stage's request methods: its handlers of kind [`HandlerKind::Method`]
//! ([`Stage::method_names`]). `on_cancel`, `on_return`, `on_emit`,
//! `on_error` and `on_my_<type>` are [`HandlerKind::Internal`] by their
//! names; every other name is a method unless [`Stage::set_kind`] says
//! otherwise, because a name cannot tell a role handler
//! (`on_knock_hello`) or a name mapped with
//! [`RequestBuilder::on_method`] from a method: the stage knows only what
//! it is told, so mark those `Internal`. Another program then reaches:
//!
//! * by request, the exported methods only; anything else is
//!   `no_such_method`, refused by the broker (and by the publisher again);
//! * by recall, the exported methods and those marked
//!   [`HandlerKind::RecallOnly`] (a dialogue's answer, reached only after
//!   an emit); anything else ends the request with `no_such_method`,
//!   refused by the publisher.
//!
//! Requests and recalls on the same loop are not filtered: they may run
//! any handler by name, as in POE::Stage. The program owns both sides;
//! kinds guard only the boundary to other programs.
//!
//! # Ids
//!
//! Every id a thread's loop shows comes from one counter: its own
//! requests ([`Request::id`]), and the requests it serves
//! ([`ServedRequest::id`]): one from this loop keeps its caller's id, one
//! from another program gets a fresh one, so live ids seen in a process
//! are distinct however many programs call it. Recalls see the id of the
//! request they belong to. The caller's own id of a request served for
//! another program is [`ServedRequest::caller_id`] (unique only in the
//! caller's process).
//!
//! # Remote stages and subscriptions
//!
//! A [`RemoteStage`] sends requests while its client is subscribed to its
//! session. After [`RemoteStage::unsubscribe`], or once the session went
//! away (rescinded, its publisher gone), sending through it fails at once
//! with `not_subscribed` naming the session; on a closed client the
//! request ends with `broker_gone` as before.
//!
//! # Handler choice for a response of type T
//!
//! 1. the callee's own `on_my_T` intercepts it (nothing is sent; a final
//!    one still ends the request, and the caller gets `cancelled`);
//! 2. the request's `on(T)` mapping;
//! 3. the requesting stage's `on_<role>_T` handler, if the request has a
//!    role;
//! 4. the request's fallback;
//! 5. otherwise it is counted and reported as unhandled
//!    ([`unhandled_responses`]); a final one still ends the transaction.
//!
//! Divergence from the original: a request made outside every handler (a
//! top-level request) may receive responses through closures mapped with
//! `on`; only role mapping needs a requesting stage.

// The machinery, one concept per file; after "->", what a file imports
// from src/request.
//
//   names, scope, handlers, mappings  leaves: names, data, lookup tables
//   pool      free lists of ended records' allocations  (a leaf)
//   children  a served request's children (CallerEnd handles),
//             cancelled when it ends                    -> ends pool
//   ends      the halves as the link sees them (CallerEnd, CalleeEnd,
//             Answer)                                   -> names
//   local     the local link: deferred tasks            -> ends names
//   remote/   the remote link, the only files that know the client:
//     mod.rs     RemoteStage, a request target          -> ends remote/call
//     call.rs    Call (call, recall, cancel), Reply (a delivery's
//                answers)                               -> ends
//     publish.rs Stage::publish, the export rule        -> callee dispatch
//                                      link names stage remote/call
//   link      Down (cancel, recall) and Up (emit, return, fail), each
//             local or remote                           -> ends local remote
//   callee/   ServedRec, Served, ServedRequest          -> children
//                                    dispatch ends link scope stage
//     reuse.rs   the records' free list, make/empty/refill
//   caller    CallerRec, Request, Response              -> callee dispatch
//                            ends link mappings names scope stage
//   builder   Target, RequestBuilder::send              -> caller callee
//                     dispatch ends link mappings remote stage
//   dispatch  request stack, run_handler, run_method,   -> callee caller
//             ids, diagnostics                             stage
//   stage     Stage, HandlerKind, HandlerFn, Ctx        -> callee caller
//                                handlers mappings names scope
//
// The link layer (ends, local, link, remote/ but publish.rs) imports
// neither half. The one cycle left is in the public types: Ctx names
// Stage, ServedRequest and Response, which name Stage, and the
// dispatcher runs both halves' handlers with a Ctx; so stage, dispatch,
// callee and caller import each other. tests/request_layout.rs pins the
// rest.
mod builder;
mod callee;
mod caller;
mod children;
mod dispatch;
mod ends;
mod handlers;
mod link;
mod local;
mod mappings;
mod names;
mod pool;
mod remote;
mod scope;
mod stage;

pub use builder::{RequestBuilder, Target};
pub use callee::ServedRequest;
pub use caller::{Request, Response};
pub use dispatch::unhandled_responses;
pub use remote::{CallReply, RemoteStage};
pub use scope::Scope;
pub use stage::{Ctx, HandlerFn, HandlerKind, Stage};
