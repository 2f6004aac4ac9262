//! The link layer: what makes a call across brokers end exactly once over
//! NATS's at-most-once delivery (design §5).
//!
//! Each ordered pair of brokers (A → B) has a stream of NATS messages on
//! B's inbox subject, each an [`Envelope`]: A's incarnation, B's
//! incarnation as A knows it, a *generation* (how many times B reset the
//! link, as B last announced it), a sequence number, and a body: stagebus
//! frame bodies, a reset, or a sync. The receiving side ([`LinkState`])
//! accepts frames only in sequence; anything else that cannot be a stray
//! of an older generation means frames were lost, and the link resets:
//! the broker ends every call across it exactly once (`publisher_gone`
//! to callers, a cancel to publishers) while the peer's sessions stay
//! listed, and tells the peer, which does the same. A broker heard from
//! after it was declared dead is sent [`Body::DeclaredDead`]: it takes a
//! new incarnation.
//!
//! Pure: bytes in, decisions out; no socket, no clock.

use std::fmt;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 1 + 8 + 8 + 8 + 8;

/// What a link message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Stagebus frame bodies, in order (a turn's frames to one peer,
    /// coalesced).
    Frames(Vec<Vec<u8>>),
    /// "I reset the link; frames of older generations are strays; start
    /// again at sequence 1 of this generation" (`gen` in the envelope).
    Reset,
    /// "I sent up to `seq` (the envelope's); check you saw all of it",
    /// and, with `want_reply`, "send me your own sync".
    Sync {
        /// Whether the receiver should answer with its own sync.
        want_reply: bool,
    },
    /// "You were declared dead: your incarnation `to_inc` is over" (the
    /// design's `Reset{declared_dead}`), sent to a broker heard from
    /// after its peers declared it dead (it hung, or was cut off, past
    /// `hb_timeout`). It takes a new incarnation, ends every call across
    /// its links, and claims its names again.
    DeclaredDead,
}

/// One link message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's broker id (at most 255 bytes; ids are at most 64).
    pub from: String,
    /// The sender's incarnation.
    pub from_inc: u64,
    /// The receiver's incarnation as the sender knows it (0: unknown).
    pub to_inc: u64,
    /// The receiver's link generation as the sender knows it.
    pub gen: u64,
    /// For frames: this message's sequence number (from 1 after every
    /// reset). For a sync: the last sequence number sent. For a reset: 0.
    pub seq: u64,
    /// What it carries.
    pub body: Body,
}

/// A link message that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEnvelope(pub &'static str);

impl fmt::Display for BadEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad link message: {}", self.0)
    }
}

