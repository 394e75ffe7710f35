//! The session registry and the per-session mailboxes.
//!
//! A session is one [`SessionHandle`], shared by the registry (client identifier → handle) and
//! by every subscription of the session in the router. The handle outlives connections: while
//! the client is connected, a connection task owns the [`ServerSession`] and the handle is its
//! mailbox; while the client is away, the handle holds the closed `ServerSession` itself, and a
//! delivery goes straight into the engine's bounded queue (QoS 1/2 kept, QoS 0 dropped).
//!
//! # Mailbox policy
//!
//! The mailbox is a `Mutex<VecDeque<Delivery>>` plus a waker for its connection task, bounded by
//! [`MailboxLimits`](crate::config::MailboxLimits) in messages and bytes (topic + payload).
//! A publisher pushes without copying the payload (the message is an `Arc`, its topic and
//! payload `Bytes`-backed) and never waits on the push itself; [`SessionHandle::push`] tells
//! it what happened ([`Pushed`]):
//!
//! - Beyond the limits a message is still admitted, and the push answers
//!   [`Pushed::Congested`]: a publishing client's connection then waits for
//!   [`SessionHandle::room`] before it reads on (back-pressure), so a consumer that keeps up
//!   at its own pace loses nothing, QoS 0 included.
//! - **QoS 1/2:** a publisher waits at most the stall timeout, after which it
//!   [kicks](SessionHandle::kick) the slow consumer. A mailbox at twice its limits kicks its
//!   consumer at once (what cannot wait, Wills and in-process publishes, is bounded this way).
//! - **QoS 0:** a QoS 0 publish waits at most `backpressure.qos0_wait_ms`; if the mailbox is
//!   still full then, the consumer is not disconnected but *sheds*: QoS 0 beyond the limits
//!   is dropped and counted ([`Stats::dropped_qos0`](crate::Stats)) until it empties its
//!   mailbox, so a stuck QoS 0 consumer holds its publishers back once, briefly. QoS 0 at
//!   twice the limits is dropped at once.
//! - A kicked or disconnected consumer's mailbox moves into the session's own queue, bounded
//!   by [`SessionLimits`](crate::config::SessionLimits); a message beyond it is refused by the
//!   engine, logged at `warn` and counted ([`Stats::dropped_queue_full`](crate::Stats)), and
//!   the push answers [`Pushed::Refused`].
//!
//! See [the configuration's policy](crate::config#memory-bounds-and-slow-consumers).

use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use futures_util::task::AtomicWaker;

use parking_lot::Mutex;
use tern_codec::{MqttString, PacketId, QoS};
use tern_proto::{DeliverOutcome, DeliveryOptions, DropReason, Message, ServerSession};
use thin_vec::ThinVec;
use tokio::sync::{Notify, oneshot};

use crate::auth::Identity;
use crate::broker::StatsCounters;
use crate::config::MailboxLimits;
use crate::storage::writer::Persistence;
use crate::storage::{
    StorageOp, StoredDelivery, StoredMessage, StoredSession, StoredSubscription, StoredWill,
};
use crate::transport::{ClientInfo, ConnectionInfo};

/// A routed message for one session, as it waits in the mailbox.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) message: Arc<Message>,
    pub(crate) qos: QoS,
    pub(crate) subscription_ids: Vec<NonZeroU32>,
    pub(crate) options: DeliveryOptions,
    /// Its sequence in the session's log, once logged (persistent sessions, QoS 1/2).
    pub(crate) seq: Option<u64>,
}

impl Delivery {
    fn weight(&self) -> usize {
        self.message.publish.topic.len() + self.message.publish.payload.len()
    }

    /// The QoS the subscriber gets it at: the publisher's, downgraded to the subscription's
    /// [MQTT-3.8.4-8].
    fn effective_qos(&self) -> QoS {
        self.message.publish.qos.min(self.qos)
    }

    /// The record the storage logs.
    fn stored(&self) -> StoredDelivery {
        let m = &self.message;
        StoredDelivery::new(
            StoredMessage::new(
                (*m.publish).clone(),
                m.origin.as_ref().map(|o| o.to_string()),
                crate::broker::wall_clock(m.received_at),
            ),
            self.qos,
            self.subscription_ids.clone(),
            self.options,
        )
    }

    /// Hands the delivery to a session engine, counting and logging what it refuses.
    pub(crate) fn deliver_to(
        &self,
        session: &mut ServerSession,
        now: Instant,
        stats: &StatsCounters,
    ) -> DeliverOutcome {
        let outcome = session.deliver(
            now,
            &self.message,
            self.qos,
            &self.subscription_ids,
            self.options,
        );
        match outcome {
            DeliverOutcome::Dropped(DropReason::QueueFull) => {
                stats.dropped_queue_full.add(1);
                tracing::warn!(
                    client_id = %session.client_id(),
                    topic = %self.message.publish.topic,
                    qos = ?self.qos,
                    "session queue full: message refused"
                );
            }
            DeliverOutcome::Dropped(reason) => {
                stats.traffic.dropped(reason);
                tracing::trace!(client_id = %session.client_id(), ?reason, "message not delivered");
            }
            DeliverOutcome::Sent(_) | DeliverOutcome::Queued => {}
        }
        outcome
    }
}

/// What [`SessionHandle::push`] did with a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Taken: into the mailbox, or into the offline session's queue.
    Taken,
    /// Taken beyond the mailbox's limits: a publisher that can wait should wait for
    /// [`SessionHandle::room`].
    Congested,
    /// Not taken: a QoS 0 message beyond the mailbox's limits, or the offline session's queue
    /// is full (counted and logged).
    Refused,
    /// The session ended meanwhile.
    Gone,
}

