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

    /// The size of a frames message holding frames of these sizes.
    pub fn frames_size(sizes: impl IntoIterator<Item = usize>) -> usize {
        HEADER + 1 + 64 + 4 + sizes.into_iter().map(|s| s + 4).sum::<usize>()
    }

    /// Reads a message.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, BadEnvelope> {
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
                let mut frames = Vec::new();
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
                    let Some(frame) = rest.get(at..at + len) else {
                        return Err(BadEnvelope("truncated frame"));
                    };
                    frames.push(frame.to_vec());
                    at += len;
                }
                if at != rest.len() {
                    return Err(BadEnvelope("bytes after the frames"));
                }
                Body::Frames(frames)
            }
            1 => Body::Reset,
            2 => Body::Sync { want_reply: false },
            3 => Body::Sync { want_reply: true },
            4 => Body::DeclaredDead,
            _ => return Err(BadEnvelope("unknown kind")),
        };
        if !matches!(body, Body::Frames(_)) && !rest.is_empty() {
            return Err(BadEnvelope("bytes after a control message"));
        }
        Ok(Envelope {
            from: from.to_string(),
            from_inc,
            to_inc,
            gen,
            seq,
            body,
        })
    }
}

/// What the receiver does with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand these frames to the broker, in order.
    Deliver(Vec<Vec<u8>>),
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

impl LinkState {
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
        match self.judge(my_inc, env) {
            Verdict::Deliver(_) => match &env.body {
                Body::Frames(frames) => Verdict::Deliver(frames.clone()),
                _ => unreachable!("only frames are delivered"),
            },
            v => v,
        }
    }

    /// [`LinkState::receive`] of a message the caller gives up: the frames
    /// delivered are moved out of it, not copied.
    pub fn receive_owned(&mut self, my_inc: u64, env: Envelope) -> Verdict {
        match self.judge(my_inc, &env) {
            Verdict::Deliver(_) => match env.body {
                Body::Frames(frames) => Verdict::Deliver(frames),
                _ => unreachable!("only frames are delivered"),
            },
            v => v,
        }
    }

    /// The verdict, with `Deliver` empty (the callers fill it).
    fn judge(&mut self, my_inc: u64, env: &Envelope) -> Verdict {
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
                if env.body == Body::Reset {
                    self.tx_gen = env.gen;
                }
                self.resets += 1;
                return match &env.body {
                    Body::Reset => Verdict::PeerReset,
                    _ => Verdict::Reset("the peer broker restarted"),
                };
            }
        }
        match &env.body {
            Body::Reset => {
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
            Body::DeclaredDead => Verdict::Drop,
            _ if env.gen < self.rx_gen => Verdict::Stray,
            _ if env.gen > self.rx_gen => Verdict::Reset("a generation from the future"),
            Body::Frames(_) => {
                if env.seq == self.received + 1 {
                    self.received = env.seq;
                    Verdict::Deliver(Vec::new())
                } else if env.seq <= self.received {
                    Verdict::Drop
                } else {
                    Verdict::Reset("link messages were lost")
                }
            }
            Body::Sync { want_reply } => {
                if env.seq > self.received {
                    Verdict::Reset("a sync shows link messages were lost")
                } else if env.seq < self.received {
                    Verdict::Reset("a sync is behind what was received")
                } else if *want_reply {
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