impl Envelope {
    /// The bytes of the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 64);
        self.encode_into(&mut out);
        out
    }

    /// Appends the bytes of the message to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(match self.body {
            Body::Frames(_) => 0,
            Body::Reset => 1,
            Body::Sync { want_reply: false } => 2,
            Body::Sync { want_reply: true } => 3,
            Body::DeclaredDead => 4,
        });
        for n in [self.from_inc, self.to_inc, self.gen, self.seq] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        let from = &self.from.as_bytes()[..self.from.len().min(255)];
        out.push(from.len() as u8);
        out.extend_from_slice(from);
        if let Body::Frames(frames) = &self.body {
            out.extend_from_slice(&(frames.len() as u32).to_be_bytes());
            for f in frames {
                out.extend_from_slice(&(f.len() as u32).to_be_bytes());
                out.extend_from_slice(f);
            }
        }
    }

    /// Appends a frames message with this header (`from_inc`, `to_inc`,
    /// `gen`, `seq` as in [`Envelope`]) and `frames` to `out`, exactly
    /// [`Envelope::frames_len`] bytes: what a broker sends per turn and
    /// peer, encoded where it goes (the NATS output buffer) without an
    /// [`Envelope`] or a buffer of its own first.
    pub fn encode_frames<F: AsRef<[u8]>>(from: &str, head: Head, frames: &[F], out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(0);
        for n in [head.from_inc, head.to_inc, head.gen, head.seq] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        let from = &from.as_bytes()[..from.len().min(255)];
        out.push(from.len() as u8);
        out.extend_from_slice(from);
        out.extend_from_slice(&(frames.len() as u32).to_be_bytes());
        for f in frames {
            let f = f.as_ref();
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
    }

    /// The exact size [`Envelope::encode_frames`] writes.
    pub fn frames_len<F: AsRef<[u8]>>(from: &str, frames: &[F]) -> usize {
        HEADER
            + 1
            + from.len().min(255)
            + 4
            + frames.iter().map(|f| f.as_ref().len() + 4).sum::<usize>()
    }

    /// The size of a frames message holding frames of these sizes.
    pub fn frames_size(sizes: impl IntoIterator<Item = usize>) -> usize {
        HEADER + 1 + 64 + 4 + sizes.into_iter().map(|s| s + 4).sum::<usize>()
    }

    /// Reads a message.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, BadEnvelope> {
        let e = EnvelopeRef::decode(bytes)?;
        Ok(Envelope {
            from: e.from.to_string(),
            from_inc: e.head.from_inc,
            to_inc: e.head.to_inc,
            gen: e.head.gen,
            seq: e.head.seq,
            body: match e.body {
                BodyRef::Frames(frames) => {
                    Body::Frames(frames.iter().map(<[u8]>::to_vec).collect())
                }
                BodyRef::Reset => Body::Reset,
                BodyRef::Sync { want_reply } => Body::Sync { want_reply },
                BodyRef::DeclaredDead => Body::DeclaredDead,
            },
        })
    }

    fn head(&self) -> (Head, Kind) {
        let kind = match self.body {
            Body::Frames(_) => Kind::Frames,
            Body::Reset => Kind::Reset,
            Body::Sync { want_reply } => Kind::Sync { want_reply },
            Body::DeclaredDead => Kind::DeclaredDead,
        };
        let head = Head {
            from_inc: self.from_inc,
            to_inc: self.to_inc,
            gen: self.gen,
            seq: self.seq,
        };
        (head, kind)
    }
}

/// The numbers of a link message (see [`Envelope`]'s fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The sender's incarnation.
    pub from_inc: u64,
    /// The receiver's incarnation as the sender knows it (0: unknown).
    pub to_inc: u64,
    /// The receiver's link generation as the sender knows it.
    pub gen: u64,
    /// The sequence number (see [`Envelope::seq`]).
    pub seq: u64,
}

/// What a message is, without its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Frames,
    Reset,
    Sync { want_reply: bool },
    DeclaredDead,
}

/// A link message read in place: its sender id and frames borrow the
/// received bytes (a broker reads every link message so; [`Envelope`]
/// owns its parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeRef<'a> {
    /// The sender's broker id.
    pub from: &'a str,
    /// Its numbers.
    pub head: Head,
    /// What it carries.
    pub body: BodyRef<'a>,
}

/// What a link message read in place carries ([`Body`], borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRef<'a> {
    /// Stagebus frame bodies, checked: [`FramesRef::iter`] reads them.
    Frames(FramesRef<'a>),
    /// [`Body::Reset`].
    Reset,
    /// [`Body::Sync`].
    Sync {
        /// Whether the receiver should answer with its own sync.
        want_reply: bool,
    },
    /// [`Body::DeclaredDead`].
    DeclaredDead,
}

/// The frames of a message read in place, their lengths checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramesRef<'a> {
    count: usize,
    /// Each frame with its 4-byte length before it.
    bytes: &'a [u8],
}

impl<'a> FramesRef<'a> {
    /// How many frames.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The frames, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = self.bytes;
        std::iter::from_fn(move || {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let frame = &rest[4..4 + len];
            rest = &rest[4 + len..];
            Some(frame)
        })
    }
}

