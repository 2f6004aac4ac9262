//! Running the core's effects: each callback, outside any borrow of the
//! client, on the loop.

use super::effects::Effect;
use super::serving::{Delivery, ServeFn};
use super::shell::Shared;
use crate::event_loop::EventLoop;
use std::rc::{Rc, Weak};

/// Runs one effect of the core of the client `me`.
pub(super) fn dispatch(lp: &EventLoop, me: &Weak<Shared>, effect: Effect) {
    match effect {
        Effect::Connected(f, outcome) => f(outcome),
        Effect::Disconnected(mut f, error) => f(&error),
        Effect::Call(f, id, event) => (f.borrow_mut())(id, event),
        Effect::Completed(completion, released) => {
            if let Some(serve) = released {
                release(lp, serve);
            }
            completion.run();
        }
        Effect::Serve(f, route, inbound) => {
            let delivery = Delivery::new(me.clone(), route);
            (f.borrow_mut())(&delivery, inbound);
        }
        Effect::Release(serve) => release(lp, serve),
        // A handler is never entered again while it runs: a nested
        // event for it is skipped.
        Effect::SessionGone(f, session, reason) => {
            if let Ok(mut f) = f.try_borrow_mut() {
                f(&session, &reason);
            }
        }
        Effect::Unknown(f, kind, id, payload) => {
            if let Ok(mut f) = f.try_borrow_mut() {
                f(&kind, id, &payload);
            }
        }
        Effect::Tap(f, event) => {
            if let Ok(mut f) = f.try_borrow_mut() {
                f(&event);
            }
        }
        Effect::Signal(fs, signal) => {
            for f in fs {
                if let Ok(mut f) = f.try_borrow_mut() {
                    f(&signal);
                }
            }
        }
        Effect::Names(f, events, completion) => {
            if let Ok(mut f) = f.try_borrow_mut() {
                for event in &events {
                    f(event);
                }
            }
            if let Some(completion) = completion {
                completion.run();
            }
        }
        Effect::Shut(error) => {
            if let Some(shared) = me.upgrade() {
                shared.shut(error);
            }
        }
        Effect::Refused(error) => {
            if let Some(shared) = me.upgrade() {
                shared.lose(error, true);
            }
        }
        Effect::Connection(f, event) => {
            if let Ok(mut f) = f.try_borrow_mut() {
                f(&event);
            }
        }
        Effect::RetryRepublish(session, serve, until, delay) => {
            let me = me.clone();
            lp.add_timer(delay, move |_| {
                if let Some(shared) = me.upgrade() {
                    shared.with(|core, io| core.retry_republish(session, serve, until, io));
                }
            });
        }
        Effect::Many(effects) => {
            for effect in effects {
                dispatch(lp, me, effect);
            }
        }
    }
}

/// Lets go of a finished delivery's handler. When the delivery was the
/// last owner (its session was rescinded), the handler is dropped on a
/// later turn: whoever answered is still inside its own call, which must
/// finish before what the handler owns goes away.
pub(super) fn release(lp: &EventLoop, serve: ServeFn) {
    if Rc::strong_count(&serve) == 1 {
        lp.defer(move |_| drop(serve));
    }
}
