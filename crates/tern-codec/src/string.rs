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

fn check(s: &str) -> Result<(), StringError> {
    if s.len() > MAX_STRING_LEN {
        return Err(StringError::TooLong(s.len()));
    }
    if s.as_bytes().contains(&0) {
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

    /// Checks `bytes` and wraps them without copying.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, StringError> {
        let s = ByteString::try_from(bytes).map_err(|_| StringError::InvalidUtf8)?;
        check(&s)?;
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
