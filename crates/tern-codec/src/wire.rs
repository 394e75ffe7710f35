//! The data representations of section 1.5: two- and four-byte integers, the Variable Byte
//! Integer, UTF-8 strings, binary data and string pairs, read from a [`Bytes`] without copying
//! and written with [`BufMut`].

use bytes::{Buf, BufMut, Bytes};

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

/// Writes `value` (at most [`MAX_REMAINING_LENGTH`]) as a Variable Byte Integer (1.5.5).
pub(crate) fn put_var_int(dst: &mut impl BufMut, value: usize) {
    debug_assert!(value <= MAX_REMAINING_LENGTH as usize);
    let mut x = value;
    loop {
        // Truncation is the point: the low seven bits.
        let mut byte = (x & 0x7F) as u8;
        x >>= 7;
        if x > 0 {
            byte |= 0x80;
        }
        dst.put_u8(byte);
        if x == 0 {
            break;
        }
    }
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
pub(crate) fn put_string(dst: &mut impl BufMut, s: &MqttString) {
    put_binary(dst, s.as_str().as_bytes());
}

/// Writes binary data: a two-byte length then the bytes. The caller has checked the length.
pub(crate) fn put_binary(dst: &mut impl BufMut, b: &[u8]) {
    debug_assert!(b.len() <= MAX_BINARY_LEN);
    // Checked by the caller (strings by construction, binary fields by `check_binary`).
    dst.put_u16(b.len() as u16);
    dst.put_slice(b);
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
pub(crate) fn has_wildcard(topic: &str) -> bool {
    topic.bytes().any(|b| b == b'+' || b == b'#')
}

/// A reader over the body of one packet. Every read checks the remaining length first and
/// fails with [`DecodeError::Truncated`]; fields that are byte sequences are zero-copy slices.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    /// A reader over `buf`.
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    /// The bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless every byte has been read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }

    /// A byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    /// A Two Byte Integer (1.5.2).
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    /// A Four Byte Integer (1.5.3).
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    /// A Variable Byte Integer (1.5.5).
    pub(crate) fn var_int(&mut self) -> Result<u32, DecodeError> {
        match read_var_int(&self.buf)? {
            VarInt::Complete(value, len) => {
                self.buf.advance(len);
                Ok(value)
            }
            VarInt::Incomplete => Err(DecodeError::Truncated),
        }
    }

    /// The next `n` bytes, as a slice of the input.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// Every byte not read yet.
    pub(crate) fn rest(&mut self) -> Bytes {
        core::mem::take(&mut self.buf)
    }

    /// Binary Data (1.5.6): a two-byte length then that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 Encoded String (1.5.4).
    pub(crate) fn string(&mut self) -> Result<MqttString, DecodeError> {
        let bytes = self.binary()?;
        Ok(MqttString::from_bytes(bytes)?)
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
