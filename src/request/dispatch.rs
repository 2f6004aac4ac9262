//! The dispatcher: runs handlers. It keeps the request stack (which
//! stage's handler runs now, serving which request: what a request sent
//! from a handler takes as its parent and requester), gives every id of
//! the thread, and logs what has nobody to tell.

use super::callee::{Served, ServedRequest};
use super::caller::Response;
use super::stage::{Ctx, HandlerFn, Stage};
use crate::error::{Error, ErrorCode};
use crate::value::Args;
use std::cell::Cell;

/// One entry of the request stack: the stage whose handler runs, and the
/// request it serves. Owned by the code that runs the handler (a
/// dispatcher's own stack frame) and lent to the thread for the
/// handler's duration: nothing is cloned to make it current. The request
/// comes first: a frame's drop lets go of the request before the stage,
/// as the locals it replaced did.
#[derive(Default)]
pub(crate) struct Frame {
    pub(crate) req: Option<ServedRequest>,
    pub(crate) stage: Option<Stage>,
}

// The handler running now (POE's request stack): the innermost frame,
// lent by `run_handler`; the frames around it are restored as each
// handler returns (or unwinds).
scoped_tls::scoped_thread_local!(static CURRENT: Frame);

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    static UNHANDLED: Cell<u64> = const { Cell::new(0) };
}

/// The next request id of this thread: every id a program sees (its own
/// requests, and the requests it serves for other programs) comes from
/// this one counter, so live ids are distinct within the process's loop.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    })
}

/// How many responses found no handler on this thread (each is also
/// logged, at warn level, target `stagebus::request`).
pub fn unhandled_responses() -> u64 {
    UNHANDLED.with(Cell::get)
}

/// Counts and logs a response no handler took.
pub(crate) fn unhandled(request: u64, method: &str, kind: &str, error: Option<&Error>) {
    UNHANDLED.with(|n| n.set(n.get() + 1));
    match error {
        Some(e) => log::warn!(
            target: "stagebus::request",
            request, method, kind, code = e.code.as_str();
            "unhandled '{kind}' response to request {request} ({method}) ({e})"
        ),
        None => log::warn!(
            target: "stagebus::request",
            request, method, kind;
            "unhandled '{kind}' response to request {request} ({method})"
        ),
    }
}

/// The stage and request whose handler is running now.
pub(crate) fn current() -> (Option<Stage>, Option<ServedRequest>) {
    if CURRENT.is_set() {
        CURRENT.with(|f| (f.stage.clone(), f.req.clone()))
    } else {
        (None, None)
    }
}

/// Runs a handler with `frame` as the top of the request stack (no
/// frame for a handler with neither stage nor request outside every
/// other handler: an empty stack tells what such a frame would). An
/// error ends the request being served with it; with no open request it
/// is reported.
pub(crate) fn run_handler(
    handler: &HandlerFn,
    frame: &Frame,
    name: &str,
    args: &Args,
    rsp: Option<&Response>,
) {
    let ctx = Ctx {
        stage: frame.stage.as_ref(),
        name,
        args,
        req: frame.req.as_ref(),
        rsp,
    };
    // A handler with neither stage nor request (a closure answering a
    // top-level request) outside every other handler needs no frame:
    // the empty stack says the same to a request it sends.
    let framed = frame.stage.is_some() || frame.req.is_some() || CURRENT.is_set();
    let result = if framed {
        CURRENT.set(frame, || handler(&ctx))
    } else {
        handler(&ctx)
    };
    if let Err(e) = result {
        match frame.req.as_ref().filter(|r| r.is_open()) {
            Some(r) => {
                let _ = r.fail(e);
            }
            None => {
                let stage = frame.stage.as_ref().map_or("(none)", Stage::name);
                log::warn!(
                    target: "stagebus::request",
                    stage, handler = name, code = e.code.as_str();
                    "handler '{name}' of stage '{stage}' failed with nobody to answer: {e}"
                );
            }
        }
    }
}

/// Runs a downward message (request or recall) on the serving stage.
///
/// The handler gets a handle on the request; if it neither answers nor
/// keeps one (and nothing else references the request), dropping that
/// handle here ends the request with `unanswered`.
pub(crate) fn run_method(served: &Served, method: &str, args: &Args) {
    let Some(stage) = served.stage() else {
        return;
    };
    served.mark_started();
    // The request's own method (not a recall's or a pass_to's) is the
    // request's shared name: looked up without hashing when repeated.
    let own = served.method_name();
    let handler = if std::ptr::eq(method, &**own) {
        stage.resolve_named(own)
    } else {
        stage.resolve(method)
    };
    match handler {
        Some(h) => {
            let frame = Frame {
                req: Some(served.handle()),
                stage: Some(stage),
            };
            run_handler(&h, &frame, method, args, None);
        }
        None => {
            let e = Error::new(
                ErrorCode::NoSuchMethod,
                format!("Stage '{}' has no method '{method}'", stage.name()),
            );
            let _ = served.fail(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::EventLoop;
    use crate::request::Request;
    use std::rc::Rc;
    use std::time::Duration;

    /// What `current()` says, as (no stage, no request).
    fn nothing_current() -> (bool, bool) {
        let (stage, req) = current();
        (stage.is_none(), req.is_none())
    }

    #[test]
    fn a_handler_with_nothing_to_serve_sees_no_frame_framed_or_not() {
        let lp = EventLoop::new().unwrap();
        let stage = Stage::new(&lp, "s");
        let nested = Rc::new(Cell::new(None));
        let seen = nested.clone();
        stage.on("echo", move |ctx| {
            assert_eq!(nothing_current(), (false, false));
            // Inside a stage's handler, a handler without stage or
            // request gets a frame of its own, which hides this one.
            let inner: HandlerFn = Rc::new(|_| {
                assert_eq!(nothing_current(), (true, true));
                Ok(())
            });
            run_handler(&inner, &Frame::default(), "inner", &Args::new(), None);
            seen.set(Some(nothing_current()));
            ctx.ret("return", ctx.args())
        });
        // Outside every handler (a top-level request's closure), the
        // stack is empty and stays so.
        let top = Rc::new(Cell::new(None));
        let at_top = top.clone();
        let _request = Request::to(&stage, "echo")
            .on("return", move |_| {
                at_top.set(Some(nothing_current()));
                Ok(())
            })
            .send()
            .unwrap();
        assert!(lp
            .run_until(Duration::from_secs(5), || top.get().is_some())
            .unwrap());
        assert_eq!(
            nested.get(),
            Some((false, false)),
            "the outer frame is back"
        );
        assert_eq!(top.get(), Some((true, true)));
        assert_eq!(nothing_current(), (true, true));
    }
}
