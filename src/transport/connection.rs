//! A framed connection: decoder in, buffered frames out.

use super::Stream;
use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, Source};
use crate::wire::{encode_frame, Frame, FrameDecoder, WireError, READ_CHUNK};
use mio::{Interest, Token};
use std::io::{self, Read, Write};
use std::rc::Rc;

/// How many bytes one `read_bodies` call reads before it yields to other
/// sources (the caller then asks the loop to call it again).
const READ_BUDGET: usize = 1 << 20;

/// What reading found.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// Drained to would-block; the connection is open.
    Drained,
    /// Stopped at the budget with more to read: call again next turn.
    More,
    /// The peer closed the stream (cleanly), or it failed.
    Closed(Error),
}

/// A framed connection registered with a loop.
///
/// It asks the loop for writability only while output waits for room in
/// the socket (or a connect is in progress): an always-on interest costs a
/// wake-up after every write that drains the socket buffer, which on a
/// request/response pattern is two extra wake-ups per round trip.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: Stream,
    token: Token,
    decoder: FrameDecoder,
    out: Vec<u8>,
    out_pos: usize,
    max_frame: usize,
    max_queued: usize,
    /// Set while a connect is in progress: writes wait for it.
    connecting: bool,
    /// Registered for writability as well as readability.
    write_interest: bool,
    /// Frames queued since the last write that may still be taken back
    /// whole: (key, start, end) in `out`, in increasing key order; `start
    /// == end` once taken back. Emptied by every write, which is the
    /// moment they may start to leave.
    retractable: Vec<(u64, usize, usize)>,
    /// Ranges of `out` taken back, cut out before the next write.
    holes: Vec<(usize, usize)>,
    /// Bytes in `holes`.
    hole_bytes: usize,
    /// The TLS peer's certificate subject was handed over.
    subject_noted: bool,
    /// A frame body was read.
    bodies_seen: bool,
    /// A resumable read stopped after a read that drained the socket:
    /// the next one hands over what is buffered and does not read.
    drained_at_stop: bool,
    /// Bytes read by a resumable read and the resumed calls after its
    /// stops: the read budget spans them, so that a peer that keeps the
    /// socket full cannot keep the caller reading batch after batch
    /// without returning to its loop.
    read_in_batches: usize,
    /// The last resumable read stopped: the next call resumes it.
    stopped_in_batches: bool,
    /// Bytes a read takes before it returns [`ReadOutcome::More`]
    /// ([`READ_BUDGET`]; smaller in tests).
    read_budget: usize,
}

