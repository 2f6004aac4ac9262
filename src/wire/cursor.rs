//! A cursor over a frame body reading bincode's standard forms by hand,
//! shared by the in-place readers of per-call frames (the client's,
//! [`super::received`], and the broker's, [`super::routed`]) and the
//! validating scan of args ([`super::scan`]): all read exactly what the
//! decoder would, and say `None` where it would refuse.

/// The unread rest of a body.
pub(super) struct Cursor<'a>(pub(super) &'a [u8]);

impl<'a> Cursor<'a> {
    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    /// The next byte.
    pub(super) fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// A varint of at most `width` bytes (2, 4 or 8), as bincode reads
    /// one: a byte below 251 is itself, 251/252/253 announce 2/4/8
    /// little-endian bytes; wider than the integer, it is refused.
    pub(super) fn varint(&mut self, width: usize) -> Option<u64> {
        let first = self.byte()?;
        let n = match first {
            0..=250 => return Some(u64::from(first)),
            251 => 2,
            252 => 4,
            253 => 8,
            _ => return None,
        };
        if n > width {
            return None;
        }
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(self.take(n)?);
        Some(u64::from_le_bytes(le))
    }

    /// What is left unread.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.0
    }

    /// A `u64`.
    pub(super) fn u64(&mut self) -> Option<u64> {
        self.varint(8)
    }

    /// A `u32` (also an enum's variant number).
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.varint(4).map(|n| n as u32)
    }

    /// A `u16`.
    pub(super) fn u16(&mut self) -> Option<u16> {
        self.varint(2).map(|n| n as u16)
    }

    /// A byte string: its length, then its bytes.
    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }

    /// A string: as [`Cursor::bytes`], and valid UTF-8.
    pub(super) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

/// `n` bodies made from `body` by changing one to three of its bytes
/// each (at random, the same for the same `seed`), towards the values
/// where bincode's forms change: the tests of the in-place readers
/// compare them with the decoder on these.
#[cfg(test)]
pub(super) fn mutations(body: &[u8], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    (0..n)
        .map(|_| {
            let mut m = body.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() % m.len() as u64) as usize;
                m[at] = match next() % 4 {
                    0 => next() as u8,
                    1 => m[at].wrapping_add(1),
                    2 => m[at].wrapping_sub(1),
                    _ => [0, 1, 2, 250, 251, 252, 253, 254, 255][(next() % 9) as usize],
                };
            }
            m
        })
        .collect()
}