/// Who drives a session now.
#[derive(Debug)]
enum Owner {
    /// The connection task with this id.
    Online(u64),
    /// Nobody: the client is away. The closed engine holds the session state and queue; the
    /// number tells the keeper task of this offline period from a later one.
    Offline(Box<ServerSession>, u64),
    /// The session ended; deliveries are dropped.
    Ended,
}

#[derive(Debug)]
struct Inbox {
    queue: VecDeque<Delivery>,
    bytes: usize,
    owner: Owner,
    /// A publisher gave up waiting for this mailbox with only QoS 0 messages beyond its
    /// limits: QoS 0 beyond them is dropped until the consumer empties it.
    shedding: bool,
    /// A QoS 1/2 message was admitted beyond the limits since the mailbox was last emptied:
    /// a publisher that gives up waiting disconnects the consumer.
    over_reliable: bool,
    /// A new connection of the same client waits for connection `.0` to hand over its engine.
    /// Boxed, like `kick` is a `NonZeroU64`: every session has the room, few use it.
    takeover: Option<Box<(u64, oneshot::Sender<Box<ServerSession>>)>>,
    /// Connection to be closed as a slow consumer.
    kick: Option<NonZeroU64>,
    next_offline: u64,
    /// The session's persistence; see [`Durable`]. Boxed: most sessions are not persistent.
    durable: Option<Box<Durable>>,
}

/// How a persistent session's log lines up with its engine.
///
/// Every QoS 1/2 delivery routed to the session is logged with the next sequence before it
/// enters the mailbox, so the mailbox and the engine's queue hold them in sequence order.
/// The engine takes deliveries at the back of its queue and sends (or expires) them from the
/// front only; `queued` mirrors the queue with each entry's sequence, so that a snapshot can
/// say which logged deliveries are no longer queued: every one before the first still queued
/// (or, with an empty queue, up to the last one handed to the engine).
#[derive(Debug)]
struct Durable {
    store: Arc<Persistence>,
    next_seq: u64,
    /// The sequences of the engine queue's entries, front first (`None`: not logged).
    queued: VecDeque<Option<u64>>,
    /// The last logged sequence handed to the engine.
    handed: u64,
}

impl Durable {
    /// Drops the entries the engine took off the front of its queue (now `len` long).
    fn sync(&mut self, len: usize) {
        while self.queued.len() > len {
            self.queued.pop_front();
        }
    }

    /// Records what the engine did with a delivery; its queue is now `len` long.
    fn track(&mut self, client_id: &str, seq: Option<u64>, outcome: DeliverOutcome, len: usize) {
        let queued = outcome == DeliverOutcome::Queued;
        self.sync(len.saturating_sub(usize::from(queued)));
        if queued {
            self.queued.push_back(seq);
        }
        if let Some(seq) = seq {
            self.handed = self.handed.max(seq);
            if matches!(outcome, DeliverOutcome::Dropped(_)) {
                // Lazily: nothing waits for it.
                self.store.send(StorageOp::RemoveDelivery {
                    client_id: client_id.to_owned(),
                    seq,
                });
            }
        }
    }

    /// Every logged delivery up to this sequence is in the engine's in-flight state or done.
    fn delivered(&mut self, len: usize) -> u64 {
        self.sync(len);
        match self.queued.iter().flatten().next() {
            Some(first) => first - 1,
            None => self.handed,
        }
    }
}

/// A mailbox batch of at most this many deliveries is a quiet one: after it the mailbox keeps
/// room for at most [`QUIET_KEEP`] deliveries (a steady trickle allocates nothing, a burst's
/// room is let go).
const QUIET_BATCH: usize = 2;
const QUIET_KEEP: usize = 8;

/// One session: its identity and mailbox. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct SessionHandle {
    /// The key of the session's subscriptions in the router: unique per session, never reused.
    pub(crate) key: u64,
    pub(crate) client_id: MqttString,
    inbox: Mutex<Inbox>,
    /// Wakes the connection task: deliveries, takeover, kick (see [`signal`](Self::signal)).
    waker: AtomicWaker,
    /// Set by [`signal`](Self::signal), taken by [`poll_notified`](Self::poll_notified).
    signalled: AtomicBool,
    /// Wakes publishers waiting for room in the mailbox.
    room: Notify,
    limits: MailboxLimits,
    stats: Arc<StatsCounters>,
    /// The length of the session engine's queue, as last reported to the stats.
    queued: AtomicUsize,
    /// The session's subscriptions, as the storage keeps them, sorted by filter: a thin
    /// vector holds one pointer while there are none (a `BTreeMap` took three, and a copy of
    /// each filter as its key).
    subscriptions: Mutex<ThinVec<StoredSubscription>>,
    /// Who its client is, as its latest connection authenticated (see `crate::auth`): each
    /// delivery's read check uses it. With what that connection's transport knows (none for a
    /// session restored from storage), for [`Registry::connected`].
    identity: Mutex<ClientIdentity>,
}

/// Who a session's client is and over what it connected (see `SessionHandle::identity`).
type ClientIdentity = (Option<Arc<Identity>>, Option<Arc<ConnectionInfo>>);

/// Where the subscription to `filter` is in a list sorted by filter, or would go.
fn find_subscription(list: &[StoredSubscription], filter: &str) -> Result<usize, usize> {
    list.binary_search_by(|s| s.filter.as_str().cmp(filter))
}

/// What pushes added to mailboxes, for the gauges (see [`SessionHandle::push_counted`]).
#[derive(Debug, Default)]
pub(crate) struct MailboxTally {
    messages: u64,
    bytes: u64,
}

/// What a connection task finds when it looks at its mailbox.
#[derive(Debug)]
pub(crate) enum Wake {
    /// The waiting deliveries were moved to the caller (possibly none).
    Taken,
    /// Deliveries wait, but the caller said it has no room for them now.
    Waiting,
    /// A newer connection of the client takes the session over: close (0x8E), then the
    /// engine is handed over by [`Registry::release`].
    TakenOver,
    /// The connection is too slow for its publishers: close it (0x97).
    Kicked,
}

