//! The two ends of a transaction as the link sees them.
//!
//! The link carries messages between the caller's half and the callee's
//! half; it is written against these two traits alone, so it knows
//! neither half (and neither half knows how the other is reached). A half
//! is handed to the link as an `Rc` or `Weak` of its record, unsized to
//! the trait: no allocation.
//!
//! Both ends are also the loop's [`Deferred`] work: the local link
//! queues a message by keeping it in the end it goes to (the request's
//! args in the callee's, answers in the caller's [`Inbox`]) and
//! deferring the end itself, so a message costs no boxed task.

use super::names::{type_name, TypeName};
use crate::error::Error;
use crate::event_loop::Deferred;
use crate::value::Args;
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

/// A response on its way up: an emit, a return, or an error.
pub(crate) struct Answer {
    /// The response type (`emit`, `return`, `error`, or the callee's own).
    pub(crate) kind: TypeName,
    pub(crate) args: Args,
    /// Whether it ends the transaction.
    pub(crate) last: bool,
    /// Boxed: answers wait inline in the caller's record, and an error
    /// is the rare answer.
    pub(crate) error: Option<Box<Error>>,
}

impl Answer {
    /// An emit (`last` false) or a return (`last` true) of type `kind`.
    #[inline]
    pub(crate) fn new(kind: TypeName, args: Args, last: bool) -> Answer {
        Answer {
            kind,
            args,
            last,
            error: None,
        }
    }

    /// An emit or a return of type `kind` as received whole (from
    /// another program).
    pub(crate) fn received(kind: &str, args: Args, last: bool) -> Answer {
        Answer::new(type_name(kind), args, last)
    }

    /// A final `error` response; its args are `code` and `message`.
    pub(crate) fn error(e: Error) -> Answer {
        let args = Args::new()
            .with("code", e.code.as_str())
            .with("message", e.message.as_str());
        Answer {
            kind: TypeName::Error,
            args,
            last: true,
            error: Some(Box::new(e)),
        }
    }
}

/// Answers from a callee on this loop, waiting in the caller's half for
/// their turn, oldest first. The first is kept inline: a request's usual
/// single answer allocates nothing here. In `Cell`s, moved in and out
/// (no borrow flags: the inbox is in every caller's record).
#[derive(Default)]
pub(crate) struct Inbox {
    /// The oldest answer; `None` only when `more` is empty too.
    first: Cell<Option<Answer>>,
    /// Created for a second answer waiting (a callee that emits before
    /// it returns): an empty queue's drop was ~70 instructions a pair.
    /// Boxed: the inbox is in every caller's record, and a queue inline
    /// was 32 bytes more of each (the working set of requests in flight).
    more: Cell<Option<Box<Overflow>>>,
}

/// The answers after the first (a newtype, so that it can be boxed:
/// see [`Inbox::more`]).
#[derive(Default)]
struct Overflow(VecDeque<Answer>);

impl Inbox {
    /// Adds the newest answer.
    #[inline]
    pub(crate) fn push(&self, answer: Answer) {
        match self.first.take() {
            None => self.first.set(Some(answer)),
            Some(first) => {
                self.first.set(Some(first));
                let mut more = self.more.take().unwrap_or_default();
                more.0.push_back(answer);
                self.more.set(Some(more));
            }
        }
    }

    /// Drops every answer (the queue's room is kept, up to
    /// [`KEPT_ROOM`](super::pool::KEPT_ROOM) answers: a record kept for
    /// reuse must not hold what a burst of emits grew).
    #[inline]
    pub(crate) fn clear(&self) {
        drop(self.first.take());
        if let Some(more) = self.more.take() {
            self.clear_more(more);
        }
    }

    /// Empties the answers after the first and puts their queue back
    /// (out of line: most requests have one answer).
    #[cold]
    fn clear_more(&self, mut more: Box<Overflow>) {
        // Emptied while out of the inbox: an answer's args may hold
        // anything, whose drop may reach this inbox.
        more.0.clear();
        more.0.shrink_to(super::pool::KEPT_ROOM);
        self.more.set(Some(more));
    }

    /// Takes the oldest answer.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Answer> {
        let next = match self.more.take() {
            Some(mut more) => {
                let next = more.0.pop_front();
                self.more.set(Some(more));
                next
            }
            None => None,
        };
        self.first.replace(next)
    }
}

/// The caller's half: where answers arrive, and what a parent's cancel
/// reaches (a request made on behalf of a served one is its child).
///
/// As [`Deferred`] work, its turn takes the oldest answer of its
/// [`Inbox`] and receives it: the local link queues an answer by pushing
/// it there and deferring the half (weakly: a caller gone has nobody to
/// tell, and its inbox went with it).
pub(crate) trait CallerEnd: Deferred {
    /// An answer arrived. Dropped if this side has ended: responses in
    /// flight for a cancelled request are never delivered.
    fn receive(self: Rc<Self>, answer: Answer);

    /// Whether the caller's side is still open.
    fn is_open(&self) -> bool;

    /// Ends the caller's side without a response; the callee is told.
    /// Returns whether it was open.
    fn cancel(&self) -> bool;

    /// Answers from a callee on this loop waiting for their turn.
    fn inbox(&self) -> &Inbox;

    /// The link lets go of this half after its final answer: the half
    /// keeps its allocation for later requests if nothing else holds it
    /// (its handler dropped the request's handle, the next request of a
    /// sequence replacing it). By default the reference is just dropped.
    fn let_go(self: Rc<Self>) {}
}

/// The callee's half: what the caller's messages do on the serving
/// stage.
///
/// As [`Deferred`] work, its turn runs the method the caller asked for
/// with the args given to [`CalleeEnd::keep_args`] (once; later turns
/// find none and do nothing).
pub(crate) trait CalleeEnd: Deferred {
    /// If the request is still open, runs its method (`None`: the one
    /// the caller asked for) or another one (a recall).
    fn run(self: Rc<Self>, method: Option<&str>, args: &Args);

    /// The caller ended the transaction (cancel, timeout, its handle
    /// dropped): cascade, tell the callee.
    fn cancelled(self: Rc<Self>);

    /// Keeps the request's args until its turn (a caller on this loop).
    fn keep_args(&self, args: Args);

    /// The caller's link lets go of this half (the transaction ended on
    /// the caller's side): the half may keep its allocation for later
    /// requests if nothing else holds it.
    fn let_go(self: Rc<Self>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleared_inbox_keeps_order_and_only_a_little_room() {
        let inbox = Inbox::default();
        for k in 0..1000 {
            inbox.push(Answer::new(TypeName::Emit, Args::new(), k == 999));
        }
        let mut last = Vec::new();
        while let Some(a) = inbox.pop() {
            last.push(a.last);
        }
        assert_eq!(last.len(), 1000);
        assert!(last[999] && !last[..999].iter().any(|l| *l));
        for _ in 0..1000 {
            inbox.push(Answer::new(TypeName::Emit, Args::new(), false));
        }
        inbox.clear();
        assert!(inbox.pop().is_none());
        let more = inbox.more.take();
        let room = more.as_ref().map_or(0, |m| m.0.capacity());
        assert!(room <= 2 * super::super::pool::KEPT_ROOM, "{room}");
    }
}
