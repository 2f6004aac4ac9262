//! Framing: the incremental decoder and the encoder.

use super::Frame;
use crate::error::{Error, ErrorCode};
use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use std::cell::RefCell;

/// The default maximum frame body, 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The most memory bincode may claim while decoding one frame. Frames are
/// already bounded by the connection's maximum; this bounds what a
/// malicious length field inside a frame can make the decoder reserve.
pub const DECODE_LIMIT: usize = 256 << 20;

type Config = Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>>;

pub(crate) fn config() -> Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Why a stream of bytes is not a valid stream of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// A length prefix larger than the maximum frame size.
    Oversize {
        /// The announced length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A body that is not one well-formed frame.
    Malformed(String),
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Error {
        match e {
            WireError::Oversize { len, max } => Error::new(
                ErrorCode::Protocol,
                format!("frame of {len} bytes exceeds the maximum of {max}"),
            ),
            WireError::Malformed(why) => {
                Error::new(ErrorCode::Protocol, format!("malformed frame: {why}"))
            }
        }
    }
}

/// Plain words for a decoding failure. bincode's own `Display` prints
/// its `Debug` form (`OtherString("…")`, `UnexpectedEnd { additional: 3 }`),
/// which must not reach a user's error message.
pub(crate) fn decode_error_text(e: &bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as D;
    match e {
        D::UnexpectedEnd { additional } => {
            format!("it ends {additional} bytes too early")
        }
        D::LimitExceeded => "it exceeds the size limit".to_string(),
        D::InvalidIntegerType { .. } | D::NonZeroTypeIsZero { .. } => {
            "it holds an invalid integer".to_string()
        }
        D::UnexpectedVariant {
            type_name, found, ..
        } => format!("it holds an unknown kind {found} of {}", short(type_name)),
        D::Utf8 { .. } => "it holds text that is not valid UTF-8".to_string(),
        D::InvalidCharEncoding(_) => "it holds an invalid character".to_string(),
        D::InvalidBooleanValue(b) => format!("it holds {b} where a boolean (0 or 1) belongs"),
        D::ArrayLengthMismatch { required, found } => {
            format!("it holds {found} items where {required} belong")
        }
        D::OutsideUsizeRange(n) => format!("it announces a length of {n}, too large"),
        D::Other(why) => why.to_string(),
        D::OtherString(why) => why.clone(),
        D::Io { inner, .. } => format!("reading it failed: {inner}"),
        _ => "it is not a well-formed value of the protocol".to_string(),
    }
}

/// Plain words for an encoding failure (see [`decode_error_text`]).
pub(crate) fn encode_error_text(e: &bincode::error::EncodeError) -> String {
    use bincode::error::EncodeError as E;
    match e {
        E::UnexpectedEnd => "the output ended early".to_string(),
        E::Other(why) => why.to_string(),
        E::OtherString(why) => why.clone(),
        E::Io { inner, .. } => format!("writing failed: {inner}"),
        _ => "a value cannot be written in the protocol's format".to_string(),
    }
}

/// A type's name without its module path.
fn short(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

/// Appends one frame (length prefix and body) to `out`.
///
/// Fails with `limit_exceeded`, leaving `out` as it was, when the body
/// would exceed `max_frame`.
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>, max_frame: usize) -> Result<(), Error> {
    encode_value(frame, out, max_frame)
}

/// [`encode_frame`] for anything that serializes as a frame does (see
/// `wire::outgoing`).
pub(crate) fn encode_value<T: serde::Serialize + ?Sized>(
    frame: &T,
    out: &mut Vec<u8>,
    max_frame: usize,
) -> Result<(), Error> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = bincode::serde::encode_into_std_write(frame, out, config()) {
        out.truncate(start);
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("cannot encode frame: {}", encode_error_text(&e)),
        ));
    }
    seal_frame(out, start, max_frame)
}

