//! The UTF-8 encoded string of MQTT.

use alloc::string::String;
use bytes::Bytes;
use bytestring::ByteString;
use core::{fmt, ops::Deref};

use crate::error::DecodeError;

/// The longest string the wire can carry: its length is a two-byte integer.
pub const MAX_STRING_LEN: usize = u16::MAX as usize;

/// A UTF-8 encoded string as MQTT defines it (section 1.5.4), checked when it is made:
/// well-formed UTF-8 without surrogates [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2], and at most
/// 65,535 bytes long.
///
/// It is backed by [`Bytes`], so a string decoded from a packet is a slice of the input buffer
/// and cloning it never copies.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MqttString(ByteString);

/// Why a value is not an MQTT string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StringError {
    /// The bytes are not well-formed UTF-8, or encode a surrogate [MQTT-1.5.4-1].
    #[error("ill-formed UTF-8 [MQTT-1.5.4-1]")]
    InvalidUtf8,
    /// The string contains U+0000 [MQTT-1.5.4-2].
    #[error("string contains U+0000 [MQTT-1.5.4-2]")]
    NullCharacter,
    /// The string is longer than 65,535 bytes.
    #[error("string of {0} bytes is longer than 65,535")]
    TooLong(usize),
}

impl From<StringError> for DecodeError {
    fn from(e: StringError) -> Self {
        match e {
            StringError::InvalidUtf8 => DecodeError::InvalidUtf8,
            StringError::NullCharacter => DecodeError::NullCharacter,
            // A decoded string's length comes from a u16, so this cannot be reached from
            // the wire; map it to the closest malformed-packet error all the same.
            StringError::TooLong(_) => DecodeError::Truncated,
        }
    }
}

/// [`scan`] bit: the bytes contain U+0000.
pub(crate) const NUL: u8 = 1;
/// [`scan`] bit: the bytes contain a wildcard character (`+` or `#`).
pub(crate) const WILDCARD: u8 = 2;
/// [`scan`] bit: the bytes contain a byte above 0x7F, so they are not all ASCII and their
/// UTF-8 must be checked.
pub(crate) const NON_ASCII: u8 = 4;

/// Every [`scan`] flag.
pub(crate) const ALL: u8 = NUL | WILDCARD | NON_ASCII;

/// The [`scan`] flags among `WANT` of one byte.
#[inline(always)]
fn flags_of<const WANT: u8>(b: u8) -> u8 {
    ((u8::from(b == 0) * NUL)
        | ((u8::from(b == b'+') | u8::from(b == b'#')) * WILDCARD)
        | (u8::from(b >= 0x80) * NON_ASCII))
        & WANT
}

/// ORs the [`scan`] flags of each byte of `window` into the matching lane of `acc`.
///
/// A plain loop over fixed-size arrays, which the compiler turns into a few SIMD compares
/// (SSE2 on x86-64, NEON on AArch64) with no `unsafe`. Kept out of line on purpose: inlined
/// into the loop of `scan`, the vectorizer splits it into scalar code several times slower.
#[inline(never)]
fn add_window<const WANT: u8>(acc: &mut [u8; 16], window: &[u8; 16]) {
    for i in 0..16 {
        acc[i] |= flags_of::<WANT>(window[i]);
    }
}

/// One pass over `bytes` that finds U+0000 ([`NUL`]), the wildcards `+` and `#`
/// ([`WILDCARD`]) and bytes above 0x7F ([`NON_ASCII`]): the checks of a string and of a topic
/// name, fused so that a topic is read once, sixteen bytes at a time. An all-ASCII string (the
/// usual MQTT topic, client identifier or user name) needs no separate UTF-8 pass.
///
/// Only whether a byte occurs matters, not where, so the windows may overlap: the last one
/// ends at the end of the input, and an input of 8 to 15 bytes is checked as its first and
/// last eight bytes side by side. Only the flags in `WANT` are looked for (an encoder checks
/// a topic for wildcards only).
#[inline]
pub(crate) fn scan<const WANT: u8>(bytes: &[u8]) -> u8 {
    let n = bytes.len();
    if n < 8 {
        let mut flags = 0;
        for &b in bytes {
            flags |= flags_of::<WANT>(b);
        }
        return flags;
    }
    let mut acc = [0u8; 16];
    if n >= 16 {
        let mut windows = bytes.chunks_exact(16);
        for w in &mut windows {
            add_window::<WANT>(&mut acc, w.try_into().expect("16 bytes"));
        }
        if !windows.remainder().is_empty() {
            add_window::<WANT>(&mut acc, bytes[n - 16..].try_into().expect("16 bytes"));
        }
    } else {
        let mut w = [0u8; 16];
        w[..8].copy_from_slice(&bytes[..8]);
        w[8..].copy_from_slice(&bytes[n - 8..]);
        add_window::<WANT>(&mut acc, &w);
    }
    let lanes = u128::from_ne_bytes(acc);
    if lanes == 0 {
        // The common case: none of the bytes looked for.
        return 0;
    }
    const ONES: u128 = u128::from_ne_bytes([1; 16]);
    (u8::from(lanes & (ONES * NUL as u128) != 0) * NUL)
        | (u8::from(lanes & (ONES * WILDCARD as u128) != 0) * WILDCARD)
        | (u8::from(lanes & (ONES * NON_ASCII as u128) != 0) * NON_ASCII)
}

