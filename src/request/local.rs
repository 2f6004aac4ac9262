//! The local link: both halves on one loop. Every message between them
//! waits in the loop's deferred queue, so a handler never runs inside
//! the code that sent it, and what a sender cancels before it returns to
//! the loop never reaches the other side (its turn finds that side
//! ended).
//!
//! The request and the answers, the messages of every transaction, are
//! kept in the end they go to, which is itself the deferred work (see
//! [`ends`](super::ends)): no boxed task per message. A recall, rarer,
//! is a deferred closure. All of them share the one queue, so messages
//! keep the order in which they were sent.

use super::ends::{Answer, CalleeEnd, CallerEnd};
use super::names::type_name;
use crate::error::Error;
use crate::event_loop::{Deferred, EventLoop};
use crate::value::Args;
use std::rc::{Rc, Weak};

/// The caller's way down to a callee on its loop. When the link goes,
/// the callee hears it ([`CalleeEnd::let_go`]).
pub(crate) struct Down(Option<Rc<dyn CalleeEnd>>);

impl Drop for Down {
    fn drop(&mut self) {
        if let Some(callee) = self.0.take() {
            callee.let_go();
        }
    }
}

impl Down {
    /// Posts the request: the callee's method runs on a later turn, after
    /// the tasks posted before it (requests to one stage stay in order).
    #[inline]
    pub(crate) fn start(lp: &EventLoop, callee: Rc<dyn CalleeEnd>, args: Args) -> Down {
        if !lp.is_shut_down() {
            callee.keep_args(args);
            lp.defer_shared(callee.clone());
        }
        Down(Some(callee))
    }

    /// The caller ended the transaction: the callee hears it now (its
    /// on-cancel runs only if its method ran).
    #[inline]
    pub(crate) fn cancel(mut self) {
        if let Some(callee) = self.0.take() {
            callee.clone().cancelled();
            callee.let_go();
        }
    }

    /// Runs `method` of the callee on a later turn, within the request.
    #[inline]
    pub(crate) fn recall(&self, lp: &EventLoop, method: &str, args: &Args) {
        let Some(callee) = self.0.clone() else {
            return;
        };
        let (method, args) = (method.to_string(), args.clone());
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
        self.send(lp, || Answer::new(type_name(kind), args.clone(), last));
    }

    /// Ends the transaction with `error` for the caller.
    #[inline]
    pub(crate) fn fail(&self, lp: &EventLoop, error: Error) {
        self.send(lp, || Answer::error(error));
    }

    /// Queues the answer `make` makes in the caller's inbox, for its
    /// turn; nothing is made for a caller gone, or on a loop shut down.
    #[inline]
    fn send(&self, lp: &EventLoop, make: impl FnOnce() -> Answer) {
        let Some(caller) = self.0.upgrade() else {
            return;
        };
        if lp.is_shut_down() {
            return;
        }
        caller.inbox().push(make());
        let turn: Weak<dyn Deferred> = self.0.clone();
        lp.defer_weak(turn);
    }
}

#[cfg(test)]
mod tests {
    //! The local link against stand-in ends: no stage, no request.

    use super::*;
    use crate::error::ErrorCode;
    use crate::request::ends::Inbox;
    use std::cell::{Cell, RefCell};

    type Log = Rc<RefCell<Vec<String>>>;

    /// A callee that logs what reaches it.
    struct Callee(Log, Cell<Option<Args>>);

    impl Deferred for Callee {
        fn run_deferred(self: Rc<Self>, _: &EventLoop) {
            if let Some(args) = self.1.take() {
                self.run(None, &args);
            }
        }
    }

    impl CalleeEnd for Callee {
        fn run(self: Rc<Self>, method: Option<&str>, _: &Args) {
            let what = method.unwrap_or("(its method)").to_string();
            self.0.borrow_mut().push(what);
        }
        fn cancelled(self: Rc<Self>) {
            self.0.borrow_mut().push("cancelled".into());
        }
        fn keep_args(&self, args: Args) {
            self.1.set(Some(args));
        }
        fn let_go(self: Rc<Self>) {
            self.0.borrow_mut().push("let go".into());
        }
    }

    /// A caller that logs what reaches it.
    struct Caller(Log, Inbox);

    impl Deferred for Caller {
        fn run_deferred(self: Rc<Self>, _: &EventLoop) {
            if let Some(answer) = self.1.pop() {
                self.receive(answer);
            }
        }
    }

    impl CallerEnd for Caller {
        fn receive(self: Rc<Self>, answer: Answer) {
            let what = format!("{} last={}", &*answer.kind, answer.last);
            self.0.borrow_mut().push(what);
        }
        fn is_open(&self) -> bool {
            true
        }
        fn cancel(&self) -> bool {
            false
        }
        fn inbox(&self) -> &Inbox {
            &self.1
        }
    }

    #[test]
    fn messages_down_run_on_later_turns_in_order_and_a_cancel_at_once() {
        let lp = EventLoop::new().unwrap();
        let log = Log::default();
        let callee = Rc::new(Callee(log.clone(), Cell::new(None)));
        let down = Down::start(&lp, callee, Args::new());
        down.recall(&lp, "again", &Args::new());
        assert!(log.borrow().is_empty(), "nothing runs inline");
        lp.dispatch().unwrap();
        assert_eq!(*log.borrow(), ["(its method)", "again"]);
        down.cancel();
        assert_eq!(log.borrow()[2..], ["cancelled", "let go"]);
    }

    #[test]
    fn answers_up_run_on_later_turns_and_none_reach_a_caller_gone() {
        let lp = EventLoop::new().unwrap();
        let log = Log::default();
        let caller = Rc::new(Caller(log.clone(), Inbox::default()));
        let up = Up::new(Rc::<Caller>::downgrade(&caller));
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
