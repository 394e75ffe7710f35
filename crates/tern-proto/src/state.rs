//! Session state: what outlives a network connection [MQTT-4.1.0-1], as plain data.
//!
//! The broker takes it out of a server session with
//! [`ServerSession::into_state`](crate::ServerSession::into_state), keeps or persists it, and
//! hands it to the next connection of the same client through
//! [`Accept`](crate::Accept); a client does the same with
//! [`ClientSession::into_state`](crate::ClientSession::into_state). Every field is public plain
//! data so that the broker can serialize it; the engine checks it when it is put back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tern_codec::{PacketId, Publish, PublishFlags, QoS, ReasonCode};

/// Where an outgoing QoS 1 or QoS 2 message stands in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutgoingPhase {
    /// QoS 1, PUBLISH sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2, PUBLISH sent, waiting for PUBREC.
    AwaitPubRec,
    /// QoS 2, PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

/// An outgoing message in flight: sent, not yet acknowledged.
///
/// The message itself is shared ([`Arc`]): a broker that delivers one message to many
/// subscribers keeps it once, not once per subscriber, and a delivery costs a reference
/// count instead of a copy of the packet. What is this delivery's own (its packet
/// identifier, its QoS, which the phase tells, and its RETAIN flag) is kept beside it; the
/// shared PUBLISH's own DUP, QoS, RETAIN and packet identifier are not looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingPublish {
    /// Its packet identifier.
    pub packet_id: PacketId,
    /// Its handshake phase.
    pub phase: OutgoingPhase,
    /// RETAIN as this delivery sends it.
    pub retain: bool,
    /// The message as first sent: the full topic (aliases never outlive a connection
    /// [MQTT-3.3.2-7]) and the properties of this delivery; resent with DUP set on session
    /// resume [MQTT-4.4.0-1].
    pub publish: Arc<Publish>,
}

impl OutgoingPublish {
    /// Its QoS, from its phase: 1 waiting for PUBACK, 2 otherwise.
    pub fn qos(&self) -> QoS {
        match self.phase {
            OutgoingPhase::AwaitPubAck => QoS::AtLeastOnce,
            OutgoingPhase::AwaitPubRec | OutgoingPhase::AwaitPubComp => QoS::ExactlyOnce,
        }
    }

    /// The fixed-header fields it is sent with (`dup` for a resend).
    pub fn flags(&self, dup: bool) -> PublishFlags {
        PublishFlags {
            dup,
            qos: self.qos(),
            retain: self.retain,
            packet_id: Some(self.packet_id),
        }
    }

    /// The PUBLISH as it was first sent (DUP clear): a copy of the message with this
    /// delivery's fields.
    pub fn to_publish(&self) -> Publish {
        let mut publish = Publish::clone(&self.publish);
        let flags = self.flags(false);
        (publish.dup, publish.qos, publish.retain, publish.packet_id) =
            (flags.dup, flags.qos, flags.retain, flags.packet_id);
        publish
    }

    /// An entry for `publish` as sent with `packet_id` (its QoS, 1 or 2, sets the phase).
    pub fn new(packet_id: PacketId, publish: Publish) -> Self {
        let phase = if publish.qos == QoS::ExactlyOnce {
            OutgoingPhase::AwaitPubRec
        } else {
            OutgoingPhase::AwaitPubAck
        };
        OutgoingPublish {
            packet_id,
            phase,
            retain: publish.retain,
            publish: Arc::new(publish),
        }
    }
}

/// A message waiting beyond the in-flight window (server side), or for the client to come back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The PUBLISH to send, options already applied; its packet identifier is assigned when it
    /// leaves the queue.
    pub publish: Publish,
    /// When the server received the message: the Message Expiry Interval counts from here
    /// [MQTT-3.3.2-6].
    pub received_at: Instant,
}

impl QueuedMessage {
    /// The bytes the queue limit counts: topic plus payload.
    pub fn weight(&self) -> usize {
        self.publish.topic.len() + self.publish.payload.len()
    }
}

/// An inbound QoS 1 or QoS 2 PUBLISH that the application has not acknowledged yet, or whose
/// acknowledgement waits behind an earlier one [MQTT-4.6.0-2], [MQTT-4.6.0-3].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundPublish {
    /// Its packet identifier.
    pub packet_id: PacketId,
    /// QoS 1 (answered by PUBACK) or QoS 2 (answered by PUBREC).
    pub qos: QoS,
    /// The application's answer, once given.
    pub ack: Option<ReasonCode>,
}

/// The state of a session that outlives its network connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionState {
    /// Outgoing QoS 1 and QoS 2 messages in flight, in the order they were first sent
    /// [MQTT-4.6.0-1].
    pub outgoing: VecDeque<OutgoingPublish>,
    /// Messages waiting for the in-flight window (server side), oldest first.
    pub queued: VecDeque<QueuedMessage>,
    /// Inbound QoS 1 and QoS 2 messages not yet acknowledged, in arrival order.
    pub inbound: VecDeque<InboundPublish>,
    /// Inbound QoS 2 packet identifiers acknowledged with PUBREC and waiting for PUBREL; a
    /// PUBLISH with one of them is a duplicate and is not delivered again [MQTT-4.3.3-10].
    /// The engine keeps them in round-robin order: ascending from the front, wrapping past
    /// 65,535 to 1 (an ascending list put back by a broker is in that order).
    pub awaiting_pubrel: VecDeque<PacketId>,
    /// The next packet identifier to try for outgoing packets.
    pub next_packet_id: u16,
    /// The Session Expiry Interval in force, in seconds (0: the session ends with the
    /// connection; `u32::MAX`: it never expires).
    pub session_expiry_interval: u32,
}

