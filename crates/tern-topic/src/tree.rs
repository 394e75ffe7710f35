//! The subscription trie: which subscribers a topic name reaches.
//!
//! # Layout
//!
//! Everything lives in flat arenas indexed by `u32`, so that a subscription costs a few dozen
//! bytes and a lookup only follows indices:
//!
//! - `nodes`: one 32-byte node (two to a cache line) per distinct filter prefix. A node knows
//!   its parent, its level, its `+` child, one of its exact children, and the heads of two
//!   lists of plain subscriptions: those whose filter ends at the node, and those whose filter
//!   is the node's path followed by `/#` (a `#` is never a node of its own). A level of up to
//!   7 bytes is held in the node itself, so that checking an edge needs no other load.
//! - `edges`: one hash table of all exact children, keyed by the parent's index and the hash
//!   of the level (a keyed foldhash, computed once per level of a looked-up topic). It stores
//!   only the child's index and checks it against the child's own fields. A node with a
//!   single exact child (a device's `cmd`, a twin's `telemetry`) is followed without probing
//!   it.
//! - `labels`: every distinct level longer than 7 bytes once, with a reference count.
//! - `entries`: the subscriptions, dense (removal moves the last one into the hole), each on
//!   a doubly linked list of its node and a doubly linked list of its subscriber; `pairs`
//!   finds a subscription by `(filter node, key)` and `keys` finds a subscriber's first one.
//! - `groups`: shared subscription groups, found from their node through `group_heads` (a
//!   flag on the node says whether to look).
//!
//! A lookup splits and hashes the topic once, then walks the trie breadth first, level by
//! level, holding the levels and the nodes reached at one level inline (32 of each before
//! spilling to the heap), so it neither allocates for usual topics nor recurses.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use hashbrown::HashTable;

use crate::edges::Edges;
use crate::hash::Hashers;
use crate::label::Labels;
use crate::{SubscriptionFilter, TopicFilter};

/// No index.
const NIL: u32 = u32::MAX;
/// The root node; it is never freed.
const ROOT: u32 = 0;

/// Owner bit: the entry is a member of the shared group `owner & INDEX`.
const SHARED: u32 = 1 << 31;
/// Owner bit: the entry is a plain subscription to the node's path followed by `/#`.
const MULTI: u32 = 1 << 30;
/// Mask of the node or group index in an owner.
const INDEX: u32 = MULTI - 1;

/// Node meta bit: the node has shared groups in `group_heads`.
const HAS_GROUPS: u32 = 1 << 31;
/// Node meta mask: the number of children (exact and `+`).
const CHILDREN: u32 = HAS_GROUPS - 1;

/// Levels and stack entries a lookup keeps inline.
const INLINE: usize = 32;

/// Bytes of a [`Label`]; its last one tells the kind.
const LABEL_BYTES: usize = 8;
/// Longest level stored in its node.
const INLINE_LEVEL: usize = LABEL_BYTES - 1;
/// Kind byte: the level is interned in [`Labels`], its id in the first four bytes.
const LONG: u8 = 0xff;
/// Kind byte: a `+` node.
const PLUS: u8 = 0xfe;
/// Kind byte: a free node slot.
const FREE: u8 = 0xfd;
/// Kind byte: the root.
const ROOT_LABEL: u8 = 0xfc;

/// The level of a node, compared as a whole: a level of up to [`INLINE_LEVEL`] bytes is held
/// in place (zero-padded, its length in the last byte), so that matching it against a topic
/// level needs no load beyond the node; a longer one is interned in [`Labels`].
#[derive(Clone, Copy, PartialEq, Eq)]
struct Label([u8; LABEL_BYTES]);

impl Label {
    const fn marker(kind: u8) -> Self {
        let mut bytes = [0; LABEL_BYTES];
        bytes[INLINE_LEVEL] = kind;
        Self(bytes)
    }

    /// The label of `level` if it fits in place.
    #[inline]
    fn inline(level: &str) -> Option<Self> {
        let len = level.len();
        if len > INLINE_LEVEL {
            return None;
        }
        let mut bytes = [0; LABEL_BYTES];
        // A loop rather than `copy_from_slice`, which calls `memcpy` for a variable length.
        for (to, &from) in bytes.iter_mut().zip(level.as_bytes()) {
            *to = from;
        }
        bytes[INLINE_LEVEL] = len as u8;
        Some(Self(bytes))
    }

    fn long(id: u32) -> Self {
        let mut label = Self::marker(LONG);
        label.0[..4].copy_from_slice(&id.to_le_bytes());
        label
    }

