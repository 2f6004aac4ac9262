//! The validating scan of a payload: whether encoded args would decode,
//! answered without decoding them (nothing allocated), so that received
//! args can stay encoded until read and still be refused at receipt.
//!
//! It follows the decoder the payload is otherwise read with (serde's
//! derived `Value` and `Args` through bincode's standard configuration,
//! with `value`'s nesting and size charges) step by step: the same
//! varints (any width that fits the integer read, as bincode takes
//! them), lengths, variant numbers, booleans, UTF-8 checks, bincode's
//! limit on bytes claimed, the nesting bound and the decoded-size
//! budget. Where it says no, the caller runs the decoder for its exact
//! error; the two are compared on random and mutated payloads in the
//! tests below.

use super::cursor::Cursor;
use super::DECODE_LIMIT;
use crate::value::{ELEMENT_CHARGE, ENTRY_CHARGE, MAX_DEPTH};

/// What a scan found of valid args: how many entries the outer map
/// announces.
pub(crate) struct Scanned {
    /// The outer map's entry count (repeated names counted each time).
    pub entries: u64,
}

/// Scans `bytes` as a whole payload of args within `budget` bytes of
/// decoded size: `Some` exactly when the decoder would accept them (and
/// use every byte).
pub(crate) fn args(bytes: &[u8], budget: usize) -> Option<Scanned> {
    let mut s = Scan {
        rest: Cursor(bytes),
        budget,
        claimed: 0,
    };
    let entries = s.map(0)?;
    s.rest.0.is_empty().then_some(Scanned { entries })
}

struct Scan<'a> {
    rest: Cursor<'a>,
    /// Decoded size still allowed (`value`'s charges).
    budget: usize,
    /// What bincode's decoder counts against its limit: the width of
    /// every integer read (8 for lengths), and every string's length.
    claimed: usize,
}

impl<'a> Scan<'a> {
    fn claim(&mut self, n: usize) -> Option<()> {
        self.claimed = self.claimed.checked_add(n)?;
        (self.claimed <= DECODE_LIMIT).then_some(())
    }

    fn charge(&mut self, n: usize) -> Option<()> {
        self.budget = self.budget.checked_sub(n)?;
        Some(())
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        self.rest.take(n)
    }

    fn byte(&mut self) -> Option<u8> {
        self.rest.byte()
    }

    fn varint(&mut self, width: usize) -> Option<u64> {
        self.rest.varint(width)
    }

    /// A length (bincode's `usize`).
    fn len(&mut self) -> Option<usize> {
        self.claim(8)?;
        usize::try_from(self.varint(8)?).ok()
    }