impl SessionHandle {
    fn new(
        key: u64,
        client_id: MqttString,
        conn: u64,
        limits: MailboxLimits,
        stats: Arc<StatsCounters>,
    ) -> Self {
        SessionHandle {
            key,
            client_id,
            inbox: Mutex::new(Inbox {
                queue: VecDeque::new(),
                bytes: 0,
                owner: Owner::Online(conn),
                takeover: None,
                kick: None,
                next_offline: 0,
                shedding: false,
                over_reliable: false,
                durable: None,
            }),
            waker: AtomicWaker::new(),
            signalled: AtomicBool::new(false),
            room: Notify::new(),
            limits,
            stats,
            queued: AtomicUsize::new(0),
            subscriptions: Mutex::new(ThinVec::new()),
            identity: Mutex::new((None, None)),
        }
    }

    /// Sets who the session's client is (at each accepted CONNECT).
    pub(crate) fn set_identity(&self, identity: Arc<Identity>, info: Option<Arc<ConnectionInfo>>) {
        *self.identity.lock() = (Some(identity), info);
    }

    /// Who the session's client is, once a connection was accepted.
    pub(crate) fn identity(&self) -> Option<Arc<Identity>> {
        self.identity.lock().0.clone()
    }

    /// Records a subscription for the storage.
    pub(crate) fn record_subscription(&self, subscription: StoredSubscription) {
        let mut subscriptions = self.subscriptions.lock();
        match find_subscription(&subscriptions, &subscription.filter) {
            Ok(at) => subscriptions[at] = subscription,
            Err(at) => subscriptions.insert(at, subscription),
        }
    }

    /// Forgets a subscription.
    pub(crate) fn forget_subscription(&self, filter: &str) {
        let mut subscriptions = self.subscriptions.lock();
        if let Ok(at) = find_subscription(&subscriptions, filter) {
            subscriptions.remove(at);
        }
    }

    /// Whether the session may subscribe to `filter` under a limit of `max` subscriptions (0:
    /// none): it already has that filter, or fewer than `max`.
    pub(crate) fn has_subscription_room(&self, filter: &str, max: usize) -> bool {
        let subscriptions = self.subscriptions.lock();
        max == 0 || subscriptions.len() < max || find_subscription(&subscriptions, filter).is_ok()
    }

    /// The subscriptions, for the storage.
    pub(crate) fn subscriptions(&self) -> Vec<StoredSubscription> {
        self.subscriptions.lock().to_vec()
    }

    /// Pushes a routed message: into the mailbox while online, into the engine's queue while
    /// offline. Never blocks on anything but the session's own lock. `can_wait`: the pusher
    /// waits for [`room`](Self::room) when told [`Pushed::Congested`]; a QoS 0 message
    /// beyond the limits from one that cannot is dropped.
    pub(crate) fn push(&self, delivery: Delivery, now: Instant, can_wait: bool) -> (Pushed, bool) {
        let mut tally = MailboxTally::default();
        let pushed = self.push_counted(delivery, now, can_wait, &mut tally);
        self.count_pushed(&tally);
        pushed
    }

    /// [`push`](Self::push), with what it adds to the mailbox gauges left in `tally` for
    /// [`count_pushed`](Self::count_pushed): a fan-out updates the gauges once, not once per
    /// subscriber.
    pub(crate) fn push_counted(
        &self,
        mut delivery: Delivery,
        now: Instant,
        can_wait: bool,
        tally: &mut MailboxTally,
    ) -> (Pushed, bool) {
        let mut inbox = self.inbox.lock();
        let mut logged = false;
        if !matches!(inbox.owner, Owner::Ended)
            && delivery.seq.is_none()
            && delivery.effective_qos() != QoS::AtMostOnce
            && let Some(durable) = &mut inbox.durable
        {
            // Logged before anyone can see it: the publisher's acknowledgement waits for it.
            let seq = durable.next_seq;
            durable.next_seq += 1;
            durable.store.send(StorageOp::PutDelivery {
                client_id: self.client_id.to_string(),
                seq,
                delivery: delivery.stored(),
            });
            delivery.seq = Some(seq);
            logged = true;
        }
        let pushed = self.push_locked(inbox, delivery, now, can_wait, tally);
        (pushed, logged)
    }

    /// Adds what pushes left in `tally` to the mailbox gauges (of the broker's statistics,
    /// which every session shares).
    pub(crate) fn count_pushed(&self, tally: &MailboxTally) {
        if tally.messages > 0 {
            self.count_mailbox(tally.messages, tally.bytes, true);
        }
    }

    fn push_locked(
        &self,
        mut inbox: parking_lot::MutexGuard<'_, Inbox>,
        delivery: Delivery,
        now: Instant,
        can_wait: bool,
        tally: &mut MailboxTally,
    ) -> Pushed {
        match &mut inbox.owner {
            Owner::Online(conn) => {
                let conn = *conn;
                let weight = delivery.weight();
                let len = inbox.queue.len();
                let full =
                    len >= self.limits.max_messages || inbox.bytes + weight > self.limits.max_bytes;
                let overflowing = len >= self.limits.max_messages.saturating_mul(2)
                    || inbox.bytes + weight > self.limits.max_bytes.saturating_mul(2);
                let qos0 = delivery.effective_qos() == QoS::AtMostOnce;
                if full && qos0 && (!can_wait || inbox.shedding || overflowing) {
                    self.stats.dropped_qos0.add(1);
                    return Pushed::Refused;
                }
                inbox.over_reliable |= full && !qos0;
                inbox.bytes += weight;
                inbox.queue.push_back(delivery);
                tally.messages += 1;
                tally.bytes += weight as u64;
                self.stats
                    .mailbox_peak_messages
                    .record(inbox.queue.len() as u64);
                self.stats.mailbox_peak_bytes.record(inbox.bytes as u64);
                let mut pushed = if full {
                    Pushed::Congested
                } else {
                    Pushed::Taken
                };
                if overflowing {
                    // Nobody waited for it to drain: too slow even for back-pressure.
                    pushed = Pushed::Taken;
                    if inbox.kick.is_none() {
                        tracing::warn!(client_id = %self.client_id, "mailbox at twice its limits: disconnecting the slow consumer");
                        inbox.kick = NonZeroU64::new(conn);
                    }
                }
                drop(inbox);
                self.signal();
                pushed
            }
            Owner::Offline(session, _) => {
                let outcome = delivery.deliver_to(session, now, &self.stats);
                let queued = session.queued_len();
                if let Some(durable) = &mut inbox.durable {
                    durable.track(&self.client_id, delivery.seq, outcome, queued);
                    if let Some(seq) = delivery.seq {
                        durable.next_seq = durable.next_seq.max(seq + 1);
                    }
                }
                drop(inbox);
                self.set_queued(queued);
                if outcome == DeliverOutcome::Dropped(DropReason::QueueFull) {
                    Pushed::Refused
                } else {
                    Pushed::Taken
                }
            }
            Owner::Ended => Pushed::Gone,
        }
    }