impl Connection {
    /// Registers `stream` with `lp` for `source`. `connecting` marks a
    /// connect still in progress: its completion shows as writability.
    pub fn open(
        mut stream: Stream,
        lp: &EventLoop,
        source: Rc<dyn Source>,
        connecting: bool,
        max_frame: usize,
        max_queued: usize,
    ) -> io::Result<Connection> {
        stream.set_nodelay();
        let interest = if connecting {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let token = lp.register(&mut stream, interest, source)?;
        Ok(Connection {
            stream,
            token,
            decoder: FrameDecoder::new(max_frame),
            out: Vec::new(),
            out_pos: 0,
            max_frame,
            max_queued,
            connecting,
            write_interest: connecting,
            retractable: Vec::new(),
            holes: Vec::new(),
            hole_bytes: 0,
            subject_noted: false,
            bodies_seen: false,
            drained_at_stop: false,
            read_in_batches: 0,
            stopped_in_batches: false,
            read_budget: READ_BUDGET,
        })
    }

    /// Limits the first frame read to `max` bytes (see
    /// [`FrameDecoder::limit_first_frame`]).
    pub fn limit_first_frame(&mut self, max: usize) {
        self.decoder.limit_first_frame(max);
    }

    /// Bytes read and not yet handed over: the frame in progress, and
    /// complete frames held back by a paused read.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Whether part of a frame was read and the rest has not arrived.
    pub fn mid_frame(&self) -> bool {
        self.decoder.buffered() > 0
    }

    /// The loop token this connection's events arrive under.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Whether a connect is still in progress.
    pub fn connecting(&self) -> bool {
        self.connecting
    }

    /// Settles a connect in progress once the socket reported
    /// writability: `Err` with the connect's error if it failed.
    pub fn finish_connect(&mut self) -> io::Result<()> {
        if self.connecting {
            if let Some(e) = self.stream.take_error()? {
                return Err(e);
            }
            self.connecting = false;
        }
        Ok(())
    }

    /// Deregisters the socket; dropping the connection then closes it.
    pub fn close(mut self, lp: &EventLoop) {
        lp.deregister(&mut self.stream, self.token);
    }

    /// Reads until the socket would block, the peer closes, or the read
    /// budget is spent, handing each complete frame body to `on_body`.
    /// Bodies read before a close are still handed over; an error from
    /// `on_body` ends the stream as a protocol error.
    ///
    /// Without `hangup` a read shorter than offered ends the call: it
    /// emptied the socket, and bytes arriving later raise a new edge. With
    /// `hangup` (the peer closed; no new edge will come) it reads on to
    /// the end of the stream.
    ///
    /// At most `max` bodies are handed over; the second value says
    /// whether the call stopped there. Then the caller calls again before
    /// it waits for readiness: that call hands over what stayed buffered
    /// first, and reads the socket again only if the read before the stop
    /// did not drain it. (The client reads so: a few frames decoded, then
    /// acted on, then the next few, so that what decoding one allocates
    /// is freed before the next is decoded, and stays in the allocator's
    /// fast per-thread cache, which a whole burst would overflow.) The
    /// read budget spans a call and the calls that resume it: once it is
    /// spent at a stop, the call returns [`ReadOutcome::More`], and the
    /// caller lets its loop run before it reads on.
    pub fn read_bodies(
        &mut self,
        hangup: bool,
        max: usize,
        mut on_body: impl FnMut(&[u8]) -> Result<(), WireError>,
    ) -> (ReadOutcome, bool) {
        let mut count = 0;
        let mut stopped = false;
        let outcome = self.read_bodies_from(
            hangup,
            true,
            |_| {},
            |body| {
                on_body(body)?;
                count += 1;
                stopped = count >= max;
                Ok(!stopped)
            },
        );
        (outcome, stopped)
    }

    /// [`Connection::read_bodies`] without its stop, where `on_body`
    /// says whether to go on instead: after a `false` the rest stays
    /// buffered, unread bodies included, and the call returns
    /// [`ReadOutcome::Drained`]; the next call hands over the buffered
    /// bodies before it reads again. The broker stops so on a peer that
    /// asks faster than it reads. It first hands `on_subject` the subject
    /// of the TLS peer's certificate, once, when the handshake that
    /// brought it is done: before any body.
    pub fn read_bodies_noting(
        &mut self,
        hangup: bool,
        on_subject: impl FnMut(String),
        on_body: impl FnMut(&[u8]) -> Result<bool, WireError>,
    ) -> ReadOutcome {
        self.read_bodies_from(hangup, false, on_subject, on_body)
    }

    /// The reading of [`Connection::read_bodies_noting`]; with `resume`,
    /// a call after a stop does not read a socket that the read before
    /// the stop drained (see [`Connection::read_bodies`]): only a caller
    /// that calls again at once, before any readiness event, may ask so.
    fn read_bodies_from(
        &mut self,
        hangup: bool,
        resume: bool,
        mut on_subject: impl FnMut(String),
        mut on_body: impl FnMut(&[u8]) -> Result<bool, WireError>,
    ) -> ReadOutcome {
        let drained = std::mem::take(&mut self.drained_at_stop);
        if !(resume && std::mem::take(&mut self.stopped_in_batches)) {
            self.read_in_batches = 0;
        }
        match self.drain_bodies(&mut on_body) {
            Err(e) => return ReadOutcome::Closed(e),
            Ok(false) => {
                self.drained_at_stop = drained;
                self.stopped_in_batches = resume;
                return ReadOutcome::Drained;
            }
            Ok(true) => {}
        }
        if drained && resume && !hangup {
            return ReadOutcome::Drained;
        }
        let mut read = std::mem::take(&mut self.read_in_batches);
        loop {
            let got = self.decoder.read_from(&mut self.stream);
            if !self.subject_noted && !self.stream.handshaking() {
                if let Some(subject) = self.stream.peer_subject() {
                    self.subject_noted = true;
                    on_subject(subject);
                }
            }
            if let Ok(n) = got {
                read += n;
                match self.drain_bodies(&mut on_body) {
                    Err(e) => return ReadOutcome::Closed(e),
                    Ok(false) => {
                        // Whether this read emptied the socket: if so, a
                        // resumed call need not read it again.
                        self.drained_at_stop = resume
                            && n > 0
                            && n < READ_CHUNK
                            && !hangup
                            && self.stream.short_read_drains();
                        if resume && read >= self.read_budget {
                            // The budget is spent: the caller's loop runs
                            // before the rest (buffered or not) is read.
                            return ReadOutcome::More;
                        }
                        self.read_in_batches = read;
                        self.stopped_in_batches = resume;
                        return ReadOutcome::Drained;
                    }
                    Ok(true) => {}
                }
            }
            match got {
                Ok(0) => {
                    let detail = if self.decoder.buffered() > 0 && self.speaks_tls() {
                        "peer closed the connection after answering in TLS (is it a tls:// listener?)"
                    } else if self.decoder.buffered() > 0 {
                        "peer closed the connection in the middle of a frame"
                    } else {
                        "peer closed the connection"
                    };
                    return ReadOutcome::Closed(Error::new(ErrorCode::BrokerGone, detail));
                }
                Ok(n) if n < READ_CHUNK && !hangup && self.stream.short_read_drains() => {
                    return ReadOutcome::Drained
                }
                Ok(_) if read >= self.read_budget => return ReadOutcome::More,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected && self.connecting => {
                    return ReadOutcome::Drained
                }
                // TLS refused the peer (or the peer refused us): its
                // message says what happened.
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidData
                        && !self.stream.short_read_drains() =>
                {
                    return ReadOutcome::Closed(Error::new(ErrorCode::Io, e.to_string()))
                }
                Err(e) => return ReadOutcome::Closed(Error::io("read failed", &e)),
            }
        }
    }

    /// Whether what a plain stream read before any frame is a TLS record
    /// (an alert or a handshake, version 3.x): the peer speaks TLS.
    fn speaks_tls(&self) -> bool {
        !self.bodies_seen
            && self.stream.short_read_drains()
            && matches!(self.decoder.pending(), [0x15 | 0x16, 0x03, ..])
    }

    /// Hands over every complete body; false if `on_body` asked to stop.
    fn drain_bodies(
        &mut self,
        on_body: &mut impl FnMut(&[u8]) -> Result<bool, WireError>,
    ) -> Result<bool, Error> {
        while let Some(body) = self.decoder.next_body()? {
            self.bodies_seen = true;
            match on_body(body) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => return Err(self.decoder.poison(e).into()),
            }
        }
        Ok(true)
    }

