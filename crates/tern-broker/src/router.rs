//! The router: every subscription of every session in one [`SubscriptionTree`], behind a
//! read-write lock. A publish takes the read lock only to collect the matching sessions into a
//! reused `Vec`, releases it, then pushes one delivery per session into the mailboxes.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::RwLock;
use tern_codec::{QoS, SubscriptionOptions};
use tern_proto::{DeliveryOptions, Message};
use tern_topic::{Match, SubscriptionFilter, SubscriptionTree};

use crate::session::{Delivery, MailboxTally, Pushed, SessionHandle};

/// One subscription, as the tree holds it.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) session: Arc<SessionHandle>,
    pub(crate) options: SubscriptionOptions,
    pub(crate) identifier: Option<NonZeroU32>,
}

#[derive(Debug, Default)]
struct Tables {
    tree: SubscriptionTree<u64, Subscription>,
    /// Round-robin cursors of the shared groups: ShareName → filter → next member.
    cursors: HashMap<Box<str>, HashMap<Box<str>, AtomicUsize>>,
}

/// A session reached by a publish, before overlapping subscriptions are merged.
#[derive(Debug)]
struct Target {
    key: u64,
    shared: bool,
    session: Arc<SessionHandle>,
    qos: QoS,
    identifier: Option<NonZeroU32>,
    no_local: bool,
    retain_as_published: bool,
}

/// What routing one message did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Routed {
    /// Sessions that took the message (including congested ones).
    pub(crate) taken: usize,
    /// Sessions that refused it: a QoS 0 delivery to a full mailbox, or a full offline queue.
    pub(crate) refused: usize,
    /// Durable copies made (logged deliveries to persistent sessions, the retained message):
    /// the publisher's acknowledgement waits until they are committed.
    pub(crate) persisted: usize,
}

/// The subscription tree and the shared-group cursors.
#[derive(Debug, Default)]
pub(crate) struct Router {
    tables: RwLock<Tables>,
}

impl Router {
    /// Adds or replaces the subscription of `session` to `filter`; returns whether it existed.
    pub(crate) fn subscribe(
        &self,
        filter: &SubscriptionFilter,
        subscription: Subscription,
    ) -> bool {
        let mut tables = self.tables.write();
        if let SubscriptionFilter::Shared(shared) = filter {
            tables
                .cursors
                .entry(shared.share_name().into())
                .or_default()
                .entry(shared.filter().as_str().into())
                .or_default();
        }
        tables
            .tree
            .insert(filter, subscription.session.key, subscription)
            .is_some()
    }

    /// Removes the subscription of session `key` to `filter`; returns whether it existed.
    pub(crate) fn unsubscribe(&self, filter: &SubscriptionFilter, key: u64) -> bool {
        self.tables.write().tree.remove(filter, &key).is_some()
    }

    /// Removes every subscription of session `key`.
    pub(crate) fn remove_session(&self, key: u64) {
        self.tables.write().tree.remove_subscriber(&key);
    }

    /// Number of subscriptions.
    pub(crate) fn len(&self) -> usize {
        self.tables.read().tree.len()
    }

    /// Delivers `message` to every session whose subscriptions match its topic: once per
    /// session for its overlapping plain subscriptions, at the highest of their QoS with every
    /// subscription identifier [MQTT-3.3.4-2], [MQTT-3.3.4-4]; once per matching shared group
    /// to one member, round robin (MQTT 5.0 section 4.8.2).
    /// The sessions whose mailbox took the message beyond its limits are appended to
    /// `congested` (`None`: the caller cannot wait, see [`SessionHandle::push`]). A
    /// subscription for which `readable` is false does not receive it.
    pub(crate) fn route(
        &self,
        message: &Arc<Message>,
        now: Instant,
        congested: Option<&mut Vec<Arc<SessionHandle>>>,
        readable: &dyn Fn(&Subscription) -> bool,
    ) -> Routed {
        thread_local! {
            /// The targets of one message, reused by every route of the thread (taken, not
            /// borrowed: a route within a route would find it empty, not panic).
            static TARGETS: Cell<Vec<Target>> = const { Cell::new(Vec::new()) };
        }
        let mut scratch = TARGETS.take();
        let routed = self.route_with(message, now, &mut scratch, congested, readable);
        // The targets' sessions are let go now, not at the next route.
        scratch.clear();
        if scratch.capacity() <= 4096 {
            // One very large fan-out does not keep its room.
            TARGETS.set(scratch);
        }
        routed
    }

