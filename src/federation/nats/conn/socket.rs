//! The socket's life: connecting through the server list with back-off,
//! the handshake (`INFO` → `CONNECT`, subscriptions, `PING` → `PONG`),
//! reading and writing, keepalive pings, and dropping a connection.

use super::{next_random, READ_BUDGET, READ_CHUNK};
use super::{ConnSource, NatsClient, NatsEvent, Phase, Socket, DEFAULT_MAX_PAYLOAD};
use crate::event_loop::{Readiness, TimerId};
use crate::federation::nats::options::{NatsAuth, ServerUrl};
use crate::federation::nats::proto::{self, ConnectInfo, ServerOp};
use crate::transport::{load_connector, ClientTls, Stream};
use mio::net::TcpStream;
use mio::Interest;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::time::Duration;

impl NatsClient {
    /// Opens a socket to the next server, or arms the back-off timer
    /// when a whole round of the list failed.
    pub(super) fn connect_next(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.closed || inner.socket.is_some() || inner.timer.is_some() {
            return;
        }
        let count = inner.servers.len();
        if inner.failed_attempts as usize >= count {
            // A whole round of the list failed: back off, doubling per
            // round up to the maximum, with up to a quarter of jitter.
            inner.failed_attempts = 0;
            let rounds = inner.failed_rounds.min(16);
            inner.failed_rounds += 1;
            let base = inner.options.reconnect_wait.as_millis() as u64;
            let max = inner.options.reconnect_wait_max.as_millis() as u64;
            let wait = base.saturating_mul(1 << rounds).min(max).max(1);
            let jitter = next_random(&mut inner.random) % (wait / 4 + 1);
            let me = self.me.clone();
            inner.timer = Some(self.lp.add_timer(
                Duration::from_millis(wait - jitter),
                move |_| {
                    if let Some(c) = me.upgrade() {
                        c.inner.borrow_mut().timer = None;
                        c.connect_next();
                        c.deliver();
                    }
                },
            ));
            return;
        }
        let server = inner.servers[inner.next_server % count].clone();
        inner.next_server = (inner.next_server + 1) % count;
        inner.attempt += 1;
        let attempt = inner.attempt;
        drop(inner);
        match self.open(&server, attempt) {
            Ok(()) => {
                let me = self.me.clone();
                let timeout = self.inner.borrow().options.connect_timeout;
                let t = self.lp.add_timer(timeout, move |_| {
                    if let Some(c) = me.upgrade() {
                        c.connect_timed_out(attempt);
                    }
                });
                self.inner.borrow_mut().timer = Some(t);
            }
            Err(e) => {
                log::debug!(server = server.host_port().as_str(); "NATS connect failed: {e}");
                self.inner.borrow_mut().failed_attempts += 1;
                // Try the next server (or back off) on the next turn, not
                // recursively.
                let me = self.me.clone();
                let t = self.lp.add_timer(Duration::ZERO, move |_| {
                    if let Some(c) = me.upgrade() {
                        c.inner.borrow_mut().timer = None;
                        c.connect_next();
                        c.deliver();
                    }
                });
                self.inner.borrow_mut().timer = Some(t);
            }
        }
    }

    pub(super) fn open(&self, server: &ServerUrl, attempt: u64) -> io::Result<()> {
        let addr = server
            .host_port()
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let mut stream = Stream::Tcp(TcpStream::connect(addr)?);
        stream.set_nodelay();
        let source = Rc::new(ConnSource {
            client: self.me.clone(),
            attempt,
        });
        let token =
            self.lp
                .register(&mut stream, Interest::READABLE | Interest::WRITABLE, source)?;
        let mut inner = self.inner.borrow_mut();
        inner.parser.reset();
        inner.parser.set_max_payload(DEFAULT_MAX_PAYLOAD * 2);
        inner.socket = Some(Socket {
            stream,
            token,
            phase: Phase::AwaitInfo,
            server: server.host_port(),
            host: server.host.clone(),
            tls_demanded: server.tls,
            out: Vec::new(),
            written: 0,
            pings_out: 0,
            connected: false,
            write_interest: true,
        });
        Ok(())
    }

    pub(super) fn connect_timed_out(&self, attempt: u64) {
        let mut inner = self.inner.borrow_mut();
        inner.timer = None;
        if inner.attempt != attempt || inner.phase() == Some(Phase::Ready) {
            return;
        }
        drop(inner);
        self.fail_attempt("connect timed out".into());
    }

