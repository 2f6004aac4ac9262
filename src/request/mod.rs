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

mod handlers;
mod mappings;
mod names;
mod remote;
mod scope;
mod stage;
mod transaction;

pub use remote::RemoteStage;
pub use scope::Scope;
pub use stage::{Ctx, HandlerFn, Stage};
pub use transaction::{
    set_diagnostic_hook, unhandled_responses, Request, RequestBuilder, Response, ServedRequest,
    Target,
};
