//! A connection's read buffer, sized to what the client sends: small while it idles (an idle
//! connection holds a few hundred bytes, not a buffer sized for its busiest moment), doubled
//! while reads fill it, halved again when they stop doing so.

use bytes::BytesMut;

/// The smallest read: room for a PINGREQ, a CONNECT or a short PUBLISH.
const MIN: usize = 256;
/// The largest read the buffer grows to for a stream of packets.
const MAX: usize = 64 * 1024;

/// The read buffer and the size of the next read.
#[derive(Debug)]
pub(crate) struct ReadBuffer {
    buf: BytesMut,
    next: usize,
    /// Room offered to the last read.
    offered: usize,
}

impl ReadBuffer {
    pub(crate) fn new() -> Self {
        ReadBuffer {
            buf: BytesMut::new(),
            next: MIN,
            offered: 0,
        }
    }

    /// The buffer, with room for the next read.
    pub(crate) fn for_read(&mut self) -> &mut BytesMut {
        let spare = self.buf.capacity() - self.buf.len();
        if spare < self.next / 2 {
            self.buf.reserve(self.next);
        }
        self.offered = self.buf.capacity() - self.buf.len();
        &mut self.buf
    }

    /// After a read of `n` bytes: a read that filled the room doubles the next one, one that
    /// used less than a quarter of it halves it.
    pub(crate) fn filled(&mut self, n: usize) {
        if n >= self.offered {
            self.next = (self.next * 2).min(MAX);
        } else if n < self.offered / 4 {
            self.next = (self.next / 2).max(MIN);
        }
    }

    /// The bytes read and not yet decoded.
    pub(crate) fn data(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// After decoding: an empty buffer larger than the next read is let go (decoded payloads
    /// keep the memory they point into alive on their own).
    pub(crate) fn settle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > self.next {
            self.buf = BytesMut::new();
        }
    }

    /// The buffer's capacity, for the statistics.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_while_reads_fill_it_and_shrinks_back_when_idle() {
        let mut r = ReadBuffer::new();
        let room = r.for_read().capacity();
        assert!((MIN..2 * MIN).contains(&room), "{room}");
        // A stream of packets fills every read: the reads grow to the maximum.
        for _ in 0..16 {
            let b = r.for_read();
            let n = b.capacity() - b.len();
            b.resize(b.len() + n, 0);
            r.filled(n);
            r.data().clear();
            r.settle();
        }
        assert_eq!(r.next, MAX);
        // Then a PINGREQ now and then: back to the minimum, and the big buffer is let go.
        for _ in 0..16 {
            let b = r.for_read();
            b.extend_from_slice(&[0xC0, 0]);
            r.filled(2);
            r.data().clear();
            r.settle();
        }
        assert_eq!(r.next, MIN);
        assert!(r.capacity() <= 2 * MIN, "{}", r.capacity());
    }
}
