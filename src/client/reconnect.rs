//! Reconnecting: the policy a program gives a client, and the core's side
//! of it, without I/O.
//!
//! When the connection is lost (the socket closed, the broker went away,
//! or liveness declared it dead), a client with a [`ReconnectPolicy`]
//! does not close: [`Core::lost`] ends what was in flight (calls with
//! `broker_gone`, deliveries with `Cancel`), keeps the publications and
//! subscriptions, and hands the shell the delay before the next attempt.
//! The shell times it and opens the next address
//! ([`Core::next_attempt`]); once welcomed, the client restores what it
//! holds at the broker and sends what was held meanwhile (see
//! `restore.rs`).
//! Randomness (the jitter) comes in from the shell, so the core stays
//! deterministic under test.

use super::core::{Core, Status};
use super::effects::{ConnectionEventFn, Effect, Outbox};
use super::ops::Op;
use super::{CallEvent, CallId, ConnectionInfo};
use crate::error::{Error, ErrorCode};
use crate::transport::Address;
use crate::wire::Frame;
use std::time::Duration;

/// What calls and operations started while the client reconnects do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhileReconnecting {
    /// They are held and sent once reconnected, bounded by
    /// [`ReconnectPolicy::buffer_limit`] (over it: `limit_exceeded`) and
    /// by their own deadline (a request's timeout ends it as usual). They
    /// fail with `broker_gone` if the client gives up.
    Wait,
    /// They fail at once with `broker_gone`.
    FailFast,
}

/// How a client reconnects after losing its broker.
///
/// Reconnecting is off by default for the library (a [`ClientConfig`]
/// without a policy closes on the first loss, as before): a program must
/// say what it wants held and retried. `stagebus serve` turns it on.
///
/// On every loss, each call in flight ends exactly once with
/// `broker_gone`: **the publisher may or may not have run it**, the
/// client cannot know. Deliveries being served here end with `Cancel`.
/// Then the client waits a back-off delay and connects to the next
/// address (the connect address first, then [`ReconnectPolicy::addresses`]
/// in turn, round and round). Once welcomed it publishes its sessions
/// again, re-subscribes its subscriptions, adds its signal matches again
/// and renews its name watches: existing
/// [`RemoteStage`](crate::RemoteStage) handles keep working (they name
/// the session, never a connection), signal handlers hear signals
/// emitted from then on, and each watch reports the names' state afresh
/// (a name gone during the outage as [`NameEvent::Gone`], then the ones
/// published now as [`NameEvent::Present`]). Events report each step
/// ([`ConnectionEvent`]).
///
/// [`NameEvent::Gone`]: super::NameEvent::Gone
/// [`NameEvent::Present`]: super::NameEvent::Present
///
/// Not exhaustive: start from [`ReconnectPolicy::default`].
///
/// [`ClientConfig`]: super::ClientConfig
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// The delay before the first attempt after a loss (default 100 ms);
    /// it doubles with each failed attempt up to `max_delay`.
    pub initial_delay: Duration,
    /// The longest delay between attempts (default 5 s).
    pub max_delay: Duration,
    /// The share of each delay drawn at random (0.0 to 1.0, default
    /// 0.2): a delay `d` becomes a uniform pick in `[d·(1−jitter), d]`,
    /// so that clients of a restarted broker do not all come back at
    /// once.
    pub jitter: f64,
    /// Attempts after one loss before the client gives up and closes
    /// (its disconnect handler runs); `None`, the default, tries forever.
    /// The count starts again after each successful reconnect.
    pub max_attempts: Option<u32>,
    /// Further broker addresses, tried in turn after the connect address.
    pub addresses: Vec<Address>,
    /// What calls and operations made while reconnecting do (default
    /// [`WhileReconnecting::Wait`]).
    pub while_reconnecting: WhileReconnecting,
    /// Most calls and operations held while reconnecting (default 1024).
    pub buffer_limit: usize,
    /// How long publishing a session again retries while the broker
    /// still holds the name (default 10 s): the broker may not have
    /// noticed yet that the old connection is gone. A name still held
    /// after that belongs to another client: `republish_failed`.
    pub republish_window: Duration,
    /// How long a re-subscribe waits for its session to be published
    /// again (default 60 s): its publisher may come back after this
    /// client. When it expires the subscription ends as if the session
    /// went away (the session-gone handler runs).
    pub resubscribe_wait: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            jitter: 0.2,
            max_attempts: None,
            addresses: Vec::new(),
            while_reconnecting: WhileReconnecting::Wait,
            buffer_limit: 1024,
            republish_window: Duration::from_secs(10),
            resubscribe_wait: Duration::from_secs(60),
        }
    }
}

