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
    #[inline]
    pub(crate) fn start(lp: &EventLoop, callee: Rc<dyn CalleeEnd>, args: Args) -> Down {
        let first = callee.clone();
        lp.defer(move |_| first.run(None, &args));
        Down(callee)
    }

    /// The caller ended the transaction: the callee hears it now (its
    /// on-cancel runs only if its method ran).
    #[inline]
    pub(crate) fn cancel(self) {
        self.0.cancelled();
    }

    /// Runs `method` of the callee on a later turn, within the request.
    #[inline]
    pub(crate) fn recall(&self, lp: &EventLoop, method: &str, args: &Args) {
        let (callee, method, args) = (self.0.clone(), method.to_string(), args.clone());
        lp.defer(move |_| callee.run(Some(&method), &args));
    }
}

/// The callee's way up to a caller on its loop. Weak: a caller that went
/// away (its request dropped) has nobody left to tell.
pub(crate) struct Up(Weak<dyn CallerEnd>);

impl Up {
    #[inline]
    pub(crate) fn new(caller: Weak<dyn CallerEnd>) -> Up {
        Up(caller)
    }

    /// Sends an emit (`last` false) or a return of type `kind`.
    #[inline]
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
    #[inline]
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

#[cfg(test)]
mod tests {
    //! The local link against stand-in ends: no stage, no request.

    use super::*;
    use crate::error::ErrorCode;
    use std::cell::RefCell;

    type Log = Rc<RefCell<Vec<String>>>;

    /// An end of either kind that logs what reaches it.
    struct End(Log);

    impl CalleeEnd for End {
        fn run(self: Rc<Self>, method: Option<&str>, _: &Args) {
            let what = method.unwrap_or("(its method)").to_string();
            self.0.borrow_mut().push(what);
        }
        fn cancelled(self: Rc<Self>) {
            self.0.borrow_mut().push("cancelled".into());
        }
    }

    impl CallerEnd for End {
        fn receive(self: Rc<Self>, answer: Answer) {
            let what = format!("{} last={}", answer.kind, answer.last);
            self.0.borrow_mut().push(what);
        }
        fn is_open(&self) -> bool {
            true
        }
        fn cancel(&self) -> bool {
            false
        }
    }

    #[test]
    fn messages_down_run_on_later_turns_in_order_and_a_cancel_at_once() {
        let lp = EventLoop::new().unwrap();
        let log = Log::default();
        let down = Down::start(&lp, Rc::new(End(log.clone())), Args::new());
        down.recall(&lp, "again", &Args::new());
        assert!(log.borrow().is_empty(), "nothing runs inline");
        lp.dispatch().unwrap();
        assert_eq!(*log.borrow(), ["(its method)", "again"]);
        down.cancel();
        assert_eq!(log.borrow().last().unwrap(), "cancelled");
    }

    #[test]
    fn answers_up_run_on_later_turns_and_none_reach_a_caller_gone() {
        let lp = EventLoop::new().unwrap();
        let log = Log::default();
        let caller = Rc::new(End(log.clone()));
        let up = Up::new(Rc::<End>::downgrade(&caller));
        up.respond(&lp, "emit", &Args::new(), false);
        up.fail(&lp, Error::new(ErrorCode::Timeout, "late"));
        assert!(log.borrow().is_empty(), "nothing runs inline");
        lp.dispatch().unwrap();
        assert_eq!(*log.borrow(), ["emit last=false", "error last=true"]);
        up.respond(&lp, "return", &Args::new(), true);
        drop(caller);
        up.fail(&lp, Error::new(ErrorCode::Timeout, "later"));
        lp.dispatch().unwrap();
        assert_eq!(log.borrow().len(), 2, "{:?}", log.borrow());
    }
}
