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
//! The mailbox is a `Mutex<VecDeque<Delivery>>` plus a [`Notify`], bounded by
//! [`MailboxLimits`](crate::config::MailboxLimits) in messages and bytes (topic + payload).
//! A publisher pushes without copying the payload (the message is an `Arc`, its topic and
//! payload `Bytes`-backed) and never waits.
//!
//! - **QoS 0** beyond the limits is dropped and counted ([`Stats::dropped_qos0`](crate::Stats)).
//! - **QoS 1/2** are never dropped by the mailbox: beyond the limits they are still queued and
//!   the session is marked overloaded. The connection task then ends the connection (5.0:
//!   DISCONNECT 0x97 Quota exceeded), which moves the backlog into the session's own queue,
//!   kept for the client's next connection. That queue is bounded by
//!   [`SessionLimits`](crate::config::SessionLimits); a message beyond it is refused by the
//!   engine, logged at `warn` and counted ([`Stats::dropped_queue_full`](crate::Stats)).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tern_codec::{MqttString, QoS};
use tern_proto::{DeliverOutcome, DeliveryOptions, DropReason, Message, ServerSession};
use tokio::sync::{Notify, oneshot};

use crate::broker::StatsCounters;
use crate::config::MailboxLimits;
use crate::storage::StoredSubscription;

/// A routed message for one session, as it waits in the mailbox.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) message: Arc<Message>,
    pub(crate) qos: QoS,
    pub(crate) subscription_ids: Vec<NonZeroU32>,
    pub(crate) options: DeliveryOptions,
}

impl Delivery {
    fn weight(&self) -> usize {
        self.message.publish.topic.len() + self.message.publish.payload.len()
    }

    /// Hands the delivery to a session engine, counting what it refuses.
    pub(crate) fn deliver_to(
        &self,
        session: &mut ServerSession,
        now: Instant,
        stats: &StatsCounters,
    ) {
        let outcome = session.deliver(
            now,
            &self.message,
            self.qos,
            &self.subscription_ids,
            self.options,
        );
        match outcome {
            DeliverOutcome::Dropped(DropReason::QueueFull) => {
                stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    client_id = %session.client_id(),
                    topic = %self.message.publish.topic,
                    "session queue full: message dropped"
                );
            }
            DeliverOutcome::Dropped(reason) => {
                tracing::trace!(client_id = %session.client_id(), ?reason, "message not delivered");
            }
            DeliverOutcome::Sent(_) | DeliverOutcome::Queued => {}
        }
    }
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
    /// A new connection of the same client waits for connection `.0` to hand over its engine.
    takeover: Option<(u64, oneshot::Sender<Box<ServerSession>>)>,
    overloaded: bool,
    next_offline: u64,
}

/// One session: its identity and mailbox. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct SessionHandle {
    /// The key of the session's subscriptions in the router: unique per session, never reused.
    pub(crate) key: u64,
    pub(crate) client_id: MqttString,
    inbox: Mutex<Inbox>,
    notify: Notify,
    limits: MailboxLimits,
    stats: Arc<StatsCounters>,
    /// The session's subscriptions by filter, as the storage keeps them.
    subscriptions: Mutex<BTreeMap<String, StoredSubscription>>,
}

