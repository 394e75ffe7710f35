//! The data representations of section 1.5: two- and four-byte integers, the Variable Byte
//! Integer, UTF-8 strings, binary data and string pairs, read from a [`Bytes`] without copying
//! and written with [`BufMut`].

use bytes::Bytes;
use core::mem::MaybeUninit;

use crate::{
    error::{DecodeError, EncodeError},
    frame::MAX_REMAINING_LENGTH,
    string::MqttString,
};

/// The largest length a two-byte length prefix can announce.
pub(crate) const MAX_BINARY_LEN: usize = u16::MAX as usize;

/// The number of bytes the Variable Byte Integer encoding of `value` takes (1 to 4).
///
/// Values above [`MAX_REMAINING_LENGTH`] are checked by the callers before writing; they get
/// 5 here so that a length computed from them is never too small.
pub(crate) const fn var_int_len(value: usize) -> usize {
    if value < 0x80 {
        1
    } else if value < 0x4000 {
        2
    } else if value < 0x20_0000 {
        3
    } else if value <= MAX_REMAINING_LENGTH as usize {
        4
    } else {
        5
    }
}

/// Writes `value` (at most [`MAX_REMAINING_LENGTH`]) as a Variable Byte Integer (1.5.5), in
/// one piece.
pub(crate) fn put_var_int(dst: &mut impl Out, value: usize) {
    let mut bytes = [0u8; 4];
    let n = var_int_at(&mut bytes, 0, value);
    put_small(dst, &bytes, n);
}

/// Writes `value` (at most [`MAX_REMAINING_LENGTH`]) as a Variable Byte Integer at `at` in
/// `dst`, which has room for it, and returns the index after it. For headers assembled on the
/// stack and written to the buffer in one piece.
#[inline]
pub(crate) fn var_int_at(dst: &mut [u8], mut at: usize, value: usize) -> usize {
    debug_assert!(value <= MAX_REMAINING_LENGTH as usize);
    let mut x = value;
    loop {
        // Truncation is the point: the low seven bits.
        let byte = (x & 0x7F) as u8;
        x >>= 7;
        if x == 0 {
            dst[at] = byte;
            return at + 1;
        }
        dst[at] = byte | 0x80;
        at += 1;
    }
}

/// Where a packet is written: the output `BytesMut` itself (`extend_from_slice`), or
/// [`Spare`], the room reserved in it, for packets of many pieces (see `codec::write_part`);
/// a `Vec` in tests.
pub(crate) trait Out {
    /// Appends `bytes`, for which there is room.
    fn append(&mut self, bytes: &[u8]);

    /// Appends a byte.
    #[inline(always)]
    fn put_u8(&mut self, b: u8) {
        self.append(&[b]);
    }

    /// Appends a Two Byte Integer (1.5.2).
    #[inline(always)]
    fn put_u16(&mut self, v: u16) {
        self.append(&v.to_be_bytes());
    }
}

impl Out for bytes::BytesMut {
    #[inline(always)]
    fn append(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Out for alloc::vec::Vec<u8> {
    #[inline(always)]
    fn append(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A slice on the stack, written front to back (short property blocks assembled with the
/// fields around them).
impl Out for &mut [u8] {
    #[inline(always)]
    fn append(&mut self, bytes: &[u8]) {
        let (head, rest) = core::mem::take(self).split_at_mut(bytes.len());
        head.copy_from_slice(bytes);
        *self = rest;
    }
}

/// The spare capacity of an output buffer, written front to back: each piece is a bounds
/// check and a copy, without the capacity check and length update of a `BytesMut` method
/// or the zero-filling of a slice written in place. [`written`](Spare::written) says how
/// much of it is initialised.
pub(crate) struct Spare<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    at: usize,
}

impl<'a> Spare<'a> {
    /// A writer at the start of `buf`.
    #[inline(always)]
    pub(crate) fn new(buf: &'a mut [MaybeUninit<u8>]) -> Self {
        Spare { buf, at: 0 }
    }

    /// How many bytes at the start of the buffer have been written: `buf[..written]` is
    /// initialised, as [`append`](Out::append) advances only over the bytes it wrote.
    #[inline(always)]
    pub(crate) fn written(&self) -> usize {
        self.at
    }
}

impl Out for Spare<'_> {
    #[inline(always)]
    fn append(&mut self, bytes: &[u8]) {
        let end = self.at + bytes.len();
        // Out of room is a bug of a `measure`; the slice index panics before any write.
        self.buf[self.at..end].write_copy_of_slice(bytes);
        self.at = end;
    }
}

/// Appends `bytes[..n]` to `dst`. The pieces of a header assembled on the stack are short
/// and of a length known only at run time, which a slice copy does with a call to `memcpy`;
/// here each length up to 16 is its own constant-size copy (a few inlined stores).
#[inline(always)]
pub(crate) fn put_small(dst: &mut impl Out, bytes: &[u8], n: usize) {
    macro_rules! arms {
        ($($len:literal)*) => {
            match n {
                $($len => dst.append(&bytes[..$len]),)*
                _ => dst.append(&bytes[..n]),
            }
        };
    }
    arms!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// The result of reading a Variable Byte Integer from the front of a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarInt {
    /// The value and the number of bytes it took.
    Complete(u32, usize),
    /// The slice ends inside the integer.
    Incomplete,
}

/// Reads a Variable Byte Integer from the front of `buf`: at most four bytes, in its shortest
/// form [MQTT-1.5.5-1].
pub(crate) fn read_var_int(buf: &[u8]) -> Result<VarInt, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of zero after other bytes adds nothing: not the shortest form.
            if i > 0 && byte == 0 {
                return Err(DecodeError::MalformedVarInt);
            }
            return Ok(VarInt::Complete(value, i + 1));
        }
        if i == 3 {
            // A fourth byte with the continuation bit announces a fifth byte.
            return Err(DecodeError::MalformedVarInt);
        }
    }
    Ok(VarInt::Incomplete)
}