    fn count_mailbox(&self, messages: u64, bytes: u64, added: bool) {
        let stats = &self.stats;
        if added {
            stats.mailbox_messages.add(messages);
            stats.mailbox_bytes.add(bytes);
        } else {
            stats.mailbox_messages.sub(messages);
            stats.mailbox_bytes.sub(bytes);
        }
    }

    /// Empties the mailbox (the caller holds its lock), keeping the gauges right and waking
    /// the publishers that wait for room.
    fn take_queue(&self, inbox: &mut Inbox) -> VecDeque<Delivery> {
        self.settle_taken(inbox);
        std::mem::take(&mut inbox.queue)
    }

    /// What taking everything the mailbox holds changes (the caller then takes it): the
    /// gauges, the flags, and the publishers waiting for room are woken.
    fn settle_taken(&self, inbox: &mut Inbox) {
        self.count_mailbox(inbox.queue.len() as u64, inbox.bytes as u64, false);
        inbox.bytes = 0;
        inbox.shedding = false;
        inbox.over_reliable = false;
        self.room.notify_waiters();
    }

    /// Records the length of the session engine's queue in the stats.
    pub(crate) fn set_queued(&self, len: usize) {
        let old = self.queued.swap(len, Ordering::Relaxed);
        let stats = &self.stats;
        if len > old {
            stats.queued_messages.add((len - old) as u64);
        } else {
            stats.queued_messages.sub((old - len) as u64);
        }
        stats.queued_peak_messages.record(len as u64);
    }

    /// Whether a publisher waiting for this session may go on: its mailbox is under its
    /// limits, or it has no connection to wait for any more.
    pub(crate) fn has_room(&self) -> bool {
        let inbox = self.inbox.lock();
        !matches!(inbox.owner, Owner::Online(_))
            || inbox.kick.is_some()
            || (inbox.shedding && !inbox.over_reliable)
            || (inbox.queue.len() < self.limits.max_messages && inbox.bytes < self.limits.max_bytes)
    }

    /// Waits until [`has_room`](Self::has_room).
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drain right after it is not missed.
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// A publisher gave up waiting for room: with a QoS 1/2 message beyond the limits the
    /// consumer is disconnected ([`kick`](Self::kick), returns true); with QoS 0 only, QoS 0
    /// beyond the limits is dropped from now on until the consumer empties its mailbox.
    pub(crate) fn stalled(&self) -> bool {
        let mut inbox = self.inbox.lock();
        if inbox.over_reliable || !matches!(inbox.owner, Owner::Online(_)) {
            drop(inbox);
            return self.kick();
        }
        if !inbox.shedding {
            inbox.shedding = true;
            tracing::warn!(client_id = %self.client_id, "mailbox stayed full: dropping QoS 0 messages beyond its limits until it drains");
        }
        drop(inbox);
        self.room.notify_waiters();
        false
    }

    /// Asks the connection of this session to close as a slow consumer. Returns whether a
    /// connection was asked (false when the client is away or was already asked).
    pub(crate) fn kick(&self) -> bool {
        let mut inbox = self.inbox.lock();
        let Owner::Online(conn) = inbox.owner else {
            return false;
        };
        if inbox.kick.is_some() {
            return false;
        }
        inbox.kick = NonZeroU64::new(conn);
        drop(inbox);
        self.signal();
        // Publishers waiting for this session need not wait any more.
        self.room.notify_waiters();
        true
    }

