//! Checked topic names: what a PUBLISH is sent to.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use crate::TopicError;

/// The longest topic name or filter, in bytes of UTF-8 [MQTT-4.7.3-3].
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Checks the rules names and filters share: non-empty [MQTT-4.7.3-1], at most
/// [`MAX_TOPIC_LEN`] bytes [MQTT-4.7.3-3], no U+0000 [MQTT-4.7.3-2].
pub(crate) fn validate_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: s.len() });
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Checks that `name` is a valid topic name without allocating.
///
/// A name is non-empty [MQTT-4.7.3-1], at most 65,535 bytes [MQTT-4.7.3-3], has no U+0000
/// [MQTT-4.7.3-2] and no wildcard [MQTT-4.7.0-1]. Empty levels (`a//b`, `/x`, `x/`) are legal,
/// and names starting with `$` are accepted (the server may reserve them, section 4.7.2).
///
/// # Errors
///
/// The first rule broken, as a [`TopicError`].
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    validate_common(name)?;
    match name.bytes().find(|&b| b == b'+' || b == b'#') {
        Some(b) => Err(TopicError::WildcardInName {
            wildcard: char::from(b),
        }),
        None => Ok(()),
    }
}

/// A checked MQTT topic name, cheap to clone (an `Arc<str>` inside).
///
/// ```
/// use tern_topic::{TopicError, TopicName};
///
/// let name = TopicName::new("sport/tennis/player1")?;
/// assert_eq!(name.levels().count(), 3);
/// assert_eq!(TopicName::new("sport/+"), Err(TopicError::WildcardInName { wildcard: '+' }));
/// # Ok::<(), TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Checks `name` with [`validate_topic_name`] and keeps it; `&str`, `String`, `Box<str>` and
    /// `Arc<str>` are accepted (an `Arc<str>` is kept without copying).
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`TopicError`].
    pub fn new<S: AsRef<str> + Into<Arc<str>>>(name: S) -> Result<Self, TopicError> {
        validate_topic_name(name.as_ref())?;
        Ok(Self(name.into()))
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the name, split at every `/` (empty levels included).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the name starts with `$` (such names are not matched by filters that start with
    /// a wildcard [MQTT-4.7.2-1]).
    #[must_use]
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }

    /// The shared string inside.
    #[must_use]
    pub fn into_inner(self) -> Arc<str> {
        self.0
    }
}

impl Deref for TopicName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TopicName {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<String> for TopicName {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<Arc<str>> for TopicName {
    type Error = TopicError;
    fn try_from(s: Arc<str>) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl From<TopicName> for Arc<str> {
    fn from(name: TopicName) -> Self {
        name.0
    }
}
