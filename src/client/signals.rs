//! Signals: emitting them for a session published here, and listening
//! for them with matches.
//!
//! A listener adds a match (a session pattern and a signal pattern, see
//! [`crate::pattern`]) with a handler; once the broker confirmed it, every
//! signal it forwards to this connection runs the handler of each
//! matching match, in the order the signals were emitted. The broker
//! sends a signal once per connection however many matches of the
//! connection it satisfies; the client hands it to each of them.
//!
//! A reconnecting client (see [`super::ReconnectPolicy`]) adds its
//! confirmed matches again once reconnected: signals emitted after that
//! reach the same handlers; those emitted during the outage are lost.
//!
//! A listener that does not read is cut off by the broker's limit on
//! queued output (its connection closes as a slow consumer), so signals
//! are never buffered forever and never slow their emitter.

use super::core::Core;
use super::effects::{Effect, Outbox};
use super::ops::{expect_done, Completion, Done, Op};
use super::Client;
use crate::error::{Error, ErrorCode};
use crate::pattern::{check_matchable, Pattern};
use crate::value::Args;
use crate::wire::{Frame, Payload, Reply};
use std::cell::RefCell;
use std::rc::Rc;

/// A signal as a listener receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The session it was emitted for.
    pub session: String,
    /// The signal's name.
    pub signal: String,
    /// Its args.
    pub args: Args,
}

/// Names one match of a client (see [`Client::add_match`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatchId(pub u64);

/// A match's handler.
pub(super) type SignalFn = Rc<RefCell<dyn FnMut(&Signal)>>;

struct Listener {
    id: u64,
    session: Pattern,
    signal: Pattern,
    /// The patterns as given, for the broker.
    texts: (String, String),
    f: SignalFn,
    /// The broker confirmed it.
    active: bool,
}

/// The matches of a client.
#[derive(Default)]
pub(super) struct Listeners {
    list: Vec<Listener>,
    next: u64,
}

impl Listeners {
    /// Lets go of every handler (the client closed).
    pub fn take_all(&mut self) -> Vec<SignalFn> {
        self.list.drain(..).map(|l| l.f).collect()
    }

    /// The confirmed matches, to restore after a reconnect: id and the
    /// patterns as given.
    pub(super) fn confirmed(&self) -> Vec<(u64, String, String)> {
        self.list
            .iter()
            .filter(|l| l.active)
            .map(|l| (l.id, l.texts.0.clone(), l.texts.1.clone()))
            .collect()
    }

    /// Forgets the match `id`: its patterns, if it was there.
    pub(super) fn forget(&mut self, id: u64) -> Option<(String, String)> {
        let at = self.list.iter().position(|l| l.id == id)?;
        Some(self.list.remove(at).texts)
    }
}

impl Core {
    /// A signal from the broker: the handlers of the matching matches.
    pub(super) fn on_signal(
        &mut self,
        session: String,
        signal: String,
        payload: Payload,
    ) -> Option<Effect> {
        let fs: Vec<SignalFn> = self
            .listeners
            .list
            .iter()
            .filter(|l| l.active && l.session.matches(&session) && l.signal.matches(&signal))
            .map(|l| l.f.clone())
            .collect();
        if fs.is_empty() {
            return None;
        }
        // Args that do not decode are the emitter's fault; listeners
        // have nothing to answer, so the signal is dropped.
        let args = payload.decode().ok()?;
        Some(Effect::Signal(
            fs,
            Rc::new(Signal {
                session,
                signal,
                args,
            }),
        ))
    }

    /// The broker's answer to an add or a remove of a match.
    pub(super) fn match_result(
        &mut self,
        op: Op,
        outcome: Result<Reply, crate::Error>,
    ) -> Completion {
        match op {
            Op::AddMatch { listener, done } => {
                let outcome = expect_done("add_match", outcome);
                let list = &mut self.listeners.list;
                if let Some(at) = list.iter().position(|l| l.id == listener) {
                    if outcome.is_ok() {
                        list[at].active = true;
                    } else {
                        list.remove(at);
                    }
                }
                Completion::Unit(done, outcome)
            }
            Op::RemoveMatch { done } => {
                Completion::Unit(done, expect_done("remove_match", outcome))
            }
            _ => unreachable!("only match operations come here"),
        }
    }

    /// The broker's answer to the match `listener` renewed after a
    /// reconnect: a refusal ends the match, and a connection event says
    /// so.
    pub(super) fn rematch_result(
        &mut self,
        listener: u64,
        outcome: Result<Reply, Error>,
    ) -> Option<Effect> {
        let error = expect_done("add_match", outcome).err()?;
        let (session, signal) = self.listeners.forget(listener)?;
        self.restore_failed(format!("signal match '{session}' '{signal}'"), error)
    }
}

