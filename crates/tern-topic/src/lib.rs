//! MQTT topic names and filters, matching, `$share` groups, a subscription trie and a retained
//! message index, usable on their own (a gateway, a rules engine, a client routing incoming
//! messages) or under the Tern broker.
//!
//! - [`TopicName`] and [`TopicFilter`]: checked strings (MQTT 5.0 section 4.7), with
//!   [`validate_topic_name`] and [`validate_topic_filter`] to check a `&str` without
//!   allocating.
//! - [`SubscriptionFilter`], [`SharedFilter`] and [`parse_shared`]: `$share/{ShareName}/{filter}`
//!   (section 4.8.2).
//! - [`matches`]: the reference matcher of one filter against one name.
//! - [`SubscriptionTree`]: subscribers by filter, and which of them a topic name reaches,
//!   shared groups reported as groups.
//! - [`RetainedTree`]: the reverse direction, names matching a filter.
//!
//! ```
//! use tern_topic::{Match, RetainedTree, SubscriptionFilter, SubscriptionTree, TopicName};
//!
//! # fn main() -> Result<(), tern_topic::TopicError> {
//! // Subscribers are u64 ids here; the data is the granted QoS.
//! let mut subscriptions = SubscriptionTree::new();
//! subscriptions.insert(&SubscriptionFilter::new("sport/tennis/+")?, 1_u64, 1_u8);
//! subscriptions.insert(&SubscriptionFilter::new("sport/#")?, 2, 0);
//! subscriptions.insert(&SubscriptionFilter::new("#")?, 3, 2);
//!
//! let topic = TopicName::new("sport/tennis/player1")?;
//! let mut reached = Vec::new();
//! subscriptions.for_each_match(&topic, |m| {
//!     if let Match::Subscription { key, value } = m {
//!         reached.push((*key, *value));
//!     }
//! });
//! reached.sort_unstable();
//! assert_eq!(reached, [(1, 1), (2, 0), (3, 2)]);
//!
//! // `#` does not reach `$` topics [MQTT-4.7.2-1].
//! assert!(subscriptions.matches("$SYS/broker/load").is_empty());
//!
//! // Retained messages: a new subscription asks which names its filter matches.
//! let mut retained = RetainedTree::new();
//! retained.insert(topic.clone(), "15-30");
//! retained.insert(TopicName::new("sport/golf")?, "birdie");
//! assert_eq!(retained.matching("sport/+/player1"), [(&topic, &"15-30")]);
//! # Ok(())
//! # }
//! ```

mod edges;
mod error;
mod filter;
mod hash;
mod label;
mod name;
mod retained;
mod share;
mod tree;

pub use error::TopicError;
pub use filter::{TopicFilter, matches, validate_topic_filter};
pub use name::{MAX_TOPIC_LEN, TopicName, validate_topic_name};
pub use retained::RetainedTree;
pub use share::{SHARE_PREFIX, SharedFilter, SubscriptionFilter, parse_shared};
pub use tree::{Match, SharedGroup, SubscriptionTree};
