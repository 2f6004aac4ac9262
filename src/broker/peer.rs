//! One connection as the broker's core sees it: its state, its output
//! waiting to be written, what it publishes and subscribes to, and why it
//! closed.

use crate::error::{Error, ErrorCode};
use crate::wire::CallerInfo;
use std::collections::HashSet;
use std::rc::Rc;

/// Why the broker closed a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer ended the stream, or reading from it failed.
    Ended(Error),
    /// Writing to it failed.
    WriteFailed(Error),
    /// It broke the protocol (a malformed frame, a frame out of place, a
    /// bad hello) and was told so in a `refused` frame.
    Protocol(Error),
    /// Its hello was refused (protocol version, token) and it was told so.
    HelloRefused(Error),
    /// It sent no hello in time.
    HandshakeTimeout,
    /// It left its pings unanswered.
    Unresponsive,
    /// It started a frame and did not finish it in time.
    FrameTimeout,
    /// It did not read its output, which went over the queue limit or
    /// made no progress within the write timeout.
    SlowConsumer(Error),
    /// Its socket could not be set up.
    Unregistered(Error),
    /// The broker closed.
    BrokerClosed,
    /// It went over a limit that ends the connection (the broker's input
    /// budget) and was told so in a `refused` frame.
    OverLimit(Error),
}

impl CloseReason {
    /// The reason's name in logs (`slow_consumer`).
    pub fn name(&self) -> &'static str {
        match self {
            CloseReason::Ended(_) => "ended",
            CloseReason::WriteFailed(_) => "write_failed",
            CloseReason::Protocol(_) => "protocol",
            CloseReason::HelloRefused(_) => "hello_refused",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::Unresponsive => "unresponsive",
            CloseReason::FrameTimeout => "frame_timeout",
            CloseReason::SlowConsumer(_) => "slow_consumer",
            CloseReason::Unregistered(_) => "unregistered",
            CloseReason::BrokerClosed => "broker_closed",
            CloseReason::OverLimit(_) => "over_limit",
        }
    }

    /// Logs the closing of connection `conn`: at warn level when the
    /// peer misbehaved (an operator may act on it), at info when its
    /// socket failed, at debug for an ordinary end.
    pub fn log(&self, conn: super::ConnId) {
        let reason = self.name();
        let (level, detail) = match self {
            CloseReason::Ended(e) => (log::Level::Debug, Some(e)),
            CloseReason::BrokerClosed => (log::Level::Debug, None),
            CloseReason::WriteFailed(e) | CloseReason::Unregistered(e) => {
                (log::Level::Info, Some(e))
            }
            CloseReason::Protocol(e)
            | CloseReason::HelloRefused(e)
            | CloseReason::SlowConsumer(e)
            | CloseReason::OverLimit(e) => (log::Level::Warn, Some(e)),
            CloseReason::HandshakeTimeout
            | CloseReason::Unresponsive
            | CloseReason::FrameTimeout => (log::Level::Warn, None),
        };
        match detail {
            Some(e) => log::log!(
                target: "stagebus::broker",
                level,
                conn, reason, code = e.code.as_str();
                "connection {conn} closed ({reason}): {e}"
            ),
            None => log::log!(
                target: "stagebus::broker",
                level,
                conn, reason;
                "connection {conn} closed ({reason})"
            ),
        }
    }

    /// The error the connection is refused with, if it is told before it
    /// is closed.
    pub fn refusal(&self) -> Option<&Error> {
        match self {
            CloseReason::Protocol(e) | CloseReason::HelloRefused(e) | CloseReason::OverLimit(e) => {
                Some(e)
            }
            _ => None,
        }
    }
}

/// Bytes queued for a connection and not yet written, in frames.
///
/// The core appends; the shell writes from [`Outbox::pending`] and
/// reports with [`Outbox::consume`]. The room of a usual turn stays; what
/// a burst needed is given back.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    buf: Vec<u8>,
    /// Bytes before it are written.
    pos: usize,
}

