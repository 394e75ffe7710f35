//! Checked topic filters and the reference matcher.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use crate::TopicError;
use crate::name::validate_common;

/// Checks that `filter` is a valid topic filter without allocating.
///
/// A filter is non-empty [MQTT-4.7.3-1], at most 65,535 bytes [MQTT-4.7.3-3], has no U+0000
/// [MQTT-4.7.3-2]; `#` is alone in the last level [MQTT-4.7.1-1] and `+` alone in its level
/// [MQTT-4.7.1-2]. Empty levels are legal. A `$share/...` string is a valid plain filter here:
/// use [`SubscriptionFilter`](crate::SubscriptionFilter) to read it as a shared subscription.
///
/// # Errors
///
/// The first rule broken, as a [`TopicError`].
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    validate_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// Whether the topic name `name` matches the topic filter `filter`: the reference matcher, one
/// level at a time.
///
/// `+` matches exactly one level (possibly empty), `#` matches the parent level and any number
/// of child levels (`sport/#` matches `sport`), and a filter starting with a wildcard never
/// matches a name starting with `$` [MQTT-4.7.2-1]. Levels compare byte for byte, without any
/// normalization [MQTT-4.7.3-4].
///
/// The arguments are not validated: on strings that are not a valid filter and name the result
/// is the level-by-level reading above. [`SubscriptionTree`](crate::SubscriptionTree) and
/// [`RetainedTree`](crate::RetainedTree) agree with this function on valid inputs.
///
/// ```
/// use tern_topic::matches;
///
/// assert!(matches("sport/#", "sport"));
/// assert!(matches("sport/+/player1", "sport/tennis/player1"));
/// assert!(!matches("sport/+", "sport"));
/// assert!(!matches("#", "$SYS/broker/uptime"));
/// ```
#[must_use]
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A checked MQTT topic filter, cheap to clone (an `Arc<str>` inside).
///
/// ```
/// use tern_topic::{TopicError, TopicFilter};
///
/// let filter = TopicFilter::new("sport/+/player1")?;
/// assert!(filter.matches("sport/tennis/player1"));
/// assert_eq!(TopicFilter::new("sport+"), Err(TopicError::MisplacedSingleLevelWildcard));
/// # Ok::<(), TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Arc<str>);

impl TopicFilter {
    /// Checks `filter` with [`validate_topic_filter`] and keeps it; `&str`, `String`,
    /// `Box<str>` and `Arc<str>` are accepted.
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`TopicError`].
    pub fn new<S: AsRef<str> + Into<Arc<str>>>(filter: S) -> Result<Self, TopicError> {
        validate_topic_filter(filter.as_ref())?;
        Ok(Self(filter.into()))
    }

    /// The filter as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the filter, split at every `/` (empty levels included).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the filter contains `+` or `#`.
    #[must_use]
    pub fn has_wildcards(&self) -> bool {
        self.0.bytes().any(|b| b == b'+' || b == b'#')
    }

    /// Whether the first level is a wildcard, so that the filter does not match names starting
    /// with `$` [MQTT-4.7.2-1].
    #[must_use]
    pub fn starts_with_wildcard(&self) -> bool {
        self.0.starts_with('+') || self.0.starts_with('#')
    }

    /// Whether the topic name `name` matches this filter (see [`matches`]).
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        matches(&self.0, name)
    }

    /// The shared string inside.
    #[must_use]
    pub fn into_inner(self) -> Arc<str> {
        self.0
    }
}

impl Deref for TopicFilter {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TopicFilter {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TopicFilter {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TopicFilter {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<String> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<Arc<str>> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: Arc<str>) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl From<TopicFilter> for Arc<str> {
    fn from(filter: TopicFilter) -> Self {
        filter.0
    }
}