impl SessionState {
    /// An empty session.
    pub fn new() -> Self {
        SessionState::default()
    }

    /// Whether the session holds nothing in flight, queued or waiting.
    pub fn is_empty(&self) -> bool {
        self.outgoing.is_empty()
            && self.queued.is_empty()
            && self.inbound.is_empty()
            && self.awaiting_pubrel.is_empty()
    }

    /// Outgoing packet identifiers in flight, in send order.
    pub fn outgoing_ids(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.outgoing.iter().map(|o| o.packet_id)
    }

    /// The bytes of the queued messages, as counted against the queue limit.
    pub fn queued_bytes(&self) -> usize {
        self.queued.iter().map(QueuedMessage::weight).sum()
    }

    /// Removes duplicate identifiers and impossible entries from state put back by a broker,
    /// keeping the first of each.
    pub(crate) fn sanitize(&mut self) {
        let mut seen = std::collections::BTreeSet::new();
        // An entry's QoS comes from its phase: there is no QoS 0 entry to drop.
        self.outgoing.retain(|o| seen.insert(o.packet_id));
        let mut seen_in = std::collections::BTreeSet::new();
        self.inbound
            .retain(|i| i.qos != QoS::AtMostOnce && seen_in.insert(i.packet_id));
        let mut awaiting = Vec::from(std::mem::take(&mut self.awaiting_pubrel));
        awaiting.sort_unstable();
        awaiting.dedup();
        self.awaiting_pubrel = awaiting.into();
        self.queued.retain(|q| q.publish.qos != QoS::AtMostOnce);
    }
}

/// A session's state as the engine holds it: its queues are boxed while the session has
/// something in flight, queued or waiting, and the box is dropped again once all four are
/// empty at a quiet moment ([`release_if_empty`](Self::release_if_empty)). An idle
/// connection's engine holds a null pointer instead of four empty queues (128 bytes, which
/// for a broker holding thousands of idle connections is a sixth of each one's memory).
///
/// The Session Expiry Interval and the next packet identifier are kept here, beside the box,
/// and copied into it whenever they change while it exists, so that [`view`](Self::view) is
/// a whole [`SessionState`].
#[derive(Debug, Default)]
pub(crate) struct StateBox {
    queues: Option<Box<SessionState>>,
    expiry: u32,
    next_packet_id: u16,
}

/// The queues of a session that has none boxed.
static EMPTY: SessionState = SessionState {
    outgoing: VecDeque::new(),
    queued: VecDeque::new(),
    inbound: VecDeque::new(),
    awaiting_pubrel: VecDeque::new(),
    next_packet_id: 0,
    session_expiry_interval: 0,
};

impl StateBox {
    /// Holds `state`: boxed if it has anything queued.
    pub(crate) fn new(state: SessionState) -> Self {
        StateBox {
            expiry: state.session_expiry_interval,
            next_packet_id: state.next_packet_id,
            queues: (!state.is_empty()).then(|| Box::new(state)),
        }
    }

    /// The queues (empty ones when none are boxed). Their `session_expiry_interval` and
    /// `next_packet_id` are not for reading: see [`expiry`](Self::expiry) and
    /// [`next_packet_id`](Self::next_packet_id).
    pub(crate) fn queues(&self) -> &SessionState {
        self.queues.as_deref().unwrap_or(&EMPTY)
    }

    /// The queues to change, boxed first if they were not.
    pub(crate) fn queues_mut(&mut self) -> &mut SessionState {
        let empty = self.empty();
        self.queues.get_or_insert_with(|| Box::new(empty))
    }

    /// A state with nothing queued, this one's interval and next identifier.
    fn empty(&self) -> SessionState {
        SessionState {
            next_packet_id: self.next_packet_id,
            session_expiry_interval: self.expiry,
            ..SessionState::default()
        }
    }

    /// The queues to change if they are boxed (when there is nothing to take from empty
    /// ones, nothing needs boxing).
    pub(crate) fn boxed_mut(&mut self) -> Option<&mut SessionState> {
        self.queues.as_deref_mut()
    }

    /// Drops the box once all the queues are empty.
    pub(crate) fn release_if_empty(&mut self) {
        if self.queues.as_ref().is_some_and(|q| q.is_empty()) {
            self.queues = None;
        }
    }

    /// The Session Expiry Interval in force, in seconds.
    pub(crate) fn expiry(&self) -> u32 {
        self.expiry
    }

    pub(crate) fn set_expiry(&mut self, expiry: u32) {
        self.expiry = expiry;
        if let Some(q) = self.queues.as_mut() {
            q.session_expiry_interval = expiry;
        }
    }

    /// The next packet identifier to try, as last recorded.
    pub(crate) fn next_packet_id(&self) -> u16 {
        self.next_packet_id
    }

    pub(crate) fn set_next_packet_id(&mut self, next: u16) {
        self.next_packet_id = next;
        if let Some(q) = self.queues.as_mut() {
            q.next_packet_id = next;
        }
    }

    /// The whole state: borrowed when boxed, an empty one with the interval and identifier
    /// otherwise (which allocates nothing).
    pub(crate) fn view(&self) -> std::borrow::Cow<'_, SessionState> {
        match &self.queues {
            Some(q) => std::borrow::Cow::Borrowed(q),
            None => std::borrow::Cow::Owned(self.empty()),
        }
    }

    /// The whole state, taken out.
    pub(crate) fn into_state(self) -> SessionState {
        match self.queues {
            Some(q) => *q,
            None => self.empty(),
        }
    }
}
