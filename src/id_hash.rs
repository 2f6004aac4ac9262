//! Hash maps keyed by numeric ids (connections, routes, calls, timers).
//!
//! The standard SipHash resists keys chosen to collide, at a cost that
//! showed as a quarter of the broker's time per forwarded frame. The ids
//! these maps hold are assigned by this process (connections, routes,
//! timers, a client's own call ids), so nobody can choose them to collide
//! and a folded 128-bit multiply, which spreads every key bit into the
//! bucket bits, is enough. Keys a peer chooses (its call ids at the
//! broker) and names keep SipHash.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map from numeric ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A set of numeric ids.
pub(crate) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Hashes integer keys with one folded multiply.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

/// An odd constant with well-mixed bits (from the golden ratio).
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl IdHasher {
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * u128::from(MULTIPLIER);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only integer keys use this hasher; byte input (never expected)
        // is still hashed, eight bytes at a time.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn hash(n: u64) -> u64 {
        BuildHasherDefault::<IdHasher>::default().hash_one(n)
    }

    #[test]
    fn sequential_and_strided_ids_spread_over_low_bits() {
        for stride in [1u64, 2, 1 << 10, 1 << 20, 1 << 40] {
            let buckets: HashSet<u64> = (0..1024u64).map(|i| hash(i * stride) & 1023).collect();
            assert!(
                buckets.len() > 600,
                "stride {stride}: {} of 1024 buckets",
                buckets.len()
            );
        }
    }

    #[test]
    fn maps_work_with_the_hasher() {
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000 {
            m.insert(i << 32, i);
        }
        assert!((0..10_000).all(|i| m[&(i << 32)] == i));
    }
}