    fn kind(self) -> u8 {
        self.0[INLINE_LEVEL]
    }

    /// The interned id of a long level.
    #[inline]
    fn long_id(self) -> Option<u32> {
        (self.kind() == LONG)
            .then(|| u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]))
    }

    /// The level of an exact node.
    fn text<'a>(&'a self, labels: &'a Labels) -> &'a str {
        match self.long_id() {
            Some(id) => labels.text(id),
            None => {
                let len = usize::from(self.kind());
                std::str::from_utf8(&self.0[..len]).expect("a label holds a whole level")
            }
        }
    }

    /// Whether a node labelled `self` is the child for the topic level `level`, whose inline
    /// label (if it fits) is `key`.
    #[inline]
    fn is(self, key: Option<Self>, level: &str, labels: &Labels) -> bool {
        match key {
            Some(key) => self == key,
            None => self.long_id().is_some_and(|id| labels.text(id) == level),
        }
    }
}

/// One level of a topic name being looked up: its hash and its inline label.
#[derive(Clone, Copy)]
struct Level {
    hash: u64,
    key: Option<Label>,
}

/// Aligned to its size, so that no node straddles two cache lines (a large allocation from
/// the system allocator is only 16-byte aligned).
#[derive(Clone, Copy)]
#[repr(align(32))]
struct Node {
    /// The parent node, or the next free slot in a free node.
    parent: u32,
    /// The `+` child.
    plus: u32,
    /// Number of children, and [`HAS_GROUPS`].
    meta: u32,
    /// First plain subscription whose filter ends here.
    subs: u32,
    /// First plain subscription whose filter is this node's path followed by `/#`.
    multi_subs: u32,
    /// An exact child, or [`NIL`]: with a single exact child (the usual case below a device
    /// id) a lookup follows it without probing `edges`.
    child: u32,
    /// The level: in place, interned, or a [`PLUS`], [`FREE`] or [`ROOT_LABEL`] marker.
    label: Label,
}

// Two nodes to a cache line.
const _: () = assert!(size_of::<Node>() == 32);

impl Node {
    fn new(parent: u32, label: Label) -> Self {
        Self {
            parent,
            plus: NIL,
            meta: 0,
            subs: NIL,
            multi_subs: NIL,
            child: NIL,
            label,
        }
    }
}

struct Entry<K, V> {
    key: K,
    value: V,
    /// The node (with [`MULTI`]) or the group (with [`SHARED`]) the subscription belongs to.
    owner: u32,
    /// Neighbours on the node's list (unused for shared members).
    prev: u32,
    next: u32,
    /// Neighbours on the subscriber's list.
    key_prev: u32,
    key_next: u32,
}

struct Group {
    share_name: Box<str>,
    filter: TopicFilter,
    node: u32,
    /// The filter ends with `#` (and `node` is the parent of that `#`).
    multi: bool,
    /// The next group of the same node.
    next: u32,
    /// The member entries, in subscription order.
    members: Vec<u32>,
}

/// A subscription reached by a topic name, reported by
/// [`SubscriptionTree::for_each_match`].
pub enum Match<'a, K, V> {
    /// A non-shared subscription: deliver to `key` with the options in `value`.
    ///
    /// A subscriber with several overlapping filters is reported once per matching filter, so
    /// that the caller can take the highest QoS and collect every subscription identifier.
    Subscription {
        /// The subscriber.
        key: &'a K,
        /// The data of this subscription.
        value: &'a V,
    },
    /// A shared subscription group whose filter matches: deliver to one member of the group.
    Shared(SharedGroup<'a, K, V>),
}

impl<K, V> Clone for Match<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Match<'_, K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Match<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subscription { key, value } => f
                .debug_struct("Subscription")
                .field("key", key)
                .field("value", value)
                .finish(),
            Self::Shared(group) => f.debug_tuple("Shared").field(group).finish(),
        }
    }
}

/// A shared subscription group (`$share/{ShareName}/{filter}`) and its members; the caller
/// picks the member that gets the message (round robin, least loaded...).
pub struct SharedGroup<'a, K, V> {
    entries: &'a [Entry<K, V>],
    group: &'a Group,
}

impl<K, V> Clone for SharedGroup<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for SharedGroup<'_, K, V> {}