    /// A socket that never became ready goes; the next server is tried.
    pub(super) fn fail_attempt(&self, reason: String) {
        let socket = {
            let mut inner = self.inner.borrow_mut();
            inner.failed_attempts += 1;
            if let Some(t) = inner.timer.take() {
                self.lp.cancel_timer(t);
            }
            inner.socket.take()
        };
        if let Some(mut s) = socket {
            log::debug!(server = s.server.as_str(); "NATS connect failed: {reason}");
            self.lp.deregister(&mut s.stream, s.token);
        }
        self.connect_next();
        self.deliver();
    }

    /// Drops the socket; a ready one ends its epoch with `Disconnected`.
    pub(super) fn drop_socket(&self, reason: String) {
        let (socket, was_ready, epoch, ping) = {
            let mut inner = self.inner.borrow_mut();
            let ready = inner.phase() == Some(Phase::Ready);
            if let Some(t) = inner.timer.take() {
                self.lp.cancel_timer(t);
            }
            let ping = inner.ping_timer.take();
            (inner.socket.take(), ready, inner.epoch, ping)
        };
        if let Some(t) = ping {
            self.lp.cancel_timer(t);
        }
        let Some(mut s) = socket else { return };
        self.lp.deregister(&mut s.stream, s.token);
        let mut inner = self.inner.borrow_mut();
        if was_ready {
            log::info!(server = s.server.as_str(), epoch = epoch; "NATS connection lost: {reason}");
            inner
                .events
                .push_back(NatsEvent::Disconnected { epoch, reason });
        } else {
            inner.failed_attempts += 1;
        }
    }

    pub(super) fn socket_ready(&self, attempt: u64, readiness: Readiness) {
        if self.inner.borrow().attempt != attempt || self.inner.borrow().socket.is_none() {
            return;
        }
        if let Some(s) = self.inner.borrow_mut().socket.as_mut() {
            s.connected = true;
        }
        if readiness.writable {
            self.write_out();
        }
        if readiness.readable || readiness.hangup {
            self.read_in(attempt, readiness.hangup);
        }
        // What the read left to send: a TLS handshake's next records, or
        // output that waited for the handshake. Written now (the socket
        // asks for writability only while something waits, so no later
        // readiness would bring it).
        let waiting = self
            .inner
            .borrow()
            .socket
            .as_ref()
            .is_some_and(|s| s.stream.wants_write() || s.written < s.out.len());
        if waiting {
            self.write_out();
        }
        self.deliver();
    }