/// What a connection task finds when it looks at its mailbox.
#[derive(Debug)]
pub(crate) enum Wake {
    /// Deliveries to hand to the engine (possibly none).
    Deliveries { overloaded: bool },
    /// A newer connection of the client takes the session over: close (0x8E), then the
    /// engine is handed over by [`Registry::release`].
    TakenOver,
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
                overloaded: false,
                next_offline: 0,
            }),
            notify: Notify::new(),
            limits,
            stats,
            subscriptions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records a subscription for the storage.
    pub(crate) fn record_subscription(&self, subscription: StoredSubscription) {
        self.subscriptions
            .lock()
            .insert(subscription.filter.clone(), subscription);
    }

    /// Forgets a subscription.
    pub(crate) fn forget_subscription(&self, filter: &str) {
        self.subscriptions.lock().remove(filter);
    }

    /// The subscriptions, for the storage.
    pub(crate) fn subscriptions(&self) -> Vec<StoredSubscription> {
        self.subscriptions.lock().values().cloned().collect()
    }

    /// Pushes a routed message: into the mailbox while online, into the engine's queue while
    /// offline. Never blocks on anything but the session's own lock.
    pub(crate) fn push(&self, delivery: Delivery, now: Instant) {
        let mut inbox = self.inbox.lock();
        match &mut inbox.owner {
            Owner::Online(_) => {
                let weight = delivery.weight();
                let full = inbox.queue.len() >= self.limits.max_messages
                    || inbox.bytes + weight > self.limits.max_bytes;
                if full {
                    if delivery.qos == QoS::AtMostOnce {
                        self.stats.dropped_qos0.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    inbox.overloaded = true;
                }
                inbox.bytes += weight;
                inbox.queue.push_back(delivery);
                drop(inbox);
                self.notify.notify_one();
            }
            Owner::Offline(session, _) => delivery.deliver_to(session, now, &self.stats),
            Owner::Ended => {}
        }
    }

    /// Waits until the mailbox has something for its connection task.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Called by connection `conn` when woken: takes the waiting deliveries into `out`, or
    /// the takeover request addressed to it.
    pub(crate) fn wake(&self, conn: u64, out: &mut VecDeque<Delivery>) -> Wake {
        let mut inbox = self.inbox.lock();
        if inbox.takeover.as_ref().is_some_and(|(c, _)| *c == conn) {
            return Wake::TakenOver;
        }
        if !matches!(inbox.owner, Owner::Online(c) if c == conn) {
            return Wake::Deliveries { overloaded: false };
        }
        std::mem::swap(&mut inbox.queue, out);
        inbox.bytes = 0;
        Wake::Deliveries {
            overloaded: std::mem::take(&mut inbox.overloaded),
        }
    }

    /// Moves what waits in the mailbox into `session` (closed: QoS 1/2 are queued).
    fn drain_into(
        inbox: &mut Inbox,
        session: &mut ServerSession,
        now: Instant,
        stats: &StatsCounters,
    ) {
        for delivery in inbox.queue.drain(..) {
            delivery.deliver_to(session, now, stats);
        }
        inbox.bytes = 0;
        inbox.overloaded = false;
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

    pub(crate) fn notify(&self) {
        self.notify.notify_one();
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
    sessions: Mutex<HashMap<MqttString, Arc<SessionHandle>>>,
    next_key: AtomicU64,
}

impl Registry {
    /// Connection `conn` claims `client_id`. With `clean_start`, or when the client has no
    /// session, a new session starts; an earlier connection of the client is asked to hand
    /// over either way (it is closed with 0x8E).
    pub(crate) fn claim(
        &self,
        client_id: &MqttString,
        conn: u64,
        clean_start: bool,
        limits: &MailboxLimits,
        stats: &Arc<StatsCounters>,
    ) -> Claim {
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(client_id).cloned();
        let fresh = || {
            Arc::new(SessionHandle::new(
                self.next_key.fetch_add(1, Ordering::Relaxed),
                client_id.clone(),
                conn,
                limits.clone(),
                stats.clone(),
            ))
        };
        let Some(old) = existing else {
            let handle = fresh();
            sessions.insert(client_id.clone(), handle.clone());
            return Claim {
                handle,
                previous: Previous::None,
                ended: None,
            };
        };
        let mut inbox = old.inbox.lock();
        let previous = match std::mem::replace(&mut inbox.owner, Owner::Ended) {
            Owner::Online(c) => {
                let (tx, rx) = oneshot::channel();
                inbox.takeover = Some((c, tx));
                old.notify.notify_one();
                Previous::Online(rx)
            }
            Owner::Offline(session, _) => Previous::Offline(session),
            Owner::Ended => Previous::None,
        };
        if clean_start {
            inbox.queue.clear();
            inbox.bytes = 0;
            drop(inbox);
            let handle = fresh();
            sessions.insert(client_id.clone(), handle.clone());
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
        let stats = handle.stats.clone();
        if inbox.takeover.as_ref().is_some_and(|(c, _)| *c == conn) {
            let (_, tx) = inbox.takeover.take().expect("checked above");
            if matches!(inbox.owner, Owner::Online(_)) {
                SessionHandle::drain_into(&mut inbox, &mut session, now, &stats);
            }
            // The new connection may have given up waiting; then the state is dropped.
            let _ = tx.send(session);
            return Released::HandedOver;
        }
        if !matches!(inbox.owner, Owner::Online(c) if c == conn) {
            return Released::NotOwner;
        }
        SessionHandle::drain_into(&mut inbox, &mut session, now, &stats);
        if keep {
            inbox.next_offline += 1;
            let n = inbox.next_offline;
            inbox.owner = Owner::Offline(session, n);
            Released::Offline(n)
        } else {
            inbox.owner = Owner::Ended;
            inbox.queue.clear();
            if sessions
                .get(&handle.client_id)
                .is_some_and(|h| Arc::ptr_eq(h, handle))
            {
                sessions.remove(&handle.client_id);
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
        if sessions
            .get(&handle.client_id)
            .is_some_and(|h| Arc::ptr_eq(h, handle))
        {
            sessions.remove(&handle.client_id);
        }
        true
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
            message: Arc::new(Message {
                publish: Publish {
                    topic: MqttString::from_static("t"),
                    payload: "xy".into(),
                    qos,
                    ..Publish::default()
                },
                origin: None,
                received_at: Instant::now(),
            }),
            qos,
            subscription_ids: Vec::new(),
            options: DeliveryOptions::default(),
        }
    }

    #[test]
    fn mailbox_drops_qos0_and_keeps_qos1_beyond_its_limits() {
        let stats = Arc::new(StatsCounters::default());
        let limits = MailboxLimits {
            max_messages: 2,
            max_bytes: 1 << 20,
        };
        let registry = Registry::default();
        let claim = registry.claim(&MqttString::from_static("c"), 1, true, &limits, &stats);
        let handle = claim.handle;
        let now = Instant::now();
        for _ in 0..3 {
            handle.push(delivery(QoS::AtMostOnce), now);
        }
        assert_eq!(stats.dropped_qos0.load(Ordering::Relaxed), 1);
        handle.push(delivery(QoS::AtLeastOnce), now);
        let mut out = VecDeque::new();
        let Wake::Deliveries { overloaded } = handle.wake(1, &mut out) else {
            panic!()
        };
        assert!(
            overloaded,
            "QoS 1 beyond the limit marks the session overloaded"
        );
        assert_eq!(out.len(), 3, "two QoS 0 and the QoS 1 were kept");
        assert_eq!(out.back().unwrap().qos, QoS::AtLeastOnce);
        // Emptied: under the limit again.
        let Wake::Deliveries { overloaded } = handle.wake(1, &mut out) else {
            panic!()
        };
        assert!(!overloaded);
    }

    #[test]
    fn offline_session_queues_qos1_and_drops_qos0() {
        let stats = Arc::new(StatsCounters::default());
        let limits = MailboxLimits::default();
        let registry = Registry::default();
        let id = MqttString::from_static("c");
        let handle = registry.claim(&id, 1, true, &limits, &stats).handle;
        let now = Instant::now();
        let session = Box::new(ServerSession::new(ServerConfig::default()));
        let Released::Offline(n) = registry.release(&handle, 1, session, true, now) else {
            panic!()
        };
        handle.push(delivery(QoS::AtMostOnce), now);
        handle.push(delivery(QoS::AtLeastOnce), now);
        assert_eq!(handle.with_offline(n, |s| s.state().queued.len()), Some(1));
        // A new connection resumes it and gets the engine back.
        let claim = registry.claim(&id, 2, false, &limits, &stats);
        assert!(Arc::ptr_eq(&claim.handle, &handle));
        let Previous::Offline(session) = claim.previous else {
            panic!()
        };
        assert_eq!(session.state().queued.len(), 1);
        assert_eq!(handle.with_offline(n, |_| ()), None);
    }
}
