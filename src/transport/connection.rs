//! A framed connection: decoder in, buffered frames out.

use super::Stream;
use crate::error::{Error, ErrorCode};
use crate::wire::{encode_frame, Frame, FrameDecoder};
use std::io::{self, Write};

/// How many bytes one `read_frames` call reads before it yields to other
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

#[derive(Debug)]
pub(crate) struct Connection {
    pub stream: Stream,
    decoder: FrameDecoder,
    out: Vec<u8>,
    out_pos: usize,
    max_frame: usize,
    max_queued: usize,
    /// Set while a connect is in progress: writes wait for it.
    pub connecting: bool,
}

impl Connection {
    pub fn new(stream: Stream, max_frame: usize, max_queued: usize) -> Self {
        stream.set_nodelay();
        Connection {
            stream,
            decoder: FrameDecoder::new(max_frame),
            out: Vec::new(),
            out_pos: 0,
            max_frame,
            max_queued,
            connecting: false,
        }
    }

    /// Reads and decodes into `frames` until the socket would block, the
    /// peer closes, or the read budget is spent. Frames decoded before a
    /// close or a protocol error are still returned.
    pub fn read_frames(&mut self, frames: &mut Vec<Frame>) -> ReadOutcome {
        let mut read = 0;
        loop {
            match self.decoder.read_from(&mut self.stream) {
                Ok(0) => {
                    if let Err(e) = self.decode_into(frames) {
                        return ReadOutcome::Closed(e);
                    }
                    let detail = if self.decoder.buffered() > 0 {
                        "peer closed the connection in the middle of a frame"
                    } else {
                        "peer closed the connection"
                    };
                    return ReadOutcome::Closed(Error::new(ErrorCode::BrokerGone, detail));
                }
                Ok(n) => {
                    read += n;
                    if let Err(e) = self.decode_into(frames) {
                        return ReadOutcome::Closed(e);
                    }
                    if read >= READ_BUDGET {
                        return ReadOutcome::More;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected && self.connecting => {
                    return ReadOutcome::Drained
                }
                Err(e) => return ReadOutcome::Closed(Error::io("read failed", &e)),
            }
        }
    }

    fn decode_into(&mut self, frames: &mut Vec<Frame>) -> Result<(), Error> {
        while let Some(frame) = self.decoder.next_frame()? {
            frames.push(frame);
        }
        Ok(())
    }

    /// Queues a frame. Fails with `limit_exceeded` (nothing queued) when
    /// the frame is too large or the queue is over its limit: a peer that
    /// does not read is not buffered for forever.
    pub fn send(&mut self, frame: &Frame) -> Result<(), Error> {
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
        encode_frame(frame, &mut self.out, self.max_frame)
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes queued bytes until done or the socket would block.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.connecting {
            return Ok(());
        }
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
