//! A connection's read buffer, sized to what the client sends: none at all while it idles
//! (an idle connection holds no buffer sized for its busiest moment, nor any buffer), doubled
//! while reads fill it, halved again when they stop doing so.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The smallest read: room for a PINGREQ, a CONNECT or a short PUBLISH.
const MIN: usize = 256;
/// The largest read the buffer grows to for a stream of packets.
const MAX: usize = 64 * 1024;

/// The read buffer and the size of the next read.
#[derive(Debug)]
pub(crate) struct ReadBuffer {
    buf: BytesMut,
    /// At most `MAX`; both are `u32` because every connection's future holds them.
    next: u32,
    /// Room offered to the last read (saturated).
    offered: u32,
}

impl ReadBuffer {
    pub(crate) fn new() -> Self {
        ReadBuffer {
            buf: BytesMut::new(),
            next: MIN as u32,
            offered: 0,
        }
    }

    /// Reads once from `reader` (`Ok(0)`: end of stream); see [`poll_read`](Self::poll_read).
    #[cfg(test)]
    pub(crate) fn read<'a, R>(
        &'a mut self,
        reader: &'a mut R,
    ) -> impl Future<Output = io::Result<usize>> + 'a
    where
        R: AsyncRead + Unpin,
    {
        std::future::poll_fn(move |cx| self.poll_read(cx, reader))
    }

    /// Polls one read from `reader` (`Ok(0)`: end of stream). With nothing buffered at the
    /// smallest read size, the buffer is not allocated while the read waits: the read goes
    /// through a buffer on the stack and what arrived is copied in. Otherwise it reads
    /// straight into the buffer. Nothing is kept between polls but the buffer.
    pub(crate) fn poll_read<R>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
    ) -> Poll<io::Result<usize>>
    where
        R: AsyncRead + Unpin,
    {
        if self.buf.capacity() == 0 {
            self.offered = MIN as u32;
            let mut scratch = [0u8; MIN];
            let mut room = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut *reader).poll_read(cx, &mut room))?;
            self.buf.extend_from_slice(room.filled());
            Poll::Ready(Ok(room.filled().len()))
        } else {
            // `read_buf`'s future holds only its two references: made and polled once here,
            // it leaves the waker with the stream as a stored future would.
            std::pin::pin!(reader.read_buf(self.for_read())).poll(cx)
        }
    }

    /// The buffer, with room for the next read.
    pub(crate) fn for_read(&mut self) -> &mut BytesMut {
        let spare = self.buf.capacity() - self.buf.len();
        if spare < self.next as usize / 2 {
            self.buf.reserve(self.next as usize);
        }
        self.offered = u32::try_from(self.buf.capacity() - self.buf.len()).unwrap_or(u32::MAX);
        &mut self.buf
    }

    /// After a read of `n` bytes: a read that filled the room doubles the next one, one that
    /// used less than a quarter of it halves it.
    pub(crate) fn filled(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if n >= self.offered {
            self.next = (self.next * 2).min(MAX as u32);
        } else if n < self.offered / 4 {
            self.next = (self.next / 2).max(MIN as u32);
        }
    }

    /// The bytes read and not yet decoded.
    pub(crate) fn data(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// After decoding: an empty buffer is let go when reads are at their smallest (the next
    /// read waits without one) or when it is larger than the next read (decoded payloads keep
    /// the memory they point into alive on their own).
    pub(crate) fn settle(&mut self) {
        if self.buf.is_empty()
            && (self.next == MIN as u32 || self.buf.capacity() > self.next as usize)
        {
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
        assert_eq!(r.next as usize, MAX);
        // Then a PINGREQ now and then: back to the minimum, and the buffer is let go.
        for _ in 0..16 {
            let b = r.for_read();
            b.extend_from_slice(&[0xC0, 0]);
            r.filled(2);
            r.data().clear();
            r.settle();
        }
        assert_eq!(r.next as usize, MIN);
        assert_eq!(r.capacity(), 0);
    }

    #[tokio::test]
    async fn idle_buffer_holds_nothing_and_reads_through_the_stack() {
        let mut r = ReadBuffer::new();
        assert_eq!(r.capacity(), 0);
        // A PINGREQ: read without a buffer of the read size, decoded, let go.
        let mut ping: &[u8] = &[0xC0, 0];
        assert_eq!(r.read(&mut ping).await.unwrap(), 2);
        r.filled(2);
        assert_eq!(&r.data()[..], &[0xC0, 0]);
        r.data().clear();
        r.settle();
        assert_eq!(r.capacity(), 0);
        // A stream: the first read fills the stack buffer, so the reads grow and go straight
        // into the buffer, which is kept while they stay large.
        let stream = vec![7u8; 10 * MIN];
        let mut reader = &stream[..];
        let mut total = 0;
        while total < stream.len() {
            let n = r.read(&mut reader).await.unwrap();
            r.filled(n);
            total += n;
            r.data().clear();
            r.settle();
        }
        assert!(r.next as usize > MIN, "{}", r.next);
        assert!(r.capacity() > 0);
        assert_eq!(r.read(&mut reader).await.unwrap(), 0);
    }
}
