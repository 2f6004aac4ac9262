//! The session operations of [`Client`]: publishing (and rescinding) a
//! session, the broker's listing, stats and monitor, and subscribing to
//! a session (also waiting for its name).
//!
//! Separate from the rest of the public API because each of these is
//! one operation on the broker, answered once through `ops.rs`.

use super::{refuse_empty, wait_millis, Client, Delivery, Inbound, Publication};
use crate::client::ops::Op;
use crate::client::serving::ServeFn;
use crate::error::{Error, ErrorCode};
use crate::report::StatsReport;
use crate::wire::{Frame, NameMode, SessionInfo, TapEvent};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

impl Client {
    /// Publishes a session named `session` with `methods`. Calls to it
    /// run `serve`; `done` gets the broker's answer (`already_exists`,
    /// `invalid_argument`, `limit_exceeded`, …).
    pub fn publish(
        &self,
        session: &str,
        methods: &[&str],
        serve: impl FnMut(&Delivery, Inbound) + 'static,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        self.publish_serving(
            session,
            methods,
            NameMode::Exclusive,
            Rc::new(RefCell::new(serve)),
            done,
        );
    }

    /// [`Client::publish`] in `mode`: `exclusive` (the default: a second
    /// publisher of the name is refused with `already_exists`), `queue`
    /// (later publishers wait in line and the first takes over when the
    /// owner goes or rescinds; calls in flight to the old owner end with
    /// `publisher_gone`) or `balance` (every publisher serves; each new
    /// call goes to the one with the fewest calls in flight, and a
    /// call's emits, recalls and cancel stay with its publisher). The
    /// first publisher fixes the name's mode: a publish in another mode
    /// completes with `name_mode_conflict`. Subscribers see one session.
    pub fn publish_as(
        &self,
        mode: NameMode,
        session: &str,
        methods: &[&str],
        serve: impl FnMut(&Delivery, Inbound) + 'static,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        self.publish_serving(session, methods, mode, Rc::new(RefCell::new(serve)), done);
    }

    /// [`Client::publish_as`], naming the publication for its publisher.
    pub(crate) fn publish_serving(
        &self,
        session: &str,
        methods: &[&str],
        mode: NameMode,
        serve: ServeFn,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Publication {
        let frame_methods = methods.iter().map(|m| m.to_string()).collect();
        let publication = Publication {
            client: Rc::downgrade(&self.shared),
            session: session.to_string(),
            serve: Rc::downgrade(&serve),
        };
        self.shared.start_op(
            |id| match mode {
                // Understood by every broker.
                NameMode::Exclusive => Frame::Publish {
                    id,
                    session: session.to_string(),
                    methods: frame_methods,
                },
                mode => Frame::PublishAs {
                    id,
                    session: session.to_string(),
                    methods: frame_methods,
                    mode,
                },
            },
            Op::Publish {
                session: session.to_string(),
                methods: methods.iter().map(|m| m.to_string()).collect(),
                serve,
                withdrawn: false,
                done: Box::new(done),
            },
        );
        publication
    }

    /// Withdraws a session this client published. Fails at once (no
    /// callback) if it is not published here: `Session 'NAME' is not
    /// currently published`.
    pub fn rescind(
        &self,
        session: &str,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Result<(), Error> {
        refuse_empty(session)?;
        if !self.shared.core().is_published(session) {
            return Err(Error::new(
                ErrorCode::NotPublisher,
                format!("Session '{session}' is not currently published"),
            ));
        }
        self.shared.start_op(
            |id| Frame::Rescind {
                id,
                session: session.to_string(),
            },
            Op::Rescind {
                session: session.to_string(),
                done: Box::new(done),
            },
        );
        Ok(())
    }

    /// Lists the published sessions, sorted by name, with their methods.
    pub fn listing(&self, done: impl FnOnce(Result<Vec<SessionInfo>, Error>) + 'static) {
        self.shared.start_op(
            |id| Frame::Listing { id },
            Op::Listing {
                done: Box::new(done),
            },
        );
    }

    /// Asks the broker for its report of itself (totals, errors by code,
    /// each connection and session; see [`crate::report`]); `done` gets
    /// it once.
    pub fn stats(&self, done: impl FnOnce(Result<StatsReport, Error>) + 'static) {
        self.shared.start_op(
            |id| Frame::Stats { id },
            Op::Stats {
                done: Box::new(done),
            },
        );
    }

    /// Monitors the broker's traffic: from the broker's answer on, `on_tap`
    /// gets every frame the broker receives from other connections (only
    /// those of `session` if given; with their payloads if `payload`),
    /// until this client closes. Asking again replaces the filter and
    /// `on_tap`. A monitor that cannot keep up is disconnected by the
    /// broker's output limits, never slowing it. `done` gets the
    /// broker's answer.
    pub fn monitor(
        &self,
        session: Option<&str>,
        payload: bool,
        on_tap: impl FnMut(&TapEvent) + 'static,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        let f = Rc::new(RefCell::new(on_tap));
        let replaced = self.shared.with(|core, _| core.on_tap(f));
        drop(replaced);
        let session = session.map(str::to_string);
        self.shared.start_op(
            move |id| Frame::Monitor {
                id,
                session,
                payload,
            },
            Op::Monitor {
                done: Box::new(done),
            },
        );
    }

    /// Subscribes to `session`; `done` gets its methods, or
    /// `no_such_session` (`Session 'X' doesn't exist`).
    pub fn subscribe(
        &self,
        session: &str,
        done: impl FnOnce(Result<Vec<String>, Error>) + 'static,
    ) {
        self.shared.start_op(
            |id| Frame::Subscribe {
                id,
                session: session.to_string(),
            },
            Op::Subscribe {
                session: session.to_string(),
                done: Box::new(done),
            },
        );
    }

    /// Subscribes to `session`, waiting up to `wait` for it to be
    /// published if it is not yet, so that a caller and its service may
    /// start in any order. `done` gets the methods as soon as the session
    /// is published (or at once if it is), or `no_such_session`
    /// (`Session 'X' was not published within 5 s`) when the wait
    /// expires; `broker_gone` if the connection ends first. The broker
    /// times the wait, so `done` runs exactly once and the client is
    /// subscribed exactly when it reports methods. A zero `wait` is
    /// [`Client::subscribe`]; `wait` is counted in whole milliseconds,
    /// rounded up. Each connection may have a limited number of waits
    /// at once (the broker's `max_waiters_per_connection`).
    pub fn subscribe_waiting(
        &self,
        session: &str,
        wait: Duration,
        done: impl FnOnce(Result<Vec<String>, Error>) + 'static,
    ) {
        let wait_ms = wait_millis(wait);
        if wait_ms == 0 {
            return self.subscribe(session, done);
        }
        self.shared.start_op(
            |id| Frame::SubscribeWait {
                id,
                session: session.to_string(),
                wait_ms,
            },
            Op::Subscribe {
                session: session.to_string(),
                done: Box::new(done),
            },
        );
    }

    /// Ends a subscription. Fails at once (no callback) if there is none:
    /// `Unknown session 'X'`. The subscription ends here at once (remote
    /// stages of it refuse requests from now on); `done` reports the
    /// broker's answer.
    pub fn unsubscribe(
        &self,
        session: &str,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Result<(), Error> {
        refuse_empty(session)?;
        if !self.shared.with(|core, _| core.unsubscribe_now(session)) {
            return Err(Error::new(
                ErrorCode::NotSubscribed,
                format!("Unknown session '{session}'"),
            ));
        }
        self.shared.start_op(
            |id| Frame::Unsubscribe {
                id,
                session: session.to_string(),
            },
            Op::Unsubscribe {
                session: session.to_string(),
                done: Box::new(done),
            },
        );
        Ok(())
    }
}
