//! Property tests: the subscription trie and the retained store agree with brute-force
//! matching by [`tern_topic::matches`], and every insert/remove sequence that removes
//! everything leaves an empty structure behind.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tern_topic::{
    Match, RetainedTree, SharedFilter, SubscriptionFilter, SubscriptionTree, TopicFilter,
    TopicName, matches, validate_topic_filter, validate_topic_name,
};

/// Few distinct levels, so that filters and names collide often; `$s` exercises the `$` rule
/// and `""` empty levels; the trie holds levels of up to 7 bytes in its nodes and interns
/// longer ones, hence the two levels on either side of that limit.
fn name_level() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "", "$s", "c", "seven-b", "eight-by"])
}

fn topic_name() -> impl Strategy<Value = String> {
    prop::collection::vec(name_level(), 1..6)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("names are not empty", |name| !name.is_empty())
}

fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "", "$s", "+", "+", "seven-b", "eight-by"]);
    (prop::collection::vec(level, 0..5), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            levels.join("/")
        })
        .prop_filter("filters are not empty", |filter| !filter.is_empty())
}

/// A subscription: filter, ShareName (if shared), subscriber.
type Sub = (String, Option<&'static str>, u8);

fn subscription() -> impl Strategy<Value = Sub> {
    (
        topic_filter(),
        prop::option::weighted(0.3, prop::sample::select(vec!["g1", "g2"])),
        0..4_u8,
    )
}

fn sub_filter((filter, share, _): &Sub) -> SubscriptionFilter {
    let filter = TopicFilter::new(filter.as_str()).unwrap();
    match share {
        None => SubscriptionFilter::Plain(filter),
        Some(name) => SubscriptionFilter::Shared(SharedFilter::from_parts(name, filter).unwrap()),
    }
}

/// The brute-force model: subscriptions in a map, shared groups with their member order.
#[derive(Default)]
struct Model {
    plain: BTreeMap<(String, u8), u32>,
    /// (ShareName, filter) -> members in subscription order.
    groups: BTreeMap<(String, String), Vec<(u8, u32)>>,
}

impl Model {
    fn insert(&mut self, (filter, share, key): &Sub, value: u32) -> Option<u32> {
        match share {
            None => self.plain.insert((filter.clone(), *key), value),
            Some(name) => {
                let members = self
                    .groups
                    .entry((name.to_string(), filter.clone()))
                    .or_default();
                match members.iter_mut().find(|(k, _)| k == key) {
                    Some((_, v)) => Some(std::mem::replace(v, value)),
                    None => {
                        members.push((*key, value));
                        None
                    }
                }
            }
        }
    }

    fn remove(&mut self, (filter, share, key): &Sub) -> Option<u32> {
        match share {
            None => self.plain.remove(&(filter.clone(), *key)),
            Some(name) => {
                let group = (name.to_string(), filter.clone());
                let members = self.groups.get_mut(&group)?;
                let at = members.iter().position(|(k, _)| k == key)?;
                let (_, value) = members.remove(at);
                if members.is_empty() {
                    self.groups.remove(&group);
                }
                Some(value)
            }
        }
    }

    fn remove_subscriber(&mut self, key: u8) -> usize {
        let before = self.len();
        self.plain.retain(|(_, k), _| *k != key);
        for members in self.groups.values_mut() {
            members.retain(|(k, _)| *k != key);
        }
        self.groups.retain(|_, members| !members.is_empty());
        before - self.len()
    }

    fn len(&self) -> usize {
        self.plain.len() + self.groups.values().map(Vec::len).sum::<usize>()
    }

    /// What a lookup must report: plain (key, value) pairs, and groups with their members.
    #[allow(clippy::type_complexity)]
    fn lookup(&self, topic: &str) -> (Vec<(u8, u32)>, Vec<(String, String, Vec<(u8, u32)>)>) {
        let mut plain: Vec<_> = self
            .plain
            .iter()
            .filter(|((filter, _), _)| matches(filter, topic))
            .map(|((_, key), value)| (*key, *value))
            .collect();
        plain.sort_unstable();
        let groups = self
            .groups
            .iter()
            .filter(|((_, filter), _)| matches(filter, topic))
            .map(|((name, filter), members)| (name.clone(), filter.clone(), members.clone()))
            .collect();
        (plain, groups)
    }
}

#[allow(clippy::type_complexity)]
fn tree_lookup(
    tree: &SubscriptionTree<u8, u32>,
    topic: &str,
) -> (Vec<(u8, u32)>, Vec<(String, String, Vec<(u8, u32)>)>) {
    let mut plain = Vec::new();
    let mut groups = Vec::new();
    tree.for_each_match(topic, |m| match m {
        Match::Subscription { key, value } => plain.push((*key, *value)),
        Match::Shared(group) => {
            assert!(!group.is_empty());
            assert_eq!(group.get(group.len() - 1), group.members().last());
            groups.push((
                group.share_name().to_string(),
                group.filter().to_string(),
                group.members().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            ));
        }
    });
    plain.sort_unstable();
    groups.sort();
    (plain, groups)
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Sub, u32),
    Remove(Sub),
    RemoveSubscriber(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (subscription(), any::<u32>()).prop_map(|(sub, value)| Op::Insert(sub, value)),
        3 => subscription().prop_map(Op::Remove),
        1 => (0..4_u8).prop_map(Op::RemoveSubscriber),
    ]
}

