//! Packet identifier allocation: never a value in use [MQTT-2.2.1-3], [MQTT-2.2.1-4].

use std::collections::VecDeque;

use tern_codec::PacketId;

/// Allocates packet identifiers for one direction of a session, round-robin, skipping every
/// identifier still in flight (PUBLISH QoS > 0 until its final acknowledgement, SUBSCRIBE and
/// UNSUBSCRIBE until SUBACK/UNSUBACK).
///
/// The identifiers in use are a `VecDeque` in round-robin order: ascending from the front
/// (the oldest), wrapping past 65,535 to 1. They are handed out in that order and mostly
/// released oldest first, so an allocation appends and a release takes from the front, also
/// when the identifiers wrap around with thousands in flight (a plain ascending order put
/// every identifier after the wrap in front of the old ones, and each allocation and release
/// then moved half the deque). A `BTreeSet` allocated and freed a node every few messages of
/// a busy session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PacketIds {
    /// The next value to try (0 means start at 1).
    next: u16,
    /// The identifiers in use, in round-robin order from the front (see [`round_robin`]);
    /// boxed while any was (dropped at a quiet moment, see
    /// [`release_if_empty`](Self::release_if_empty)): an idle session holds a null pointer.
    #[allow(clippy::box_collection)] // The point: a thin pointer instead of a `VecDeque`.
    in_use: Option<Box<VecDeque<PacketId>>>,
}

/// Room for this many identifiers is kept when none is in use.
const KEEP: usize = 256;

impl PacketIds {
    pub(crate) fn with_next(next: u16) -> Self {
        PacketIds { next, in_use: None }
    }

    pub(crate) fn next_hint(&self) -> u16 {
        self.next
    }

    /// A fresh identifier, or `None` when all 65,535 are in use.
    pub(crate) fn allocate(&mut self) -> Option<PacketId> {
        let in_use = self.in_use.get_or_insert_default();
        if in_use.len() >= usize::from(u16::MAX) {
            return None;
        }
        let mut candidate = self.next;
        loop {
            if let Some(id) = PacketId::new(candidate)
                && round_robin::insert(in_use, id)
            {
                self.next = candidate.wrapping_add(1);
                return Some(id);
            }
            candidate = candidate.wrapping_add(1);
        }
    }

    /// Marks an identifier in use (a resumed session's in-flight messages).
    pub(crate) fn claim(&mut self, id: PacketId) -> bool {
        round_robin::insert(self.in_use.get_or_insert_default(), id)
    }

    pub(crate) fn release(&mut self, id: PacketId) {
        if let Some(in_use) = self.in_use.as_mut() {
            round_robin::remove(in_use, id);
            if in_use.is_empty() && in_use.capacity() > KEEP {
                **in_use = VecDeque::new();
            }
        }
    }

    pub(crate) fn is_in_use(&self, id: PacketId) -> bool {
        self.in_use
            .as_deref()
            .is_some_and(|in_use| round_robin::search(in_use, id).is_ok())
    }

    /// Drops the box once no identifier is in use.
    pub(crate) fn release_if_empty(&mut self) {
        if self.in_use.as_ref().is_some_and(|in_use| in_use.is_empty()) {
            self.in_use = None;
        }
    }
}

/// A set of packet identifiers kept in a `VecDeque` in round-robin order: ascending from the
/// front, wrapping past 65,535 to 1. Identifiers handed out round-robin and released oldest
/// first (as acknowledgements come [MQTT-4.6.0-2]) are appended and popped from the front,
/// also when they wrap around with thousands in the set; any other one is found by binary
/// search. A set sorted in plain ascending order puts every identifier after a wrap in front
/// of the older ones, and each insertion and removal then moves half the set.
///
/// Removing the front, or any element, keeps the rest in order from the new front. An
/// ascending sort is a valid order (the front is then the smallest).
pub(crate) mod round_robin {
    use std::collections::VecDeque;

    use tern_codec::PacketId;

    /// Where `id` is, or would go.
    pub(crate) fn search(set: &VecDeque<PacketId>, id: PacketId) -> Result<usize, usize> {
        let Some(&front) = set.front() else {
            return Err(0);
        };
        let distance = |x: PacketId| x.get().wrapping_sub(front.get());
        set.binary_search_by_key(&distance(id), |&x| distance(x))
    }

