//! The local link: both halves on one loop. Every message between them
//! is a deferred task, so a handler never runs inside the code that sent
//! it, and what a sender cancels before it returns to the loop never
//! reaches the other side (the task finds that side ended).

use super::ends::{Answer, CalleeEnd, CallerEnd};
use super::names::type_name;
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::value::Args;
use std::rc::{Rc, Weak};

/// The caller's way down to a callee on its loop.
pub(crate) struct Down(Rc<dyn CalleeEnd>);

impl Down {
    /// Posts the request: the callee's method runs on a later turn, after
    /// the tasks posted before it (requests to one stage stay in order).
    pub(crate) fn start(lp: &EventLoop, callee: Rc<dyn CalleeEnd>, args: Args) -> Down {
        let first = callee.clone();
        lp.defer(move |_| first.run(None, &args));
        Down(callee)
    }

    /// The caller ended the transaction: the callee hears it now (its
    /// on-cancel runs only if its method ran).
    pub(crate) fn cancel(self) {
        self.0.cancelled();
    }

    /// Runs `method` of the callee on a later turn, within the request.
    pub(crate) fn recall(&self, lp: &EventLoop, method: &str, args: &Args) {
        let (callee, method, args) = (self.0.clone(), method.to_string(), args.clone());
        lp.defer(move |_| callee.run(Some(&method), &args));
    }
}

/// The callee's way up to a caller on its loop. Weak: a caller that went
/// away (its request dropped) has nobody left to tell.
pub(crate) struct Up(Weak<dyn CallerEnd>);

impl Up {
    pub(crate) fn new(caller: Weak<dyn CallerEnd>) -> Up {
        Up(caller)
    }

    /// Sends an emit (`last` false) or a return of type `kind`.
    pub(crate) fn respond(&self, lp: &EventLoop, kind: &str, args: &Args, last: bool) {
        let (caller, answer) = (
            self.0.clone(),
            Answer::new(type_name(kind), args.clone(), last),
        );
        lp.defer(move |_| {
            if let Some(c) = caller.upgrade() {
                c.receive(answer);
            }
        });
    }

    /// Ends the transaction with `error` for the caller.
    pub(crate) fn fail(&self, lp: &EventLoop, error: Error) {
        if self.0.strong_count() == 0 {
            return;
        }
        let (caller, answer) = (self.0.clone(), Answer::error(error));
        lp.defer(move |_| {
            if let Some(c) = caller.upgrade() {
                c.receive(answer);
            }
        });
    }
}