fn assert_empty(tree: &SubscriptionTree<u8, u32>) {
    assert!(tree.is_empty());
    assert_eq!(tree.len(), 0);
    assert_eq!(tree.node_count(), 0, "{tree:?}");
    assert_eq!(tree.level_count(), 0, "{tree:?}");
    assert_eq!(tree.group_count(), 0, "{tree:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The trie reports exactly what brute force over every filter reports.
    #[test]
    fn trie_agrees_with_brute_force(
        subs in prop::collection::vec((subscription(), any::<u32>()), 0..40),
        topics in prop::collection::vec(topic_name(), 1..20),
    ) {
        let mut tree = SubscriptionTree::new();
        let mut model = Model::default();
        for (sub, value) in &subs {
            let replaced = tree.insert(&sub_filter(sub), sub.2, *value);
            prop_assert_eq!(replaced, model.insert(sub, *value));
        }
        prop_assert_eq!(tree.len(), model.len());
        for topic in &topics {
            prop_assert_eq!(tree_lookup(&tree, topic), model.lookup(topic), "topic {:?}", topic);
        }
    }

    /// Random insert/remove sequences keep agreeing, and removing what is left (half by
    /// filter, half by subscriber) shrinks the tree back to nothing.
    #[test]
    fn insert_remove_sequences_leave_no_garbage(
        ops in prop::collection::vec(op(), 0..80),
        topics in prop::collection::vec(topic_name(), 1..10),
    ) {
        let mut tree = SubscriptionTree::new();
        let mut model = Model::default();
        for op in &ops {
            match op {
                Op::Insert(sub, value) => {
                    prop_assert_eq!(tree.insert(&sub_filter(sub), sub.2, *value), model.insert(sub, *value));
                }
                Op::Remove(sub) => {
                    prop_assert_eq!(tree.remove(&sub_filter(sub), &sub.2), model.remove(sub));
                }
                Op::RemoveSubscriber(key) => {
                    prop_assert_eq!(tree.remove_subscriber(key), model.remove_subscriber(*key));
                }
            }
            prop_assert_eq!(tree.len(), model.len());
        }
        for topic in &topics {
            prop_assert_eq!(tree_lookup(&tree, topic), model.lookup(topic), "topic {:?}", topic);
        }
        for ((filter, key), value) in &model.plain {
            let sub = (filter.clone(), None, *key);
            prop_assert_eq!(tree.get(&sub_filter(&sub), key), Some(value));
        }
        // Remove what is left: plain subscriptions one by one, shared ones by subscriber.
        let plain: Vec<_> = model.plain.keys().cloned().collect();
        for (filter, key) in plain {
            let sub = (filter, None, key);
            prop_assert_eq!(tree.remove(&sub_filter(&sub), &key), model.remove(&sub));
        }
        for key in 0..4 {
            prop_assert_eq!(tree.remove_subscriber(&key), model.remove_subscriber(key));
        }
        assert_empty(&tree);
        prop_assert!(tree.matches("a").is_empty());
    }

    /// The retained store answers a filter exactly like brute force over every stored name,
    /// and shrinks back to empty.
    #[test]
    fn retained_agrees_with_brute_force(
        names in prop::collection::vec((topic_name(), any::<bool>()), 0..40),
        filters in prop::collection::vec(topic_filter(), 1..20),
    ) {
        let mut store = RetainedTree::new();
        let mut model = BTreeMap::new();
        for (i, (name, keep)) in names.iter().enumerate() {
            if *keep {
                let replaced = store.insert(TopicName::new(name.as_str()).unwrap(), i);
                prop_assert_eq!(replaced, model.insert(name.clone(), i));
            } else {
                prop_assert_eq!(store.remove(name), model.remove(name));
            }
            prop_assert_eq!(store.len(), model.len());
        }
        for filter in &filters {
            let mut found: Vec<_> =
                store.matching(filter).into_iter().map(|(n, v)| (n.to_string(), *v)).collect();
            found.sort();
            let expected: Vec<_> = model
                .iter()
                .filter(|(name, _)| matches(filter, name))
                .map(|(n, v)| (n.clone(), *v))
                .collect();
            prop_assert_eq!(found, expected, "filter {:?}", filter);
        }
        for (name, value) in &model {
            prop_assert_eq!(store.get(name), Some(value));
        }
        let stored: Vec<String> = model.keys().cloned().collect();
        for name in stored {
            prop_assert!(store.remove(&name).is_some());
        }
        prop_assert!(store.is_empty());
        prop_assert_eq!(store.node_count(), 0);
    }

    /// Wide stores (many siblings, a few rare labels) make the retained walk start from its
    /// index of labels by depth; it must still answer exactly like brute force.
    #[test]
    fn retained_wide_stores_agree_with_brute_force(
        names in prop::collection::vec(
            prop::collection::vec(0_u8..12, 1..5), 1..120),
        filters in prop::collection::vec(
            prop::collection::vec(prop::sample::select(vec![
                "0", "1", "2", "7", "11", "+", "+", "+", "$s"]), 1..5), 1..20),
        hash in any::<bool>(),
    ) {
        let mut store = RetainedTree::new();
        let mut model = BTreeMap::new();
        for (i, levels) in names.iter().enumerate() {
            // Labels 0..8 are common, 8..12 rare; level 0 is sometimes `$s`.
            let name = levels
                .iter()
                .enumerate()
                .map(|(d, l)| if d == 0 && *l == 11 { "$s".to_owned() } else { l.to_string() })
                .collect::<Vec<_>>()
                .join("/");
            store.insert(TopicName::new(name.as_str()).unwrap(), i);
            model.insert(name, i);
        }
        for levels in &filters {
            let mut filter = levels.join("/");
            if hash {
                filter.push_str("/#");
            }
            let mut found: Vec<_> =
                store.matching(&filter).into_iter().map(|(n, v)| (n.to_string(), *v)).collect();
            found.sort();
            let expected: Vec<_> = model
                .iter()
                .filter(|(name, _)| matches(&filter, name))
                .map(|(n, v)| (n.clone(), *v))
                .collect();
            prop_assert_eq!(found, expected, "filter {:?}", filter);
        }
        let stored: Vec<String> = model.keys().cloned().collect();
        for (k, name) in stored.iter().enumerate() {
            prop_assert!(store.remove(name).is_some());
            // Removals swap nodes inside the index: the rest must still be found.
            if k % 7 == 0 {
                for rest in &stored[k + 1..] {
                    let filter = format!("+/{}", rest.split_once('/').map_or("", |(_, r)| r));
                    if rest.contains('/') && !rest.starts_with('$') {
                        prop_assert!(store.matching(&filter).iter().any(|(n, _)| n.as_str() == rest));
                    }
                }
            }
        }
        prop_assert_eq!(store.node_count(), 0);
    }

    /// Checking rules against each other: every valid name is a valid filter, and a valid
    /// filter without wildcards is a valid name.
    #[test]
    fn names_and_filters_agree(s in "[ab/+#$\\x00]{0,8}") {
        if validate_topic_name(&s).is_ok() {
            prop_assert!(validate_topic_filter(&s).is_ok());
            prop_assert!(matches(&s, &s));
        }
        if validate_topic_filter(&s).is_ok() && !s.contains(['+', '#']) {
            prop_assert!(validate_topic_name(&s).is_ok());
        }
    }
}

#[test]
fn deep_topics_do_not_recurse() {
    // 30,000 levels: lookups and removals must not overflow the stack.
    let deep = vec!["a"; 30_000].join("/");
    let mut tree = SubscriptionTree::new();
    let plus = vec!["+"; 30_000].join("/");
    tree.insert(&SubscriptionFilter::new(&deep).unwrap(), 1_u8, ());
    tree.insert(&SubscriptionFilter::new(&plus).unwrap(), 2, ());
    tree.insert(
        &SubscriptionFilter::new(&format!("{plus}/#")).unwrap(),
        3,
        (),
    );
    assert_eq!(tree.matches(&deep).len(), 3);
    assert_eq!(tree.remove_subscriber(&1) + tree.remove_subscriber(&2), 2);
    assert_eq!(tree.remove_subscriber(&3), 1);
    assert_eq!(tree.node_count(), 0);

    let mut store = RetainedTree::new();
    store.insert(TopicName::new(deep.as_str()).unwrap(), ());
    assert_eq!(store.matching("#").len(), 1);
    assert_eq!(store.matching(&plus).len(), 1);
    assert!(store.remove(&deep).is_some());
    assert_eq!(store.node_count(), 0);
}