impl Outbox {
    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Appends what `encode` appends (whole frames of at most `max_frame`
    /// bytes), unless more than `max_queued` bytes wait already: a peer
    /// that does not read is not buffered forever. `encode` must leave
    /// the buffer as it was when it fails.
    pub fn append(
        &mut self,
        max_frame: usize,
        max_queued: usize,
        encode: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), Error>,
    ) -> Result<(), Full> {
        if self.queued() > max_queued {
            return Err(Full::Queue(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{} bytes already queued for a peer that does not read (limit {max_queued})",
                    self.queued()
                ),
            )));
        }
        encode(&mut self.buf, max_frame).map_err(Full::Frame)
    }

    /// The bytes to write next.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Drops the first `n` bytes of [`Outbox::pending`], written.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            // Give back memory after a burst rather than hold it forever.
            if self.buf.capacity() > 1 << 20 {
                self.buf.shrink_to(64 * 1024);
            }
        } else if self.pos > self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// Why [`Outbox::append`] queued nothing.
#[derive(Debug)]
pub(super) enum Full {
    /// The queue is over its limit: the peer does not read.
    Queue(Error),
    /// The frame is over the maximum frame size (or cannot be encoded).
    Frame(Error),
}

/// One connection's state.
#[derive(Debug)]
pub(super) struct Peer {
    /// It said hello and was welcomed.
    pub handshaken: bool,
    /// A final notice is queued: the connection closes for this reason
    /// once its output is written, and its input is no longer read.
    pub closing: Option<CloseReason>,
    /// It is to be closed at once, in the list of closes already.
    pub condemned: bool,
    /// It is in the list of connections with output to write.
    pub dirty: bool,
    pub outbox: Outbox,
    /// Sessions it publishes.
    pub published: HashSet<String>,
    /// Sessions it subscribes to.
    pub subscribed: HashSet<String>,
    /// Whether it is heard from.
    pub liveness: crate::liveness::Liveness,
    /// Its deadline is armed for a frame in progress.
    pub frame_deadline: bool,
    /// A frame completed since the deadline was armed: the frame in
    /// progress is a later one.
    pub frame_progress: bool,
    /// Bytes read from it and not yet handed over, as last reported.
    pub input: usize,
    /// Registry bytes of the sessions it publishes.
    pub registry: usize,
    /// What its sessions take in a listing.
    pub listing: usize,
    /// Its input is not read until its output is down (see
    /// `Core::over_high_water`).
    pub read_paused: bool,
    /// Who it is: its credentials from the socket, then the names its
    /// hello gave.
    pub caller: CallerInfo,
    /// Its supplementary groups (a Unix socket's `SO_PEERGROUPS`), which
    /// a policy's `gid=` rules match besides `caller.gid`.
    pub groups: Vec<u32>,
    /// [`Peer::caller`] encoded once (at the hello), appended to every
    /// deliver it makes to a publisher that reads
    /// [`crate::wire::Frame::DeliverFrom`]. Shared, so forwarding costs a
    /// copy of its bytes and no allocation.
    pub caller_bytes: Rc<[u8]>,
    /// It said a greeting: it reads `DeliverFrom`.
    pub greeted: bool,
    /// It is a federation stand-in connection (a peer broker), not a
    /// client: the matches it holds are its broker's, and a signal it
    /// forwards goes to local listeners only.
    pub link: bool,
}

impl Default for Peer {
    fn default() -> Self {
        Peer {
            handshaken: false,
            closing: None,
            condemned: false,
            dirty: false,
            outbox: Outbox::default(),
            published: HashSet::new(),
            subscribed: HashSet::new(),
            liveness: Default::default(),
            frame_deadline: false,
            frame_progress: false,
            input: 0,
            registry: 0,
            listing: 0,
            read_paused: false,
            caller: CallerInfo::default(),
            groups: Vec::new(),
            caller_bytes: Rc::from(&[][..]),
            greeted: false,
            link: false,
        }
    }
}

impl Peer {
    /// Whether its input is still wanted.
    pub fn reads(&self) -> bool {
        self.closing.is_none() && !self.condemned
    }
}