    /// Queues a frame. Fails with `limit_exceeded` (nothing queued) when
    /// the frame is too large or the queue is over its limit: a peer that
    /// does not read is not buffered for forever.
    pub fn send(&mut self, frame: &Frame) -> Result<(), Error> {
        self.send_with(|out, max_frame| encode_frame(frame, out, max_frame))
    }

    /// Queues what `encode` appends to the output (one or more whole
    /// frames, each at most the maximum frame size it is given), under
    /// the same limits as [`Connection::send`]. `encode` must leave the
    /// output as it was when it fails.
    pub fn send_with(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.queued() > self.max_queued {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{} bytes already queued for a peer that does not read (limit {})",
                    self.queued(),
                    self.max_queued
                ),
            ));
        }
        encode(&mut self.out, self.max_frame)
    }

    /// [`Connection::send`] for a frame that [`Connection::retract`] may
    /// take back under `key` until the next [`Connection::flush`]. Keys
    /// must increase from one call to the next (the client's call ids
    /// do). The frame is encoded at once, so that its errors are
    /// immediate and its bytes count against the queue limit like any
    /// other; keeping it costs no allocation beyond the list's room.
    pub fn send_retractable(&mut self, key: u64, frame: &Frame) -> Result<(), Error> {
        self.send_retractable_with(key, |out, max_frame| encode_frame(frame, out, max_frame))
    }

    /// [`Connection::send_retractable`] of what `encode` appends (one
    /// whole frame, as for [`Connection::send_with`]).
    pub fn send_retractable_with(
        &mut self,
        key: u64,
        encode: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        debug_assert!(self.retractable.last().map_or(true, |&(k, _, _)| k < key));
        let start = self.out.len();
        self.send_with(encode)?;
        self.retractable.push((key, start, self.out.len()));
        Ok(())
    }

    /// Takes back the frame queued under `key` by
    /// [`Connection::send_retractable`] if no write has happened since:
    /// the peer will never see any of its bytes. Returns whether it did.
    pub fn retract(&mut self, key: u64) -> bool {
        let Ok(i) = self.retractable.binary_search_by_key(&key, |&(k, _, _)| k) else {
            return false;
        };
        let (_, start, end) = self.retractable[i];
        if start == end {
            return false;
        }
        self.retractable[i].2 = start;
        if end == self.out.len() {
            // The newest frame (sent and dropped at once): cut it off.
            self.out.truncate(start);
        } else {
            self.holes.push((start, end));
            self.hole_bytes += end - start;
        }
        true
    }

    /// Reads and throws away what the peer sends, until the socket would
    /// block, the peer closes, or the read budget is spent. A lingering
    /// connection does this: what its client no longer wants must still
    /// be read, since closing a socket with unread input resets the
    /// connection, and a reset can discard what was sent before it.
    pub fn discard_input(&mut self) -> ReadOutcome {
        let mut buf = [0u8; 16 * 1024];
        let mut read = 0;
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return ReadOutcome::Closed(Error::new(
                        ErrorCode::BrokerGone,
                        "peer closed the connection",
                    ))
                }
                Ok(n) => {
                    read += n;
                    if read >= READ_BUDGET {
                        return ReadOutcome::More;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return ReadOutcome::Closed(Error::io("read failed", &e)),
            }
        }
    }

    /// Ends the output stream (the peer reads to its end, then sees the
    /// end of the stream) once everything queued was written.
    pub fn shutdown_write(&mut self) -> Result<(), Error> {
        self.stream
            .shutdown_write()
            .map_err(|e| Error::io("cannot end the output", &e))
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len() - self.out_pos - self.hole_bytes
    }

    /// Whether everything queued left, also what the stream holds below
    /// the queue (TLS records).
    pub fn all_sent(&self) -> bool {
        self.queued() == 0 && !self.stream.wants_write()
    }

    /// Whether a TLS handshake is still going on (false on a plain
    /// socket).
    pub fn handshaking(&self) -> bool {
        self.stream.handshaking()
    }

    /// Sends what the stream holds below the queue (TLS records: a
    /// handshake answer, a write the socket did not take) once the
    /// socket reported room, and asks for writability while some
    /// remain. A no-op on a plain socket.
    pub fn send_pending(&mut self, lp: &EventLoop) -> Result<(), Error> {
        if self.connecting {
            return Ok(());
        }
        self.stream
            .send_pending()
            .map_err(|e| Error::io("write failed", &e))?;
        if self.stream.wants_write() {
            self.want_writable(lp, true)?;
        }
        Ok(())
    }

    /// After a read: a stream that must send before it can go on (a TLS
    /// handshake answer the socket did not take whole) is given
    /// writability. A no-op on a plain socket.
    pub fn after_read(&mut self, lp: &EventLoop) -> Result<(), Error> {
        if self.stream.wants_write() && !self.connecting {
            self.want_writable(lp, true)?;
        }
        Ok(())
    }

    /// Writes queued bytes until done or the socket would block, and
    /// asks for writability exactly while bytes remain. Frames queued
    /// before it can no longer be taken back.
    pub fn flush(&mut self, lp: &EventLoop) -> Result<(), Error> {
        self.close_holes();
        self.retractable.clear();
        self.write_queued()?;
        let more = self.connecting || self.queued() > 0 || self.stream.wants_write();
        self.want_writable(lp, more)
    }

    /// Writes `bytes`, output that the caller keeps itself instead of
    /// queueing it here (the broker's core holds its peers' output), until
    /// all are written or the socket would block, and asks for
    /// writability exactly while some remain. Returns how many were
    /// written.
    pub fn write_from(&mut self, lp: &EventLoop, bytes: &[u8]) -> Result<usize, Error> {
        debug_assert!(self.queued() == 0 && !self.connecting);
        let mut written = 0;
        while written < bytes.len() {
            match self.stream.write(&bytes[written..]) {
                Ok(0) => {
                    return Err(Error::new(ErrorCode::BrokerGone, "peer stopped reading"));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("write failed", &e)),
            }
        }
        let more = written < bytes.len() || self.stream.wants_write();
        self.want_writable(lp, more)?;
        Ok(written)
    }

    /// Registers for writability as well as readability, or readability
    /// alone, when that changes.
    fn want_writable(&mut self, lp: &EventLoop, want: bool) -> Result<(), Error> {
        if want != self.write_interest {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            lp.reregister(&mut self.stream, self.token, interest)
                .map_err(|e| Error::io("cannot change the socket's interest", &e))?;
            self.write_interest = want;
        }
        Ok(())
    }

    /// Cuts the frames taken back out of `out`, in one pass.
    fn close_holes(&mut self) {
        if self.holes.is_empty() {
            return;
        }
        self.holes.sort_unstable();
        let mut to = self.holes[0].0;
        for i in 0..self.holes.len() {
            let from = self.holes[i].1;
            let next = self.holes.get(i + 1).map_or(self.out.len(), |h| h.0);
            self.out.copy_within(from..next, to);
            to += next - from;
        }
        self.out.truncate(to);
        self.holes.clear();
        self.hole_bytes = 0;
    }

    fn write_queued(&mut self) -> Result<(), Error> {
        if self.connecting {
            return Ok(());
        }
        self.stream
            .send_pending()
            .map_err(|e| Error::io("write failed", &e))?;
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    return Err(Error::new(ErrorCode::BrokerGone, "peer stopped reading"));
                }
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("write failed", &e)),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            // Give back memory after a burst rather than hold it forever.
            if self.out.capacity() > 1 << 20 {
                self.out.shrink_to(64 * 1024);
            }
        } else if self.out_pos > self.out.len() / 2 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::Readiness;
    use crate::wire::DEFAULT_MAX_FRAME;
    use std::io::Write;

    struct Idle;

    impl Source for Idle {
        fn ready(&self, _: &EventLoop, _: Readiness) {}
    }

    /// A peer that keeps the socket full cannot keep a reader of small
    /// batches from its loop: the budget spans the resumed calls, and
    /// nothing is lost or repeated across the `More`.
    #[test]
    fn resumed_batches_share_one_read_budget() {
        let lp = EventLoop::new().unwrap();
        let (ours, mut theirs) = mio::net::UnixStream::pair().unwrap();
        let mut conn = Connection::open(
            Stream::Unix(ours),
            &lp,
            Rc::new(Idle),
            false,
            DEFAULT_MAX_FRAME,
            1 << 20,
        )
        .unwrap();
        conn.read_budget = 64 * 1024;
        let mut bytes = Vec::new();
        let mut frames = 0;
        while bytes.len() < 150_000 {
            encode_frame(&Frame::Ping, &mut bytes, DEFAULT_MAX_FRAME).unwrap();
            frames += 1;
        }
        theirs
            .write_all(&bytes)
            .expect("the socket buffer holds it all");
        let frame_len = bytes.len() / frames;
        let mut seen = 0;
        let mut seen_at_more = Vec::new();
        loop {
            let (outcome, stopped) = conn.read_bodies(false, 3, |_| {
                seen += 1;
                Ok(())
            });
            match outcome {
                ReadOutcome::More => seen_at_more.push(seen),
                ReadOutcome::Drained if stopped => {}
                ReadOutcome::Drained => break,
                ReadOutcome::Closed(e) => panic!("closed: {e}"),
            }
        }
        // Every 64 KiB read (two of the three chunks) ended in a `More`,
        // each within a chunk of frames of its budget.
        assert_eq!(seen_at_more.len(), 2, "{seen_at_more:?}");
        for (k, at) in seen_at_more.iter().enumerate() {
            assert!(at * frame_len <= (k + 1) * 64 * 1024, "{seen_at_more:?}");
        }
        assert_eq!(seen, frames);
    }
}
