//! A cursor over a frame body reading bincode's standard forms by hand,
//! shared by the in-place reader of per-call frames
//! ([`super::received`]) and the validating scan of args
//! ([`super::scan`]): both read exactly what the decoder would, and
//! say `None` where it would refuse.

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
}