/// `bytes` in which [`scan`] found no byte above 0x7F, as a string without a second pass.
#[inline(always)]
fn from_ascii(bytes: Bytes) -> ByteString {
    // SAFETY: the caller's `scan` found no byte above 0x7F, so every byte is an ASCII
    // character, a one-byte UTF-8 sequence: the bytes are well-formed UTF-8, which is the only
    // requirement of `from_bytes_unchecked`. (`scan` looks at every byte: windows may overlap
    // but cover the input; `scan_finds_every_byte_at_every_position` checks it.) Skipping the
    // second pass of `ByteString::try_from` takes 30 to 60 instructions off every decoded
    // string, measured with `cargo xtask codec-ir` (see the crate README).
    #[allow(unsafe_code)]
    unsafe {
        ByteString::from_bytes_unchecked(bytes)
    }
}

/// Checks decoded `bytes`, whose [`scan`] found `flags`, as UTF-8 [MQTT-1.5.4-1]: only
/// when a byte is above 0x7F does it take a second pass.
#[inline]
fn checked_utf8(bytes: Bytes, flags: u8) -> Result<ByteString, DecodeError> {
    if flags & NON_ASCII != 0 {
        ByteString::try_from(bytes).map_err(|_| DecodeError::InvalidUtf8)
    } else {
        Ok(from_ascii(bytes))
    }
}

fn check(s: &str) -> Result<(), StringError> {
    if s.len() > MAX_STRING_LEN {
        return Err(StringError::TooLong(s.len()));
    }
    if scan::<NUL>(s.as_bytes()) != 0 {
        return Err(StringError::NullCharacter);
    }
    Ok(())
}

impl MqttString {
    /// The empty string.
    pub const fn new() -> Self {
        MqttString(ByteString::new())
    }

    /// A string from a static `&str`, without copying.
    ///
    /// # Panics
    /// When `s` contains U+0000 or is longer than 65,535 bytes; meant for literals, like
    /// `HeaderValue::from_static` in the `http` crate.
    pub fn from_static(s: &'static str) -> Self {
        if let Err(e) = check(s) {
            panic!("MqttString::from_static({s:?}): {e}");
        }
        MqttString(ByteString::from_static(s))
    }

    /// A copy in an allocation of its own. A decoded string is a slice of the packet it came
    /// from and keeps that whole buffer alive; one kept for a connection's life (a client
    /// identifier) should not hold the CONNECT packet, its password and its Will with it.
    pub fn detached(&self) -> Self {
        MqttString(ByteString::from(self.as_str()))
    }

    /// Checks `bytes` and wraps them without copying.
    #[inline]
    pub fn from_bytes(bytes: Bytes) -> Result<Self, StringError> {
        let s = ByteString::try_from(bytes).map_err(|_| StringError::InvalidUtf8)?;
        check(&s)?;
        Ok(MqttString(s))
    }

    /// Checks decoded `bytes` as a string: UTF-8, then U+0000. The same checks as
    /// [`from_bytes`](MqttString::from_bytes) but the length (which came from a two-byte
    /// integer), inlined into the reader.
    #[inline]
    pub(crate) fn decoded_from_bytes(bytes: Bytes) -> Result<Self, DecodeError> {
        let flags = scan::<ALL>(&bytes);
        if flags == 0 {
            return Ok(MqttString(from_ascii(bytes)));
        }
        let s = checked_utf8(bytes, flags)?;
        if flags & NUL != 0 {
            return Err(DecodeError::NullCharacter);
        }
        Ok(MqttString(s))
    }

    /// Checks decoded `bytes` as a Topic Name: an MQTT string (UTF-8 first, then U+0000)
    /// without wildcards [MQTT-3.3.2-2], in one pass over the bytes when they are all ASCII
    /// (the usual topic). Emptiness is left to the caller (a PUBLISH may carry a Topic Alias
    /// instead).
    #[inline]
    pub(crate) fn topic_from_bytes(bytes: Bytes) -> Result<Self, DecodeError> {
        // A decoded string's length comes from a u16: no length check needed.
        let flags = scan::<ALL>(&bytes);
        if flags == 0 {
            return Ok(MqttString(from_ascii(bytes)));
        }
        Self::topic_with_flags(bytes, flags)
    }

    /// [`topic_from_bytes`](Self::topic_from_bytes) of a topic that is not plain ASCII or
    /// holds a character it must not: out of the way of the usual path.
    #[cold]
    #[inline(never)]
    fn topic_with_flags(bytes: Bytes, flags: u8) -> Result<Self, DecodeError> {
        let s = checked_utf8(bytes, flags)?;
        if flags & NUL != 0 {
            return Err(DecodeError::NullCharacter);
        }
        if flags & WILDCARD != 0 {
            return Err(DecodeError::WildcardInTopicName);
        }
        Ok(MqttString(s))
    }