    /// Ready once the mailbox has something for its connection task since the last time it
    /// was ready (a signal while nobody polls is kept for the next poll). One task polls it:
    /// the connection that owns the session.
    pub(crate) fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.signalled.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A signal between the check and the registration found no waker to wake.
        if self.signalled.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Wakes the connection task (see [`poll_notified`](Self::poll_notified)).
    pub(crate) fn signal(&self) {
        // Signalled and not yet taken: the task looks at the mailbox anyway (it takes the
        // signal before it locks the mailbox, so what was pushed before this is seen). A
        // fan-out's later pushes to a busy subscriber cost a load, not a wake.
        if self.signalled.load(Ordering::Acquire) {
            return;
        }
        self.signalled.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Called by connection `conn` when woken: the takeover or kick addressed to it, or else
    /// (when `take`) the waiting deliveries, moved into `out`.
    pub(crate) fn wake(&self, conn: u64, out: &mut VecDeque<Delivery>, take: bool) -> Wake {
        let mut inbox = self.inbox.lock();
        if inbox.takeover.as_ref().is_some_and(|t| t.0 == conn) {
            return Wake::TakenOver;
        }
        if inbox.kick.is_some_and(|k| k.get() == conn) {
            return Wake::Kicked;
        }
        if !matches!(inbox.owner, Owner::Online(c) if c == conn) {
            return Wake::Taken;
        }
        if !take {
            return if inbox.queue.is_empty() {
                Wake::Taken
            } else {
                Wake::Waiting
            };
        }
        let quiet = inbox.queue.len() <= QUIET_BATCH;
        if out.is_empty() {
            // The queues trade places: the mailbox keeps the caller's drained one and its
            // room, so that the publishers' next pushes (on other cores) allocate nothing
            // and the caller frees nothing.
            self.settle_taken(&mut inbox);
            std::mem::swap(out, &mut inbox.queue);
            if quiet && inbox.queue.capacity() > QUIET_KEEP {
                // A session gone quiet keeps no room for its busiest moment.
                inbox.queue = VecDeque::new();
            }
            drop(inbox);
        } else {
            let queue = self.take_queue(&mut inbox);
            drop(inbox);
            out.extend(queue);
        }
        Wake::Taken
    }

    /// Moves what waits in the mailbox into `session` (closed: QoS 1/2 are queued).
    fn drain_into(&self, inbox: &mut Inbox, session: &mut ServerSession, now: Instant) {
        for delivery in self.take_queue(inbox) {
            let outcome = delivery.deliver_to(session, now, &self.stats);
            if let Some(durable) = &mut inbox.durable {
                let len = session.queued_len();
                durable.track(&self.client_id, delivery.seq, outcome, len);
            }
        }
        inbox.kick = None;
    }

    /// Makes the session persistent from now on, after a connection accepted with `engine`
    /// (its queue's entries so far are not logged), and stores its first snapshot before any
    /// delivery is logged. Returns the ticket of the snapshot.
    pub(crate) fn start_durable(&self, store: Arc<Persistence>, engine: &ServerSession) -> u64 {
        let mut inbox = self.inbox.lock();
        let durable = inbox.durable.get_or_insert_with(|| {
            Box::new(Durable {
                store: store.clone(),
                next_seq: 1,
                queued: VecDeque::new(),
                handed: 0,
            })
        });
        let len = engine.queued_len();
        durable.sync(len);
        while durable.queued.len() < len {
            durable.queued.push_front(None);
        }
        self.snapshot_locked(&mut inbox, engine, &[], None)
    }

    /// Stops persisting the session, and forgets it in the storage.
    pub(crate) fn stop_durable(&self) {
        let mut inbox = self.inbox.lock();
        if let Some(durable) = inbox.durable.take() {
            durable.store.send(StorageOp::RemoveSession {
                client_id: self.client_id.to_string(),
            });
        }
    }

    /// Records what the connection's engine did with a delivery from the mailbox.
    pub(crate) fn track(&self, seq: Option<u64>, outcome: DeliverOutcome, queue_len: usize) {
        let mut inbox = self.inbox.lock();
        if let Some(durable) = &mut inbox.durable {
            durable.track(&self.client_id, seq, outcome, queue_len);
        }
    }

    /// Stores a snapshot of the session as `engine` holds it, `awaiting` adding inbound QoS 2
    /// identifiers routed but not acknowledged yet. Returns its ticket (0: not persistent).
    pub(crate) fn snapshot(
        &self,
        engine: &ServerSession,
        awaiting: &[PacketId],
        disconnected_at: Option<SystemTime>,
    ) -> u64 {
        let mut inbox = self.inbox.lock();
        self.snapshot_locked(&mut inbox, engine, awaiting, disconnected_at)
    }

    /// Stores a snapshot of the offline session of keeper `offline`, gone at `at`.
    pub(crate) fn snapshot_offline(&self, offline: u64, at: SystemTime) -> u64 {
        let mut inbox = self.inbox.lock();
        let inbox = &mut *inbox;
        let Owner::Offline(engine, n) = &inbox.owner else {
            return 0;
        };
        if *n != offline {
            return 0;
        }
        let Some(durable) = &mut inbox.durable else {
            return 0;
        };
        let op = self.snapshot_op(durable, engine, &[], Some(at));
        durable.store.send(op)
    }

    fn snapshot_locked(
        &self,
        inbox: &mut Inbox,
        engine: &ServerSession,
        awaiting: &[PacketId],
        disconnected_at: Option<SystemTime>,
    ) -> u64 {
        let Some(durable) = &mut inbox.durable else {
            return 0;
        };
        let op = self.snapshot_op(durable, engine, awaiting, disconnected_at);
        durable.store.send(op)
    }

    fn snapshot_op(
        &self,
        durable: &mut Durable,
        engine: &ServerSession,
        awaiting: &[PacketId],
        disconnected_at: Option<SystemTime>,
    ) -> StorageOp {
        let state = engine.state();
        let delivered = durable.delivered(state.queued.len());
        let mut stored = tern_proto::SessionState::new();
        stored.outgoing = state.outgoing.clone();
        stored.awaiting_pubrel = state.awaiting_pubrel.clone();
        // Inbound QoS 2 messages routed (and committed with this snapshot) but not yet
        // answered: a resent PUBLISH after a restart is a duplicate [MQTT-4.3.3-10].
        for i in &state.inbound {
            if i.qos == QoS::ExactlyOnce && (i.ack.is_some() || awaiting.contains(&i.packet_id)) {
                stored.awaiting_pubrel.push_back(i.packet_id);
            }
        }
        stored.next_packet_id = state.next_packet_id;
        stored.session_expiry_interval = state.session_expiry_interval;
        let mut session = StoredSession::new(
            engine.version(),
            stored,
            self.subscriptions(),
            delivered,
            disconnected_at,
        );
        session.username = self.identity().and_then(|i| i.username.clone());
        // A Will that waits for its delay after the client went away.
        session.will = engine
            .will()
            .filter(|_| disconnected_at.is_some() && engine.is_closed())
            .map(|w| {
                StoredWill::new(
                    tern_proto::will_to_publish(w),
                    w.properties.will_delay_interval.unwrap_or(0),
                )
            });
        StorageOp::PutSession {
            client_id: self.client_id.to_string(),
            session,
        }
    }

    /// Whether the session is offline, and its keeper task `offline` is still the current one;
    /// runs `f` on the engine.
    pub(crate) fn with_offline<R>(
        &self,
        offline: u64,
        f: impl FnOnce(&mut ServerSession) -> R,
    ) -> Option<R> {
        let mut inbox = self.inbox.lock();
        match &mut inbox.owner {
            Owner::Offline(session, n) if *n == offline => Some(f(session)),
            _ => None,
        }
    }
}

/// What a new connection finds when it claims a client identifier.
#[derive(Debug)]
pub(crate) enum Previous {
    /// No earlier session of this client.
    None,
    /// The client was away; its session is resumed from this engine.
    Offline(Box<ServerSession>),
    /// Another connection of the client is online; it hands over its engine through this.
    Online(oneshot::Receiver<Box<ServerSession>>),
}

/// The result of [`Registry::claim`].
#[derive(Debug)]
pub(crate) struct Claim {
    /// The session the connection now owns.
    pub(crate) handle: Arc<SessionHandle>,
    /// The session it had before.
    pub(crate) previous: Previous,
    /// With Clean Start, the previous session, now ended: its subscriptions must go.
    pub(crate) ended: Option<Arc<SessionHandle>>,
}

/// What [`Registry::release`] did with a session whose connection ended.
#[derive(Debug)]
pub(crate) enum Released {
    /// Handed to the newer connection that took it over.
    HandedOver,
    /// Kept offline; a keeper task must watch keeper number `.0`.
    Offline(u64),
    /// Ended (Session Expiry Interval 0): its subscriptions must go.
    Ended,
    /// The session was no longer this connection's (ended by a Clean Start elsewhere).
    NotOwner,
}

/// Client identifier → session.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashSet<Entry>>,
    next_key: AtomicU64,
}

