//! The table of the trie's exact edges: node indices in one flat array of slots, open
//! addressing with linear probing.
//!
//! A probe reads one slot, then the node it names (which the caller checks, and goes on to
//! use): one cache miss fewer than a table keeping its tags apart from its items, on the
//! path of every lookup. Removal shifts the rest of the cluster back, so there are no
//! tombstones and lookups stay short under churn.

/// An empty slot.
const EMPTY: u32 = u32::MAX;
/// Slots of the smallest non-empty table.
const MIN_SLOTS: usize = 16;

/// A set of `u32` items (node indices, never [`u32::MAX`]) hashed by the caller.
pub(crate) struct Edges {
    slots: Vec<u32>,
    len: usize,
}

impl Edges {
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        // The high bits: the mixers of `Hashers` spread every input bit there.
        (hash >> 32) as usize & self.mask()
    }

    /// The item of hash `hash` that `eq` accepts.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let item = self.slots[i];
            if item == EMPTY {
                return None;
            }
            if eq(item) {
                return Some(item);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `item`, which must not be in the table; `rehash` gives the hash of any item.
    pub(crate) fn insert(&mut self, hash: u64, item: u32, rehash: impl Fn(u32) -> u64) {
        debug_assert_ne!(item, EMPTY);
        // At most 5/8 full, so that clusters stay short: a removal rehashes the rest of its
        // cluster, one node load per item (at 3/4 full, removals were 2-3 times slower).
        if (self.len + 1) * 8 > self.slots.len() * 5 {
            let slots = (self.slots.len() * 2).max(MIN_SLOTS);
            self.resize(slots, &rehash);
        }
        self.place(hash, item);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, item: u32) {
        let mask = self.mask();
        let mut i = self.home(hash);
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = item;
    }

    fn resize(&mut self, slots: usize, rehash: &impl Fn(u32) -> u64) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; slots]);
        for item in old.into_iter().filter(|&item| item != EMPTY) {
            self.place(rehash(item), item);
        }
    }

    /// Removes `item`, of hash `hash`; `rehash` gives the hash of any item.
    pub(crate) fn remove(&mut self, hash: u64, item: u32, rehash: impl Fn(u32) -> u64) {
        if self.slots.is_empty() {
            return;
        }
        let mask = self.mask();
        let mut hole = self.home(hash);
        loop {
            match self.slots[hole] {
                EMPTY => return,
                x if x == item => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        self.len -= 1;
        if self.len == 0 {
            *self = Self::new();
            return;
        }
        // Backward shift: move back every later item of the cluster whose home is not
        // between the hole and its slot.
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let next = self.slots[i];
            if next == EMPTY {
                break;
            }
            let home = self.home(rehash(next));
            // Cyclic distances from the home: the item may fill the hole if the hole is no
            // farther from its home than its own slot.
            if (hole.wrapping_sub(home) & mask) <= (i.wrapping_sub(home) & mask) {
                self.slots[hole] = next;
                hole = i;
            }
        }
        self.slots[hole] = EMPTY;
    }

    /// Releases spare capacity, keeping the table at most 5/8 full.
    pub(crate) fn shrink_to_fit(&mut self, rehash: impl Fn(u32) -> u64) {
        if self.len == 0 {
            *self = Self::new();
            return;
        }
        let slots = (self.len * 8)
            .div_ceil(5)
            .next_power_of_two()
            .max(MIN_SLOTS);
        if slots < self.slots.len() {
            self.resize(slots, &rehash);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::Edges;

    /// Hashes with few distinct homes (items collide, clusters wrap around the end of the
    /// table): the table must agree with a `HashSet` through inserts and removals.
    #[test]
    fn agrees_with_a_set_under_collisions() {
        // Homes in the last 5 slots of any table, or in its first 4.
        let hash = |item: u32| {
            let home = if item.is_multiple_of(3) {
                item % 4
            } else {
                u32::MAX - item % 5
            };
            u64::from(home) << 32
        };
        let mut edges = Edges::new();
        let mut set = HashSet::new();
        let mut x = 12_345_u64;
        for step in 0..20_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let item = (x >> 40) as u32 % 64;
            if set.contains(&item) {
                edges.remove(hash(item), item, hash);
                set.remove(&item);
            } else {
                edges.insert(hash(item), item, hash);
                set.insert(item);
            }
            assert_eq!(edges.len(), set.len(), "step {step}");
            for probe in 0..64 {
                let found = edges.find(hash(probe), |c| c == probe);
                assert_eq!(
                    found.is_some(),
                    set.contains(&probe),
                    "step {step}, {probe}"
                );
            }
            if step % 1000 == 999 {
                edges.shrink_to_fit(hash);
            }
        }
        for item in set.drain() {
            edges.remove(hash(item), item, hash);
        }
        assert!(edges.slots.is_empty());
    }
}