impl Core {
    /// Adds the match of the patterns `texts` (parsed: `session`,
    /// `signal`) with its handler and sends it: its id, and its failure
    /// if it could not be sent (the match is forgotten then).
    pub(super) fn add_match(
        &mut self,
        (session, signal): (Pattern, Pattern),
        texts: (String, String),
        f: SignalFn,
        done: Done<()>,
        out: &mut impl Outbox,
    ) -> (u64, Option<Completion>) {
        self.listeners.next += 1;
        let id = self.listeners.next;
        let (s, g) = texts.clone();
        self.listeners.list.push(Listener {
            id,
            session,
            signal,
            texts,
            f,
            active: false,
        });
        let make = |op| Frame::AddMatch {
            id: op,
            session: s,
            signal: g,
        };
        let failed = self.start_op(make, Op::AddMatch { listener: id, done }, out);
        if failed.is_some() {
            self.listeners.forget(id);
        }
        (id, failed)
    }
}

pub(super) fn patterns(session: &str, signal: &str) -> Result<(Pattern, Pattern), Error> {
    Ok((
        Pattern::parse("session pattern", session)?,
        Pattern::parse("signal pattern", signal)?,
    ))
}

impl Client {
    /// Emits `signal` with `args` for `session`, which this client must
    /// publish: every connection with a matching match receives it, in
    /// the order this client emitted its signals. Nothing answers. Fails
    /// at once with `not_publisher` when `session` is not published
    /// here, `invalid_argument` for an empty signal name or one holding
    /// `*`, `broker_gone` on a closed client, `limit_exceeded` when the
    /// output queue is full.
    pub fn emit_signal(&self, session: &str, signal: &str, args: &Args) -> Result<(), Error> {
        check_matchable("signal name", signal)?;
        if !self.shared.core().is_published(session) {
            return Err(Error::new(
                ErrorCode::NotPublisher,
                format!("Session '{session}' is not currently published by this client"),
            ));
        }
        let frame = Frame::Signal {
            session: session.to_string(),
            signal: signal.to_string(),
            payload: Payload::encode(args),
        };
        self.shared.with(|core, io| core.send(io, &frame))
    }

    /// Listens for signals: `on_signal` runs for every signal whose
    /// session matches `session` and whose name matches `signal` (each
    /// exact, `prefix*` or `*`; see [`crate::pattern`]), in the order
    /// they were emitted, from the moment the broker confirmed the
    /// match (`done` with `Ok`) until [`Client::remove_match`] or the
    /// client's close. A reconnecting client adds the match again once
    /// reconnected (signals emitted during the outage are lost); a
    /// broker refusing it then ends the match with a
    /// [`ConnectionEvent::RestoreFailed`](super::ConnectionEvent::RestoreFailed). Bad patterns are refused at once
    /// (`invalid_argument`, no callback); the broker may refuse more
    /// matches than its `max_matches_per_connection` (`done` gets
    /// `limit_exceeded`, and the handler is dropped).
    pub fn add_match(
        &self,
        session: &str,
        signal: &str,
        on_signal: impl FnMut(&Signal) + 'static,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Result<MatchId, Error> {
        let parsed = patterns(session, signal)?;
        let texts = (session.to_string(), signal.to_string());
        let f: SignalFn = Rc::new(RefCell::new(on_signal));
        let done: Done<()> = Box::new(done);
        let (id, failed) = self
            .shared
            .with(|core, io| core.add_match(parsed, texts, f, done, io));
        if let Some(failed) = failed {
            self.shared.defer(Effect::Completed(failed, None));
        }
        Ok(MatchId(id))
    }

    /// Stops a match: its handler runs no more from this call on, and is
    /// dropped; `done` reports the broker's answer. Fails at once
    /// (`invalid_argument`, no callback) if the match is not (or no
    /// longer) one of this client's.
    pub fn remove_match(
        &self,
        id: MatchId,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Result<(), Error> {
        let removed = self.shared.with(|core, _| {
            let holding = core.holding();
            let list = &mut core.listeners.list;
            let at = list.iter().position(|l| l.id == id.0)?;
            Some((list.remove(at), holding))
        });
        let Some((listener, holding)) = removed else {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("match {} is not one of this client's", id.0),
            ));
        };
        let (session, signal) = listener.texts.clone();
        let done: Done<()> = Box::new(done);
        if holding && listener.active {
            // Reconnecting: no broker holds it until the restore, which
            // no longer replays it.
            drop(listener);
            let done = Completion::Unit(done, Ok(()));
            self.shared.defer(Effect::Completed(done, None));
            return Ok(());
        }
        // The handler goes outside the client's borrow.
        drop(listener);
        self.shared.start_op(
            |op| Frame::RemoveMatch {
                id: op,
                session,
                signal,
            },
            Op::RemoveMatch { done },
        );
        Ok(())
    }
}