/// Writes a UTF-8 encoded string: a two-byte length then the bytes.
#[inline]
pub(crate) fn put_string(dst: &mut impl Out, s: &MqttString) {
    put_binary(dst, s.as_str().as_bytes());
}

/// Writes binary data: a two-byte length then the bytes. The caller has checked the length.
#[inline]
pub(crate) fn put_binary(dst: &mut impl Out, b: &[u8]) {
    debug_assert!(b.len() <= MAX_BINARY_LEN);
    // Checked by the caller (strings by construction, binary fields by `check_binary`).
    dst.append(&(b.len() as u16).to_be_bytes());
    dst.append(b);
}

/// The encoded length of a UTF-8 string.
pub(crate) fn string_len(s: &MqttString) -> usize {
    2 + s.len()
}

/// Checks that binary data fits a two-byte length and returns its encoded length.
pub(crate) fn check_binary(field: &'static str, b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > MAX_BINARY_LEN {
        return Err(EncodeError::BinaryTooLong {
            field,
            len: b.len(),
        });
    }
    Ok(2 + b.len())
}

/// Whether a topic contains a wildcard character (`+` or `#`).
#[inline]
pub(crate) fn has_wildcard(topic: &str) -> bool {
    crate::string::scan::<{ crate::string::WILDCARD }>(topic.as_bytes()) != 0
}

/// A reader over the body of one packet. Every read checks the remaining length first and
/// fails with [`DecodeError::Truncated`]; fields that are byte sequences are zero-copy slices.
///
/// The reader keeps the whole input and a read position, so after an error the input is still
/// whole ([`into_inner`](Reader::into_inner)) and the framing layer can put it back into the
/// connection's buffer without having kept a second reference to it on the success path.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
    /// Where reading stops: the end of `buf`, or of a property block being read.
    end: usize,
}

impl Reader {
    /// A reader over `buf`.
    #[inline]
    pub(crate) fn new(buf: Bytes) -> Self {
        let end = buf.len();
        Reader { buf, pos: 0, end }
    }

    /// A reader over `buf` that starts after its first `start` bytes (a fixed header).
    #[inline]
    pub(crate) fn starting_at(buf: Bytes, start: usize) -> Self {
        debug_assert!(start <= buf.len());
        let end = buf.len();
        Reader {
            buf,
            pos: start,
            end,
        }
    }

    /// The whole input, read or not; empty once a decode has succeeded, as every decoder ends
    /// with [`end`](Reader::end) or [`release`](Reader::release) (a PUBLISH is read from its
    /// frame, not through a reader).
    pub(crate) fn into_inner(self) -> Bytes {
        self.buf
    }

    /// How many bytes of the input come before the next read.
    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not read yet.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// The bytes not read yet, borrowed.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Whether every byte has been read.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless every byte has been read.
    #[inline]
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Reads the next `len` bytes with `f` as if they were all there is (a property block):
    /// `f` sees a reader that ends after them, and must read them all unless it fails.
    #[inline]
    pub(crate) fn within<T>(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if self.remaining() < len {
            return Err(DecodeError::Truncated);
        }
        let end = self.end;
        self.end = self.pos + len;
        let value = f(self)?;
        debug_assert_eq!(self.pos, self.end, "block not read to its end");
        self.end = end;
        Ok(value)
    }

