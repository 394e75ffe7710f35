//! `$share/{ShareName}/{filter}`: shared subscriptions (MQTT 5.0 section 4.8.2).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::name::validate_common;
use crate::{TopicError, TopicFilter, validate_topic_filter};

/// The prefix that makes a topic filter a shared subscription [MQTT-4.8.2-1].
pub const SHARE_PREFIX: &str = "$share/";

/// Splits a shared subscription filter into its ShareName and topic filter, without
/// allocating.
///
/// Returns `Ok(None)` when `filter` does not start with `$share/` (it is then an ordinary
/// filter, checked as one) and `Ok(Some((share_name, topic_filter)))` when it does. The whole
/// string obeys the common rules of section 4.7.3; the ShareName is non-empty [MQTT-4.8.2-1],
/// has no `+` or `#` and is followed by `/` and a valid, non-empty topic filter
/// [MQTT-4.8.2-2] (it cannot contain `/`, which ends it).
///
/// ```
/// use tern_topic::{TopicError, parse_shared};
///
/// assert_eq!(parse_shared("$share/consumers/sport/#"), Ok(Some(("consumers", "sport/#"))));
/// assert_eq!(parse_shared("sport/#"), Ok(None));
/// assert_eq!(parse_shared("$share//sport"), Err(TopicError::EmptyShareName));
/// ```
///
/// # Errors
///
/// The first rule broken, as a [`TopicError`].
pub fn parse_shared(filter: &str) -> Result<Option<(&str, &str)>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        validate_topic_filter(filter)?;
        return Ok(None);
    };
    validate_common(filter)?;
    let (share_name, topic_filter) = match rest.split_once('/') {
        Some(parts) => parts,
        None if rest.is_empty() => return Err(TopicError::EmptyShareName),
        None => return Err(TopicError::MissingSharedFilter),
    };
    if share_name.is_empty() {
        return Err(TopicError::EmptyShareName);
    }
    if let Some(b) = share_name.bytes().find(|&b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInShareName {
            wildcard: char::from(b),
        });
    }
    if topic_filter.is_empty() {
        return Err(TopicError::MissingSharedFilter);
    }
    validate_topic_filter(topic_filter)?;
    Ok(Some((share_name, topic_filter)))
}

/// A checked shared subscription: a ShareName and the topic filter the group subscribes to.
///
/// ```
/// use tern_topic::{SharedFilter, TopicError};
///
/// let shared = SharedFilter::new("$share/workers/jobs/+")?;
/// assert_eq!(shared.share_name(), "workers");
/// assert_eq!(shared.filter().as_str(), "jobs/+");
/// assert_eq!(shared.to_string(), "$share/workers/jobs/+");
/// # Ok::<(), TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedFilter {
    share_name: Arc<str>,
    filter: TopicFilter,
}

impl SharedFilter {
    /// Parses `$share/{ShareName}/{filter}` (see [`parse_shared`]).
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`TopicError`]; a string without the `$share/` prefix is
    /// refused with [`TopicError::MissingSharePrefix`].
    pub fn new(filter: &str) -> Result<Self, TopicError> {
        match parse_shared(filter)? {
            Some((share_name, filter)) => Ok(Self {
                share_name: share_name.into(),
                filter: TopicFilter::new(filter)?,
            }),
            None => Err(TopicError::MissingSharePrefix),
        }
    }

    /// Builds a shared subscription from its parts.
    ///
    /// # Errors
    ///
    /// [`TopicError::EmptyShareName`] [MQTT-4.8.2-1], or
    /// [`TopicError::WildcardInShareName`] / [`TopicError::MissingSharedFilter`] when the name
    /// contains `+`, `#` or `/` [MQTT-4.8.2-2], or [`TopicError::TooLong`] when the whole
    /// `$share/...` string would exceed 65,535 bytes [MQTT-4.7.3-3].
    pub fn from_parts(share_name: &str, filter: TopicFilter) -> Result<Self, TopicError> {
        if share_name.is_empty() {
            return Err(TopicError::EmptyShareName);
        }
        if let Some(b) = share_name.bytes().find(|&b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInShareName {
                wildcard: char::from(b),
            });
        }
        if share_name.contains('/') {
            return Err(TopicError::MissingSharedFilter);
        }
        validate_common(share_name)?;
        let len = SHARE_PREFIX.len() + share_name.len() + 1 + filter.len();
        if len > crate::MAX_TOPIC_LEN {
            return Err(TopicError::TooLong { len });
        }
        Ok(Self {
            share_name: share_name.into(),
            filter,
        })
    }

    /// The ShareName, which identifies the group together with the filter.
    #[must_use]
    pub fn share_name(&self) -> &str {
        &self.share_name
    }

    /// The topic filter the group subscribes to.
    #[must_use]
    pub fn filter(&self) -> &TopicFilter {
        &self.filter
    }
}

impl fmt::Debug for SharedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{SHARE_PREFIX}{}/{}\"", self.share_name, self.filter)
    }
}

impl fmt::Display for SharedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHARE_PREFIX}{}/{}", self.share_name, self.filter)
    }
}

impl FromStr for SharedFilter {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

/// A filter as a SUBSCRIBE or UNSUBSCRIBE of MQTT 5.0 carries it: either an ordinary
/// topic filter or a shared subscription.
///
/// ```
/// use tern_topic::{SubscriptionFilter, TopicError};
///
/// assert!(matches!("a/+".parse()?, SubscriptionFilter::Plain(_)));
/// assert!(matches!("$share/g/a/+".parse()?, SubscriptionFilter::Shared(_)));
/// # Ok::<(), TopicError>(())
/// ```
///
/// MQTT 3.1.1 has no shared subscriptions: build [`SubscriptionFilter::Plain`] from a
/// [`TopicFilter`] to keep `$share/...` literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubscriptionFilter {
    /// An ordinary (non-shared) topic filter.
    Plain(TopicFilter),
    /// A `$share/{ShareName}/{filter}` subscription.
    Shared(SharedFilter),
}

impl SubscriptionFilter {
    /// Parses `filter`: `$share/...` as a shared subscription, anything else as a topic filter.
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`TopicError`].
    pub fn new(filter: &str) -> Result<Self, TopicError> {
        match parse_shared(filter)? {
            Some((share_name, inner)) => Ok(Self::Shared(SharedFilter {
                share_name: share_name.into(),
                filter: TopicFilter::new(inner)?,
            })),
            None => Ok(Self::Plain(TopicFilter::new(filter)?)),
        }
    }

    /// The topic filter that is matched against topic names (the part after the ShareName for
    /// a shared subscription).
    #[must_use]
    pub fn topic_filter(&self) -> &TopicFilter {
        match self {
            Self::Plain(filter) => filter,
            Self::Shared(shared) => shared.filter(),
        }
    }

    /// The ShareName of a shared subscription.
    #[must_use]
    pub fn share_name(&self) -> Option<&str> {
        match self {
            Self::Plain(_) => None,
            Self::Shared(shared) => Some(shared.share_name()),
        }
    }
}

impl fmt::Display for SubscriptionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(filter) => fmt::Display::fmt(filter, f),
            Self::Shared(shared) => fmt::Display::fmt(shared, f),
        }
    }
}

impl FromStr for SubscriptionFilter {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl From<TopicFilter> for SubscriptionFilter {
    fn from(filter: TopicFilter) -> Self {
        Self::Plain(filter)
    }
}

impl From<SharedFilter> for SubscriptionFilter {
    fn from(shared: SharedFilter) -> Self {
        Self::Shared(shared)
    }
}