impl<'a, K, V> SharedGroup<'a, K, V> {
    /// The ShareName of the group.
    #[must_use]
    pub fn share_name(&self) -> &'a str {
        &self.group.share_name
    }

    /// The topic filter of the group (without the `$share/{ShareName}/` prefix).
    #[must_use]
    pub fn filter(&self) -> &'a TopicFilter {
        &self.group.filter
    }

    /// Number of members; a group in the tree always has at least one.
    #[must_use]
    pub fn len(&self) -> usize {
        self.group.members.len()
    }

    /// Whether the group has no member (never true for a group reported by a lookup).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.group.members.is_empty()
    }

    /// The member at `index`, in the order the members subscribed.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<(&'a K, &'a V)> {
        let entries = self.entries;
        self.group.members.get(index).map(|&e| {
            let entry = &entries[e as usize];
            (&entry.key, &entry.value)
        })
    }

    /// The members and their subscription data, in the order they subscribed.
    pub fn members(&self) -> impl ExactSizeIterator<Item = (&'a K, &'a V)> + 'a {
        let entries = self.entries;
        self.group.members.iter().map(move |&e| {
            let entry = &entries[e as usize];
            (&entry.key, &entry.value)
        })
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SharedGroup<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedGroup")
            .field("share_name", &self.share_name())
            .field("filter", self.filter())
            .field("members", &self.members().collect::<Vec<_>>())
            .finish()
    }
}

/// A subscription trie: filters of subscribers `K`, each with its data `V` (QoS, options,
/// subscription identifier...), matched against topic names.
///
/// A subscriber has at most one subscription per filter (and one per shared group): inserting
/// it again replaces the data. Shared subscriptions are kept as groups, reported whole by
/// lookups so that the caller chooses the member.
///
/// ```
/// use tern_topic::{Match, SubscriptionFilter, SubscriptionTree};
///
/// let mut tree = SubscriptionTree::new();
/// let filter = |s: &str| s.parse::<SubscriptionFilter>().unwrap();
/// tree.insert(&filter("site/+/device/7/telemetry"), 1_u64, 1_u8);
/// tree.insert(&filter("site/#"), 1, 0);
/// tree.insert(&filter("$share/loggers/site/#"), 2, 0);
/// tree.insert(&filter("$share/loggers/site/#"), 3, 0);
///
/// let mut qos = None;
/// let mut groups = Vec::new();
/// tree.for_each_match("site/north/device/7/telemetry", |m| match m {
///     Match::Subscription { key: 1, value } => qos = qos.max(Some(*value)),
///     Match::Subscription { .. } => unreachable!(),
///     Match::Shared(group) => groups.push((group.share_name(), group.len())),
/// });
/// assert_eq!(qos, Some(1)); // the highest QoS of the overlapping subscriptions of 1
/// assert_eq!(groups, [("loggers", 2)]);
///
/// assert_eq!(tree.remove_subscriber(&1), 2);
/// assert_eq!(tree.len(), 2);
/// ```
///
/// # Panics
///
/// Insertions panic past 2^30 trie nodes or shared groups, far beyond what fits in memory
/// at 32 bytes a node.
pub struct SubscriptionTree<K, V> {
    hashers: Hashers,
    labels: Labels,
    nodes: Vec<Node>,
    free_node: u32,
    live_nodes: usize,
    edges: Edges,
    entries: Vec<Entry<K, V>>,
    pairs: HashTable<u32>,
    keys: HashTable<u32>,
    groups: Vec<Option<Group>>,
    free_groups: Vec<u32>,
    group_heads: HashMap<u32, u32, foldhash::fast::RandomState>,
}

impl<K: Hash + Eq, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for SubscriptionTree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTree")
            .field("subscriptions", &self.entries.len())
            .field("nodes", &self.live_nodes)
            .field("levels", &self.labels.len())
            .finish_non_exhaustive()
    }
}

fn pair_hash<K: Hash>(hashers: &Hashers, owner: u32, key: &K) -> u64 {
    hashers.hash(&(owner, key))
}

/// The key of an exact node in `edges`.
fn edge_hash(hashers: &Hashers, labels: &Labels, node: &Node) -> u64 {
    hashers.edge(node.parent, hashers.level(node.label.text(labels)))
}

impl<K: Hash + Eq, V> SubscriptionTree<K, V> {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self {
            hashers: Hashers::new(),
            labels: Labels::new(),
            nodes: vec![Node::new(NIL, Label::marker(ROOT_LABEL))],
            free_node: NIL,
            live_nodes: 0,
            edges: Edges::new(),
            entries: Vec::new(),
            pairs: HashTable::new(),
            keys: HashTable::new(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            group_heads: HashMap::default(),
        }
    }