/// A session in the registry, found by its client identifier: the handle's own, so that the
/// registry keeps no second copy of it (one per client, connected or not).
#[derive(Clone, Debug)]
struct Entry(Arc<SessionHandle>);

impl Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        self.0.client_id.as_str()
    }
}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.client_id.as_str().hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.client_id.as_str() == other.0.client_id.as_str()
    }
}

impl Eq for Entry {}

impl Registry {
    /// Connection `conn` claims `client_id`. With `clean_start`, or when the client has no
    /// session, a new session starts; an earlier connection of the client is asked to hand
    /// over either way (it is closed with 0x8E).
    pub(crate) fn claim(
        &self,
        client_id: MqttString,
        conn: u64,
        clean_start: bool,
        limits: &MailboxLimits,
        stats: &Arc<StatsCounters>,
    ) -> Claim {
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(client_id.as_str()).map(|e| e.0.clone());
        // Moved in, not cloned: a clone would make its bytes shared, at an allocation more.
        let fresh = move || {
            Arc::new(SessionHandle::new(
                self.next_key.fetch_add(1, Ordering::Relaxed),
                client_id,
                conn,
                limits.clone(),
                stats.clone(),
            ))
        };
        let Some(old) = existing else {
            let handle = fresh();
            sessions.replace(Entry(handle.clone()));
            return Claim {
                handle,
                previous: Previous::None,
                ended: None,
            };
        };
        let mut inbox = old.inbox.lock();
        inbox.kick = None;
        let previous = match std::mem::replace(&mut inbox.owner, Owner::Ended) {
            Owner::Online(c) => {
                let (tx, rx) = oneshot::channel();
                inbox.takeover = Some(Box::new((c, tx)));
                old.signal();
                Previous::Online(rx)
            }
            Owner::Offline(session, _) => Previous::Offline(session),
            Owner::Ended => Previous::None,
        };
        if clean_start {
            drop(old.take_queue(&mut inbox));
            drop(inbox);
            let handle = fresh();
            sessions.replace(Entry(handle.clone()));
            Claim {
                handle,
                previous,
                ended: Some(old),
            }
        } else {
            inbox.owner = Owner::Online(conn);
            drop(inbox);
            Claim {
                handle: old,
                previous,
                ended: None,
            }
        }
    }

    /// Connection `conn` ended with `session` (closed). Hands it over to a newer connection,
    /// keeps it offline, or ends it when its Session Expiry Interval is 0 (`keep` false).
    pub(crate) fn release(
        &self,
        handle: &Arc<SessionHandle>,
        conn: u64,
        mut session: Box<ServerSession>,
        keep: bool,
        now: Instant,
    ) -> Released {
        let mut sessions = self.sessions.lock();
        let mut inbox = handle.inbox.lock();
        if inbox.takeover.as_ref().is_some_and(|t| t.0 == conn) {
            let (_, tx) = *inbox.takeover.take().expect("checked above");
            if matches!(inbox.owner, Owner::Online(_)) {
                handle.drain_into(&mut inbox, &mut session, now);
            }
            drop(inbox);
            handle.set_queued(session.queued_len());
            // The new connection may have given up waiting; then the state is dropped.
            if tx.send(session).is_err() {
                handle.set_queued(0);
            }
            return Released::HandedOver;
        }
        if !matches!(inbox.owner, Owner::Online(c) if c == conn) {
            if matches!(inbox.owner, Owner::Ended) {
                drop(inbox);
                handle.set_queued(0);
            }
            return Released::NotOwner;
        }
        handle.drain_into(&mut inbox, &mut session, now);
        if keep {
            inbox.next_offline += 1;
            let n = inbox.next_offline;
            let queued = session.queued_len();
            inbox.owner = Owner::Offline(session, n);
            drop(inbox);
            handle.set_queued(queued);
            Released::Offline(n)
        } else {
            inbox.owner = Owner::Ended;
            drop(inbox);
            handle.set_queued(0);
            if sessions
                .get(handle.client_id.as_str())
                .is_some_and(|e| Arc::ptr_eq(&e.0, handle))
            {
                sessions.remove(handle.client_id.as_str());
            }
            Released::Ended
        }
    }