/// Writes the length prefix of the frame whose body follows the four
/// bytes kept for it at `start` of `out`; a body over `max_frame` is cut
/// off again (nothing of the frame stays) and refused.
pub(crate) fn seal_frame(out: &mut Vec<u8>, start: usize, max_frame: usize) -> Result<(), Error> {
    let len = out.len() - start - 4;
    if len > max_frame || len > u32::MAX as usize {
        out.truncate(start);
        return Err(Error::new(
            ErrorCode::LimitExceeded,
            format!("frame of {len} bytes exceeds the maximum of {max_frame}"),
        ));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Appends `v` as bincode's standard configuration writes an integer:
/// below 251 one byte; else a marker (251, 252, 253) and the value as a
/// little-endian u16, u32 or u64.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 251 {
        out.push(v as u8);
    } else if let Ok(v) = u16::try_from(v) {
        out.push(251);
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = u32::try_from(v) {
        out.push(252);
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends a string's or a byte string's bytes as bincode does: their
/// length, then them.
#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Decodes one frame body (without its length prefix), which must be
/// consumed exactly.
pub fn decode_body(body: &[u8]) -> Result<Frame, WireError> {
    match bincode::serde::decode_from_slice::<Frame, _>(body, config()) {
        Ok((frame, used)) if used == body.len() => Ok(frame),
        Ok((_, used)) => Err(WireError::Malformed(format!(
            "{} trailing bytes after a {} byte frame",
            body.len() - used,
            used
        ))),
        Err(e) => Err(WireError::Malformed(decode_error_text(&e))),
    }
}

/// Turns a byte stream, fed in pieces split anywhere, into frames.
///
/// Reads land in one scratch buffer per thread; a decoder keeps only the
/// bytes of frames not yet complete, so an idle connection holds no read
/// buffer at all (at most 4 KiB of room). The room a burst of frames
/// needs is borrowed from one spare buffer per thread and given back once
/// the burst is decoded: a burst allocates nothing (a large allocation
/// per burst would also make the allocator sweep its caches of small
/// blocks each time).
///
/// After the first error the decoder stays failed: a stream that lost
/// framing cannot be trusted again, so the connection must be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Bytes `start..` are received and not yet decoded.
    buf: Vec<u8>,
    start: usize,
    max_frame: usize,
    /// A smaller maximum for the first frame only (the broker's limit
    /// before the hello), dropped once the first body is out.
    first_max: Option<usize>,
    failed: Option<WireError>,
}

/// How much one read offers the kernel.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// What an idle decoder may keep of the memory a burst needed.
const KEEP_IDLE: usize = 4 * 1024;

/// The largest room given back to the thread's spare (a larger one, a
/// burst of large frames' memory, is freed).
const SPARE_MAX: usize = 4 * READ_CHUNK;

thread_local! {
    /// The room every read of this thread uses before its bytes are
    /// decoded: one per loop thread instead of one per connection.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
    /// Room for a burst's bytes, lent to the decoder of this thread that
    /// needs more than it holds, and given back by it once the burst is
    /// decoded.
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl FrameDecoder {
    /// A decoder accepting bodies of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_frame,
            first_max: None,
            failed: None,
        }
    }

    /// Limits the first frame to `max` bytes (when below the maximum):
    /// a peer whose first frame must be small (a hello) is refused as
    /// soon as its length prefix announces more, before any of it is
    /// buffered. Has no effect once a body was taken.
    pub fn limit_first_frame(&mut self, max: usize) {
        if max < self.max_frame {
            self.first_max = Some(max);
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            if self.buf.capacity() - self.buf.len() < data.len() {
                self.borrow_room(data.len());
            }
            self.buf.extend_from_slice(data);
        }
    }

    /// Moves the pending bytes into the thread's spare when it has room
    /// for them and `more`; else the buffer grows as usual.
    #[cold]
    fn borrow_room(&mut self, more: usize) {
        let pending = self.buf.len() - self.start;
        let mut spare = SPARE.take();
        if spare.capacity() < pending + more {
            SPARE.set(spare);
            return;
        }
        spare.extend_from_slice(&self.buf[self.start..]);
        self.start = 0;
        let own = std::mem::replace(&mut self.buf, spare);
        Self::give_back(own);
    }

    /// Keeps `buf` as the thread's spare if it is larger than the spare
    /// (and not over [`SPARE_MAX`]); the other one is freed.
    fn give_back(mut buf: Vec<u8>) {
        if buf.capacity() <= KEEP_IDLE || buf.capacity() > SPARE_MAX {
            return;
        }
        buf.clear();
        let spare = SPARE.take();
        SPARE.set(if buf.capacity() > spare.capacity() {
            buf
        } else {
            spare
        });
    }

    /// Reads once from `r`, offering it [`READ_CHUNK`] bytes, and keeps
    /// what arrived for [`FrameDecoder::next_frame`]. Returns what `read`
    /// returned: fewer bytes than offered means the socket is drained.
    pub fn read_from<R: std::io::Read>(&mut self, r: &mut R) -> std::io::Result<usize> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let n = r.read(&mut scratch)?;
            self.push(&scratch[..n]);
            Ok(n)
        })
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The bytes buffered and not yet decoded (the start of a frame).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The body of the next complete frame, `Ok(None)` if more bytes are
    /// needed. The body is not checked: see [`decode_body`].
    pub fn next_body(&mut self) -> Result<Option<&[u8]>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            self.compact();
            return Ok(None);
        }
        let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        let max = self.first_max.unwrap_or(self.max_frame);
        if len > max {
            return Err(self.poison(WireError::Oversize { len, max }));
        }
        if avail.len() < 4 + len {
            self.compact();
            return Ok(None);
        }
        let body = self.start + 4..self.start + 4 + len;
        self.start = body.end;
        self.first_max = None;
        Ok(Some(&self.buf[body]))
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let decoded = match self.next_body()? {
            None => return Ok(None),
            Some(body) => decode_body(body),
        };
        decoded.map(Some).map_err(|e| self.poison(e))
    }

    /// Marks the stream as failed with `e` and returns it: after a body
    /// that does not decode, the stream cannot be trusted any more.
    pub fn poison(&mut self, e: WireError) -> WireError {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.start = 0;
        e
    }

    /// Drops decoded bytes once every complete frame is out, and gives
    /// back what a burst needed (to the thread's spare) once nothing is
    /// pending.
    fn compact(&mut self) {
        if self.start == self.buf.len() && self.buf.capacity() > KEEP_IDLE {
            Self::give_back(std::mem::take(&mut self.buf));
        } else {
            self.buf.drain(..self.start);
        }
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Payload, Reply, PROTOCOL_VERSION};

    fn sample() -> Vec<Frame> {
        vec![
            Frame::Hello {
                magic: crate::wire::MAGIC,
                version: PROTOCOL_VERSION,
                token: Some("t".into()),
            },
            Frame::Deliver {
                id: 7,
                origin: 3,
                timeout_ms: 250,
                session: "FooSession".into(),
                method: "foo".into(),
                payload: Payload::encode(&crate::Args::new().with("x", 1)),
            },
            Frame::Result {
                id: 7,
                outcome: Err(Error::no_such_session("Z")),
            },
            Frame::Result {
                id: u64::MAX,
                outcome: Ok(Reply::Methods(vec!["a".into(), "b".into()])),
            },
        ]
    }

    #[test]
    fn frames_round_trip_split_at_every_offset() {
        let frames = sample();
        let mut bytes = Vec::new();
        for f in &frames {
            encode_frame(f, &mut bytes, DEFAULT_MAX_FRAME).unwrap();
        }
        for split in 0..=bytes.len() {
            let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let mut got = Vec::new();
            for part in [&bytes[..split], &bytes[split..]] {
                dec.push(part);
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "split at {split}");
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn byte_at_a_time_through_read_from() {
        let frames = sample();
        let mut bytes = Vec::new();
        for f in &frames {
            encode_frame(f, &mut bytes, DEFAULT_MAX_FRAME).unwrap();
        }
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for b in &bytes {
            assert_eq!(dec.read_from(&mut &[*b][..]).unwrap(), 1);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    /// A reader that hands out at most `step` bytes per read.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn decoders_of_one_thread_share_the_spare_without_mixing_bytes() {
        // Many small frames, a large one (over the spare's limit) and
        // frames split across reads, read by two decoders in turn: each
        // borrows the thread's buffer while it holds part of a frame.
        let mut frames = sample();
        frames.push(Frame::Custom {
            kind: "big".into(),
            id: 9,
            payload: Payload(vec![7; 3 * SPARE_MAX]),
        });
        frames.extend(sample());
        let mut bytes = Vec::new();
        for f in &frames {
            encode_frame(f, &mut bytes, DEFAULT_MAX_FRAME).unwrap();
        }
        for step in [1, 5, 4096, READ_CHUNK - 3, READ_CHUNK] {
            let mut readers = [
                Trickle {
                    bytes: &bytes,
                    step,
                },
                Trickle {
                    bytes: &bytes,
                    step,
                },
            ];
            let mut decoders = [
                FrameDecoder::new(DEFAULT_MAX_FRAME),
                FrameDecoder::new(DEFAULT_MAX_FRAME),
            ];
            let mut got = [Vec::new(), Vec::new()];
            while readers.iter().any(|r| !r.bytes.is_empty()) {
                for i in 0..2 {
                    decoders[i].read_from(&mut readers[i]).unwrap();
                    while let Some(f) = decoders[i].next_frame().unwrap() {
                        got[i].push(f);
                    }
                }
            }
            for (i, got) in got.iter().enumerate() {
                assert!(*got == frames, "decoder {i}, reads of {step}");
                assert_eq!(decoders[i].buffered(), 0);
                assert!(
                    decoders[i].buf.len() <= KEEP_IDLE,
                    "idle holds no read buffer"
                );
            }
        }
    }

    #[test]
    fn oversize_prefix_is_an_error_without_allocation() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&u32::MAX.to_le_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(WireError::Oversize {
                len: u32::MAX as usize,
                max: 1024
            })
        );
        // Stays failed.
        dec.push(&[0; 8]);
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn the_first_frame_has_its_own_limit() {
        let mut dec = FrameDecoder::new(1024);
        dec.limit_first_frame(16);
        dec.push(&17u32.to_le_bytes());
        assert_eq!(
            dec.next_body(),
            Err(WireError::Oversize { len: 17, max: 16 })
        );
        let mut dec = FrameDecoder::new(1024);
        dec.limit_first_frame(16);
        dec.push(&2u32.to_le_bytes());
        dec.push(&[1, 2]);
        dec.push(&100u32.to_le_bytes());
        assert_eq!(dec.next_body(), Ok(Some(&[1u8, 2][..])));
        assert_eq!(dec.next_body(), Ok(None), "later frames take the maximum");
    }

    #[test]
    fn encoder_refuses_frames_over_the_limit() {
        let big = Frame::Custom {
            kind: "x".into(),
            id: 1,
            payload: Payload(vec![0; 100]),
        };
        let mut out = vec![9];
        let err = encode_frame(&big, &mut out, 50).unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        assert_eq!(out, vec![9]);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut dec = FrameDecoder::new(4096);
            let mut data = Vec::new();
            let n = (seed % 64) as usize;
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(seed as u8);
            }
            let len = (data.len() as u32).to_le_bytes();
            dec.push(&len);
            dec.push(&data);
            // Any answer is fine except a panic.
            let _ = dec.next_frame();
        }
    }
}
