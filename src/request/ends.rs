//! The two ends of a transaction as the link sees them.
//!
//! The link carries messages between the caller's half and the callee's
//! half; it is written against these two traits alone, so it knows
//! neither half (and neither half knows how the other is reached). A half
//! is handed to the link as an `Rc` or `Weak` of its record, unsized to
//! the trait: no allocation.

use super::names::TypeName;
use crate::error::Error;
use crate::value::Args;
use std::borrow::Cow;
use std::rc::Rc;

/// A response on its way up: an emit, a return, or an error.
pub(crate) struct Answer {
    /// The response type (`emit`, `return`, `error`, or the callee's own).
    pub(crate) kind: TypeName,
    pub(crate) args: Args,
    /// Whether it ends the transaction.
    pub(crate) last: bool,
    pub(crate) error: Option<Error>,
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

    /// A final `error` response; its args are `code` and `message`.
    pub(crate) fn error(e: Error) -> Answer {
        let args = Args::new()
            .with("code", e.code.as_str())
            .with("message", e.message.as_str());
        Answer {
            kind: Cow::Borrowed("error"),
            args,
            last: true,
            error: Some(e),
        }
    }
}

/// The caller's half: where answers arrive, and what a parent's cancel
/// reaches (a request made on behalf of a served one is its child).
pub(crate) trait CallerEnd {
    /// An answer arrived. Dropped if this side has ended: responses in
    /// flight for a cancelled request are never delivered.
    fn receive(self: Rc<Self>, answer: Answer);

    /// Whether the caller's side is still open.
    fn is_open(&self) -> bool;

    /// Ends the caller's side without a response; the callee is told.
    /// Returns whether it was open.
    fn cancel(&self) -> bool;
}

/// The callee's half: what the caller's messages do on the serving
/// stage.
pub(crate) trait CalleeEnd {
    /// If the request is still open, runs its method (`None`: the one
    /// the caller asked for) or another one (a recall).
    fn run(self: Rc<Self>, method: Option<&str>, args: &Args);

    /// The caller ended the transaction (cancel, timeout, its handle
    /// dropped): cascade, tell the callee.
    fn cancelled(self: Rc<Self>);
}
