//! Opening the connection: the socket (plain or TLS) with the hello
//! queued, the next attempt of a reconnect, the connect timeout, and the
//! ping ticks of an open connection.
//!
//! Separate from the rest of the shell because it is the one place a
//! connection starts, with its own timers.

use super::{ClientSource, Shared};
use crate::client::core::Status;
use crate::client::effects::Outbox;
use crate::error::{Error, ErrorCode};
use crate::transport::{load_connector, Address, Connection, Stream, TlsConnector};
use crate::wire::{Frame, MAGIC, PROTOCOL_VERSION};
use std::rc::Rc;
use std::time::Duration;

impl Shared {
    /// Opens a connection to `address` and queues the hello.
    pub(super) fn open(&self, address: &Address) -> Result<(), Error> {
        let hello = Frame::Greeting {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            token: self.settings.token.clone(),
            client_name: self.settings.name.clone(),
        };
        let connector = match address {
            Address::Tls { .. } => Some(self.connector().map_err(|e| {
                Error::new(
                    e.code,
                    format!("cannot connect to {address}: {}", e.message),
                )
            })?),
            _ => None,
        };
        let attempt = Stream::connect(address, connector.as_ref()).and_then(|stream| {
            let source = Rc::new(ClientSource(self.me.clone()));
            // A TCP connect completes later; a Unix one at once.
            let connecting = matches!(address, Address::Tcp(_) | Address::Tls { .. });
            let (max_frame, max_queued) = (self.settings.max_frame, self.settings.max_queued);
            Connection::open(stream, &self.lp, source, connecting, max_frame, max_queued)
        });
        match attempt {
            Ok(conn) => {
                self.with(|_, io| {
                    io.conn = Some(conn);
                    io.open_error = None;
                    // The hello goes first; operations queue behind it.
                    let _ = io.send(&hello);
                });
                self.arm_timers(self.settings.connect_timeout);
                Ok(())
            }
            Err(e) => Err(Error::io(format_args!("cannot connect to {address}"), &e)),
        }
    }

    /// The TLS settings, read from their files at the first use.
    pub(super) fn connector(&self) -> Result<TlsConnector, Error> {
        let mut kept = self.settings.connector.borrow_mut();
        if let Some(c) = kept.as_ref() {
            return Ok(c.clone());
        }
        let c = load_connector(&self.settings.tls)?;
        *kept = Some(c.clone());
        Ok(c)
    }

    /// The back-off delay of a reconnect policy passed: the next attempt.
    pub(super) fn next_attempt(&self) {
        let address = {
            let mut inner = self.inner.borrow_mut();
            inner.io.retry_timer = None;
            inner.core.next_attempt()
        };
        if let Some(address) = address {
            if let Err(error) = self.open(&address) {
                self.shut(error);
            }
        }
    }

    pub(super) fn arm_timers(&self, connect_timeout: Duration) {
        let interval = self.inner.borrow().io.ping_interval;
        if !connect_timeout.is_zero() {
            let me = self.me.clone();
            let timer = self.lp.add_timer(connect_timeout, move |_| {
                if let Some(shared) = me.upgrade() {
                    shared.connect_timed_out(connect_timeout);
                }
            });
            self.inner.borrow_mut().io.connect_timer = Some(timer);
        }
        if !interval.is_zero() {
            self.arm_tick(interval);
        }
    }

    pub(super) fn arm_tick(&self, interval: Duration) {
        let me = self.me.clone();
        let timer = self.lp.add_timer(interval, move |_| {
            if let Some(shared) = me.upgrade() {
                shared.tick();
            }
        });
        self.inner.borrow_mut().io.tick = Some(timer);
    }

    pub(super) fn connect_timed_out(&self, limit: Duration) {
        let waiting = {
            let mut inner = self.inner.borrow_mut();
            inner.io.connect_timer = None;
            matches!(inner.core.status(), Status::Connecting)
        };
        if waiting {
            let address = self.core().address().clone();
            self.shut(Error::new(
                ErrorCode::BrokerGone,
                format!(
                    "cannot connect to {address}: no answer within {} ms",
                    limit.as_millis()
                ),
            ));
        }
    }

    pub(super) fn tick(&self) {
        let (effect, interval) = self.with(|core, io| {
            io.tick = None;
            let effect = core.tick(io.ping_max, io);
            (effect, io.ping_interval)
        });
        match effect {
            Some(effect) => self.run(effect),
            None if !self.core().is_closed() => self.arm_tick(interval),
            None => {}
        }
    }
}