impl ReconnectPolicy {
    /// The same, with back-off from `initial` doubling up to `max`.
    pub fn with_delays(mut self, initial: Duration, max: Duration) -> ReconnectPolicy {
        self.initial_delay = initial;
        self.max_delay = max;
        self
    }

    /// The same, giving up after `attempts` (`None`: never).
    pub fn with_max_attempts(mut self, attempts: Option<u32>) -> ReconnectPolicy {
        self.max_attempts = attempts;
        self
    }

    /// The same, with `address` tried after the ones given so far.
    pub fn with_address(mut self, address: Address) -> ReconnectPolicy {
        self.addresses.push(address);
        self
    }

    /// The same, with calls made while reconnecting held (up to `limit`)
    /// or failed at once.
    pub fn with_buffering(mut self, mode: WhileReconnecting, limit: usize) -> ReconnectPolicy {
        self.while_reconnecting = mode;
        self.buffer_limit = limit;
        self
    }

    /// The delay before attempt `attempt` (1 for the first after a loss),
    /// `random` being a uniform pick in `[0, 1)`.
    pub(super) fn delay(&self, attempt: u32, random: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let base = self
            .initial_delay
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max_delay);
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        base.mul_f64(1.0 - jitter)
    }
}

/// A change in a reconnecting client's connection. Not exhaustive:
/// later versions may report more.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection was lost; the client reconnects. Every call that
    /// was in flight has ended with `broker_gone`.
    Disconnected(Error),
    /// Connected again (sessions are being published again).
    Reconnected(ConnectionInfo),
    /// Publishing a session again failed (another client holds its name,
    /// or the broker refused it): the session is no longer published by
    /// this client.
    RepublishFailed {
        /// The session's name.
        session: String,
        /// Why.
        error: Error,
    },
    /// Adding a signal match or a name watch again failed (the broker
    /// refused it, say over its limit): it is ended, its handler runs no
    /// more.
    RestoreFailed {
        /// What it was: `signal match 'SESSION' 'SIGNAL'` or
        /// `watch 'PATTERN'`, the patterns as given.
        what: String,
        /// Why.
        error: Error,
    },
}

/// A frame held while not connected, with the call or operation it
/// belongs to.
pub(super) struct Held {
    pub key: u64,
    pub frame: Frame,
}

/// A reconnecting client's state.
pub(super) struct Reconnect {
    pub policy: ReconnectPolicy,
    /// The connect address, then the policy's.
    addresses: Vec<Address>,
    /// Index of the address in use (or last tried).
    current: usize,
    /// Failed attempts since the last welcome.
    pub attempts: u32,
    /// Welcomed at least once: later losses are reconnects.
    pub welcomed: bool,
    /// Frames held until the next welcome.
    pub held: Vec<Held>,
}

impl Reconnect {
    pub fn new(first: Address, policy: ReconnectPolicy) -> Reconnect {
        let mut addresses = vec![first];
        addresses.extend(policy.addresses.iter().cloned());
        Reconnect {
            policy,
            addresses,
            current: 0,
            attempts: 0,
            welcomed: false,
            held: Vec::new(),
        }
    }

    /// Whether a call made now fails at once rather than being held.
    pub fn fails_fast(&self) -> bool {
        self.welcomed && self.policy.while_reconnecting == WhileReconnecting::FailFast
    }

    /// Holds a frame, unless the buffer is full.
    pub fn hold(&mut self, key: u64, frame: Frame) -> Result<(), Error> {
        if self.held.len() >= self.policy.buffer_limit {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{} calls and operations are waiting for the broker to come back (limit {})",
                    self.held.len(),
                    self.policy.buffer_limit
                ),
            ));
        }
        self.held.push(Held { key, frame });
        Ok(())
    }

    /// Drops every held frame of `key`; whether there was one.
    pub fn unhold(&mut self, key: u64) -> bool {
        let before = self.held.len();
        self.held.retain(|h| h.key != key);
        self.held.len() < before
    }
}

/// What a lost connection leads to.
pub(super) enum Lost {
    /// No policy, or it gave up: closed, as [`Core::close`] does
    /// (`None`: closed already).
    Closed(Option<super::effects::Settle>),
    /// Try again after `delay`; the effects report the loss.
    Retry {
        effects: Vec<Effect>,
        delay: Duration,
    },
}

impl Core {
    /// Whether frames go to the held queue now: a reconnect policy and
    /// no welcomed connection.
    pub(super) fn holding(&self) -> bool {
        self.reconnect.is_some() && !matches!(self.status, Status::Ready(_))
    }

