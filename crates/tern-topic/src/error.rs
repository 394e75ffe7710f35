//! The one error type of the crate.

/// Why a string is not a valid topic name, topic filter or shared subscription filter.
///
/// Each variant cites the normative statement of MQTT 5.0 (section 4.7 and 4.8.2) it enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The string is empty [MQTT-4.7.3-1].
    #[error("empty topic name or filter [MQTT-4.7.3-1]")]
    Empty,
    /// The string encodes to more than 65,535 bytes of UTF-8 [MQTT-4.7.3-3].
    #[error("topic of {len} bytes exceeds 65,535 bytes [MQTT-4.7.3-3]")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The string contains the null character U+0000 [MQTT-4.7.3-2].
    #[error("null character U+0000 in a topic [MQTT-4.7.3-2]")]
    NullCharacter,
    /// A topic name contains `+` or `#` [MQTT-4.7.0-1].
    #[error("wildcard {wildcard:?} in a topic name [MQTT-4.7.0-1]")]
    WildcardInName {
        /// The offending character, `+` or `#`.
        wildcard: char,
    },
    /// A `#` that is not the whole last level of a filter [MQTT-4.7.1-1].
    #[error("`#` must be alone in the last level of a filter [MQTT-4.7.1-1]")]
    MisplacedMultiLevelWildcard,
    /// A `+` that does not occupy a whole level of a filter [MQTT-4.7.1-2].
    #[error("`+` must occupy a whole level of a filter [MQTT-4.7.1-2]")]
    MisplacedSingleLevelWildcard,
    /// A shared subscription filter that does not start with `$share/` [MQTT-4.8.2-1].
    #[error("shared subscription filter without the `$share/` prefix [MQTT-4.8.2-1]")]
    MissingSharePrefix,
    /// `$share/` followed directly by `/` or by nothing: the ShareName is empty
    /// [MQTT-4.8.2-1].
    #[error("empty ShareName in a shared subscription [MQTT-4.8.2-1]")]
    EmptyShareName,
    /// The ShareName contains `+` or `#` [MQTT-4.8.2-2].
    #[error("wildcard {wildcard:?} in a ShareName [MQTT-4.8.2-2]")]
    WildcardInShareName {
        /// The offending character, `+` or `#`.
        wildcard: char,
    },
    /// The ShareName is not followed by `/` and a non-empty topic filter [MQTT-4.8.2-2].
    #[error("ShareName not followed by `/` and a topic filter [MQTT-4.8.2-2]")]
    MissingSharedFilter,
}