    /// The string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The bytes behind the string (a cheap clone).
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// The string's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for MqttString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl core::borrow::Borrow<str> for MqttString {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for MqttString {
    type Error = StringError;
    /// Copies `s` after checking it.
    fn try_from(s: &str) -> Result<Self, StringError> {
        check(s)?;
        Ok(MqttString(ByteString::from(s)))
    }
}

impl TryFrom<String> for MqttString {
    type Error = StringError;
    /// Takes `s` without copying after checking it.
    fn try_from(s: String) -> Result<Self, StringError> {
        check(&s)?;
        Ok(MqttString(ByteString::from(s)))
    }
}

impl TryFrom<Bytes> for MqttString {
    type Error = StringError;
    fn try_from(b: Bytes) -> Result<Self, StringError> {
        MqttString::from_bytes(b)
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A detached string equals the original and lies in none of the original's buffer.
    #[test]
    fn detached_copies_out_of_the_packet_buffer() {
        let packet = Bytes::from(alloc::vec![b'x'; 64]);
        let slice = MqttString::from_bytes(packet.slice(8..20)).unwrap();
        let detached = slice.detached();
        assert_eq!(detached, slice);
        assert!(
            !packet
                .as_ptr_range()
                .contains(&detached.as_bytes().as_ptr())
        );
        assert!(packet.as_ptr_range().contains(&slice.as_bytes().as_ptr()));
    }

    /// Decoded strings and topics are checked as UTF-8 whether or not they are all ASCII (the
    /// one-pass path), at every length and position: well-formed sequences of one to four bytes
    /// pass, ill-formed ones and surrogates fail [MQTT-1.5.4-1], and UTF-8 is checked before
    /// U+0000 [MQTT-1.5.4-2] and wildcards [MQTT-3.3.2-2].
    #[test]
    fn decoded_strings_are_utf8_checked_on_both_paths() {
        let good: [&[u8]; 4] = [
            b"a",
            "\u{e9}".as_bytes(),
            "\u{20ac}".as_bytes(),
            "\u{1f600}".as_bytes(),
        ];
        // 0xFF; a lone continuation byte; an overlong U+0000; the surrogate U+D800; a
        // sequence cut short.
        let bad: [&[u8]; 5] = [
            &[0xFF],
            &[0x80],
            &[0xC0, 0x80],
            &[0xED, 0xA0, 0x80],
            &[0xE2, 0x82],
        ];
        for len in 0..40 {
            for at in 0..=len {
                let with = |insert: &[u8]| {
                    let mut v: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    v.splice(at..at, insert.iter().copied());
                    Bytes::from(v)
                };
                for g in good {
                    let b = with(g);
                    let expected = alloc::string::String::from_utf8(b.to_vec()).unwrap();
                    assert_eq!(
                        MqttString::decoded_from_bytes(b.clone()).unwrap(),
                        &*expected
                    );
                    assert_eq!(MqttString::topic_from_bytes(b).unwrap(), &*expected);
                }
                for x in bad {
                    for insert in [x.to_vec(), [x, b"\0+"].concat()] {
                        let b = with(&insert);
                        assert_eq!(
                            MqttString::decoded_from_bytes(b.clone()),
                            Err(DecodeError::InvalidUtf8),
                            "{b:02x?}"
                        );
                        assert_eq!(
                            MqttString::topic_from_bytes(b),
                            Err(DecodeError::InvalidUtf8)
                        );
                    }
                }
                let nul = with(b"\xc3\xa9\0");
                assert_eq!(
                    MqttString::decoded_from_bytes(nul.clone()),
                    Err(DecodeError::NullCharacter)
                );
                assert_eq!(
                    MqttString::topic_from_bytes(nul),
                    Err(DecodeError::NullCharacter)
                );
                assert_eq!(
                    MqttString::topic_from_bytes(with("\u{e9}#".as_bytes())),
                    Err(DecodeError::WildcardInTopicName)
                );
            }
        }
    }

    /// `scan` agrees with a byte-by-byte reference at every length and position.
    #[test]
    fn scan_finds_every_byte_at_every_position() {
        let reference = |b: &[u8]| {
            (u8::from(b.contains(&0)) * NUL)
                | (u8::from(b.iter().any(|&c| c == b'+' || c == b'#')) * WILDCARD)
                | (u8::from(b.iter().any(|&c| c >= 0x80)) * NON_ASCII)
        };
        for len in 0..70 {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(scan::<ALL>(&base), 0, "len {len}");
            for at in 0..len {
                for special in [0u8, b'+', b'#', b'*', 0x7F, 0x80, 0xFF, b'/'] {
                    let mut v = base.clone();
                    v[at] = special;
                    assert_eq!(
                        scan::<ALL>(&v),
                        reference(&v),
                        "len {len}, {special:#x} at {at}"
                    );
                }
            }
        }
    }
}