impl<'a> EnvelopeRef<'a> {
    /// Reads a message in place.
    pub fn decode(bytes: &'a [u8]) -> Result<EnvelopeRef<'a>, BadEnvelope> {
        if bytes.len() < HEADER + 1 {
            return Err(BadEnvelope("too short"));
        }
        if bytes[0] != VERSION {
            return Err(BadEnvelope("unknown version"));
        }
        let n = |i: usize| u64::from_be_bytes(bytes[2 + i * 8..10 + i * 8].try_into().unwrap());
        let (from_inc, to_inc, gen, seq) = (n(0), n(1), n(2), n(3));
        let id_len = usize::from(bytes[HEADER]);
        let Some(from) = bytes.get(HEADER + 1..HEADER + 1 + id_len) else {
            return Err(BadEnvelope("truncated sender id"));
        };
        let Ok(from) = std::str::from_utf8(from) else {
            return Err(BadEnvelope("sender id is not UTF-8"));
        };
        let rest = &bytes[HEADER + 1 + id_len..];
        let body = match bytes[1] {
            0 => {
                if rest.len() < 4 {
                    return Err(BadEnvelope("no frame count"));
                }
                let count = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                let mut at = 4;
                for _ in 0..count {
                    let Some(len) = rest.get(at..at + 4) else {
                        return Err(BadEnvelope("truncated frame length"));
                    };
                    let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
                    at += 4;
                    if rest.len() - at < len {
                        return Err(BadEnvelope("truncated frame"));
                    }
                    at += len;
                }
                if at != rest.len() {
                    return Err(BadEnvelope("bytes after the frames"));
                }
                BodyRef::Frames(FramesRef {
                    count,
                    bytes: &rest[4..],
                })
            }
            1 => BodyRef::Reset,
            2 => BodyRef::Sync { want_reply: false },
            3 => BodyRef::Sync { want_reply: true },
            4 => BodyRef::DeclaredDead,
            _ => return Err(BadEnvelope("unknown kind")),
        };
        if !matches!(body, BodyRef::Frames(_)) && !rest.is_empty() {
            return Err(BadEnvelope("bytes after a control message"));
        }
        Ok(EnvelopeRef {
            from,
            head: Head {
                from_inc,
                to_inc,
                gen,
                seq,
            },
            body,
        })
    }

    fn kind(&self) -> Kind {
        match self.body {
            BodyRef::Frames(_) => Kind::Frames,
            BodyRef::Reset => Kind::Reset,
            BodyRef::Sync { want_reply } => Kind::Sync { want_reply },
            BodyRef::DeclaredDead => Kind::DeclaredDead,
        }
    }
}

/// What the receiver does with a message (`F`: the frames delivered, as
/// owned by [`LinkState::receive`], or borrowed by
/// [`LinkState::receive_ref`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<F = Vec<Vec<u8>>> {
    /// Hand these frames to the broker, in order.
    Deliver(F),
    /// Nothing to do (a stray of an older generation or incarnation, or a
    /// sync that matched).
    Drop,
    /// Answer a sync with our own (`want_reply: false`).
    AnswerSync,
    /// The link is broken: reset it (end every call across it) and tell
    /// the peer with a reset of the new generation.
    Reset(&'static str),
    /// The peer reset the link: end every call across it; no answer.
    PeerReset,
    /// A message of a generation older than ours: the peer has not heard
    /// of our last reset (its reset message was lost). Drop it and send
    /// the reset again ([`LinkState::reset_again`]).
    Stray,
    /// A message for an earlier life of ours: answer with a reset so the
    /// peer learns our incarnation.
    Stale,
}

/// One peer's link state on this broker: both directions.
#[derive(Debug, Clone, Default)]
pub struct LinkState {
    /// The peer's incarnation (0: not heard from yet).
    pub peer_inc: u64,
    /// Our receive generation: bumped at each reset we start.
    pub rx_gen: u64,
    /// The generation to stamp on what we send (the peer's rx_gen).
    pub tx_gen: u64,
    /// The last sequence number sent in `tx_gen`.
    pub sent: u64,
    /// The last sequence number received in `rx_gen`.
    pub received: u64,
    /// Resets of this link (either side started them).
    pub resets: u64,
}

impl<F> Verdict<F> {
    /// The same verdict with `Deliver`'s frames replaced by `frames()`.
    fn with_frames<G>(self, frames: impl FnOnce() -> G) -> Verdict<G> {
        match self {
            Verdict::Deliver(_) => Verdict::Deliver(frames()),
            Verdict::Drop => Verdict::Drop,
            Verdict::AnswerSync => Verdict::AnswerSync,
            Verdict::Reset(why) => Verdict::Reset(why),
            Verdict::PeerReset => Verdict::PeerReset,
            Verdict::Stray => Verdict::Stray,
            Verdict::Stale => Verdict::Stale,
        }
    }
}

impl LinkState {
    /// The header of the next frames message (consumes a sequence
    /// number), for [`Envelope::encode_frames`].
    pub fn next_frames_head(&mut self, my_inc: u64) -> Head {
        self.sent += 1;
        Head {
            from_inc: my_inc,
            to_inc: self.peer_inc,
            gen: self.tx_gen,
            seq: self.sent,
        }
    }