    /// A length-prefixed run of bytes.
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.claim(n)?;
        self.take(n)
    }

    fn text(&mut self) -> Option<usize> {
        let b = self.bytes()?;
        std::str::from_utf8(b).ok()?;
        Some(b.len())
    }

    /// A map of names to values (`Args`), `depth` levels down; its
    /// entry count.
    fn map(&mut self, depth: usize) -> Option<u64> {
        let n = self.len()?;
        for _ in 0..n {
            self.charge(ENTRY_CHARGE)?;
            let name = self.text()?;
            self.value(depth)?;
            self.charge(name)?;
        }
        // The decoder charges once more before finding the end.
        self.charge(ENTRY_CHARGE)?;
        Some(n as u64)
    }

    /// One `Value`, `depth` levels of lists and maps down.
    fn value(&mut self, depth: usize) -> Option<()> {
        self.claim(4)?;
        match self.varint(4)? {
            0 => {}
            1 => {
                self.claim(1)?;
                if self.byte()? > 1 {
                    return None;
                }
            }
            2 => {
                self.claim(8)?;
                self.varint(8)?;
            }
            3 => {
                self.claim(8)?;
                self.take(8)?;
            }
            4 => {
                let n = self.text()?;
                self.charge(n)?;
            }
            5 => {
                let n = self.bytes()?.len();
                self.charge(n)?;
            }
            6 => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let n = self.len()?;
                for _ in 0..n {
                    self.charge(ELEMENT_CHARGE)?;
                    self.value(depth + 1)?;
                }
                self.charge(ELEMENT_CHARGE)?;
            }
            7 => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.map(depth + 1)?;
            }
            _ => return None,
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Args, Value};
    use crate::wire::{Payload, DECODE_FACTOR, DEFAULT_MAX_DECODED};

    /// The budget the receiver gives a payload of `len` bytes.
    fn budget(len: usize) -> usize {
        len.saturating_mul(DECODE_FACTOR)
            .saturating_add(4096)
            .min(DEFAULT_MAX_DECODED)
    }

    /// Whether the decoder accepts `bytes` (the reference).
    fn decoder_accepts(bytes: &[u8], budget: usize) -> bool {
        Payload::decode_eagerly(bytes, budget).is_ok()
    }

    fn agree(bytes: &[u8], budget: usize) {
        assert_eq!(
            args(bytes, budget).is_some(),
            decoder_accepts(bytes, budget),
            "scan and decoder disagree on {bytes:?} within {budget}"
        );
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Payloads of every kind of value, nesting and width of varint.
    fn samples() -> Vec<Vec<u8>> {
        let list = Value::List(vec![
            Value::Int(-5),
            Value::Str("s".into()),
            Value::List(vec![]),
            Value::Bytes(vec![0xff; 3]),
        ]);
        let every = Args::new()
            .with("null", Value::Null)
            .with("yes", true)
            .with("no", false)
            .with("int", 300)
            .with("big", Value::Int(i64::MIN))
            .with("f", 1.5)
            .with("text", "é")
            .with("bytes", vec![1u8, 2, 3])
            .with("list", list.clone());
        let nested = Args::new()
            .with("map", Value::Map(every.clone()))
            .with("l", Value::List(vec![Value::Map(every.clone()), list]));
        let wide = (0..300).fold(Args::new(), |a, i| a.with(format!("k{i}"), i));
        let mut out: Vec<Vec<u8>> = [Args::new(), every, nested, wide]
            .iter()
            .map(|a| Payload::encode(a).0)
            .collect();
        // Varints wider than they need (bincode takes them), and too
        // wide for the integer read.
        out.push(vec![251, 1, 0, 1, b'x', 2, 4]);
        out.push(vec![1, 1, b'x', 251, 2, 0, 4]);
        out.push(vec![1, 1, b'x', 253, 2, 0, 0, 0, 0, 0, 0, 0, 4]);
        out.push(vec![1, 1, b'x', 2, 253, 1, 0, 0, 0, 0, 0, 0, 0]);
        out.push(vec![1, 1, b'x', 2, 254, 1]);
        out.push(vec![1, 1, b'x', 1, 2]);
        out.push(vec![1, 1, b'x', 8]);
        out.push(vec![1, 1, 0xff, 0]);
        out
    }

    #[test]
    fn the_scan_accepts_exactly_what_the_decoder_accepts() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for sample in samples() {
            agree(&sample, budget(sample.len()));
            // Every cut, and every byte changed a few ways.
            for cut in 0..sample.len() {
                agree(&sample[..cut], budget(cut));
            }
            let mut longer = sample.clone();
            longer.push(0);
            agree(&longer, budget(longer.len()));
            for _ in 0..400 {
                let mut m = sample.clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(m.len());
                    m[at] = match rng.below(4) {
                        0 => rng.next() as u8,
                        1 => m[at].wrapping_add(1),
                        2 => m[at].wrapping_sub(1),
                        _ => [0, 1, 250, 251, 252, 253, 254, 255][rng.below(8)],
                    };
                }
                agree(&m, budget(m.len()));
                // And tight budgets around what the args charge.
                agree(&m, rng.below(4096));
            }
        }
        for _ in 0..20_000 {
            let len = rng.below(24);
            let mut b: Vec<u8> = (0..len).map(|_| rng.below(12) as u8).collect();
            if len > 0 && rng.below(2) == 0 {
                b[0] = 1;
            }
            agree(&b, budget(len));
        }
    }

    #[test]
    fn nesting_and_size_bounds_are_the_decoders() {
        for depth in [1, 127, 128, 129, 1000] {
            let mut lists = vec![1, 1, b'x'];
            let mut maps = vec![1, 1, b'x'];
            for _ in 0..depth {
                lists.extend_from_slice(&[6, 1]);
                maps.extend_from_slice(&[7, 1, 1, b'y']);
            }
            lists.push(0);
            maps.push(0);
            for b in [lists, maps] {
                agree(&b, DEFAULT_MAX_DECODED);
            }
        }
        let mut nulls = vec![1, 1, b'x', 6, 0xfc];
        nulls.extend_from_slice(&1000u32.to_le_bytes());
        nulls.resize(nulls.len() + 1000, 0);
        for budget in [0, 1000, 64_000, 64_100, 64_200, 65_000, 1 << 20] {
            agree(&nulls, budget);
        }
        // A length past bincode's limit on bytes claimed.
        let mut huge = vec![1, 1, b'x', 4, 253];
        huge.extend_from_slice(&(DECODE_LIMIT as u64 + 1).to_le_bytes());
        agree(&huge, usize::MAX);
    }
}
