//! The broker's results, as the core takes them: of an operation, of a
//! call, of an application-defined message, of what a reconnect
//! restores (a republish, a re-subscribe, a match or a watch again).

use super::calls::final_event;
use super::core::Core;
use super::effects::{Effect, Outbox};
use super::ops::{expect_done, expect_methods, expect_sessions, expect_stats, Completion, Op};
use super::CallId;
use crate::error::Error;
use crate::wire::Reply;

impl Core {
    /// A result: of an operation, of a call, of an application-defined
    /// message, or of a call cancelled meanwhile (dropped).
    pub(super) fn on_result(
        &mut self,
        id: u64,
        outcome: Result<Reply, Error>,
        out: &mut impl Outbox,
    ) -> Option<Effect> {
        if let Some(call) = self.calls.remove(id) {
            return Some(Effect::Call(call, CallId(id), final_event(outcome)));
        }
        let (done, release) = match self.ops.remove(id)? {
            Op::Publish {
                session,
                methods,
                serve,
                withdrawn,
                done,
            } => {
                let outcome = expect_done("publish", outcome);
                let mut released = None;
                if outcome.is_ok() {
                    self.serving
                        .publish(session.clone(), methods, serve.clone());
                    if withdrawn {
                        released = self.withdraw(&session, &serve, out);
                    }
                }
                (Completion::Unit(done, outcome), released)
            }
            Op::Republish {
                session,
                serve,
                until,
                withdrawn,
            } => {
                let outcome = expect_done("publish", outcome);
                return self.republished(session, serve, until, withdrawn, outcome, out);
            }
            Op::Resubscribe { session } => {
                return self.resubscribed(session, expect_methods(outcome).map(drop));
            }
            Op::Rematch { listener } => return self.rematch_result(listener, outcome),
            Op::Rewatch { watch } => return self.rewatch_result(watch, outcome),
            Op::Rescind { session, done } => {
                let outcome = expect_done("rescind", outcome);
                // Deliveries in progress keep their own handle on the
                // handler; this one may be the last.
                let released = match outcome {
                    Ok(()) => self.serving.unpublish(&session),
                    Err(_) => None,
                };
                (Completion::Unit(done, outcome), released)
            }
            Op::Listing { done } => (Completion::Sessions(done, expect_sessions(outcome)), None),
            Op::Stats { done } => (Completion::Stats(done, expect_stats(outcome)), None),
            Op::Monitor { done } => (
                Completion::Unit(done, expect_done("monitor", outcome)),
                None,
            ),
            Op::Subscribe { session, done } => {
                let outcome = expect_methods(outcome);
                if outcome.is_ok() {
                    self.subscriptions.insert(session);
                }
                (Completion::Methods(done, outcome), None)
            }
            Op::Unsubscribe { session, done } => {
                let outcome = expect_done("unsubscribe", outcome);
                if outcome.is_ok() {
                    self.subscriptions.remove(&session);
                }
                (Completion::Unit(done, outcome), None)
            }
            Op::Watch { done } => return self.watch_result(id, done, outcome),
            op @ (Op::AddMatch { .. } | Op::RemoveMatch { .. }) => {
                (self.match_result(op, outcome), None)
            }
            Op::Custom { app_id } => {
                let f = self.on_unknown.clone()?;
                let text = outcome.err().map(|e| e.to_string()).unwrap_or_default();
                return Some(Effect::Unknown(
                    f,
                    "result".into(),
                    app_id,
                    text.into_bytes(),
                ));
            }
        };
        Some(Effect::Completed(done, release))
    }
}