    /// The envelope of the next frames message (consumes a sequence
    /// number).
    pub fn next_frames(&mut self, me: &str, my_inc: u64, frames: Vec<Vec<u8>>) -> Envelope {
        self.sent += 1;
        Envelope {
            from: me.to_string(),
            from_inc: my_inc,
            to_inc: self.peer_inc,
            gen: self.tx_gen,
            seq: self.sent,
            body: Body::Frames(frames),
        }
    }

    /// A sync saying what we sent.
    pub fn sync(&self, me: &str, my_inc: u64, want_reply: bool) -> Envelope {
        Envelope {
            from: me.to_string(),
            from_inc: my_inc,
            to_inc: self.peer_inc,
            gen: self.tx_gen,
            seq: self.sent,
            body: Body::Sync { want_reply },
        }
    }

    /// Starts a reset on our side: a new receive generation, both
    /// sequences from zero; returns the reset message for the peer.
    pub fn reset(&mut self, me: &str, my_inc: u64) -> Envelope {
        self.rx_gen += 1;
        self.received = 0;
        self.sent = 0;
        self.resets += 1;
        Envelope {
            from: me.to_string(),
            from_inc: my_inc,
            to_inc: self.peer_inc,
            gen: self.rx_gen,
            seq: 0,
            body: Body::Reset,
        }
    }

    /// Our last reset again, unchanged (for a peer that missed it).
    pub fn reset_again(&self, me: &str, my_inc: u64) -> Envelope {
        Envelope {
            from: me.to_string(),
            from_inc: my_inc,
            to_inc: self.peer_inc,
            gen: self.rx_gen,
            seq: 0,
            body: Body::Reset,
        }
    }

    /// The notice that the peer's incarnation `peer_inc` was declared
    /// dead here.
    pub fn declared_dead(me: &str, my_inc: u64, peer_inc: u64) -> Envelope {
        Envelope {
            from: me.to_string(),
            from_inc: my_inc,
            to_inc: peer_inc,
            gen: 0,
            seq: 0,
            body: Body::DeclaredDead,
        }
    }

    /// Judges a message from the peer (and updates the state for it). A
    /// [`Body::DeclaredDead`] is not judged here: it concerns this
    /// broker's incarnation, not the link.
    pub fn receive(&mut self, my_inc: u64, env: &Envelope) -> Verdict {
        let (head, kind) = env.head();
        self.judge(my_inc, head, kind)
            .with_frames(|| match &env.body {
                Body::Frames(frames) => frames.clone(),
                _ => unreachable!("only frames are delivered"),
            })
    }

    /// [`LinkState::receive`] of a message the caller gives up: the frames
    /// delivered are moved out of it, not copied.
    pub fn receive_owned(&mut self, my_inc: u64, env: Envelope) -> Verdict {
        let (head, kind) = env.head();
        self.judge(my_inc, head, kind)
            .with_frames(|| match env.body {
                Body::Frames(frames) => frames,
                _ => unreachable!("only frames are delivered"),
            })
    }

