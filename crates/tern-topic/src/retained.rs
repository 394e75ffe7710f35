//! The reverse direction: topic names (of retained messages) that a filter matches.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use foldhash::SharedSeed;
use foldhash::fast::{FoldHasher, SeedableRandomState};

use crate::TopicName;

/// A zero-sized `BuildHasher` with random keys drawn once per process (from std's OS-seeded
/// `RandomState`), so that the per-node maps do not each carry their own keys; foldhash, as
/// the subscription trie uses, for short topic levels.
#[derive(Clone, Copy, Default)]
struct ProcessKeys;

impl BuildHasher for ProcessKeys {
    type Hasher = FoldHasher<'static>;
    fn build_hasher(&self) -> FoldHasher<'static> {
        static KEYS: OnceLock<SeedableRandomState> = OnceLock::new();
        KEYS.get_or_init(|| {
            let seed = RandomState::new().hash_one(0x7265_7461_696e_u64);
            SeedableRandomState::with_seed(seed, SharedSeed::global_random())
        })
        .build_hasher()
    }
}

struct Node<V> {
    children: HashMap<Box<str>, u32, ProcessKeys>,
    value: Option<(TopicName, V)>,
    /// The node one level up (the root is its own parent).
    parent: u32,
    /// Where this node sits in its [`LevelIndex`] bucket.
    slot: u32,
    /// A first-level node whose label starts with `$` (hidden from leading wildcards).
    dollar: bool,
}

impl<V> Node<V> {
    fn new(parent: u32, slot: u32, dollar: bool) -> Self {
        Self {
            children: HashMap::default(),
            value: None,
            parent,
            slot,
            dollar,
        }
    }
}

/// Every node by (depth, label), so that a filter like `site/+/device/d42/+` can start from
/// the few `d42` nodes at depth 3 instead of expanding every site under `site/+`.
///
/// Buckets are keyed by a hash of the pair; a candidate is confirmed through its parent's
/// child map, so a hash collision costs a lookup and never a wrong answer.
#[derive(Default)]
struct LevelIndex {
    buckets: HashMap<u64, Vec<u32>, ProcessKeys>,
}

impl LevelIndex {
    fn key(depth: usize, label: &str) -> u64 {
        ProcessKeys.hash_one((depth, label))
    }

    fn bucket(&self, depth: usize, label: &str) -> &[u32] {
        self.buckets
            .get(&Self::key(depth, label))
            .map_or(&[], Vec::as_slice)
    }

    /// Adds `id` and returns its slot.
    fn add(&mut self, depth: usize, label: &str, id: u32) -> u32 {
        let bucket = self.buckets.entry(Self::key(depth, label)).or_default();
        bucket.push(id);
        u32::try_from(bucket.len() - 1).expect("retained tree: too many nodes")
    }

    /// Removes the node at `slot`, returning the node moved into its place, if any.
    fn remove(&mut self, depth: usize, label: &str, slot: u32) -> Option<(u32, u32)> {
        let key = Self::key(depth, label);
        let bucket = self.buckets.get_mut(&key).expect("indexed node");
        bucket.swap_remove(slot as usize);
        if bucket.is_empty() {
            self.buckets.remove(&key);
            return None;
        }
        bucket.get(slot as usize).map(|&moved| (moved, slot))
    }
}