    /// Adds `id`; false if it was there.
    pub(crate) fn insert(set: &mut VecDeque<PacketId>, id: PacketId) -> bool {
        // The common case first: after every identifier in the set.
        let after_back = match (set.front(), set.back()) {
            (Some(&front), Some(&back)) => {
                id.get().wrapping_sub(front.get()) > back.get().wrapping_sub(front.get())
            }
            _ => true,
        };
        if after_back {
            set.push_back(id);
            return true;
        }
        match search(set, id) {
            Ok(_) => false,
            Err(at) => {
                set.insert(at, id);
                true
            }
        }
    }

    /// Removes `id`; false if it was not there.
    pub(crate) fn remove(set: &mut VecDeque<PacketId>, id: PacketId) -> bool {
        if set.front() == Some(&id) {
            set.pop_front();
            return true;
        }
        match search(set, id) {
            Ok(at) => {
                set.remove(at);
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn never_reuses_an_id_in_flight() {
        // [MQTT-2.2.1-3]: a new packet gets an identifier that is currently unused.
        let mut ids = PacketIds::with_next(u16::MAX - 1);
        let a = ids.allocate().unwrap();
        let b = ids.allocate().unwrap();
        let c = ids.allocate().unwrap();
        assert_eq!((a.get(), b.get(), c.get()), (u16::MAX - 1, u16::MAX, 1));
        ids.release(b);
        let mut seen = BTreeSet::new();
        for _ in 0..(u16::MAX - 2) {
            let id = ids.allocate().unwrap();
            assert!(id != a && id != c, "reused an id in flight");
            assert!(seen.insert(id));
        }
        // Every id is now in use.
        assert_eq!(ids.allocate(), None);
        ids.release(a);
        assert_eq!(ids.allocate(), Some(a));
    }

    #[test]
    fn releases_in_any_order_and_claims_keep_the_set_sorted() {
        let mut ids = PacketIds::with_next(10);
        let id = |n| PacketId::new(n).unwrap();
        assert!(ids.claim(id(3)) && ids.claim(id(40)) && !ids.claim(id(3)));
        let got: Vec<u16> = (0..5).map(|_| ids.allocate().unwrap().get()).collect();
        assert_eq!(got, [10, 11, 12, 13, 14]);
        for n in [12, 3, 14, 40] {
            ids.release(id(n));
            assert!(!ids.is_in_use(id(n)));
        }
        assert!(ids.is_in_use(id(10)) && ids.is_in_use(id(11)) && ids.is_in_use(id(13)));
        // Releasing an identifier not in use changes nothing.
        ids.release(id(500));
        let held: Vec<u16> = ids
            .in_use
            .iter()
            .flat_map(|s| s.iter())
            .map(|id| id.get())
            .collect();
        assert_eq!(held, [10, 11, 13]);
    }

    /// Random allocations, claims and releases (mostly oldest first, as acknowledgements come
    /// [MQTT-4.6.0-2]) with thousands in flight across many wraps agree with a `BTreeSet`,
    /// and an allocation never hands out an identifier in use [MQTT-2.2.1-3].
    #[test]
    fn agrees_with_a_set_across_wraps() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut ids = PacketIds::with_next(65_000);
        let mut model = BTreeSet::new();
        let mut order = VecDeque::new();
        for step in 0..400_000u32 {
            let target = if (step / 50_000) % 2 == 0 { 5_000 } else { 300 };
            let r = next();
            if order.len() < target && r % 8 != 0 {
                let id = ids.allocate().unwrap();
                assert!(model.insert(id.get()), "{id:?} handed out while in use");
                order.push_back(id);
            } else if r % 64 == 1 {
                let id = PacketId::new((next() % 65_535 + 1) as u16).unwrap();
                assert_eq!(ids.claim(id), model.insert(id.get()));
                if !order.contains(&id) {
                    order.push_back(id);
                }
            } else if let Some(id) = if r % 16 == 2 && !order.is_empty() {
                order.remove((next() % order.len() as u64) as usize)
            } else {
                order.pop_front()
            } {
                ids.release(id);
                assert!(model.remove(&id.get()));
            }
            if step % 997 == 0 {
                let probe = PacketId::new((next() % 65_535 + 1) as u16).unwrap();
                assert_eq!(ids.is_in_use(probe), model.contains(&probe.get()));
            }
        }
        let mut held: Vec<u16> = ids
            .in_use
            .iter()
            .flat_map(|s| s.iter())
            .map(|id| id.get())
            .collect();
        held.sort_unstable();
        assert_eq!(held, model.into_iter().collect::<Vec<_>>());
    }
}