    /// Ends the offline session of keeper `offline` (its expiry passed). Returns whether it
    /// did; false if a connection resumed it meanwhile.
    pub(crate) fn expire(&self, handle: &Arc<SessionHandle>, offline: u64) -> bool {
        let mut sessions = self.sessions.lock();
        let mut inbox = handle.inbox.lock();
        if !matches!(inbox.owner, Owner::Offline(_, n) if n == offline) {
            return false;
        }
        inbox.owner = Owner::Ended;
        drop(inbox);
        handle.set_queued(0);
        if sessions
            .get(handle.client_id.as_str())
            .is_some_and(|e| Arc::ptr_eq(&e.0, handle))
        {
            sessions.remove(handle.client_id.as_str());
        }
        true
    }

    /// Puts back a persistent session read from the storage at start, offline in `engine`,
    /// with its log's deliveries after `delivered` to be fed with [`SessionHandle::push`]
    /// and its subscriptions with [`SessionHandle::record_subscription`]. Returns the handle
    /// and its keeper number.
    pub(crate) fn restore(
        &self,
        client_id: MqttString,
        engine: Box<ServerSession>,
        delivered: u64,
        store: Arc<Persistence>,
        limits: &MailboxLimits,
        stats: &Arc<StatsCounters>,
    ) -> (Arc<SessionHandle>, u64) {
        let handle = SessionHandle::new(
            self.next_key.fetch_add(1, Ordering::Relaxed),
            client_id.clone(),
            0,
            limits.clone(),
            stats.clone(),
        );
        {
            let mut inbox = handle.inbox.lock();
            inbox.next_offline = 1;
            inbox.owner = Owner::Offline(engine, 1);
            inbox.durable = Some(Box::new(Durable {
                store,
                next_seq: delivered + 1,
                queued: VecDeque::new(),
                handed: delivered,
            }));
        }
        let handle = Arc::new(handle);
        self.sessions.lock().replace(Entry(handle.clone()));
        (handle, 1)
    }

    /// Wakes every session's connection task (shutdown: each finds the broker stopping).
    pub(crate) fn signal_all(&self) {
        for entry in self.sessions.lock().iter() {
            entry.0.signal();
        }
    }

    /// The clients connected now (their sessions' owners are connections), by client
    /// identifier. The registry is the one table of them: a second one kept per connection
    /// cost about 40 bytes of every connection.
    pub(crate) fn connected(&self) -> Vec<ClientInfo> {
        let handles: Vec<Arc<SessionHandle>> =
            self.sessions.lock().iter().map(|e| e.0.clone()).collect();
        let mut clients: Vec<ClientInfo> = handles
            .iter()
            .filter(|h| matches!(h.inbox.lock().owner, Owner::Online(_)))
            .filter_map(|h| {
                let (identity, info) = h.identity.lock().clone();
                let (identity, info) = (identity?, info?);
                Some(ClientInfo {
                    client_id: identity.client_id.clone(),
                    username: identity.username.clone(),
                    peer: info.peer,
                    transport: info.transport,
                    tls_identity: info.tls_identity.clone(),
                })
            })
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients
    }