    fn route_with(
        &self,
        message: &Arc<Message>,
        now: Instant,
        scratch: &mut Vec<Target>,
        mut congested: Option<&mut Vec<Arc<SessionHandle>>>,
        readable: &dyn Fn(&Subscription) -> bool,
    ) -> Routed {
        {
            let tables = self.tables.read();
            let topic = message.publish.topic.as_str();
            tables.tree.for_each_match(topic, |m| match m {
                Match::Subscription { value, .. } => {
                    if readable(value) {
                        scratch.push(Target::new(value, false));
                    }
                }
                Match::Shared(group) => {
                    let cursor = tables
                        .cursors
                        .get(group.share_name())
                        .and_then(|filters| filters.get(group.filter().as_str()));
                    let turn = cursor.map_or(0, |c| c.fetch_add(1, Ordering::Relaxed));
                    if let Some((_, value)) = group.get(turn % group.len().max(1))
                        && readable(value)
                    {
                        scratch.push(Target::new(value, true));
                    }
                }
            });
        }
        // Overlapping plain subscriptions of one session are merged below, which needs them
        // side by side; sorting a fan-out's targets cost more than the rest of routing, and
        // most messages have none to merge.
        if scratch.len() > 1 {
            if has_overlap(scratch) {
                scratch.sort_by_key(|t| (t.key, t.shared));
            }
            // More than one delivery: each sends the bytes encoded once.
            message.share_encoding();
        }
        let mut routed = Routed::default();
        let mut tally = MailboxTally::default();
        let mut i = 0;
        while i < scratch.len() {
            let first = &scratch[i];
            let mut j = i + 1;
            let mut qos = first.qos;
            let mut no_local = first.no_local;
            let mut retain_as_published = first.retain_as_published;
            let mut ids: Vec<NonZeroU32> = first.identifier.into_iter().collect();
            // Overlapping plain subscriptions of one session merge into one delivery; each
            // shared group stays a delivery of its own.
            if !first.shared {
                while j < scratch.len() && scratch[j].key == first.key && !scratch[j].shared {
                    let t = &scratch[j];
                    qos = qos.max(t.qos);
                    no_local &= t.no_local;
                    retain_as_published |= t.retain_as_published;
                    ids.extend(t.identifier);
                    j += 1;
                }
            }
            let (pushed, logged) = first.session.push_counted(
                Delivery {
                    message: message.clone(),
                    qos,
                    subscription_ids: ids,
                    options: DeliveryOptions {
                        no_local,
                        retain_as_published,
                        retained_replay: false,
                    },
                    seq: None,
                },
                now,
                congested.is_some(),
                &mut tally,
            );
            routed.persisted += usize::from(logged);
            match pushed {
                Pushed::Taken => routed.taken += 1,
                Pushed::Congested => {
                    routed.taken += 1;
                    if let Some(congested) = congested.as_deref_mut() {
                        congested.push(first.session.clone());
                    }
                }
                Pushed::Refused => routed.refused += 1,
                Pushed::Gone => {}
            }
            i = j;
        }
        // The mailbox gauges, once for the whole fan-out.
        if let Some(t) = scratch.first() {
            t.session.count_pushed(&tally);
        }
        routed
    }
}

/// Whether a session has more than one plain subscription among `targets`.
fn has_overlap(targets: &[Target]) -> bool {
    thread_local! {
        /// Reused by every route of the thread, so that checking allocates nothing.
        static SEEN: std::cell::RefCell<HashSet<u64, foldhash::fast::FixedState>> =
            std::cell::RefCell::new(HashSet::with_hasher(foldhash::fast::FixedState::default()));
    }
    SEEN.with_borrow_mut(|seen| {
        seen.clear();
        let overlap = targets
            .iter()
            .filter(|t| !t.shared)
            .any(|t| !seen.insert(t.key));
        if seen.capacity() > 4096 {
            // One very large fan-out does not keep its room.
            *seen = HashSet::default();
        }
        overlap
    })
}

impl Target {
    fn new(subscription: &Subscription, shared: bool) -> Self {
        Target {
            key: subscription.session.key,
            shared,
            session: subscription.session.clone(),
            qos: subscription.options.qos,
            identifier: subscription.identifier,
            no_local: subscription.options.no_local,
            retain_as_published: subscription.options.retain_as_published,
        }
    }
}