    /// Number of subscriptions (plain ones and shared group memberships).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree holds no subscription (and then no node either).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of trie nodes below the root: 0 for an empty tree, which is what every sequence
    /// of insertions and removals that leaves no subscription comes back to.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.live_nodes
    }

    /// Number of distinct level strings the tree interns (0 when empty): those longer than 7
    /// bytes, shorter ones being held in their nodes.
    #[must_use]
    pub fn level_count(&self) -> usize {
        self.labels.len()
    }

    /// Number of shared subscription groups.
    #[must_use]
    pub fn group_count(&self) -> usize {
        self.groups.len() - self.free_groups.len()
    }

    /// Subscribes `key` to `filter` with `value`, returning the data it replaces if `key`
    /// already had this subscription (the same filter, or the same filter and ShareName).
    pub fn insert(&mut self, filter: &SubscriptionFilter, key: K, value: V) -> Option<V> {
        let (node, multi) = self.make_path(filter.topic_filter());
        let owner = match filter {
            SubscriptionFilter::Plain(_) => node | if multi { MULTI } else { 0 },
            SubscriptionFilter::Shared(shared) => {
                let group = match self.find_group(node, multi, shared.share_name()) {
                    Some(group) => group,
                    None => self.add_group(node, multi, shared.share_name(), shared.filter()),
                };
                group | SHARED
            }
        };
        if let Some(e) = self.find_entry(owner, &key) {
            return Some(std::mem::replace(
                &mut self.entries[e as usize].value,
                value,
            ));
        }
        self.push_entry(owner, key, value);
        None
    }

    /// The data of `key`'s subscription to `filter`.
    #[must_use]
    pub fn get(&self, filter: &SubscriptionFilter, key: &K) -> Option<&V> {
        let owner = self.find_owner(filter)?;
        let e = self.find_entry(owner, key)?;
        Some(&self.entries[e as usize].value)
    }

    /// The data of `key`'s subscription to `filter`, mutable.
    #[must_use]
    pub fn get_mut(&mut self, filter: &SubscriptionFilter, key: &K) -> Option<&mut V> {
        let owner = self.find_owner(filter)?;
        let e = self.find_entry(owner, key)?;
        Some(&mut self.entries[e as usize].value)
    }

    /// Unsubscribes `key` from `filter`, returning the subscription's data. Nodes, levels and
    /// groups nothing uses any more are freed.
    pub fn remove(&mut self, filter: &SubscriptionFilter, key: &K) -> Option<V> {
        let owner = self.find_owner(filter)?;
        let e = self.find_entry(owner, key)?;
        Some(self.remove_entry(e))
    }

    /// Removes every subscription of `key` (plain and shared), returning how many there were.
    pub fn remove_subscriber(&mut self, key: &K) -> usize {
        let hash = self.hashers.hash(key);
        let mut removed = 0;
        loop {
            let entries = &self.entries;
            let Some(&e) = self.keys.find(hash, |&x| entries[x as usize].key == *key) else {
                return removed;
            };
            self.remove_entry(e);
            removed += 1;
        }
    }

    /// Reports every subscription whose filter matches the topic name `topic`: each plain
    /// subscription once per matching filter, and each matching shared group once.
    ///
    /// Filters starting with a wildcard do not match names starting with `$`
    /// [MQTT-4.7.2-1]; `a/#` matches `a`. The order of the reports is unspecified. The lookup
    /// does not allocate unless more than 32 nodes of the tree match at one level of the topic.
    ///
    /// `topic` should be a valid topic name; any other string is read level by level like
    /// [`matches`](crate::matches) does, a `+` or `#` in it being an ordinary character.
    pub fn for_each_match<'a, F>(&'a self, topic: &str, mut visit: F)
    where
        F: FnMut(Match<'a, K, V>),
    {
        if self.entries.is_empty() {
            return;
        }
        let dollar = topic.starts_with('$');
        // The levels are taken one at a time as the walk goes down (a topic's levels are
        // never gathered into an array first), and a level is hashed only when a node of the
        // frontier has exact children to look it up among.
        let mut rest = Some(topic);
        // Breadth first, one level of the topic at a time: the nodes of a level are
        // independent, so the processor overlaps their cache misses (a wildcard branch and an
        // exact branch of the same topic each walk cold nodes).
        let mut frontiers = [Inline::new(0_u32), Inline::new(0_u32)];
        let [current, next] = &mut frontiers;
        let (mut current, mut next) = (current, next);
        current.push(ROOT);
        loop {
            // A plain byte loop: levels are short, and `split_once`'s searcher costs more
            // than the scan.
            let text = rest.map(|r| match r.bytes().position(|b| b == b'/') {
                Some(i) => {
                    rest = Some(&r[i + 1..]);
                    &r[..i]
                }
                None => {
                    rest = None;
                    r
                }
            });
            let done = text.is_none();
            let mut level = None;
            for i in 0..current.len {
                let id = current.get(i);
                let node = self.nodes[id as usize];
                // [MQTT-4.7.2-1]: at the root, `#` and `+` do not match a `$` first level.
                let wildcards = !(dollar && id == ROOT);
                if wildcards {
                    self.visit_list(node.multi_subs, &mut visit);
                }
                if done {
                    self.visit_list(node.subs, &mut visit);
                }
                if node.meta & HAS_GROUPS != 0 {
                    self.visit_groups(id, done, wildcards, &mut visit);
                }
                let Some(text) = text else { continue };
                if node.plus != NIL && wildcards {
                    next.push(node.plus);
                }
                let exact_children = (node.meta & CHILDREN) - u32::from(node.plus != NIL);
                if exact_children > 0 {
                    let level: &Level = level.get_or_insert_with(|| Level {
                        hash: self.hashers.level(text),
                        key: Label::inline(text),
                    });
                    let child = if node.child == NIL {
                        self.child(id, text, level.hash, level.key)
                    } else if self.nodes[node.child as usize].label.is(
                        level.key,
                        text,
                        &self.labels,
                    ) {
                        Some(node.child)
                    } else if exact_children > 1 {
                        self.child(id, text, level.hash, level.key)
                    } else {
                        None
                    };
                    if let Some(child) = child {
                        next.push(child);
                    }
                }
            }
            if done || next.len == 0 {
                return;
            }
            std::mem::swap(&mut current, &mut next);
            next.clear();
        }
    }

    /// Appends to `out` every subscription matching `topic` (see
    /// [`for_each_match`](Self::for_each_match)); reuse `out` to avoid allocating.
    pub fn matches_into<'a>(&'a self, topic: &str, out: &mut Vec<Match<'a, K, V>>) {
        self.for_each_match(topic, |m| out.push(m));
    }

    /// Every subscription matching `topic` (see [`for_each_match`](Self::for_each_match)).
    #[must_use]
    pub fn matches(&self, topic: &str) -> Vec<Match<'_, K, V>> {
        let mut out = Vec::new();
        self.matches_into(topic, &mut out);
        out
    }

    /// Releases spare capacity of the arenas and tables.
    pub fn shrink_to_fit(&mut self) {
        let Self {
            hashers,
            nodes,
            entries,
            ..
        } = self;
        let labels = &self.labels;
        self.edges
            .shrink_to_fit(|c| edge_hash(hashers, labels, &nodes[c as usize]));
        self.pairs.shrink_to_fit(|&e| {
            let entry = &entries[e as usize];
            pair_hash(hashers, entry.owner, &entry.key)
        });
        self.keys
            .shrink_to_fit(|&e| hashers.hash(&entries[e as usize].key));
        self.entries.shrink_to_fit();
        self.nodes.shrink_to_fit();
    }

    // ---- lookups -------------------------------------------------------------------------

    /// The exact child of `parent` for `level`, of hash `hash` and inline label `key`.
    #[inline]
    fn child(&self, parent: u32, level: &str, hash: u64, key: Option<Label>) -> Option<u32> {
        let nodes = &self.nodes;
        let labels = &self.labels;
        self.edges.find(self.hashers.edge(parent, hash), |c| {
            let node = &nodes[c as usize];
            node.parent == parent && node.label.is(key, level, labels)
        })
    }

    /// [`child`](Self::child) for a level of a filter.
    fn child_of(&self, parent: u32, level: &str) -> Option<u32> {
        self.child(
            parent,
            level,
            self.hashers.level(level),
            Label::inline(level),
        )
    }

    fn visit_list<'a, F: FnMut(Match<'a, K, V>)>(&'a self, mut e: u32, visit: &mut F) {
        while e != NIL {
            let entry = &self.entries[e as usize];
            visit(Match::Subscription {
                key: &entry.key,
                value: &entry.value,
            });
            e = entry.next;
        }
    }

    fn visit_groups<'a, F: FnMut(Match<'a, K, V>)>(
        &'a self,
        node: u32,
        done: bool,
        wildcards: bool,
        visit: &mut F,
    ) {
        let mut g = self.group_heads.get(&node).copied().unwrap_or(NIL);
        while g != NIL {
            let group = self.group(g);
            if (group.multi && wildcards) || (!group.multi && done) {
                visit(Match::Shared(SharedGroup {
                    entries: &self.entries,
                    group,
                }));
            }
            g = group.next;
        }
    }

    fn group(&self, g: u32) -> &Group {
        self.groups[g as usize].as_ref().expect("live group")
    }

    fn group_mut(&mut self, g: u32) -> &mut Group {
        self.groups[g as usize].as_mut().expect("live group")
    }

    /// The node a filter ends at, and whether its last level is `#`, without creating nodes.
    fn find_path(&self, filter: &str) -> Option<(u32, bool)> {
        let mut node = ROOT;
        for level in filter.split('/') {
            match level {
                "#" => return Some((node, true)),
                "+" => node = self.nodes[node as usize].plus,
                _ => node = self.child_of(node, level)?,
            }
            if node == NIL {
                return None;
            }
        }
        Some((node, false))
    }

    fn find_owner(&self, filter: &SubscriptionFilter) -> Option<u32> {
        let (node, multi) = self.find_path(filter.topic_filter())?;
        match filter {
            SubscriptionFilter::Plain(_) => Some(node | if multi { MULTI } else { 0 }),
            SubscriptionFilter::Shared(shared) => {
                Some(self.find_group(node, multi, shared.share_name())? | SHARED)
            }
        }
    }

    fn find_group(&self, node: u32, multi: bool, share_name: &str) -> Option<u32> {
        if self.nodes[node as usize].meta & HAS_GROUPS == 0 {
            return None;
        }
        let mut g = self.group_heads.get(&node).copied().unwrap_or(NIL);
        while g != NIL {
            let group = self.group(g);
            if group.multi == multi && *group.share_name == *share_name {
                return Some(g);
            }
            g = group.next;
        }
        None
    }

    fn find_entry(&self, owner: u32, key: &K) -> Option<u32> {
        let entries = &self.entries;
        self.pairs
            .find(pair_hash(&self.hashers, owner, key), |&e| {
                let entry = &entries[e as usize];
                entry.owner == owner && entry.key == *key
            })
            .copied()
    }

    // ---- insertion -----------------------------------------------------------------------

    /// The node a filter ends at, created as needed, and whether its last level is `#`.
    fn make_path(&mut self, filter: &str) -> (u32, bool) {
        let mut node = ROOT;
        for level in filter.split('/') {
            match level {
                "#" => return (node, true),
                "+" => {
                    let plus = self.nodes[node as usize].plus;
                    node = if plus == NIL {
                        let child = self.alloc_node(node, Label::marker(PLUS));
                        self.nodes[node as usize].plus = child;
                        child
                    } else {
                        plus
                    };
                }
                _ => {
                    let hash = self.hashers.level(level);
                    let key = Label::inline(level);
                    node = match self.child(node, level, hash, key) {
                        Some(child) => child,
                        None => {
                            let label = match key {
                                Some(label) => label,
                                None => Label::long(self.labels.acquire(&self.hashers, level)),
                            };
                            let child = self.alloc_node(node, label);
                            if self.nodes[node as usize].child == NIL {
                                self.nodes[node as usize].child = child;
                            }
                            let Self {
                                hashers,
                                labels,
                                nodes,
                                edges,
                                ..
                            } = self;
                            edges.insert(hashers.edge(node, hash), child, |c| {
                                edge_hash(hashers, labels, &nodes[c as usize])
                            });
                            child
                        }
                    };
                }
            }
        }
        (node, false)
    }

    fn alloc_node(&mut self, parent: u32, label: Label) -> u32 {
        self.nodes[parent as usize].meta += 1;
        self.live_nodes += 1;
        let node = Node::new(parent, label);
        if self.free_node != NIL {
            let id = self.free_node;
            self.free_node = self.nodes[id as usize].parent;
            self.nodes[id as usize] = node;
            id
        } else {
            let id = self.nodes.len();
            assert!(id < INDEX as usize, "subscription tree: too many nodes");
            self.nodes.push(node);
            id as u32
        }
    }

    fn add_group(&mut self, node: u32, multi: bool, share_name: &str, filter: &TopicFilter) -> u32 {
        let next = self.group_heads.get(&node).copied().unwrap_or(NIL);
        let group = Group {
            share_name: share_name.into(),
            filter: filter.clone(),
            node,
            multi,
            next,
            members: Vec::new(),
        };
        let g = match self.free_groups.pop() {
            Some(g) => {
                self.groups[g as usize] = Some(group);
                g
            }
            None => {
                let g = self.groups.len();
                assert!(
                    g < INDEX as usize,
                    "subscription tree: too many shared groups"
                );
                self.groups.push(Some(group));
                g as u32
            }
        };
        self.group_heads.insert(node, g);
        self.nodes[node as usize].meta |= HAS_GROUPS;
        g
    }

    fn push_entry(&mut self, owner: u32, key: K, value: V) {
        let e = u32::try_from(self.entries.len()).expect("subscription tree: too many entries");
        assert!(e < NIL, "subscription tree: too many entries");
        let key_hash = self.hashers.hash(&key);
        let pair = pair_hash(&self.hashers, owner, &key);
        let entries = &self.entries;
        let key_head = self
            .keys
            .find(key_hash, |&x| entries[x as usize].key == key)
            .copied()
            .unwrap_or(NIL);
        let list_head = self.list_head(owner);
        self.entries.push(Entry {
            key,
            value,
            owner,
            prev: NIL,
            next: list_head,
            key_prev: NIL,
            key_next: key_head,
        });
        if owner & SHARED != 0 {
            self.group_mut(owner & INDEX).members.push(e);
        } else {
            if list_head != NIL {
                self.entries[list_head as usize].prev = e;
            }
            self.set_list_head(owner, e);
        }
        let Self {
            hashers,
            entries,
            keys,
            pairs,
            ..
        } = self;
        if key_head == NIL {
            keys.insert_unique(key_hash, e, |&x| hashers.hash(&entries[x as usize].key));
        } else {
            entries[key_head as usize].key_prev = e;
            *keys
                .find_mut(key_hash, |&x| x == key_head)
                .expect("key head") = e;
        }
        pairs.insert_unique(pair, e, |&x| {
            let entry = &entries[x as usize];
            pair_hash(hashers, entry.owner, &entry.key)
        });
    }

    /// The head of the node list of a plain owner (NIL for a shared one).
    fn list_head(&self, owner: u32) -> u32 {
        if owner & SHARED != 0 {
            return NIL;
        }
        let node = &self.nodes[(owner & INDEX) as usize];
        if owner & MULTI != 0 {
            node.multi_subs
        } else {
            node.subs
        }
    }

    fn set_list_head(&mut self, owner: u32, e: u32) {
        let node = &mut self.nodes[(owner & INDEX) as usize];
        if owner & MULTI != 0 {
            node.multi_subs = e;
        } else {
            node.subs = e;
        }
    }

    // ---- removal -------------------------------------------------------------------------

    fn remove_entry(&mut self, e: u32) -> V {
        let entry = &self.entries[e as usize];
        let (owner, prev, next, key_prev, key_next) = (
            entry.owner,
            entry.prev,
            entry.next,
            entry.key_prev,
            entry.key_next,
        );
        let key_hash = self.hashers.hash(&entry.key);
        let pair = pair_hash(&self.hashers, owner, &entry.key);

        if let Ok(slot) = self.pairs.find_entry(pair, |&x| x == e) {
            slot.remove();
        }
        if key_prev == NIL {
            if key_next == NIL {
                if let Ok(slot) = self.keys.find_entry(key_hash, |&x| x == e) {
                    slot.remove();
                }
            } else {
                *self.keys.find_mut(key_hash, |&x| x == e).expect("key head") = key_next;
                self.entries[key_next as usize].key_prev = NIL;
            }
        } else {
            self.entries[key_prev as usize].key_next = key_next;
            if key_next != NIL {
                self.entries[key_next as usize].key_prev = key_prev;
            }
        }
        if owner & SHARED != 0 {
            let members = &mut self.group_mut(owner & INDEX).members;
            if let Some(at) = members.iter().position(|&x| x == e) {
                members.remove(at);
            }
        } else {
            if prev == NIL {
                self.set_list_head(owner, next);
            } else {
                self.entries[prev as usize].next = next;
            }
            if next != NIL {
                self.entries[next as usize].prev = prev;
            }
        }

        let last = (self.entries.len() - 1) as u32;
        let removed = self.entries.swap_remove(e as usize);
        if e != last {
            self.relocate(last, e);
        }

        let node = if owner & SHARED != 0 {
            let g = owner & INDEX;
            if !self.group(g).members.is_empty() {
                return removed.value;
            }
            self.remove_group(g)
        } else {
            owner & INDEX
        };
        self.prune(node);
        removed.value
    }

    /// Points every reference to the entry that was at `from` to `to`.
    fn relocate(&mut self, from: u32, to: u32) {
        let entry = &self.entries[to as usize];
        let (owner, prev, next, key_prev, key_next) = (
            entry.owner,
            entry.prev,
            entry.next,
            entry.key_prev,
            entry.key_next,
        );
        let pair = pair_hash(&self.hashers, owner, &entry.key);
        *self.pairs.find_mut(pair, |&x| x == from).expect("pair") = to;
        if key_prev == NIL {
            let key_hash = self.hashers.hash(&entry.key);
            *self
                .keys
                .find_mut(key_hash, |&x| x == from)
                .expect("key head") = to;
        } else {
            self.entries[key_prev as usize].key_next = to;
        }
        if key_next != NIL {
            self.entries[key_next as usize].key_prev = to;
        }
        if owner & SHARED != 0 {
            let members = &mut self.group_mut(owner & INDEX).members;
            if let Some(slot) = members.iter_mut().find(|x| **x == from) {
                *slot = to;
            }
        } else {
            if prev == NIL {
                self.set_list_head(owner, to);
            } else {
                self.entries[prev as usize].next = to;
            }
            if next != NIL {
                self.entries[next as usize].prev = to;
            }
        }
    }

    /// Unlinks an empty group from its node and frees it; returns the node.
    fn remove_group(&mut self, g: u32) -> u32 {
        let group = self.groups[g as usize].take().expect("live group");
        let node = group.node;
        let head = self.group_heads.get(&node).copied().unwrap_or(NIL);
        if head == g {
            if group.next == NIL {
                self.group_heads.remove(&node);
                self.nodes[node as usize].meta &= !HAS_GROUPS;
            } else {
                self.group_heads.insert(node, group.next);
            }
        } else {
            let mut at = head;
            while at != NIL {
                let before = self.group_mut(at);
                if before.next == g {
                    before.next = group.next;
                    break;
                }
                at = before.next;
            }
        }
        self.free_groups.push(g);
        if self.free_groups.len() == self.groups.len() {
            self.groups = Vec::new();
            self.free_groups = Vec::new();
            self.group_heads = HashMap::default();
        }
        node
    }

    /// Frees `node` and its ancestors as long as they hold nothing.
    fn prune(&mut self, mut node: u32) {
        while node != ROOT {
            let n = self.nodes[node as usize];
            if n.meta != 0 || n.subs != NIL || n.multi_subs != NIL {
                break;
            }
            let parent = n.parent;
            if n.label.kind() == PLUS {
                self.nodes[parent as usize].plus = NIL;
            } else {
                let Self {
                    hashers,
                    labels,
                    nodes,
                    edges,
                    ..
                } = self;
                edges.remove(edge_hash(hashers, labels, &n), node, |c| {
                    edge_hash(hashers, labels, &nodes[c as usize])
                });
                if let Some(id) = n.label.long_id() {
                    self.labels.release(&self.hashers, id);
                }
                if self.nodes[parent as usize].child == node {
                    self.nodes[parent as usize].child = NIL;
                }
            }
            self.nodes[parent as usize].meta -= 1;
            self.nodes[node as usize] = Node {
                parent: self.free_node,
                ..Node::new(NIL, Label::marker(FREE))
            };
            self.free_node = node;
            self.live_nodes -= 1;
            node = parent;
        }
        if self.live_nodes == 0 {
            self.nodes.truncate(1);
            self.free_node = NIL;
            self.edges = Edges::new();
        }
        if self.entries.is_empty() {
            self.entries = Vec::new();
            self.pairs = HashTable::new();
            self.keys = HashTable::new();
        }
    }
}

/// A vector held inline up to [`INLINE`] items, spilling to the heap past that: the nodes
/// a lookup reached at one level, so that it allocates nothing for usual topics.
struct Inline<T> {
    inline: [T; INLINE],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy> Inline<T> {
    fn new(fill: T) -> Self {
        Self {
            inline: [fill; INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, item: T) {
        if self.len < INLINE {
            self.inline[self.len] = item;
        } else {
            self.spill.push(item);
        }
        self.len += 1;
    }

    #[inline]
    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
    }

    #[inline]
    fn get(&self, index: usize) -> T {
        if index < INLINE {
            self.inline[index]
        } else {
            self.spill[index - INLINE]
        }
    }
}
