//! Hashing shared by the tables of the crate: foldhash for strings and keys, keyed per tree from
//! std's OS-seeded `RandomState` (topic levels come from the network), and a seeded integer
//! mixer that combines a level's hash with the trie's own indices.

use std::hash::{BuildHasher, Hash, RandomState};

use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;

/// The hashers of one tree: a random key per tree.
#[derive(Clone)]
pub(crate) struct Hashers {
    state: SeedableRandomState,
    seed: u64,
}

impl Hashers {
    pub(crate) fn new() -> Self {
        // std's `RandomState` draws its keys from the OS once per thread and increments them
        // for every instance: a fresh, unpredictable key per tree.
        let keys = RandomState::new();
        let state = SeedableRandomState::with_seed(
            keys.hash_one(0x006c_6576_656c_u64),
            SharedSeed::global_random(),
        );
        let seed = keys.hash_one(0x7465_726e_u64);
        Self { state, seed }
    }

    /// Hashes anything the caller provides (strings, subscriber keys).
    #[inline]
    pub(crate) fn hash<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        self.state.hash_one(value)
    }

    /// Hashes a topic level (any `&str` hashed here hashes the same everywhere in the tree).
    #[inline]
    pub(crate) fn level(&self, level: &str) -> u64 {
        self.state.hash_one(level.as_bytes())
    }

    /// Combines a node index with the hash of a level: the key of the edge from `parent` to
    /// its child labelled by that level.
    #[inline]
    pub(crate) fn edge(&self, parent: u32, level_hash: u64) -> u64 {
        self.mix(level_hash ^ (u64::from(parent) << 32 | u64::from(parent)))
    }

    #[inline]
    fn mix(&self, x: u64) -> u64 {
        // splitmix64's finalizer: every input bit reaches the high bits hashbrown tags with.
        let mut x = x ^ self.seed;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}