    /// [`LinkState::receive`] of a message read in place: the frames
    /// delivered borrow the received bytes.
    pub fn receive_ref<'a>(
        &mut self,
        my_inc: u64,
        env: &EnvelopeRef<'a>,
    ) -> Verdict<FramesRef<'a>> {
        self.judge(my_inc, env.head, env.kind())
            .with_frames(|| match env.body {
                BodyRef::Frames(frames) => frames,
                _ => unreachable!("only frames are delivered"),
            })
    }

    /// The verdict, with `Deliver` empty (the callers fill it).
    fn judge(&mut self, my_inc: u64, env: Head, kind: Kind) -> Verdict<()> {
        if env.to_inc != 0 && env.to_inc != my_inc {
            return Verdict::Stale;
        }
        if env.from_inc != self.peer_inc {
            let known = self.peer_inc != 0;
            self.peer_inc = env.from_inc;
            if known {
                // A new incarnation of the peer: whatever we held with
                // the old one is over.
                self.received = 0;
                self.sent = 0;
                self.tx_gen = 0;
                if kind == Kind::Reset {
                    self.tx_gen = env.gen;
                }
                self.resets += 1;
                return match kind {
                    Kind::Reset => Verdict::PeerReset,
                    _ => Verdict::Reset("the peer broker restarted"),
                };
            }
        }
        match kind {
            Kind::Reset => {
                // The peer starts a new generation of its receive side:
                // what we send is stamped with it from now on, from 1.
                if env.gen <= self.tx_gen && self.tx_gen != 0 {
                    return Verdict::Drop;
                }
                self.tx_gen = env.gen;
                self.sent = 0;
                self.received = 0;
                self.resets += 1;
                Verdict::PeerReset
            }
            Kind::DeclaredDead => Verdict::Drop,
            _ if env.gen < self.rx_gen => Verdict::Stray,
            _ if env.gen > self.rx_gen => Verdict::Reset("a generation from the future"),
            Kind::Frames => {
                if env.seq == self.received + 1 {
                    self.received = env.seq;
                    Verdict::Deliver(())
                } else if env.seq <= self.received {
                    Verdict::Drop
                } else {
                    Verdict::Reset("link messages were lost")
                }
            }
            Kind::Sync { want_reply } => {
                if env.seq > self.received {
                    Verdict::Reset("a sync shows link messages were lost")
                } else if env.seq < self.received {
                    Verdict::Reset("a sync is behind what was received")
                } else if want_reply {
                    Verdict::AnswerSync
                } else {
                    Verdict::Drop
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (LinkState, LinkState) {
        (LinkState::default(), LinkState::default())
    }

    const A: u64 = 11;
    const B: u64 = 22;

    #[test]
    fn envelopes_read_back() {
        for body in [
            Body::Frames(vec![b"abc".to_vec(), Vec::new(), vec![7; 300]]),
            Body::Frames(Vec::new()),
            Body::Reset,
            Body::Sync { want_reply: true },
            Body::Sync { want_reply: false },
            Body::DeclaredDead,
        ] {
            let e = Envelope {
                from: "b1".into(),
                from_inc: 1,
                to_inc: 2,
                gen: 3,
                seq: 4,
                body,
            };
            let bytes = e.encode();
            assert_eq!(Envelope::decode(&bytes).unwrap(), e);
            for cut in 0..bytes.len() {
                assert!(Envelope::decode(&bytes[..cut]).is_err(), "cut {cut}");
            }
        }
        let mut bad = Envelope {
            from: "b1".into(),
            from_inc: 1,
            to_inc: 2,
            gen: 3,
            seq: 4,
            body: Body::Reset,
        }
        .encode();
        bad.push(0);
        assert!(Envelope::decode(&bad).is_err());
        bad[0] = 9;
        assert!(Envelope::decode(&bad).is_err());
    }

    #[test]
    fn frames_encoded_in_place_and_read_in_place_are_the_envelope() {
        for frames in [
            vec![b"abc".to_vec(), Vec::new(), vec![7; 300]],
            Vec::new(),
            vec![vec![1; 70_000]],
        ] {
            let mut link = LinkState {
                peer_inc: 5,
                tx_gen: 2,
                sent: 8,
                ..LinkState::default()
            };
            let head = link.next_frames_head(11);
            let env = Envelope {
                from: "b1".into(),
                from_inc: 11,
                to_inc: 5,
                gen: 2,
                seq: 9,
                body: Body::Frames(frames.clone()),
            };
            // After other output: only what is appended counts.
            let mut out = b"PUB x 1\r\n".to_vec();
            Envelope::encode_frames("b1", head, &frames, &mut out);
            assert_eq!(&out[9..], env.encode().as_slice());
            assert_eq!(out.len() - 9, Envelope::frames_len("b1", &frames));
            let read = EnvelopeRef::decode(&out[9..]).unwrap();
            assert_eq!((read.from, read.head), ("b1", head));
            let BodyRef::Frames(got) = read.body else {
                panic!("not frames");
            };
            assert_eq!(got.len(), frames.len());
            assert_eq!(got.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(), frames);
        }
    }

    #[test]
    fn random_bytes_never_panic_and_frames_read_are_the_count_announced() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let valid = Envelope {
            from: "b1".into(),
            from_inc: 1,
            to_inc: 2,
            gen: 3,
            seq: 4,
            body: Body::Frames(vec![b"abc".to_vec(), vec![9; 40]]),
        }
        .encode();
        for _ in 0..20_000 {
            // A valid message with a few bytes changed, or noise.
            let mut bytes = if next() % 2 == 0 {
                valid.clone()
            } else {
                (0..next() % 120).map(|_| next() as u8).collect()
            };
            for _ in 0..1 + next() % 3 {
                if !bytes.is_empty() {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            if let Ok(e) = EnvelopeRef::decode(&bytes) {
                if let BodyRef::Frames(frames) = e.body {
                    assert_eq!(frames.iter().count(), frames.len());
                }
                assert!(Envelope::decode(&bytes).is_ok());
            } else {
                assert!(Envelope::decode(&bytes).is_err());
            }
        }
    }

    #[test]
    fn borrowed_receive_judges_as_owned() {
        let (mut a, mut b) = pair();
        let mut b2 = LinkState::default();
        let m1 = a.next_frames("a", A, vec![b"1".to_vec(), b"22".to_vec()]);
        let _lost = a.next_frames("a", A, vec![b"x".to_vec()]);
        let m3 = a.next_frames("a", A, vec![b"y".to_vec()]);
        for m in [&m1, &m3, &a.sync("a", A, true)] {
            let bytes = m.encode();
            let read = EnvelopeRef::decode(&bytes).unwrap();
            let owned = b.receive(B, m);
            let borrowed = b2.receive_ref(B, &read);
            match (owned, borrowed) {
                (Verdict::Deliver(o), Verdict::Deliver(r)) => {
                    assert_eq!(o, r.iter().map(<[u8]>::to_vec).collect::<Vec<_>>())
                }
                (o, r) => assert_eq!(o, r.with_frames(Vec::new)),
            }
            assert_eq!(
                (b.received, b.rx_gen, b.resets),
                (b2.received, b2.rx_gen, b2.resets)
            );
        }
    }

    #[test]
    fn in_order_frames_pass_and_a_gap_resets() {
        let (mut a, mut b) = pair();
        let m1 = a.next_frames("a", A, vec![b"1".to_vec()]);
        let m2 = a.next_frames("a", A, vec![b"2".to_vec()]);
        let m3 = a.next_frames("a", A, vec![b"3".to_vec()]);
        assert_eq!(b.receive(B, &m1), Verdict::Deliver(vec![b"1".to_vec()]));
        // m2 lost.
        assert!(matches!(b.receive(B, &m3), Verdict::Reset(_)));
        let reset = b.reset("b", B);
        // A's stray m2 of the old generation arrives after the reset:
        // dropped, and the reset is sent again in case A missed it.
        assert_eq!(b.receive(B, &m2), Verdict::Stray);
        assert_eq!(a.receive(A, &reset), Verdict::PeerReset);
        // The next frames start at 1 of the new generation and pass.
        let m = a.next_frames("a", A, vec![b"x".to_vec()]);
        assert_eq!((m.seq, m.gen, m.to_inc), (1, 1, B));
        assert_eq!(b.receive(B, &m), Verdict::Deliver(vec![b"x".to_vec()]));
        // The same reset again is a duplicate: nothing.
        assert_eq!(a.receive(A, &reset), Verdict::Drop);
        assert_eq!(a.receive(A, &b.reset_again("b", B)), Verdict::Drop);
    }

    #[test]
    fn syncs_find_a_lost_last_message() {
        let (mut a, mut b) = pair();
        let m1 = a.next_frames("a", A, vec![b"1".to_vec()]);
        b.receive(B, &m1);
        let _lost = a.next_frames("a", A, vec![b"2".to_vec()]);
        assert!(matches!(
            b.receive(B, &a.sync("a", A, false)),
            Verdict::Reset(_)
        ));
        let (mut a, mut b) = pair();
        let m1 = a.next_frames("a", A, vec![b"1".to_vec()]);
        b.receive(B, &m1);
        assert_eq!(b.receive(B, &a.sync("a", A, true)), Verdict::AnswerSync);
        assert_eq!(b.receive(B, &a.sync("a", A, false)), Verdict::Drop);
        assert_eq!(a.receive(A, &b.sync("b", B, false)), Verdict::Drop);
    }

    #[test]
    fn a_lost_reset_is_sent_again_on_the_next_stray() {
        let (mut a, mut b) = pair();
        let m1 = a.next_frames("a", A, vec![b"1".to_vec()]);
        b.receive(B, &m1);
        // B resets; its reset message is lost. A goes on in generation 0.
        let _lost = b.reset("b", B);
        let m2 = a.next_frames("a", A, vec![b"2".to_vec()]);
        assert_eq!(b.receive(B, &m2), Verdict::Stray);
        assert_eq!(a.receive(A, &b.reset_again("b", B)), Verdict::PeerReset);
        let m3 = a.next_frames("a", A, vec![b"3".to_vec()]);
        assert_eq!(b.receive(B, &m3), Verdict::Deliver(vec![b"3".to_vec()]));
    }

    #[test]
    fn first_contact_keeps_what_we_sent() {
        let (mut a, mut b) = pair();
        let m1 = a.next_frames("a", A, vec![b"1".to_vec()]);
        assert!(matches!(b.receive(B, &m1), Verdict::Deliver(_)));
        let r1 = b.next_frames("b", B, vec![b"r".to_vec()]);
        assert!(matches!(a.receive(A, &r1), Verdict::Deliver(_)));
        let m2 = a.next_frames("a", A, vec![b"2".to_vec()]);
        assert_eq!(m2.seq, 2);
        assert!(matches!(b.receive(B, &m2), Verdict::Deliver(_)));
    }

    #[test]
    fn owned_messages_deliver_the_same_frames_and_notices_are_not_judged() {
        let (mut a, mut b) = pair();
        let m1 = a.next_frames("a", A, vec![b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(
            b.receive_owned(B, m1),
            Verdict::Deliver(vec![b"1".to_vec(), b"2".to_vec()])
        );
        let m3 = {
            let _lost = a.next_frames("a", A, vec![b"x".to_vec()]);
            a.next_frames("a", A, vec![b"y".to_vec()])
        };
        assert!(matches!(b.receive_owned(B, m3), Verdict::Reset(_)));
        // A declared-dead notice leaves the link as it is.
        let before = (b.received, b.rx_gen, b.resets);
        let notice = LinkState::declared_dead("a", A, B);
        assert_eq!(notice.body, Body::DeclaredDead);
        assert_eq!(b.receive(B, &notice), Verdict::Drop);
        assert_eq!((b.received, b.rx_gen, b.resets), before);
    }

    #[test]
    fn incarnations_are_checked() {
        let (mut a, mut b) = pair();
        let m1 = a.next_frames("a", A, vec![b"1".to_vec()]);
        assert!(matches!(b.receive(B, &m1), Verdict::Deliver(_)));
        // A message for an earlier life of B.
        let mut old = a.next_frames("a", A, vec![b"2".to_vec()]);
        old.to_inc = 999;
        assert_eq!(b.receive(B, &old), Verdict::Stale);
        // A restarted (new incarnation): B resets its side.
        let mut a2 = LinkState::default();
        let n1 = a2.next_frames("a", A + 1, vec![b"n".to_vec()]);
        assert!(matches!(b.receive(B, &n1), Verdict::Reset(_)));
        assert_eq!(b.peer_inc, A + 1);
    }
}