    /// Skips `n` bytes, which the caller has checked are there.
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) {
        debug_assert!(n <= self.remaining());
        self.pos += n;
    }

    /// [`finish`](Reader::finish), then releases the input: the last call of a successful
    /// decode, which tells the framing layer that nothing needs to be put back (see
    /// [`into_inner`](Reader::into_inner)).
    #[inline]
    pub(crate) fn end(&mut self) -> Result<(), DecodeError> {
        self.finish()?;
        self.release();
        Ok(())
    }

    /// Drops the input (a successful decode is done with it).
    #[inline]
    pub(crate) fn release(&mut self) {
        self.buf = Bytes::new();
        self.pos = 0;
        self.end = 0;
    }

    /// The next `N` bytes.
    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes: [u8; N] = self
            .unread()
            .get(..N)
            .ok_or(DecodeError::Truncated)?
            .try_into()
            .expect("N bytes");
        self.pos += N;
        Ok(bytes)
    }

    /// A byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.unread().first().ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// A Two Byte Integer (1.5.2).
    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    /// A Four Byte Integer (1.5.3).
    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    /// A Variable Byte Integer (1.5.5).
    pub(crate) fn var_int(&mut self) -> Result<u32, DecodeError> {
        match read_var_int(self.unread())? {
            VarInt::Complete(value, len) => {
                self.pos += len;
                Ok(value)
            }
            VarInt::Incomplete => Err(DecodeError::Truncated),
        }
    }

    /// The next `n` bytes, as a slice of the input.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Binary Data (1.5.6): a two-byte length then that many bytes.
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 Encoded String (1.5.4). Out of line, with its checks inlined into it: inlined
    /// into the packet decoders, it makes the PUBLISH path (no such strings) slower.
    #[inline(never)]
    pub(crate) fn string(&mut self) -> Result<MqttString, DecodeError> {
        let bytes = self.binary()?;
        MqttString::decoded_from_bytes(bytes)
    }

    /// A Topic Name: a UTF-8 Encoded String without wildcards [MQTT-3.3.2-2], checked in
    /// one pass. Whether it may be empty is the caller's business.
    #[inline]
    pub(crate) fn topic(&mut self) -> Result<MqttString, DecodeError> {
        let bytes = self.binary()?;
        MqttString::topic_from_bytes(bytes)
    }

    /// A UTF-8 String Pair (1.5.7).
    pub(crate) fn string_pair(&mut self) -> Result<(MqttString, MqttString), DecodeError> {
        let name = self.string()?;
        let value = self.string()?;
        Ok((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn encode_var_int(value: usize) -> Vec<u8> {
        let mut v = Vec::new();
        put_var_int(&mut v, value);
        v
    }

    #[test]
    fn var_int_boundaries_round_trip() {
        // The table of 1.5.5: the limits of each length.
        for (value, bytes) in [
            (0usize, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            assert_eq!(encode_var_int(value), bytes, "{value}");
            assert_eq!(var_int_len(value), bytes.len());
            assert_eq!(
                read_var_int(bytes),
                Ok(VarInt::Complete(value as u32, bytes.len()))
            );
        }
        assert_eq!(var_int_len(268_435_456), 5);
    }

    #[test]
    fn var_int_rejects_five_bytes_and_non_minimal() {
        // [MQTT-1.5.5-1]: at most four bytes, and the minimum number of bytes.
        assert_eq!(
            read_var_int(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            read_var_int(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            read_var_int(&[0x80, 0x00]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            read_var_int(&[0xFF, 0x80, 0x00]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(read_var_int(&[0x80, 0x80]), Ok(VarInt::Incomplete));
        assert_eq!(read_var_int(&[]), Ok(VarInt::Incomplete));
    }

    #[test]
    fn reader_reports_truncation() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a', b'b']));
        assert_eq!(r.string(), Err(DecodeError::Truncated));
        let mut r = Reader::new(Bytes::from_static(&[0x01]));
        assert_eq!(r.u16(), Err(DecodeError::Truncated));
        assert_eq!(r.u32(), Err(DecodeError::Truncated));
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u8(), Err(DecodeError::Truncated));
        assert_eq!(r.var_int(), Err(DecodeError::Truncated));
    }

    #[test]
    fn reader_strings_are_checked_and_zero_copy() {
        let input = Bytes::from_static(&[0x00, 0x02, b'h', b'i', 0x00, 0x01, 0x00]);
        let mut r = Reader::new(input.clone());
        let s = r.string().unwrap();
        assert_eq!(s, "hi");
        assert_eq!(s.as_bytes().as_ptr(), input[2..].as_ptr());
        // [MQTT-1.5.4-2]
        assert_eq!(r.string(), Err(DecodeError::NullCharacter));
        // [MQTT-1.5.4-1]: 0xED 0xA0 0x80 would be the surrogate U+D800.
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x03, 0xED, 0xA0, 0x80]));
        assert_eq!(r.string(), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn binary_length_is_checked() {
        let big = alloc::vec![0u8; 65_536];
        assert_eq!(
            check_binary("x", &big),
            Err(EncodeError::BinaryTooLong {
                field: "x",
                len: 65_536
            })
        );
        assert_eq!(check_binary("x", &big[..65_535]), Ok(65_537));
    }
}