    /// Writes queued output; a write error drops the connection.
    pub(super) fn write_out(&self) {
        let mut inner = self.inner.borrow_mut();
        let Some(s) = inner.socket.as_mut() else {
            return;
        };
        let mut failure = s.stream.send_pending().err().map(|e| e.to_string());
        while failure.is_none() && s.written < s.out.len() {
            match s.stream.write(&s.out[s.written..]) {
                Ok(0) => {
                    failure = Some("socket closed".to_string());
                    break;
                }
                Ok(n) => s.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if s.written == s.out.len() {
            s.out.clear();
            s.written = 0;
        } else if s.written > 1 << 20 {
            s.out.drain(..s.written);
            s.written = 0;
        }
        // Output waiting for a TLS handshake cannot move before it ends
        // (the read that ends it writes it): no wake-ups for it meanwhile.
        let output_waits = s.written < s.out.len() && !s.stream.handshaking();
        let want_write = !s.connected || output_waits || s.stream.wants_write();
        if failure.is_none() && want_write != s.write_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match self.lp.reregister(&mut s.stream, s.token, interest) {
                Ok(()) => s.write_interest = want_write,
                Err(e) => failure = Some(format!("cannot change the socket's interest: {e}")),
            }
        }
        drop(inner);
        if let Some(reason) = failure {
            self.lost(reason);
        }
    }

    /// Ends the current socket, whatever its phase, and moves on.
    pub(super) fn lost(&self, reason: String) {
        let ready = self.inner.borrow().phase() == Some(Phase::Ready);
        if ready {
            self.drop_socket(reason);
            self.connect_next();
        } else {
            self.fail_attempt(reason);
        }
    }

    /// Reads what the socket has (`hangup`: the peer closed, read on to
    /// the end).
    pub(super) fn read_in(&self, attempt: u64, hangup: bool) {
        let mut buf = std::mem::take(&mut self.inner.borrow_mut().read_buf);
        if buf.len() < READ_CHUNK {
            buf.resize(READ_CHUNK, 0);
        }
        self.read_with(attempt, hangup, &mut buf);
        self.inner.borrow_mut().read_buf = buf;
    }

    fn read_with(&self, attempt: u64, hangup: bool, buf: &mut [u8]) {
        let mut total = 0;
        loop {
            let (result, drains) = {
                let mut inner = self.inner.borrow_mut();
                if inner.attempt != attempt {
                    return;
                }
                let Some(s) = inner.socket.as_mut() else {
                    return;
                };
                (s.stream.read(buf), s.stream.short_read_drains())
            };
            match result {
                Ok(0) => {
                    self.handle_ops();
                    self.lost("server closed the connection".into());
                    return;
                }
                Ok(n) => {
                    total += n;
                    self.inner.borrow_mut().parser.push(&buf[..n]);
                    if !self.handle_ops() {
                        return;
                    }
                    // A plain socket that gave less than asked is empty:
                    // no second read to hear it say so (one syscall less
                    // per wake-up; the next bytes wake the loop again).
                    if n < buf.len() && drains && !hangup {
                        return;
                    }
                    if total >= READ_BUDGET {
                        if let Some(s) = self.inner.borrow().socket.as_ref() {
                            self.lp.again(s.token);
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // A certificate problem repeats at every attempt and
                    // is the operator's to fix: said, not only traced.
                    if let Some(s) = self.inner.borrow().socket.as_ref() {
                        if s.stream.handshaking() {
                            log::warn!(server = s.server.as_str(); "NATS: {e}");
                        }
                    }
                    self.lost(e.to_string());
                    return;
                }
            }
        }
    }

    /// Handles every complete operation buffered; false when the
    /// connection was dropped.
    pub(super) fn handle_ops(&self) -> bool {
        loop {
            let op = self.inner.borrow_mut().parser.next_op();
            match op {
                Ok(None) => return true,
                Ok(Some(op)) => {
                    if !self.handle_op(op) {
                        return false;
                    }
                }
                Err(e) => {
                    self.lost(e.to_string());
                    return false;
                }
            }
        }
    }

    pub(super) fn handle_op(&self, op: ServerOp) -> bool {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let Some(s) = inner.socket.as_mut() else {
            return false;
        };
        match op {
            ServerOp::Ping => {
                proto::encode_pong(&mut s.out);
            }
            ServerOp::Pong => match s.phase {
                Phase::AwaitPong => {
                    s.phase = Phase::Ready;
                    s.pings_out = 0;
                    inner.epoch += 1;
                    inner.failed_attempts = 0;
                    inner.failed_rounds = 0;
                    let server = s.server.clone();
                    if let Some(t) = inner.timer.take() {
                        self.lp.cancel_timer(t);
                    }
                    log::info!(server = server.as_str(), epoch = inner.epoch; "NATS connected");
                    inner.events.push_back(NatsEvent::Connected {
                        epoch: inner.epoch,
                        server,
                        info: Box::new(inner.info.clone()),
                    });
                    let interval = inner.options.ping_interval;
                    inner.ping_timer = Some(self.arm_ping(interval));
                }
                _ => s.pings_out = 0,
            },
            ServerOp::Ok => {}
            ServerOp::Err(e) => {
                log::warn!(server = s.server.as_str(); "NATS server error: {e}");
                inner.events.push_back(NatsEvent::ServerError(e));
            }
            ServerOp::Info(info) => {
                for url in &info.connect_urls {
                    if let Ok(mut u) = ServerUrl::parse(url) {
                        if !inner
                            .servers
                            .iter()
                            .any(|k| k.host == u.host && k.port == u.port)
                        {
                            // Announced servers take the credentials of the
                            // configured ones.
                            u.auth = inner.servers[0].auth.clone();
                            u.tls = inner.servers[0].tls;
                            inner.servers.push(u);
                        }
                    }
                }
                if info.max_payload > 0 {
                    let max = usize::try_from(info.max_payload).unwrap_or(usize::MAX / 2);
                    inner.parser.set_max_payload(max.saturating_mul(2));
                }
                if s.phase == Phase::AwaitInfo {
                    let tls = match start_tls(inner, &info) {
                        Ok(tls) => tls,
                        Err(reason) => {
                            drop(guard);
                            self.fail_attempt(reason);
                            return false;
                        }
                    };
                    let Some(s) = inner.socket.as_mut() else {
                        return false;
                    };
                    let server_index = inner
                        .servers
                        .iter()
                        .position(|k| k.host_port() == s.server)
                        .unwrap_or(0);
                    let auth = match &inner.options.auth {
                        NatsAuth::None => inner.servers[server_index].auth.clone(),
                        a => a.clone(),
                    };
                    let mut connect = ConnectInfo {
                        name: inner.options.name.clone(),
                        lang: "rust-stagebus".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        protocol: 1,
                        echo: true,
                        headers: true,
                        no_responders: true,
                        tls_required: tls,
                        ..ConnectInfo::default()
                    };
                    match auth {
                        NatsAuth::None => {}
                        NatsAuth::UserPassword { user, password } => {
                            connect.user = Some(user);
                            connect.pass = Some(password);
                        }
                        NatsAuth::Token(t) => connect.auth_token = Some(t),
                        NatsAuth::NKey(key) => {
                            connect.nkey = Some(key.public_key().to_string());
                            connect.sig = Some(key.sign(info.nonce.as_bytes()));
                            connect.jwt = key.jwt().map(str::to_string);
                        }
                    }
                    proto::encode_connect(&connect, &mut s.out);
                    for (sid, sub) in &inner.subs {
                        let _ = proto::encode_subscribe(
                            &sub.subject,
                            sub.queue.as_deref(),
                            *sid,
                            &mut s.out,
                        );
                    }
                    proto::encode_ping(&mut s.out);
                    s.phase = Phase::AwaitPong;
                } else if info.ldm {
                    inner.events.push_back(NatsEvent::LameDuck);
                }
                inner.info = *info;
            }
            ServerOp::Msg(msg) => {
                if msg.sid == inner.inbox_sid {
                    let token = msg
                        .subject
                        .rsplit_once('.')
                        .and_then(|(_, t)| t.parse::<u64>().ok());
                    if let Some(token) = token {
                        inner.events.push_back(NatsEvent::Reply { token, msg });
                    }
                } else {
                    inner.events.push_back(NatsEvent::Msg(msg));
                }
            }
        }
        drop(guard);
        self.want_flush();
        true
    }

    pub(super) fn arm_ping(&self, interval: Duration) -> TimerId {
        let me = self.me.clone();
        self.lp.add_timer(interval, move |_| {
            if let Some(c) = me.upgrade() {
                c.ping_due();
            }
        })
    }

    pub(super) fn ping_due(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.ping_timer = None;
        let max = inner.options.max_pings_out;
        let interval = inner.options.ping_interval;
        let Some(s) = inner.socket.as_mut().filter(|s| s.phase == Phase::Ready) else {
            return;
        };
        if s.pings_out >= max {
            drop(inner);
            self.lost("stale connection: no PONG".into());
            self.deliver();
            return;
        }
        s.pings_out += 1;
        proto::encode_ping(&mut s.out);
        drop(inner);
        let t = self.arm_ping(interval);
        self.inner.borrow_mut().ping_timer = Some(t);
        self.want_flush();
    }
}

/// After the server's first `INFO`: goes on under TLS when the server's
/// URL (`tls://`), the options (TLS settings given) or the server
/// (`tls_required`) want it. Ok(whether TLS is on); Err(why the attempt
/// fails): the server offers no TLS, or the settings cannot be loaded.
fn start_tls(inner: &mut super::Inner, info: &proto::ServerInfo) -> Result<bool, String> {
    let Some(socket) = inner.socket.take() else {
        return Ok(false);
    };
    let wanted = socket.tls_demanded || inner.tls.is_some() || info.tls_required;
    if !wanted {
        inner.socket = Some(socket);
        return Ok(false);
    }
    let refuse = |inner: &mut super::Inner, socket, why: String| {
        inner.socket = Some(socket);
        Err(why)
    };
    if !info.tls_required && !info.tls_available {
        let why = format!("{} offers no TLS, and TLS is wanted", socket.server);
        return refuse(inner, socket, why);
    }
    if inner.tls.is_none() {
        // The server asks for TLS and no settings were given: the
        // system's roots.
        match load_connector(&ClientTls::default()) {
            Ok(c) => inner.tls = Some(c),
            Err(e) => return refuse(inner, socket, format!("NATS TLS: {}", e.message)),
        }
    }
    let connector = inner.tls.as_ref().expect("loaded above");
    let (stream, result) = match socket.stream.start_tls(connector, &socket.host) {
        Ok(stream) => (stream, Ok(true)),
        Err((e, stream)) => (stream, Err(format!("NATS TLS with {}: {e}", socket.server))),
    };
    inner.socket = Some(super::Socket { stream, ..socket });
    result
}