/// A store of values (retained messages) by topic name, answering "every name matching this
/// filter" by walking only the branches the filter allows.
///
/// A level of the filter costs one map lookup and a `#` visits the subtree below. A `+` visits
/// the children of the nodes reached, unless a later literal level of the filter is rarer at
/// its depth: then the walk starts from the nodes carrying that label at that depth (kept in
/// an index by depth and label) and checks their ancestors against the filter. So
/// `site/+/device/d42/+` touches the few `d42` nodes, not every site: the work is proportional
/// to the matches and their prefixes, not to the size of the store. Filters starting with a
/// wildcard skip names starting with `$` [MQTT-4.7.2-1].
///
/// ```
/// use tern_topic::{RetainedTree, TopicName};
///
/// let mut retained = RetainedTree::new();
/// for name in ["a/b/c", "a/x/c/d", "a/b/d", "$SYS/uptime"] {
///     retained.insert(TopicName::new(name).unwrap(), name.len());
/// }
/// let mut names: Vec<&str> =
///     retained.matching("a/+/c/#").into_iter().map(|(name, _)| name.as_str()).collect();
/// names.sort_unstable();
/// assert_eq!(names, ["a/b/c", "a/x/c/d"]);
/// assert!(retained.matching("#").iter().all(|(name, _)| !name.is_dollar()));
/// ```
///
/// The store works without recursion (nodes sit in an arena), so names of thousands of levels
/// cost no stack.
pub struct RetainedTree<V> {
    nodes: Vec<Option<Node<V>>>,
    free: Vec<u32>,
    index: LevelIndex,
    len: usize,
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for RetainedTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedTree")
            .field("len", &self.len)
            .field("nodes", &self.node_count())
            .finish_non_exhaustive()
    }
}

