//! Topic aliases (MQTT 5.0, 3.3.2.3.4), per connection and per direction [MQTT-3.3.2-7].

use std::collections::HashMap;

use tern_codec::MqttString;

/// The receiving side's alias map: filled by the peer, bounded by the Topic Alias Maximum this
/// side announced.
#[derive(Clone, Debug, Default)]
pub(crate) struct InboundAliases {
    maximum: u16,
    /// Allocated with the first alias the peer defines: most connections use none, and an
    /// idle connection should not pay for the map (48 bytes boxed to 8).
    #[expect(
        clippy::box_collection,
        reason = "the box is what keeps an unused map small"
    )]
    topics: Option<Box<HashMap<u16, MqttString>>>,
}

/// What resolving an inbound alias found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resolve {
    /// The topic to use.
    Topic(MqttString),
    /// Alias 0 or above the maximum.
    Invalid,
    /// An empty topic with an alias that has no mapping.
    Unknown,
}

impl InboundAliases {
    pub(crate) fn new(maximum: u16) -> Self {
        InboundAliases {
            maximum,
            topics: None,
        }
    }

    pub(crate) fn maximum(&self) -> u16 {
        self.maximum
    }

    /// Applies a PUBLISH's alias: a non-empty topic (re)defines it, an empty one uses it.
    pub(crate) fn resolve(&mut self, alias: u16, topic: &MqttString) -> Resolve {
        if alias == 0 || alias > self.maximum {
            return Resolve::Invalid;
        }
        if topic.is_empty() {
            match self.topics.as_ref().and_then(|t| t.get(&alias)) {
                Some(t) => Resolve::Topic(t.clone()),
                None => Resolve::Unknown,
            }
        } else {
            self.topics
                .get_or_insert_default()
                .insert(alias, topic.clone());
            Resolve::Topic(topic.clone())
        }
    }
}

/// How to send one topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Send the topic in full, without alias.
    None,
    /// Send the topic with this alias, defining it.
    Define(u16),
    /// Send an empty topic with this alias.
    Use(u16),
}

/// The sending side's alias map: the engine picks aliases for topics, up to the peer's Topic
/// Alias Maximum, replacing the least recently used one when all are taken.
#[derive(Clone, Debug, Default)]
pub(crate) struct OutboundAliases {
    maximum: u16,
    enabled: bool,
    /// Allocated with the first alias defined (see [`InboundAliases`]).
    maps: Option<Box<OutboundMaps>>,
}

/// The aliases in use, both ways, and when each was last used.
#[derive(Clone, Debug, Default)]
struct OutboundMaps {
    by_topic: HashMap<MqttString, (u16, u64)>,
    by_alias: HashMap<u16, MqttString>,
    tick: u64,
}

impl OutboundAliases {
    pub(crate) fn new(maximum: u16, enabled: bool) -> Self {
        OutboundAliases {
            maximum,
            enabled,
            ..Default::default()
        }
    }

    /// The alias to use for `topic`, without recording anything.
    pub(crate) fn choose(&self, topic: &MqttString) -> Choice {
        if !self.enabled || self.maximum == 0 || topic.is_empty() {
            return Choice::None;
        }
        let Some(maps) = self.maps.as_deref() else {
            // Nothing defined yet (the maximum is at least 1).
            return Choice::Define(1);
        };
        if let Some(&(alias, _)) = maps.by_topic.get(topic) {
            // An empty topic plus a 3-byte property only pays for topics longer than 3 bytes.
            return if topic.len() > 3 {
                Choice::Use(alias)
            } else {
                Choice::None
            };
        }
        let next = maps.by_alias.len() as u16 + 1;
        if next <= self.maximum {
            return Choice::Define(next);
        }
        // All taken: replace the least recently used.
        let lru = maps
            .by_topic
            .values()
            .min_by_key(|(_, used)| *used)
            .map(|(a, _)| *a);
        lru.map_or(Choice::None, Choice::Define)
    }

    /// Records that `choice` was sent for `topic`.
    pub(crate) fn commit(&mut self, topic: &MqttString, choice: Choice) {
        if choice == Choice::None && self.maps.is_none() {
            // No alias to age.
            return;
        }
        let maps = self.maps.get_or_insert_default();
        maps.tick += 1;
        match choice {
            Choice::None => {}
            Choice::Use(_) => {
                if let Some(entry) = maps.by_topic.get_mut(topic) {
                    entry.1 = maps.tick;
                }
            }
            Choice::Define(alias) => {
                if let Some(old) = maps.by_alias.insert(alias, topic.clone()) {
                    maps.by_topic.remove(&old);
                }
                maps.by_topic.insert(topic.clone(), (alias, maps.tick));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &'static str) -> MqttString {
        MqttString::from_static(s)
    }

    #[test]
    fn inbound_rejects_zero_and_above_maximum() {
        // [MQTT-3.3.2-8], [MQTT-3.3.2-9]: 0 and values above the maximum are invalid.
        let mut a = InboundAliases::new(2);
        assert_eq!(a.resolve(0, &t("x")), Resolve::Invalid);
        assert_eq!(a.resolve(3, &t("x")), Resolve::Invalid);
        assert_eq!(a.resolve(1, &MqttString::new()), Resolve::Unknown);
        assert_eq!(a.resolve(1, &t("a/b")), Resolve::Topic(t("a/b")));
        assert_eq!(a.resolve(1, &MqttString::new()), Resolve::Topic(t("a/b")));
    }

    #[test]
    fn outbound_stays_within_maximum_and_replaces_lru() {
        let mut a = OutboundAliases::new(2, true);
        let (x, y, z) = (t("topic/x"), t("topic/y"), t("topic/z"));
        let c = a.choose(&x);
        assert_eq!(c, Choice::Define(1));
        a.commit(&x, c);
        let c = a.choose(&y);
        assert_eq!(c, Choice::Define(2));
        a.commit(&y, c);
        let c = a.choose(&x);
        assert_eq!(c, Choice::Use(1));
        a.commit(&x, c);
        // y is now the least recently used: z takes its alias.
        let c = a.choose(&z);
        assert_eq!(c, Choice::Define(2));
        a.commit(&z, c);
        assert_eq!(a.choose(&y), Choice::Define(1));
        assert_eq!(a.choose(&z), Choice::Use(2));
        assert_eq!(OutboundAliases::new(0, true).choose(&x), Choice::None);
    }
}
