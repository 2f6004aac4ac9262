//! Hash maps keyed by numeric ids (connections, routes, calls, timers).
//!
//! The standard SipHash resists keys chosen to collide, at a cost that
//! showed as a quarter of the broker's time per forwarded frame. The ids
//! [`IdMap`] and [`IdSet`] hold are assigned by this process (connections,
//! routes, timers, a client's own call ids), so nobody can choose them to
//! collide and a folded 128-bit multiply, which spreads every key bit into
//! the bucket bits, is enough.
//!
//! Ids a peer chooses (its call ids at the broker) go in a [`PeerIdMap`]:
//! the same folded multiply, but keyed with three random 64-bit words
//! drawn for each map from the standard library's per-process random
//! state (seeded by the operating system), as `foldhash` and `ahash`'s
//! fallback do. Why a peer cannot make its ids collide there:
//!
//! * the hash is `fold(fold((x ^ k0) * k1) ^ k2) * M)`, with `fold(p)` the
//!   xor of the two halves of the 128-bit product `p`; the product of two
//!   64-bit words is exact (no wrap), so each multiply is injective and
//!   every bit of `x ^ k0` reaches both halves through carries that depend
//!   on every bit of the odd key `k1`;
//! * the keys are secret: the broker never sends a hash, a bucket or a
//!   table's order back (maps of peer ids are only looked up by id, never
//!   listed to a peer), so the only signal is the time of a call, far too
//!   noisy to learn 192 key bits from;
//! * without the keys, ids that collide for one key collide for another
//!   only by chance: a set that lands in one bucket of the unkeyed hash,
//!   or of another map's keys, spreads over the buckets of this one (the
//!   tests build such sets and check it);
//! * the keys differ per map (per connection at the broker), so what a
//!   peer might learn about one map says nothing about the next, and a
//!   peer's ids only ever share a map with its own ids.
//!
//! It is not a cryptographic MAC, and need not be: HashDoS needs many ids
//! in one bucket, and every peer is further bounded by `max_pending` calls
//! in flight. It costs two multiplies per id instead of SipHash's ~100
//! instructions.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// A map from numeric ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A set of numeric ids.
pub(crate) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Hashes integer keys with one folded multiply.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

/// A map from numeric ids a peer chooses: keyed per map, see the module
/// doc.
pub(crate) type PeerIdMap<K, V> = HashMap<K, V, PeerIdKeys>;

/// The secret keys of one [`PeerIdMap`], drawn when the map is made.
#[derive(Clone, Copy)]
pub(crate) struct PeerIdKeys {
    k0: u64,
    /// Odd, so that multiplying by it loses no bit.
    k1: u64,
    k2: u64,
}

impl std::fmt::Debug for PeerIdKeys {
    /// Never prints the keys: they are secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerIdKeys")
    }
}

impl Default for PeerIdKeys {
    /// Fresh random keys: the standard library's random state (seeded per
    /// thread by the operating system, stepped for each new state) hashed
    /// three ways.
    fn default() -> Self {
        let state = RandomState::new();
        PeerIdKeys {
            k0: state.hash_one(0u8),
            k1: state.hash_one(1u8) | 1,
            k2: state.hash_one(2u8),
        }
    }
}

impl BuildHasher for PeerIdKeys {
    type Hasher = KeyedIdHasher;

    fn build_hasher(&self) -> KeyedIdHasher {
        KeyedIdHasher {
            state: self.k0,
            keys: *self,
        }
    }
}

/// Hashes integer keys a peer chooses: a folded multiply keyed by the
/// map's [`PeerIdKeys`], finished by a second one.
#[derive(Clone, Copy)]
pub(crate) struct KeyedIdHasher {
    state: u64,
    keys: PeerIdKeys,
}

impl KeyedIdHasher {
    fn mix(&mut self, word: u64) {
        self.state = fold(self.state ^ word, self.keys.k1);
    }
}

impl Hasher for KeyedIdHasher {
    fn finish(&self) -> u64 {
        fold(self.state ^ self.keys.k2, MULTIPLIER)
    }

    fn write(&mut self, bytes: &[u8]) {
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

/// The xor of the two halves of the exact product `a * b`.
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// An odd constant with well-mixed bits (from the golden ratio).
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.0 = fold(self.0 ^ word, MULTIPLIER);
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

    /// `count` ids that all land in bucket 0 of a 1024-bucket table under
    /// the unkeyed [`IdHasher`]: what a peer would send if the broker
    /// used it for ids the peer chooses.
    fn unkeyed_collisions(count: usize) -> Vec<u64> {
        (0u64..)
            .filter(|&x| hash(x) & 1023 == 0)
            .take(count)
            .collect()
    }

    #[test]
    fn ids_chosen_to_collide_spread_over_a_keyed_map() {
        let colliding = unkeyed_collisions(1024);
        assert_eq!(
            colliding
                .iter()
                .map(|&x| hash(x) & 1023)
                .collect::<HashSet<_>>()
                .len(),
            1,
            "the unkeyed hash puts them all in one bucket"
        );
        let strided: Vec<u64> = (0..1024u64).map(|i| i << 40).collect();
        let low_equal: Vec<u64> = (0..1024u64).map(|i| (i << 10) | 5).collect();
        let keys = PeerIdKeys::default();
        for (name, ids) in [
            ("unkeyed collisions", &colliding),
            ("strided", &strided),
            ("equal low bits", &low_equal),
        ] {
            for bits in [1023u64, !0 >> 57 << 57] {
                let buckets: HashSet<u64> = ids.iter().map(|&x| keys.hash_one(x) & bits).collect();
                let least = if bits == 1023 { 600 } else { 100 };
                assert!(
                    buckets.len() > least,
                    "{name}, bits {bits:#x}: {} distinct",
                    buckets.len()
                );
            }
        }
    }

    #[test]
    fn ids_that_collide_under_one_key_spread_under_another() {
        let first = PeerIdKeys::default();
        let second = PeerIdKeys::default();
        let colliding: Vec<u64> = (0u64..)
            .filter(|&x| first.hash_one(x) & 1023 == 0)
            .take(1024)
            .collect();
        let buckets: HashSet<u64> = colliding
            .iter()
            .map(|&x| second.hash_one(x) & 1023)
            .collect();
        assert!(buckets.len() > 600, "{} of 1024", buckets.len());
    }

    #[test]
    fn a_keyed_map_holds_adversarial_ids() {
        let mut m: PeerIdMap<u64, u64> = PeerIdMap::default();
        let ids = unkeyed_collisions(5_000);
        for (i, &id) in ids.iter().enumerate() {
            assert!(m.insert(id, i as u64).is_none());
        }
        assert!(ids.iter().enumerate().all(|(i, id)| m[id] == i as u64));
        for id in &ids {
            m.remove(id);
        }
        assert!(m.is_empty());
    }
}