impl<V> RetainedTree<V> {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            nodes: vec![Some(Node::new(0, 0, false))],
            free: Vec::new(),
            index: LevelIndex::default(),
            len: 0,
        }
    }

    /// Number of names stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of nodes below the root (0 when the store is empty).
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.nodes.len() - 1 - self.free.len()
    }

    fn node(&self, id: u32) -> &Node<V> {
        self.nodes[id as usize].as_ref().expect("live node")
    }

    fn node_mut(&mut self, id: u32) -> &mut Node<V> {
        self.nodes[id as usize].as_mut().expect("live node")
    }

    fn find(&self, name: &str) -> Option<u32> {
        let mut node = 0;
        for level in name.split('/') {
            node = *self.node(node).children.get(level)?;
        }
        Some(node)
    }

    /// Stores `value` under `name`, returning the value it replaces.
    pub fn insert(&mut self, name: TopicName, value: V) -> Option<V> {
        let mut node = 0;
        for (depth, level) in name.levels().enumerate() {
            node = match self.node(node).children.get(level) {
                Some(&child) => child,
                None => {
                    let child = match self.free.pop() {
                        Some(id) => id,
                        None => {
                            let id = u32::try_from(self.nodes.len())
                                .expect("retained tree: too many nodes");
                            self.nodes.push(None);
                            id
                        }
                    };
                    let slot = self.index.add(depth, level, child);
                    let dollar = depth == 0 && level.starts_with('$');
                    self.nodes[child as usize] = Some(Node::new(node, slot, dollar));
                    self.node_mut(node).children.insert(level.into(), child);
                    child
                }
            };
        }
        let slot = &mut self.node_mut(node).value;
        match slot {
            Some((old_name, old_value)) => {
                *old_name = name;
                Some(std::mem::replace(old_value, value))
            }
            None => {
                *slot = Some((name, value));
                self.len += 1;
                None
            }
        }
    }

    /// The value stored under `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&V> {
        self.get_key_value(name).map(|(_, value)| value)
    }

    /// The name and value stored under `name`.
    #[must_use]
    pub fn get_key_value(&self, name: &str) -> Option<(&TopicName, &V)> {
        let (name, value) = self.node(self.find(name)?).value.as_ref()?;
        Some((name, value))
    }

    /// Removes the value stored under `name`, freeing the nodes nothing uses any more.
    pub fn remove(&mut self, name: &str) -> Option<V> {
        let mut path = Vec::new();
        let mut node = 0;
        for level in name.split('/') {
            path.push(node);
            node = *self.node(node).children.get(level)?;
        }
        let (_, value) = self.node_mut(node).value.take()?;
        self.len -= 1;
        if self.len == 0 {
            *self = Self::new();
            return Some(value);
        }
        let depths = (0..path.len()).rev();
        for ((level, &parent), depth) in name.rsplit('/').zip(path.iter().rev()).zip(depths) {
            let child = self.node(node);
            if child.value.is_some() || !child.children.is_empty() {
                break;
            }
            if let Some((moved, slot)) = self.index.remove(depth, level, child.slot) {
                self.node_mut(moved).slot = slot;
            }
            self.node_mut(parent).children.remove(level);
            self.nodes[node as usize] = None;
            self.free.push(node);
            node = parent;
        }
        Some(value)
    }

    /// Every stored name with its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicName, &V)> {
        self.nodes
            .iter()
            .flatten()
            .filter_map(|node| node.value.as_ref().map(|(name, value)| (name, value)))
    }

    /// Calls `visit` with every stored name matching the topic filter `filter`, in no
    /// particular order.
    ///
    /// `filter` should be a valid topic filter; any other string is read level by level like
    /// [`matches`](crate::matches) does.
    pub fn for_each_matching<'a, F>(&'a self, filter: &str, visit: F)
    where
        F: FnMut(&'a TopicName, &'a V),
    {
        self.walk(filter, visit);
    }

    /// The matching walk; returns how many nodes it touched (for the tests of its cost).
    fn walk<'a, F>(&'a self, filter: &str, mut visit: F) -> usize
    where
        F: FnMut(&'a TopicName, &'a V),
    {
        if self.len == 0 {
            return 0;
        }
        let levels: Vec<&str> = filter.split('/').collect();
        let mut touched = 0;
        let mut report = |node: &'a Node<V>| {
            if let Some((name, value)) = &node.value {
                visit(name, value);
            }
        };
        // (node, depth of the node's children = index of the next filter level)
        let mut stack = vec![(0_u32, 0_usize)];
        let mut subtree = Vec::new();
        while let Some((id, depth)) = stack.pop() {
            touched += 1;
            let node = self.node(id);
            let Some(&level) = levels.get(depth) else {
                report(node);
                continue;
            };
            // [MQTT-4.7.2-1]: a wildcard first level skips names starting with `$`.
            let visible = |label: &str| id != 0 || !label.starts_with('$');
            match level {
                "#" => {
                    report(node);
                    subtree.extend(
                        node.children
                            .iter()
                            .filter(|(l, _)| visible(l))
                            .map(|(_, &c)| c),
                    );
                    while let Some(id) = subtree.pop() {
                        touched += 1;
                        let node = self.node(id);
                        report(node);
                        subtree.extend(node.children.values().copied());
                    }
                }
                "+" => match self.rarest_literal(&levels, depth, node.children.len()) {
                    Some((at, candidates)) => {
                        for &candidate in candidates {
                            touched += at - depth + 1;
                            if self.descends_as(candidate, at, id, depth, &levels) {
                                stack.push((candidate, at + 1));
                            }
                        }
                    }
                    None => stack.extend(
                        node.children
                            .iter()
                            .filter(|(l, _)| visible(l))
                            .map(|(_, &c)| (c, depth + 1)),
                    ),
                },
                level => {
                    if let Some(&child) = node.children.get(level) {
                        stack.push((child, depth + 1));
                    }
                }
            }
        }
        touched
    }

    /// For a `+` at `levels[depth]` below a node with `fan_out` children: the literal level
    /// after it whose index bucket is smallest, if that beats expanding the children.
    fn rarest_literal(
        &self,
        levels: &[&str],
        depth: usize,
        fan_out: usize,
    ) -> Option<(usize, &[u32])> {
        let mut best: Option<(usize, &[u32])> = None;
        for (at, &level) in levels.iter().enumerate().skip(depth + 1) {
            match level {
                "#" => break,
                "+" => continue,
                _ => {}
            }
            let bucket = self.index.bucket(at, level);
            if best.is_none_or(|(_, b)| bucket.len() < b.len()) {
                best = Some((at, bucket));
            }
        }
        best.filter(|(_, bucket)| bucket.len() < fan_out)
    }

    /// Whether `node`, at depth `at`, descends from `ancestor` (whose children are at depth
    /// `depth`) through labels that `levels[depth..=at]` accept. Only literal levels need a
    /// check, made through the parent's child map (which also rules out hash collisions).
    fn descends_as(
        &self,
        mut node: u32,
        at: usize,
        ancestor: u32,
        depth: usize,
        levels: &[&str],
    ) -> bool {
        for level in levels[depth..=at].iter().rev() {
            let parent = self.node(node).parent;
            let fits = match *level {
                "+" => !(parent == 0 && self.node(node).dollar),
                literal => self.node(parent).children.get(literal) == Some(&node),
            };
            if !fits {
                return false;
            }
            node = parent;
        }
        node == ancestor
    }

    /// Every stored name matching `filter` with its value (see
    /// [`for_each_matching`](Self::for_each_matching)).
    #[must_use]
    pub fn matching(&self, filter: &str) -> Vec<(&TopicName, &V)> {
        let mut out = Vec::new();
        self.for_each_matching(filter, |name, value| out.push((name, value)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 sites with 20 devices each, two names per device.
    fn sites() -> RetainedTree<u32> {
        let mut store = RetainedTree::new();
        for device in 0..20_000_u32 {
            for kind in ["telemetry", "status"] {
                let name = format!("site/s{}/device/d{device}/{kind}", device % 1_000);
                store.insert(TopicName::new(name).unwrap(), device);
            }
        }
        store
    }

    fn names(store: &RetainedTree<u32>, filter: &str) -> (Vec<String>, usize) {
        let mut found = Vec::new();
        let touched = store.walk(filter, |name, _| found.push(name.to_string()));
        found.sort_unstable();
        (found, touched)
    }

    #[test]
    fn a_rare_literal_after_plus_is_looked_up_not_scanned() {
        let store = sites();
        let (found, touched) = names(&store, "site/+/device/d4242/+");
        assert_eq!(
            found,
            [
                "site/s242/device/d4242/status",
                "site/s242/device/d4242/telemetry"
            ]
        );
        // Root, `site`, the one `d4242` candidate checked up two levels, its two children:
        // not the 1,000 sites a plain walk expands.
        assert!(touched < 12, "touched {touched} nodes");
        let (found, touched) = names(&store, "+/+/+/d7/status");
        assert_eq!(found, ["site/s7/device/d7/status"]);
        assert!(touched < 12, "touched {touched} nodes");
    }

    #[test]
    fn a_common_literal_keeps_the_plain_walk() {
        let store = sites();
        // `device` is under every site: the index would not narrow anything.
        let (found, _) = names(&store, "site/+/device/+/status");
        assert_eq!(found.len(), 20_000);
        let (found, _) = names(&store, "site/s1/+/d1001/+");
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn removal_keeps_the_index_exact() {
        let mut store = sites();
        for kind in ["telemetry", "status"] {
            assert!(
                store
                    .remove(&format!("site/s242/device/d4242/{kind}"))
                    .is_some()
            );
        }
        assert!(names(&store, "site/+/device/d4242/+").0.is_empty());
        // The bucket of `d5242` at depth 3 still finds its node after the swap-removals.
        let (found, _) = names(&store, "site/+/device/d5242/+");
        assert_eq!(found.len(), 2);
        store.insert(TopicName::new("site/s9/device/d4242/status").unwrap(), 1);
        let (found, _) = names(&store, "site/+/device/d4242/+");
        assert_eq!(found, ["site/s9/device/d4242/status"]);
    }

    #[test]
    fn index_lookups_from_the_root_skip_dollar_names() {
        // [MQTT-4.7.2-1] also when the walk starts from the index.
        let mut store = RetainedTree::new();
        for first in ["$SYS", "a", "b", "c", "d", "e"] {
            store.insert(TopicName::new(format!("{first}/x")).unwrap(), 0);
            store.insert(TopicName::new(format!("{first}/y")).unwrap(), 0);
        }
        store.insert(TopicName::new("f/rare").unwrap(), 0);
        store.insert(TopicName::new("$SYS/rare").unwrap(), 0);
        let (found, touched) = names(&store, "+/rare");
        assert_eq!(found, ["f/rare"]);
        assert!(touched <= 6, "touched {touched} nodes");
        let (found, _) = names(&store, "$SYS/+");
        assert_eq!(found, ["$SYS/rare", "$SYS/x", "$SYS/y"]);
    }
}
