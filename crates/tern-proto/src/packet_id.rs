//! Packet identifier allocation: never a value in use [MQTT-2.2.1-3], [MQTT-2.2.1-4].

use std::collections::BTreeSet;

use tern_codec::PacketId;

/// Allocates packet identifiers for one direction of a session, round-robin, skipping every
/// identifier still in flight (PUBLISH QoS > 0 until its final acknowledgement, SUBSCRIBE and
/// UNSUBSCRIBE until SUBACK/UNSUBACK).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PacketIds {
    /// The next value to try (0 means start at 1).
    next: u16,
    in_use: BTreeSet<u16>,
}

impl PacketIds {
    pub(crate) fn with_next(next: u16) -> Self {
        PacketIds {
            next,
            in_use: BTreeSet::new(),
        }
    }

    pub(crate) fn next_hint(&self) -> u16 {
        self.next
    }

    /// A fresh identifier, or `None` when all 65,535 are in use.
    pub(crate) fn allocate(&mut self) -> Option<PacketId> {
        if self.in_use.len() >= usize::from(u16::MAX) {
            return None;
        }
        let mut candidate = self.next;
        loop {
            if candidate == 0 {
                candidate = 1;
            }
            if !self.in_use.contains(&candidate) {
                self.in_use.insert(candidate);
                self.next = candidate.wrapping_add(1);
                return PacketId::new(candidate);
            }
            candidate = candidate.wrapping_add(1);
        }
    }

    /// Marks an identifier in use (a resumed session's in-flight messages).
    pub(crate) fn claim(&mut self, id: PacketId) -> bool {
        self.in_use.insert(id.get())
    }

    pub(crate) fn release(&mut self, id: PacketId) {
        self.in_use.remove(&id.get());
    }

    pub(crate) fn is_in_use(&self, id: PacketId) -> bool {
        self.in_use.contains(&id.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
