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
}

impl<V> Node<V> {
    fn new() -> Self {
        Self {
            children: HashMap::default(),
            value: None,
        }
    }
}

/// A store of values (retained messages) by topic name, answering "every name matching this
/// filter" by walking only the branches the filter allows.
///
/// A level of the filter costs one map lookup, a `+` visits the children of the nodes reached,
/// a `#` the subtree below: the work is proportional to the matches and their prefixes, not to
/// the size of the store. Filters starting with a wildcard skip names starting with `$`
/// [MQTT-4.7.2-1].
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
            nodes: vec![Some(Node::new())],
            free: Vec::new(),
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
        for level in name.levels() {
            node = match self.node(node).children.get(level) {
                Some(&child) => child,
                None => {
                    let child = match self.free.pop() {
                        Some(id) => {
                            self.nodes[id as usize] = Some(Node::new());
                            id
                        }
                        None => {
                            let id = u32::try_from(self.nodes.len())
                                .expect("retained tree: too many nodes");
                            self.nodes.push(Some(Node::new()));
                            id
                        }
                    };
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
        for (level, &parent) in name.rsplit('/').zip(path.iter().rev()) {
            let child = self.node(node);
            if child.value.is_some() || !child.children.is_empty() {
                break;
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
    pub fn for_each_matching<'a, F>(&'a self, filter: &str, mut visit: F)
    where
        F: FnMut(&'a TopicName, &'a V),
    {
        if self.len == 0 {
            return;
        }
        let mut report = |node: &'a Node<V>| {
            if let Some((name, value)) = &node.value {
                visit(name, value);
            }
        };
        let mut stack = vec![(0_u32, 0_usize)];
        let mut subtree = Vec::new();
        while let Some((id, offset)) = stack.pop() {
            let node = self.node(id);
            if offset > filter.len() {
                report(node);
                continue;
            }
            let end = filter[offset..]
                .find('/')
                .map_or(filter.len(), |i| offset + i);
            // [MQTT-4.7.2-1]: a wildcard first level skips names starting with `$`.
            let visible = |label: &str| id != 0 || !label.starts_with('$');
            match &filter[offset..end] {
                "#" => {
                    report(node);
                    subtree.extend(
                        node.children
                            .iter()
                            .filter(|(l, _)| visible(l))
                            .map(|(_, &c)| c),
                    );
                    while let Some(id) = subtree.pop() {
                        let node = self.node(id);
                        report(node);
                        subtree.extend(node.children.values().copied());
                    }
                }
                "+" => stack.extend(
                    node.children
                        .iter()
                        .filter(|(l, _)| visible(l))
                        .map(|(_, &c)| (c, end + 1)),
                ),
                level => {
                    if let Some(&child) = node.children.get(level) {
                        stack.push((child, end + 1));
                    }
                }
            }
        }
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