    /// Sets (or removes) the reconnect policy; it applies from the next
    /// loss. Frames already held stay held.
    pub fn set_reconnect(&mut self, policy: Option<ReconnectPolicy>) {
        match (policy, &mut self.reconnect) {
            (Some(policy), Some(state)) => {
                let first = state.addresses[0].clone();
                let mut fresh = Reconnect::new(first, policy);
                fresh.welcomed = state.welcomed;
                fresh.held = std::mem::take(&mut state.held);
                *state = fresh;
            }
            (Some(policy), None) => {
                let mut fresh = Reconnect::new(self.address.clone(), policy);
                fresh.welcomed = matches!(self.status, Status::Ready(_));
                self.reconnect = Some(fresh);
            }
            (None, _) => self.reconnect = None,
        }
    }

    pub fn reconnect_policy(&self) -> Option<&ReconnectPolicy> {
        self.reconnect.as_ref().map(|r| &r.policy)
    }

    pub fn on_connection_event(&mut self, f: ConnectionEventFn) -> Option<ConnectionEventFn> {
        self.on_connection_event.replace(f)
    }

    pub(super) fn connection_event(&self, event: ConnectionEvent) -> Option<Effect> {
        let f = self.on_connection_event.clone()?;
        Some(Effect::Connection(f, event))
    }

    /// Why a call or operation started while reconnecting fails at once,
    /// if it does.
    pub(super) fn fails_fast(&self) -> Option<Error> {
        let r = self.reconnect.as_ref()?;
        (r.fails_fast() && self.holding()).then(|| {
            Error::broker_gone("the client is reconnecting and fails calls at once meanwhile")
        })
    }

    /// The connection was lost because of `error`. With a policy that
    /// still allows an attempt, ends what was in flight and hands back
    /// the delay before the next attempt; otherwise closes.
    /// A `refused` handshake is never retried.
    pub fn lost(
        &mut self,
        error: Error,
        refused: bool,
        random: f64,
        out: &mut impl Outbox,
    ) -> Lost {
        let closed = self.is_closed();
        let retry = match &mut self.reconnect {
            Some(r) if !closed && !refused => {
                r.attempts += 1;
                match r.policy.max_attempts {
                    Some(max) if r.attempts > max => None,
                    _ => Some(r.policy.delay(r.attempts, random)),
                }
            }
            _ => None,
        };
        let Some(delay) = retry else {
            let welcomed = self.reconnect.as_ref().is_some_and(|r| r.welcomed);
            let by = super::effects::Closer::Failure;
            let was_ready = welcomed || matches!(self.status, Status::Ready(_));
            return Lost::Closed(self.close_as(error, by, was_ready, out));
        };
        let was_ready = matches!(self.status, Status::Ready(_));
        self.status = Status::Waiting;
        let mut effects = Vec::new();
        if was_ready {
            effects.extend(self.connection_event(ConnectionEvent::Disconnected(error.clone())));
        }
        let gone = Error::broker_gone(format!(
            "the connection to the broker was lost ({}); the publisher may or may not have run the call",
            error.message
        ));
        let held: Vec<u64> = self
            .reconnect
            .iter()
            .flat_map(|r| r.held.iter().map(|h| h.key))
            .collect();
        for op in self.ops.drain_except(&held) {
            // A match or a watch the broker never confirmed ends with
            // its operation (its `done` hears of the loss); confirmed
            // ones stay, to be restored.
            if let Op::AddMatch { listener, .. } = &op {
                self.listeners.forget(*listener);
            }
            effects.extend(op.fail(gone.clone()).map(|c| Effect::Completed(c, None)));
        }
        self.watchers.forget_unconfirmed(&held);
        for (id, call) in self.calls.drain_except(&held) {
            effects.push(Effect::Call(
                call,
                CallId(id),
                CallEvent::Error(gone.clone()),
            ));
        }
        for (route, serve) in self.serving.end_all() {
            effects.push(Effect::Serve(serve, route, super::Inbound::Cancel));
        }
        self.liveness = crate::liveness::Liveness::default();
        Lost::Retry { effects, delay }
    }

    /// Starts the next attempt: the address to connect to.
    pub fn next_attempt(&mut self) -> Option<Address> {
        let r = self.reconnect.as_mut()?;
        if !matches!(self.status, Status::Waiting) {
            return None;
        }
        r.current = (r.current + 1) % r.addresses.len();
        self.address = r.addresses[r.current].clone();
        self.status = Status::Connecting;
        Some(self.address.clone())
    }
}