    /// Number of sessions (online and offline).
    pub(crate) fn len(&self) -> usize {
        self.sessions.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use tern_codec::Publish;
    use tern_proto::ServerConfig;

    use super::*;

    fn delivery(qos: QoS) -> Delivery {
        Delivery {
            message: Arc::new(Message::new(
                Arc::new(Publish {
                    topic: MqttString::from_static("t"),
                    payload: "xy".into(),
                    qos: QoS::ExactlyOnce,
                    ..Publish::default()
                }),
                None,
                Instant::now(),
            )),
            qos,
            subscription_ids: Vec::new(),
            options: DeliveryOptions::default(),
            seq: None,
        }
    }

    /// Client `c` online on connection `conn`, its mailbox limited to two messages.
    fn online_mailbox(conn: u64) -> (Arc<StatsCounters>, Registry, Arc<SessionHandle>) {
        let stats = Arc::new(StatsCounters::default());
        let limits = MailboxLimits {
            max_messages: 2,
            max_bytes: 1 << 20,
        };
        let registry = Registry::default();
        let handle = registry
            .claim(MqttString::from_static("c"), conn, true, &limits, &stats)
            .handle;
        (stats, registry, handle)
    }

    #[test]
    fn mailbox_drops_qos0_and_keeps_qos1_beyond_its_limits() {
        let (stats, _registry, handle) = online_mailbox(1);
        let now = Instant::now();
        let pushed: Vec<_> = (0..3)
            .map(|_| handle.push(delivery(QoS::AtMostOnce), now, false).0)
            .collect();
        // From a pusher that cannot wait, QoS 0 beyond the limit is dropped.
        assert_eq!(pushed, [Pushed::Taken, Pushed::Taken, Pushed::Refused]);
        assert_eq!(stats.dropped_qos0.get(), 1);
        assert!(!handle.has_room());
        // QoS 1 beyond the limit is admitted, and its publisher told to wait.
        assert_eq!(
            handle.push(delivery(QoS::AtLeastOnce), now, true).0,
            Pushed::Congested
        );
        assert_eq!(stats.mailbox_messages.get(), 3);
        assert_eq!(stats.mailbox_peak_messages.get(), 3);
        let mut out = VecDeque::new();
        // A task without room leaves them where they are.
        assert!(matches!(handle.wake(1, &mut out, false), Wake::Waiting));
        assert!(out.is_empty());
        assert!(matches!(handle.wake(1, &mut out, true), Wake::Taken));
        assert_eq!(out.len(), 3, "two QoS 0 and the QoS 1 were kept");
        assert_eq!(out.back().unwrap().qos, QoS::AtLeastOnce);
        // Emptied: under the limit again.
        assert!(handle.has_room());
        assert_eq!(stats.mailbox_messages.get(), 0);
        assert_eq!(stats.mailbox_bytes.get(), 0);
    }

    #[test]
    fn qos0_beyond_the_limits_waits_then_sheds_until_the_mailbox_is_emptied() {
        let (stats, _registry, handle) = online_mailbox(3);
        let now = Instant::now();
        let qos0 = |h: &SessionHandle| h.push(delivery(QoS::AtMostOnce), now, true).0;
        // A publisher that can wait is held back instead of losing its QoS 0 message.
        assert_eq!(
            [qos0(&handle), qos0(&handle), qos0(&handle)],
            [Pushed::Taken, Pushed::Taken, Pushed::Congested]
        );
        assert!(!handle.has_room());
        // It gave up waiting: with QoS 0 only beyond the limits, the consumer is not
        // disconnected but sheds; the publisher may go on.
        assert!(!handle.stalled());
        assert!(handle.has_room());
        assert_eq!(qos0(&handle), Pushed::Refused);
        assert_eq!(stats.dropped_qos0.get(), 1);
        let mut out = VecDeque::new();
        assert!(matches!(handle.wake(3, &mut out, true), Wake::Taken));
        assert_eq!(out.len(), 3);
        // Emptied: back-pressure again, no more dropping.
        assert_eq!(
            [qos0(&handle), qos0(&handle), qos0(&handle)],
            [Pushed::Taken, Pushed::Taken, Pushed::Congested]
        );
        // QoS 0 at twice the limits is dropped even from a pusher that may wait.
        assert_eq!(qos0(&handle), Pushed::Congested);
        assert_eq!(qos0(&handle), Pushed::Refused);
        // A QoS 1 message beyond the limits: giving up disconnects the consumer.
        assert!(matches!(handle.wake(3, &mut out, true), Wake::Taken));
        assert_eq!([qos0(&handle), qos0(&handle)], [Pushed::Taken; 2]);
        assert_eq!(
            handle.push(delivery(QoS::AtLeastOnce), now, true).0,
            Pushed::Congested
        );
        assert!(handle.stalled());
        assert!(matches!(handle.wake(3, &mut out, true), Wake::Kicked));
    }

    #[test]
    fn mailbox_at_twice_its_limits_kicks_its_consumer() {
        let (stats, registry, handle) = online_mailbox(7);
        let now = Instant::now();
        let pushed: Vec<_> = (0..5)
            .map(|_| handle.push(delivery(QoS::AtLeastOnce), now, true).0)
            .collect();
        assert_eq!(
            pushed,
            [
                Pushed::Taken,
                Pushed::Taken,
                Pushed::Congested,
                Pushed::Congested,
                Pushed::Taken
            ]
        );
        let mut out = VecDeque::new();
        assert!(matches!(handle.wake(7, &mut out, true), Wake::Kicked));
        // Kicked: nobody waits for it any more; a second kick is not needed.
        assert!(handle.has_room());
        assert!(!handle.kick());
        // Its connection ends: the mailbox goes into the session's queue.
        let session = Box::new(ServerSession::new(ServerConfig::default()));
        let Released::Offline(n) = registry.release(&handle, 7, session, true, now) else {
            panic!()
        };
        assert_eq!(handle.with_offline(n, |s| s.queued_len()), Some(5));
        assert_eq!(stats.queued_messages.get(), 5);
        assert_eq!(stats.mailbox_messages.get(), 0);
    }

    #[test]
    fn offline_queue_full_is_refused_and_counted() {
        let stats = Arc::new(StatsCounters::default());
        let registry = Registry::default();
        let id = MqttString::from_static("c");
        let handle = registry
            .claim(id.clone(), 1, true, &MailboxLimits::default(), &stats)
            .handle;
        let now = Instant::now();
        let session = Box::new(ServerSession::new(ServerConfig {
            max_queued_messages: 1,
            ..ServerConfig::default()
        }));
        let Released::Offline(_) = registry.release(&handle, 1, session, true, now) else {
            panic!()
        };
        assert_eq!(
            handle.push(delivery(QoS::AtLeastOnce), now, true).0,
            Pushed::Taken
        );
        assert_eq!(
            handle.push(delivery(QoS::AtLeastOnce), now, true).0,
            Pushed::Refused
        );
        assert_eq!(stats.dropped_queue_full.get(), 1);
        assert_eq!(stats.queued_messages.get(), 1);
    }

    #[test]
    fn offline_session_queues_qos1_and_drops_qos0() {
        let stats = Arc::new(StatsCounters::default());
        let limits = MailboxLimits::default();
        let registry = Registry::default();
        let id = MqttString::from_static("c");
        let handle = registry.claim(id.clone(), 1, true, &limits, &stats).handle;
        let now = Instant::now();
        let session = Box::new(ServerSession::new(ServerConfig::default()));
        let Released::Offline(n) = registry.release(&handle, 1, session, true, now) else {
            panic!()
        };
        handle.push(delivery(QoS::AtMostOnce), now, true);
        handle.push(delivery(QoS::AtLeastOnce), now, true);
        assert_eq!(handle.with_offline(n, |s| s.queued_len()), Some(1));
        // A new connection resumes it and gets the engine back.
        let claim = registry.claim(id.clone(), 2, false, &limits, &stats);
        assert!(Arc::ptr_eq(&claim.handle, &handle));
        let Previous::Offline(session) = claim.previous else {
            panic!()
        };
        assert_eq!(session.queued_len(), 1);
        assert_eq!(handle.with_offline(n, |_| ()), None);
    }
}
