//! Hashing shared by the tables of the crate: std's keyed SipHash for strings and keys (topic
//! levels come from the network), a seeded integer mixer for the trie's own indices.

use std::hash::{BuildHasher, Hash, RandomState};

/// The hashers of one tree: a random key per tree.
#[derive(Clone)]
pub(crate) struct Hashers {
    state: RandomState,
    seed: u64,
}

impl Hashers {
    pub(crate) fn new() -> Self {
        let state = RandomState::new();
        let seed = state.hash_one(0x7465_726e_u64);
        Self { state, seed }
    }

    /// Hashes anything the caller provides (strings, subscriber keys).
    pub(crate) fn hash<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        self.state.hash_one(value)
    }

    /// Hashes a pair of indices of the tree (the tree assigns them, a peer cannot choose them).
    pub(crate) fn pair(&self, a: u32, b: u32) -> u64 {
        // splitmix64's finalizer: every input bit reaches the high bits hashbrown tags with.
        let mut x = ((u64::from(a) << 32) | u64::from(b)) ^ self.seed;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}
