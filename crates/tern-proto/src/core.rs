//! The shared core of both sides: packet identifiers, in-flight tables, inbound QoS 2
//! de-duplication, acknowledgements in receive order, topic aliases, flow control, keepalive,
//! timers and the output queues. The client and server roles are thin layers on top.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tern_codec::{
    Ack, AckKind, AckProperties, Auth, DecodeError, Decoder, Disconnect, EncodeError,
    EncodedPublish, MAX_PACKET_SIZE, MqttString, Packet, PacketId, PacketType, PreparedPublish,
    ProtocolVersion, Publish, PublishFlags, QoS, ReasonCode, Will,
};
use thin_vec::ThinVec;

use crate::alias::{Choice, InboundAliases, OutboundAliases, Resolve};
use crate::config::AckMode;
use crate::error::{ConnectionError, ProtocolError, PublishError, UserError};
use crate::event::{Event, will_to_publish};
use crate::packet_id::{PacketIds, round_robin};
use crate::state::{
    InboundPublish, OutgoingPhase, OutgoingPublish, QueuedMessage, SessionState, StateBox,
};
use crate::timer::{Timer, TimerTable};

/// Which end of the connection an engine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Client: before `connect`. Server: waiting for CONNECT.
    Idle,
    /// Client: CONNECT sent, waiting for CONNACK. Server: CONNECT surfaced, waiting for the
    /// broker's answer.
    Connecting,
    /// CONNACK exchanged.
    Connected,
    /// The connection ended (reported once).
    Closed,
}

/// The peer's limits, as this side must honour them when sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SendLimits {
    pub(crate) receive_maximum: u16,
    pub(crate) maximum_packet_size: u32,
    pub(crate) maximum_qos: QoS,
    pub(crate) retain_available: bool,
}

impl Default for SendLimits {
    fn default() -> Self {
        SendLimits {
            receive_maximum: u16::MAX,
            maximum_packet_size: MAX_PACKET_SIZE,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
        }
    }
}

/// The limits this side announced and enforces on input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReceiveLimits {
    pub(crate) receive_maximum: u16,
    pub(crate) maximum_qos: QoS,
    pub(crate) retain_available: bool,
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        ReceiveLimits {
            receive_maximum: u16::MAX,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
        }
    }
}

/// The encoded size of a packet.
pub(crate) fn wire_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    packet.encoded_len(version)
}

/// The PUBLISH as it goes on the wire with a topic alias [MQTT-3.3.2-12]: defined (alias and
/// topic) or used (alias and an empty topic).
fn with_alias(mut publish: Publish, choice: Choice) -> Publish {
    match choice {
        Choice::Define(a) => publish.properties.topic_alias = PacketId::new(a),
        Choice::Use(a) => {
            publish.properties.topic_alias = PacketId::new(a);
            publish.topic = MqttString::new();
        }
        Choice::None => {}
    }
    publish
}

/// Frees a queue's storage once it is drained, if the batch it just gave (`batch` entries)
/// was a small one: a connection that has gone quiet (its last output a CONNACK or a
/// PINGRESP) keeps no buffer sized for its busiest moment (a `Packet` is a few hundred
/// bytes, so four of them already cost more than a whole idle session should), while a busy
/// one keeps its capacity instead of growing it again at every step.
fn release_if_quiet<T>(queue: &mut VecDeque<T>, batch: u32) {
    if queue.is_empty() && queue.capacity() > QUIET_BATCH as usize && batch <= QUIET_BATCH {
        *queue = VecDeque::new();
    }
}

/// A batch of at most this many entries is a quiet one (see [`release_if_quiet`]).
const QUIET_BATCH: u32 = 2;

/// The transmit buffer a quiet connection may keep.
const QUIET_KEEP_BYTES: usize = 1024;

/// The shared engine.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) side: Side,
    pub(crate) version: ProtocolVersion,
    pub(crate) phase: Phase,
    pub(crate) state: StateBox,
    pub(crate) ids: PacketIds,
    /// Client: SUBSCRIBE/UNSUBSCRIBE identifiers awaiting SUBACK/UNSUBACK (with `true` for
    /// SUBSCRIBE). Server: requests awaiting the broker's answer (with the filter count).
    pub(crate) requests: ThinVec<(PacketId, PacketType, usize)>,
    pub(crate) decoder: Decoder,
    /// Packets waiting for `poll_transmit`, encoded when they were queued: a message in
    /// flight is kept once (in the session state), not a second time as a packet to send.
    out: BytesMut,
    /// Packets in `out`, for [`release_if_quiet`]'s rule.
    out_packets: u32,
    /// Bytes of the PUBLISH packets in `out`, for the server's QoS 0 backlog bound.
    out_publish_bytes: usize,
    events: VecDeque<Event>,
    /// Events taken since `events` was last found empty.
    events_popped: u32,
    pub(crate) timers: TimerTable,
    now: Option<Instant>,
    /// Keep alive in force, seconds (0: none).
    pub(crate) keep_alive: u16,
    pub(crate) ping_timeout: Option<Duration>,
    ping_outstanding: bool,
    /// The driver holds reads back (back-pressure, rate limits): the peer's packets are not
    /// being read, so their absence says nothing about the link.
    reads_paused: bool,
    /// Inbound messages the application had not acknowledged when this connection started:
    /// the first re-delivery of each is surfaced again (see `on_publish`).
    unacked_before: ThinVec<PacketId>,
    pub(crate) send: SendLimits,
    pub(crate) recv: ReceiveLimits,
    pub(crate) in_aliases: InboundAliases,
    pub(crate) out_aliases: OutboundAliases,
    pub(crate) ack_mode: AckMode,
    /// Whether final acknowledgements of outgoing messages become events.
    pub(crate) acknowledgement_events: bool,
    pub(crate) max_inflight: u16,
    blocked: bool,
    /// The Authentication Method of CONNECT, when enhanced authentication is in use (boxed:
    /// most connections have none).
    pub(crate) auth_method: Option<Box<MqttString>>,
    /// Server: the Will Message of the current connection.
    pub(crate) will: Option<Box<Will>>,
    /// Server: a Will waiting for its delay after the connection ended.
    pub(crate) pending_will: Option<Box<Will>>,
    /// The Session Expiry Interval CONNECT asked for (DISCONNECT may not raise it from 0).
    pub(crate) connect_session_expiry: u32,
    /// The weight of `state.queued` (see [`QueuedMessage::weight`]), kept as the queue
    /// changes: summing it per message made a backed-up queue quadratic.
    queued_bytes: usize,
}

/// A PUBLISH ready to be written: measured for this session, or encoded once for many.
enum Wire<'a> {
    Prepared(PreparedPublish<'a>),
    Encoded(&'a EncodedPublish),
}

impl Wire<'_> {
    fn len(&self) -> usize {
        match self {
            Wire::Prepared(prepared) => prepared.len(),
            Wire::Encoded(encoded) => encoded.len(),
        }
    }
}

impl Core {
    pub(crate) fn new(side: Side, version: ProtocolVersion, decoder: Decoder) -> Self {
        Core {
            side,
            version,
            phase: Phase::Idle,
            state: StateBox::default(),
            ids: PacketIds::default(),
            requests: ThinVec::new(),
            decoder,
            out: BytesMut::new(),
            out_packets: 0,
            out_publish_bytes: 0,
            events: VecDeque::new(),
            events_popped: 0,
            timers: TimerTable::default(),
            now: None,
            keep_alive: 0,
            ping_timeout: None,
            ping_outstanding: false,
            reads_paused: false,
            unacked_before: ThinVec::new(),
            send: SendLimits::default(),
            recv: ReceiveLimits::default(),
            in_aliases: InboundAliases::new(0),
            out_aliases: OutboundAliases::new(0, false),
            ack_mode: AckMode::Auto,
            acknowledgement_events: true,
            max_inflight: u16::MAX,
            blocked: false,
            auth_method: None,
            will: None,
            pending_will: None,
            connect_session_expiry: 0,
            queued_bytes: 0,
        }
    }

    /// Records the time of an input; time never goes backwards.
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = Some(match self.now {
            Some(prev) if prev > now => prev,
            _ => now,
        });
    }

    /// Installs a session state (resumed or put back), claiming its identifiers.
    pub(crate) fn install_state(&mut self, mut state: SessionState) {
        state.sanitize();
        self.ids = PacketIds::with_next(state.next_packet_id);
        for o in &state.outgoing {
            self.ids.claim(o.packet_id);
        }
        self.state = StateBox::new(state);
        self.recount_queue();
    }

    /// Counts the queue's weight again after the state's queue was replaced wholesale.
    pub(crate) fn recount_queue(&mut self) {
        self.queued_bytes = self.state.queues().queued_bytes();
    }

    /// Forgets everything that belongs to one network connection.
    pub(crate) fn reset_connection(&mut self) {
        self.out = BytesMut::new();
        self.out_packets = 0;
        self.out_publish_bytes = 0;
        self.timers.stop_connection_timers();
        self.ping_outstanding = false;
        self.reads_paused = false;
        self.blocked = false;
        self.in_aliases = InboundAliases::new(0);
        self.out_aliases = OutboundAliases::new(0, false);
        self.send = SendLimits::default();
        self.drop_requests();
        self.phase = Phase::Idle;
    }

    // ----- outputs -----

    pub(crate) fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if event.is_none() {
            release_if_quiet(&mut self.events, self.events_popped);
            self.events_popped = 0;
        } else {
            self.events_popped = self.events_popped.saturating_add(1);
        }
        event
    }

    /// Queues a packet for `poll_transmit`. A client re-arms its keepalive: the link is not
    /// idle [MQTT-3.1.2-20].
    pub(crate) fn queue(&mut self, packet: Packet) {
        let result = packet.encode(self.version, &mut self.out);
        self.queued_packet(result);
    }

    fn queued_packet(&mut self, result: Result<(), EncodeError>) {
        // Every packet queued was checked with `encoded_len` or built by the engine for the
        // version in force, so encoding cannot fail; a failure would be an engine bug, and the
        // packet is skipped (encoding writes nothing on error) rather than sent half-written.
        debug_assert!(
            result.is_ok(),
            "engine queued an unencodable packet: {result:?}"
        );
        self.out_packets = self.out_packets.saturating_add(1);
        if self.side == Side::Client
            && self.keep_alive > 0
            && self.phase == Phase::Connected
            && let Some(now) = self.now
        {
            self.timers.set(
                Timer::KeepAliveSend,
                now + Duration::from_secs(self.keep_alive.into()),
            );
        }
    }

    /// Appends every queued packet to `buf`; returns the bytes appended.
    pub(crate) fn poll_transmit(&mut self, buf: &mut BytesMut) -> usize {
        let len = self.out.len();
        if buf.is_empty() {
            // The buffers trade places, nothing is copied.
            core::mem::swap(buf, &mut self.out);
        } else {
            buf.extend_from_slice(&self.out);
            self.out.clear();
        }
        if self.out_packets <= QUIET_BATCH && self.out.capacity() > QUIET_KEEP_BYTES {
            // As in `release_if_quiet`: a connection gone quiet keeps no room for its busiest
            // moment (a steady trickle keeps a small buffer and allocates nothing).
            self.out = BytesMut::new();
        }
        self.out_packets = 0;
        self.out_publish_bytes = 0;
        len
    }

    /// Bytes of PUBLISH packets waiting for `poll_transmit`.
    pub(crate) fn publish_backlog(&self) -> usize {
        self.out_publish_bytes
    }

    pub(crate) fn has_transmit(&self) -> bool {
        self.out_packets > 0
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- input -----

    /// Decodes the next packet of `buf` for the session to handle. A decode error closes the
    /// connection and yields `None`, as does a closed connection (its input is discarded).
    ///
    /// The bulk of a connected session's input is handled right here and not returned: a
    /// PUBLISH, and a short PUBACK, PUBREC, PUBREL or PUBCOMP from its kind and body. Both
    /// sides handle them alike, and each hop of a [`Packet`] (232 bytes) through the session
    /// is a copy.
    pub(crate) fn next_packet(&mut self, buf: &mut BytesMut) -> Option<Packet> {
        loop {
            if self.phase == Phase::Closed {
                buf.clear();
                return None;
            }
            if let Some((kind, ack)) = self.decoder.decode_ack(buf) {
                self.heard_from_peer();
                if self.phase != Phase::Connected {
                    return Some(kind.packet(ack));
                }
                self.on_ack(kind, ack);
                continue;
            }
            match self.decoder.decode(buf) {
                Ok(Some(Packet::Publish(publish))) if self.phase == Phase::Connected => {
                    self.heard_from_peer();
                    if let Err(e) = self.on_publish(publish) {
                        self.protocol_error(e);
                    }
                }
                Ok(Some(packet)) => {
                    self.heard_from_peer();
                    return Some(packet);
                }
                Ok(None) => return None,
                Err(e) => {
                    buf.clear();
                    if let DecodeError::UnsupportedProtocolLevel(level) = e
                        && self.side == Side::Server
                        && self.phase == Phase::Idle
                    {
                        self.refuse_protocol_level(level);
                    }
                    self.protocol_error(ProtocolError::Decode(e));
                    return None;
                }
            }
        }
    }

    /// Server: a CONNECT with a protocol level the server does not speak is answered with
    /// CONNACK "unacceptable protocol level" before the connection closes [MQTT-3.1.2-2]. The
    /// client's version is unknown, so a level above 5 gets the newest format (5.0, 0x84) and
    /// a lower one the 3.1.1 format (return code 1).
    fn refuse_protocol_level(&mut self, level: u8) {
        self.version = if level > 5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        self.queue(Packet::from(tern_codec::ConnAck {
            session_present: false,
            reason_code: ReasonCode::UnsupportedProtocolVersion,
            properties: Default::default(),
        }));
    }

    /// The driver stops (`false`) or resumes (`true`) reading the peer's bytes. While reads
    /// are held back the timers that judge the peer by what it sent are suspended: the
    /// server's 1.5 × Keep Alive deadline [MQTT-3.1.2-22] and the client's wait for PINGRESP.
    /// On resuming they start again from `now`, so a peer is never cut off for packets the
    /// driver did not read.
    pub(crate) fn set_reading(&mut self, now: Instant, reading: bool) {
        self.set_now(now);
        if self.reads_paused != reading {
            return;
        }
        self.reads_paused = !reading;
        if self.phase != Phase::Connected {
            return;
        }
        let now = self.now.unwrap_or(now);
        match (self.side, reading) {
            (Side::Server, false) => self.timers.stop(Timer::KeepAliveReceive),
            (Side::Server, true) => self.heard_from_peer(),
            (Side::Client, false) => self.timers.stop(Timer::PingResponse),
            (Side::Client, true) => {
                if self.ping_outstanding {
                    let wait = self
                        .ping_timeout
                        .unwrap_or(Duration::from_secs(self.keep_alive.into()));
                    self.timers.set(Timer::PingResponse, now + wait);
                }
            }
        }
    }

    /// Server: any packet from the client resets the 1.5 × keep alive deadline
    /// [MQTT-3.1.2-22]; not armed while reads are held back.
    fn heard_from_peer(&mut self) {
        if self.side == Side::Server
            && !self.reads_paused
            && self.keep_alive > 0
            && self.phase == Phase::Connected
            && let Some(now) = self.now
        {
            let ms = u64::from(self.keep_alive) * 1500;
            self.timers
                .set(Timer::KeepAliveReceive, now + Duration::from_millis(ms));
        }
    }

    /// Arms the keepalive timers once connected.
    pub(crate) fn start_keepalive(&mut self) {
        self.ping_outstanding = false;
        self.timers.stop(Timer::KeepAliveSend);
        self.timers.stop(Timer::PingResponse);
        self.timers.stop(Timer::KeepAliveReceive);
        if self.keep_alive == 0 {
            return;
        }
        let Some(now) = self.now else { return };
        match self.side {
            Side::Client => self.timers.set(
                Timer::KeepAliveSend,
                now + Duration::from_secs(self.keep_alive.into()),
            ),
            Side::Server => self.heard_from_peer(),
        }
    }

    /// The peer broke a rule: DISCONNECT with its reason code (5.0, once connected) and close.
    pub(crate) fn protocol_error(&mut self, error: ProtocolError) {
        let code = error.reason_code();
        self.close(ConnectionError::Protocol(error), Some(code));
    }

    /// Ends the connection, reporting `reason` once. In 5.0 a DISCONNECT with `disconnect`
    /// is sent first when the connection is established (a server that has not answered
    /// CONNECT yet answers with CONNACK instead).
    pub(crate) fn close(&mut self, reason: ConnectionError, disconnect: Option<ReasonCode>) {
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(code) = disconnect.filter(|_| self.version.is_v5()) {
            match (self.side, self.phase) {
                (_, Phase::Connected) | (Side::Client, Phase::Connecting) => {
                    self.queue(Packet::Disconnect(Disconnect {
                        reason_code: code,
                        ..Default::default()
                    }));
                }
                (Side::Server, Phase::Connecting) if code.is_allowed_in(PacketType::ConnAck) => {
                    self.queue(Packet::from(tern_codec::ConnAck {
                        session_present: false,
                        reason_code: code,
                        properties: Default::default(),
                    }));
                }
                _ => {}
            }
        }
        self.phase = Phase::Closed;
        self.timers.stop_connection_timers();
        self.ping_outstanding = false;
        self.drop_requests();
        // An ended connection's session may wait offline for a long time.
        self.quiet();
        let publish_will = !reason.is_normal_disconnect();
        self.events.push_back(Event::Disconnected(reason));
        if let Some(will) = self.will.take().filter(|_| publish_will) {
            self.schedule_will(will);
        }
    }

    /// After an unclean end: the Will is published after the smaller of the Will Delay
    /// Interval and the Session Expiry Interval [MQTT-3.1.2-8], [MQTT-3.1.3-9].
    fn schedule_will(&mut self, will: Box<Will>) {
        let delay = if self.version.is_v5() {
            will.properties
                .will_delay_interval
                .unwrap_or(0)
                .min(self.state.expiry())
        } else {
            0
        };
        match (delay, self.now) {
            (0, _) | (_, None) => self.events.push_back(Event::Will(will_to_publish(&will))),
            (secs, Some(now)) => {
                self.timers
                    .set(Timer::WillDelay, now + Duration::from_secs(secs.into()));
                self.pending_will = Some(will);
            }
        }
    }

    // ----- timers -----

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.set_now(now);
        let now = self.now.unwrap_or(now);
        for timer in self.timers.take_expired(now) {
            match timer {
                Timer::KeepAliveSend => {
                    if self.phase == Phase::Connected && !self.ping_outstanding {
                        self.ping_outstanding = true;
                        let wait = self
                            .ping_timeout
                            .unwrap_or(Duration::from_secs(self.keep_alive.into()));
                        if !self.reads_paused {
                            self.timers.set(Timer::PingResponse, now + wait);
                        }
                        self.queue(Packet::PingReq);
                    }
                }
                Timer::PingResponse => {
                    if self.ping_outstanding {
                        self.close(ConnectionError::KeepAliveTimeout, None);
                    }
                }
                Timer::KeepAliveReceive => {
                    if self.phase == Phase::Connected {
                        self.close(
                            ConnectionError::KeepAliveTimeout,
                            Some(ReasonCode::KeepAliveTimeout),
                        );
                    }
                }
                Timer::Connect => {
                    if matches!(self.phase, Phase::Idle | Phase::Connecting) {
                        self.close(ConnectionError::ConnectTimeout, None);
                    }
                }
                Timer::WillDelay => {
                    if let Some(will) = self.pending_will.take() {
                        self.events.push_back(Event::Will(will_to_publish(&will)));
                    }
                }
            }
        }
    }

    // ----- packets both sides handle alike -----

    /// PINGRESP (client side).
    pub(crate) fn on_pingresp(&mut self) {
        self.ping_outstanding = false;
        self.timers.stop(Timer::PingResponse);
        self.quiet();
    }

    /// A quiet moment (a keepalive ping went by, or the connection ended): the session's
    /// queues, if all are empty, need not stay boxed.
    pub(crate) fn quiet(&mut self) {
        self.state.release_if_empty();
        self.ids.release_if_empty();
    }

    /// An inbound PUBLISH.
    pub(crate) fn on_publish(&mut self, mut publish: Publish) -> Result<(), ProtocolError> {
        if let Some(alias) = publish.properties.topic_alias.take() {
            match self.in_aliases.resolve(alias.get(), &publish.topic) {
                Resolve::Topic(topic) => publish.topic = topic,
                Resolve::Invalid => {
                    return Err(ProtocolError::TopicAliasInvalid {
                        alias: alias.get(),
                        maximum: self.in_aliases.maximum(),
                    });
                }
                Resolve::Unknown => return Err(ProtocolError::UnknownTopicAlias(alias.get())),
            }
        }
        if self.side == Side::Server {
            if !publish.properties.subscription_identifiers.is_empty() {
                return Err(ProtocolError::SubscriptionIdFromClient);
            }
            if publish.qos > self.recv.maximum_qos {
                return Err(ProtocolError::QoSNotSupported);
            }
            if publish.retain && !self.recv.retain_available {
                return Err(ProtocolError::RetainNotSupported);
            }
        }
        let qos = publish.qos;
        let Some(id) = publish.packet_id.filter(|_| qos != QoS::AtMostOnce) else {
            self.events.push_back(Event::Publish {
                publish,
                needs_ack: false,
            });
            return Ok(());
        };
        if qos == QoS::ExactlyOnce
            && round_robin::search(&self.state.queues().awaiting_pubrel, id).is_ok()
        {
            // A duplicate of a message already received: PUBREC again, no second delivery
            // [MQTT-4.3.3-10].
            self.queue(Packet::PubRec(Ack::new(id)));
            return Ok(());
        }
        if self
            .state
            .queues()
            .inbound
            .iter()
            .any(|i| i.packet_id == id)
        {
            // A re-delivery of a message the application has not acknowledged yet: its
            // acknowledgement will answer both. When the message dates from an earlier
            // connection its first re-delivery is surfaced again: the application (or the
            // driver that held it) may have lost it with that connection, and an unacknowledged
            // message counts as not taken, so without this it would never arrive at all.
            // A session now in automatic mode acknowledges it as it surfaces it.
            if let Some(pos) = self.unacked_before.iter().position(|&p| p == id) {
                self.unacked_before.swap_remove(pos);
                let auto = self.ack_mode == AckMode::Auto;
                if auto
                    && let Some(entry) = self
                        .state
                        .queues_mut()
                        .inbound
                        .iter_mut()
                        .find(|i| i.packet_id == id)
                {
                    entry.ack = Some(ReasonCode::Success);
                }
                self.events.push_back(Event::Publish {
                    publish,
                    needs_ack: !auto,
                });
                self.flush_acks();
            }
            return Ok(());
        }
        let unacked = self.state.queues().inbound.len() + self.state.queues().awaiting_pubrel.len();
        if self.version.is_v5() && unacked >= usize::from(self.recv.receive_maximum) {
            return Err(ProtocolError::ReceiveMaximumExceeded(
                self.recv.receive_maximum,
            ));
        }
        let auto = self.ack_mode == AckMode::Auto;
        self.state.queues_mut().inbound.push_back(InboundPublish {
            packet_id: id,
            qos,
            ack: auto.then_some(ReasonCode::Success),
        });
        self.events.push_back(Event::Publish {
            publish,
            needs_ack: !auto,
        });
        self.flush_acks();
        Ok(())
    }

    /// The application's acknowledgement of an inbound QoS 1/2 message.
    pub(crate) fn ack(&mut self, id: PacketId, reason: ReasonCode) -> Result<(), UserError> {
        let Some(entry) = self.state.boxed_mut().and_then(|q| {
            q.inbound
                .iter_mut()
                .find(|i| i.packet_id == id && i.ack.is_none())
        }) else {
            return Err(UserError::UnknownPacketId(id.get()));
        };
        let packet = if entry.qos == QoS::AtLeastOnce {
            PacketType::PubAck
        } else {
            PacketType::PubRec
        };
        let allowed = if self.version.is_v5() {
            reason.is_allowed_in(packet)
        } else {
            reason == ReasonCode::Success
        };
        if !allowed {
            return Err(UserError::ReasonCode {
                packet,
                code: reason,
            });
        }
        entry.ack = Some(reason);
        self.flush_acks();
        Ok(())
    }

    /// Sends the acknowledgements that are ready, in the order the PUBLISH packets arrived
    /// [MQTT-4.6.0-2], [MQTT-4.6.0-3]; only while connected.
    pub(crate) fn flush_acks(&mut self) {
        if self.phase != Phase::Connected {
            return;
        }
        while let Some(&InboundPublish {
            packet_id,
            qos,
            ack: Some(code),
        }) = self.state.queues().inbound.front()
        {
            self.state.queues_mut().inbound.pop_front();
            let ack = Ack {
                packet_id,
                reason_code: code,
                properties: Default::default(),
            };
            if qos == QoS::AtLeastOnce {
                self.queue(Packet::PubAck(ack));
            } else {
                if !code.is_error() {
                    round_robin::insert(&mut self.state.queues_mut().awaiting_pubrel, packet_id);
                }
                self.queue(Packet::PubRec(ack));
            }
        }
    }

    /// PUBREL: release a QoS 2 message and answer PUBCOMP, or PUBCOMP 0x92 for an unknown
    /// identifier.
    pub(crate) fn on_pubrel(&mut self, ack: Ack) {
        let id = ack.packet_id;
        let released = self
            .state
            .boxed_mut()
            .is_some_and(|q| round_robin::remove(&mut q.awaiting_pubrel, id));
        let code = if released {
            ReasonCode::Success
        } else if self.version.is_v5() {
            ReasonCode::PacketIdentifierNotFound
        } else {
            ReasonCode::Success
        };
        self.queue(Packet::PubComp(Ack {
            packet_id: id,
            reason_code: code,
            properties: Default::default(),
        }));
    }

    /// Where the in-flight message with identifier `id` is.
    ///
    /// `outgoing` is in send order, which is the order its identifiers were handed out:
    /// round-robin from the front as a rule (see [`round_robin`]), so a binary search finds
    /// an entry among thousands in flight, also when QoS 2 entries awaiting PUBCOMP sit in
    /// front of the one a PUBREC is for. An entry held while the identifiers went all the way
    /// round breaks that order; then every entry is looked at.
    fn outgoing_position(&self, id: PacketId) -> Option<usize> {
        let outgoing = &self.state.queues().outgoing;
        let front = outgoing.front()?.packet_id;
        if front == id {
            return Some(0);
        }
        let distance = |x: PacketId| x.get().wrapping_sub(front.get());
        match outgoing.binary_search_by_key(&distance(id), |o| distance(o.packet_id)) {
            Ok(pos) => Some(pos),
            Err(_) => outgoing.iter().position(|o| o.packet_id == id),
        }
    }

    fn finish_outgoing(&mut self, pos: usize, reason_code: ReasonCode, properties: AckProperties) {
        let Some(o) = self.state.queues().outgoing.get(pos) else {
            return;
        };
        let (packet_id, qos) = (o.packet_id, o.qos());
        // Acknowledgements come in order [MQTT-4.6.0-2]: the oldest entry, as a rule.
        if pos == 0 {
            self.state.queues_mut().outgoing.pop_front();
        } else {
            self.state.queues_mut().outgoing.remove(pos);
        }
        self.ids.release(packet_id);
        if self.acknowledgement_events {
            self.events.push_back(Event::PublishAcknowledged {
                packet_id,
                qos,
                reason_code,
                properties,
            });
        }
        self.window_freed();
    }

    /// PUBACK, PUBREC, PUBREL or PUBCOMP received while connected.
    pub(crate) fn on_ack(&mut self, kind: AckKind, ack: Ack) {
        match kind {
            AckKind::PubAck => self.on_puback(ack),
            AckKind::PubRec => self.on_pubrec(ack),
            AckKind::PubRel => self.on_pubrel(ack),
            AckKind::PubComp => self.on_pubcomp(ack),
        }
    }

    /// PUBACK: a QoS 1 message is done. An acknowledgement for an identifier not in flight is
    /// ignored.
    pub(crate) fn on_puback(&mut self, ack: Ack) {
        if let Some(pos) = self.outgoing_position(ack.packet_id)
            && self.state.queues().outgoing[pos].phase == OutgoingPhase::AwaitPubAck
        {
            self.finish_outgoing(pos, ack.reason_code, ack.properties);
        }
    }

    /// PUBREC: answer PUBREL (again, for a duplicate PUBREC), or end the flow on an error code.
    pub(crate) fn on_pubrec(&mut self, ack: Ack) {
        let id = ack.packet_id;
        match self.outgoing_position(id) {
            Some(pos) => match self.state.queues().outgoing[pos].phase {
                OutgoingPhase::AwaitPubRec if ack.reason_code.is_error() => {
                    self.finish_outgoing(pos, ack.reason_code, ack.properties);
                }
                OutgoingPhase::AwaitPubRec | OutgoingPhase::AwaitPubComp => {
                    self.state.queues_mut().outgoing[pos].phase = OutgoingPhase::AwaitPubComp;
                    self.queue(Packet::PubRel(Ack::new(id)));
                }
                OutgoingPhase::AwaitPubAck => {}
            },
            None => {
                let code = if self.version.is_v5() {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                self.queue(Packet::PubRel(Ack {
                    packet_id: id,
                    reason_code: code,
                    properties: Default::default(),
                }));
            }
        }
    }

    /// PUBCOMP: a QoS 2 message is done.
    pub(crate) fn on_pubcomp(&mut self, ack: Ack) {
        if let Some(pos) = self.outgoing_position(ack.packet_id)
            && self.state.queues().outgoing[pos].phase == OutgoingPhase::AwaitPubComp
        {
            self.finish_outgoing(pos, ack.reason_code, ack.properties);
        }
    }

    /// DISCONNECT from the peer.
    pub(crate) fn on_disconnect(&mut self, disconnect: Disconnect) {
        if self.side == Side::Server
            && let Some(expiry) = disconnect.properties.session_expiry_interval
        {
            if self.connect_session_expiry == 0 && expiry != 0 {
                self.protocol_error(ProtocolError::SessionExpiryOnDisconnect);
                return;
            }
            self.state.set_expiry(expiry);
        }
        self.close(ConnectionError::PeerDisconnected(disconnect), None);
    }

    /// AUTH from the peer (5.0; the codec rejects it in 3.x): only after a CONNECT with an
    /// Authentication Method [MQTT-4.12.0-6], [MQTT-4.12.0-7], and always with that same method
    /// [MQTT-4.12.0-5], [MQTT-4.12.1-1].
    pub(crate) fn on_auth(&mut self, auth: Auth) -> Result<(), ProtocolError> {
        let Some(method) = self.auth_method.as_deref() else {
            return Err(ProtocolError::UnexpectedAuth);
        };
        if auth.properties.authentication_method.as_ref() != Some(method) {
            return Err(ProtocolError::AuthMethodMismatch);
        }
        let allowed = match (self.side, self.phase) {
            (Side::Client, Phase::Connecting) => {
                auth.reason_code == ReasonCode::ContinueAuthentication
            }
            (Side::Client, _) => matches!(
                auth.reason_code,
                ReasonCode::ContinueAuthentication | ReasonCode::Success
            ),
            (Side::Server, Phase::Connecting) => {
                auth.reason_code == ReasonCode::ContinueAuthentication
            }
            (Side::Server, _) => matches!(
                auth.reason_code,
                ReasonCode::ContinueAuthentication | ReasonCode::ReAuthenticate
            ),
        };
        if !allowed {
            return Err(ProtocolError::InvalidAuthReason(auth.reason_code));
        }
        self.events.push_back(Event::Auth(auth));
        Ok(())
    }

    /// Sends an AUTH packet for the application. It carries the Authentication Method of
    /// CONNECT [MQTT-4.12.0-5]: filled in when the application left it out, refused when it
    /// names another one.
    pub(crate) fn send_auth(&mut self, mut auth: Auth) -> Result<(), UserError> {
        if !self.version.is_v5() {
            return Err(UserError::NotSupported("AUTH exists only in MQTT 5.0"));
        }
        let Some(method) = self.auth_method.as_deref() else {
            return Err(UserError::InvalidState(
                "AUTH without an authentication method in CONNECT [MQTT-4.12.0-6], [MQTT-4.12.0-7]",
            ));
        };
        match &auth.properties.authentication_method {
            None => auth.properties.authentication_method = Some(method.clone()),
            Some(m) if m == method => {}
            Some(_) => {
                return Err(UserError::InvalidValue(
                    "AUTH names another authentication method than CONNECT [MQTT-4.12.0-5]",
                ));
            }
        }
        if matches!(self.phase, Phase::Idle | Phase::Closed) {
            return Err(UserError::NotConnected);
        }
        if !auth.reason_code.is_allowed_in(PacketType::Auth) {
            return Err(UserError::ReasonCode {
                packet: PacketType::Auth,
                code: auth.reason_code,
            });
        }
        let packet = Packet::Auth(auth);
        self.check_size(&packet)?;
        self.queue(packet);
        Ok(())
    }

    /// Checks that a packet can be encoded and is within the peer's Maximum Packet Size.
    pub(crate) fn check_size(&self, packet: &Packet) -> Result<usize, UserError> {
        let size = wire_len(packet, self.version).map_err(UserError::Encode)?;
        if size > self.send.maximum_packet_size as usize {
            return Err(UserError::PacketTooLarge {
                size,
                maximum: self.send.maximum_packet_size,
            });
        }
        Ok(size)
    }

    // ----- outgoing messages -----

    /// QoS 1/2 messages in flight.
    pub(crate) fn inflight(&self) -> usize {
        self.state.queues().outgoing.len()
    }

    /// Whether a QoS 1/2 PUBLISH would be refused for back-pressure now: the window is full
    /// or not connected. (QoS 0 is never held back.)
    pub(crate) fn is_full(&self) -> bool {
        self.phase == Phase::Connected && self.inflight() >= self.window()
    }

    /// The in-flight window: the peer's Receive Maximum [MQTT-3.3.4-7], [MQTT-3.3.4-9], capped
    /// by configuration.
    pub(crate) fn window(&self) -> usize {
        usize::from(self.send.receive_maximum.min(self.max_inflight).max(1))
    }

    /// Sends a new PUBLISH: assigns a packet identifier for QoS > 0 (never one in use
    /// [MQTT-2.2.1-3]), respects the window and the peer's Maximum Packet Size, and picks a
    /// topic alias. A message that is not sent comes back with the reason, untouched but for
    /// its DUP flag, packet identifier and topic alias (which the engine owns).
    // The refused message travels back by value: boxing it would allocate on every refusal
    // of the hot delivery path.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send_publish(
        &mut self,
        mut publish: Publish,
    ) -> Result<Option<PacketId>, (PublishError, Publish)> {
        if self.phase != Phase::Connected {
            return Err((UserError::NotConnected.into(), publish));
        }
        publish.dup = false;
        publish.properties.topic_alias = None;
        publish.packet_id = None;
        if publish.qos == QoS::AtMostOnce {
            // QoS 0 keeps nothing: the message goes on the wire and is dropped.
            let (size, alias) = match self.prepare_publish(&publish, publish.flags()) {
                Ok(prepared) => {
                    let size = prepared.len();
                    let alias = self.choose_alias(&publish, publish.flags(), size);
                    if alias == Choice::None {
                        prepared.encode(&mut self.out);
                        self.queued_packet(Ok(()));
                    }
                    (size, alias)
                }
                Err(e) => return Err((e, publish)),
            };
            if alias != Choice::None {
                self.queue_shared(&publish, publish.flags(), alias);
            }
            self.out_publish_bytes += size;
            return Ok(None);
        }
        if self.is_full() {
            return Err((PublishError::Blocked, publish));
        }
        let (qos, retain) = (publish.qos, publish.retain);
        self.send_shared(Arc::new(publish), qos, retain, None)
            .map(Some)
            .map_err(|(e, back)| (e, Arc::unwrap_or_clone(back)))
    }

    /// Sends a QoS 1 or 2 message that may be shared with other sessions, at `qos` with
    /// RETAIN `retain` (its own DUP, QoS, RETAIN and packet identifier are not looked at; its
    /// topic alias must be unset): the in-flight state keeps the same `Arc`, so a delivery
    /// copies nothing. Assigns the packet identifier, respects the window and the peer's
    /// Maximum Packet Size, picks a topic alias; a message not sent comes back. `encoded`: the
    /// message encoded once with a packet identifier (see [`Message`](crate::Message)),
    /// copied instead of encoding it again.
    pub(crate) fn send_shared(
        &mut self,
        publish: Arc<Publish>,
        qos: QoS,
        retain: bool,
        encoded: Option<&EncodedPublish>,
    ) -> Result<PacketId, (PublishError, Arc<Publish>)> {
        debug_assert!(qos != QoS::AtMostOnce && publish.properties.topic_alias.is_none());
        if self.phase != Phase::Connected {
            return Err((UserError::NotConnected.into(), publish));
        }
        if self.is_full() {
            return Err((PublishError::Blocked, publish));
        }
        let Some(packet_id) = self.ids.allocate() else {
            return Err((PublishError::Blocked, publish));
        };
        let flags = PublishFlags {
            dup: false,
            qos,
            retain,
            packet_id: Some(packet_id),
        };
        let wire = match self.wire(&publish, flags, encoded) {
            Ok(wire) => wire,
            Err(e) => {
                self.ids.release(packet_id);
                return Err((e, publish));
            }
        };
        let size = wire.len();
        let alias = self.choose_alias(&publish, flags, size);
        if alias == Choice::None {
            self.write_wire(wire, flags);
        } else {
            self.queue_shared(&publish, flags, alias);
        }
        self.state.set_next_packet_id(self.ids.next_hint());
        self.out_publish_bytes += size;
        let phase = if qos == QoS::AtLeastOnce {
            OutgoingPhase::AwaitPubAck
        } else {
            OutgoingPhase::AwaitPubRec
        };
        self.state.queues_mut().outgoing.push_back(OutgoingPublish {
            packet_id,
            phase,
            retain,
            publish,
        });
        Ok(packet_id)
    }

    /// Queues a message with `flags` and the topic alias of `choice`: encoded from the message
    /// itself, or (with an alias, which changes the topic and a property) from a copy made for
    /// the wire.
    fn queue_shared(&mut self, publish: &Publish, flags: PublishFlags, choice: Choice) {
        let result = if choice == Choice::None {
            publish.encode_with(flags, self.version, &mut self.out)
        } else {
            with_alias(publish.clone(), choice).encode_with(flags, self.version, &mut self.out)
        };
        self.queued_packet(result);
    }

    /// Sends a QoS 0 PUBLISH exactly as it is (no packet identifier, no alias, nothing to
    /// rewrite: the caller checked), encoded from the borrowed message, or copied from
    /// `encoded` (the message encoded once, without a packet identifier): a fan-out delivery
    /// clones nothing and touches no reference count shared with the other subscribers.
    pub(crate) fn send_qos0_as_is(
        &mut self,
        publish: &Publish,
        encoded: Option<&EncodedPublish>,
    ) -> Result<(), PublishError> {
        debug_assert!(publish.qos == QoS::AtMostOnce && publish.packet_id.is_none());
        if self.phase != Phase::Connected {
            return Err(UserError::NotConnected.into());
        }
        let flags = publish.flags();
        let wire = self.wire(publish, flags, encoded)?;
        self.out_publish_bytes += wire.len();
        self.write_wire(wire, flags);
        Ok(())
    }

    /// Whether the outgoing alias table would give `topic` no alias.
    pub(crate) fn no_alias_for(&self, topic: &MqttString) -> bool {
        !self.version.is_v5() || self.out_aliases.choose(topic) == Choice::None
    }

    /// Validates and measures the PUBLISH, with its full topic, and checks it against the
    /// peer's Maximum Packet Size [MQTT-3.1.2-24], [MQTT-3.2.2-15].
    fn prepare_publish<'a>(
        &self,
        publish: &'a Publish,
        flags: PublishFlags,
    ) -> Result<PreparedPublish<'a>, PublishError> {
        let prepared = publish
            .prepare(flags, self.version)
            .map_err(|e| PublishError::User(UserError::Encode(e)))?;
        self.check_size_of(prepared.len())?;
        Ok(prepared)
    }

    /// Checks a PUBLISH of `size` bytes against the peer's Maximum Packet Size
    /// [MQTT-3.1.2-24], [MQTT-3.2.2-15].
    fn check_size_of(&self, size: usize) -> Result<(), PublishError> {
        if size > self.send.maximum_packet_size as usize {
            return Err(PublishError::PacketTooLarge {
                size,
                maximum: self.send.maximum_packet_size,
            });
        }
        Ok(())
    }

    /// The PUBLISH as it will be written with `flags`: copied from `encoded` (the message
    /// encoded once, in the layout of `flags`) or prepared from `publish`; checked against the
    /// peer's Maximum Packet Size either way.
    fn wire<'a>(
        &self,
        publish: &'a Publish,
        flags: PublishFlags,
        encoded: Option<&'a EncodedPublish>,
    ) -> Result<Wire<'a>, PublishError> {
        match encoded {
            Some(encoded) => self
                .check_size_of(encoded.len())
                .map(|()| Wire::Encoded(encoded)),
            None => self.prepare_publish(publish, flags).map(Wire::Prepared),
        }
    }

    /// Writes a PUBLISH made ready by [`wire`](Self::wire) into the transmit queue.
    fn write_wire(&mut self, wire: Wire<'_>, flags: PublishFlags) {
        match wire {
            // Measured once: written as prepared.
            Wire::Prepared(prepared) => {
                prepared.encode(&mut self.out);
                self.queued_packet(Ok(()));
            }
            // In the layout of `flags` (the callers check): writing cannot fail.
            Wire::Encoded(encoded) => {
                let written = encoded.write(flags, &mut self.out);
                self.queued_packet(written);
            }
        }
    }

    /// The topic alias for this PUBLISH on the wire (5.0), committed to the alias table. The
    /// alias property adds three bytes, and an alias used in place of a topic shorter than
    /// that makes the packet larger: one that would push it over the peer's Maximum Packet
    /// Size is not taken.
    fn choose_alias(&mut self, publish: &Publish, flags: PublishFlags, size: usize) -> Choice {
        if !self.version.is_v5() {
            return Choice::None;
        }
        let choice = self.out_aliases.choose(&publish.topic);
        if choice == Choice::None {
            return choice;
        }
        let max = self.send.maximum_packet_size as usize;
        // Property length may grow by one byte of its variable byte integer, and so may the
        // Remaining Length: the bound below is exact enough to stay within `max`.
        let worst = size + 3 + 2;
        if worst > max {
            let wire = with_alias(publish.clone(), choice);
            if !wire
                .encoded_len_with(flags, self.version)
                .is_ok_and(|len| len <= max)
            {
                return Choice::None;
            }
        }
        self.out_aliases.commit(&publish.topic, choice);
        choice
    }

    /// A slot of the window freed: send queued messages, then tell a blocked client.
    fn window_freed(&mut self) {
        self.pump_queue();
        if self.blocked && self.inflight() < self.window() {
            self.blocked = false;
            self.events.push_back(Event::Writable);
        }
    }

    /// Remembers that `publish` was refused for back-pressure, so `Writable` follows.
    pub(crate) fn set_blocked(&mut self) {
        self.blocked = true;
    }

    /// Sends queued messages while the window has room: expired ones are dropped and the
    /// remaining expiry rewritten [MQTT-3.3.2-5], [MQTT-3.3.2-6]; one too large for the peer
    /// is dropped as if sent [MQTT-3.1.2-25].
    pub(crate) fn pump_queue(&mut self) {
        while self.phase == Phase::Connected && self.inflight() < self.window() {
            let Some(queued) = self.state.boxed_mut().and_then(|q| q.queued.pop_front()) else {
                break;
            };
            self.queued_bytes -= queued.weight();
            let Some(publish) = self.unexpired(queued.publish.clone(), queued.received_at) else {
                continue;
            };
            match self.send_publish(publish) {
                Ok(_)
                | Err((PublishError::PacketTooLarge { .. }, _))
                | Err((PublishError::User(_), _)) => {}
                Err((PublishError::Blocked, _)) => {
                    self.queued_bytes += queued.weight();
                    self.state.queues_mut().queued.push_front(queued);
                    break;
                }
            }
        }
    }

    /// The message with its Message Expiry Interval reduced by the time it waited, or `None`
    /// once it expired.
    pub(crate) fn unexpired(&self, mut publish: Publish, received_at: Instant) -> Option<Publish> {
        self.rewrite_expiry(&mut publish, received_at)
            .then_some(publish)
    }

    /// [`unexpired`](Self::unexpired) in place: rewrites the remaining interval, or returns
    /// false once the message expired.
    pub(crate) fn rewrite_expiry(&self, publish: &mut Publish, received_at: Instant) -> bool {
        if let Some(interval) = publish.properties.message_expiry_interval {
            let waited = self.now.map_or(Duration::ZERO, |now| {
                now.saturating_duration_since(received_at)
            });
            if waited >= Duration::from_secs(interval.into()) {
                return false;
            }
            let waited_secs = u32::try_from(waited.as_secs()).unwrap_or(u32::MAX);
            publish.properties.message_expiry_interval = Some(interval - waited_secs);
        }
        true
    }

    /// Queues a message beyond the window (server side), within the broker's limits.
    pub(crate) fn enqueue(&mut self, message: QueuedMessage, limits: (usize, usize)) -> bool {
        let (max_count, max_bytes) = limits;
        if self.state.queues().queued.len() >= max_count
            || self.queued_bytes + message.weight() > max_bytes
        {
            return false;
        }
        self.queued_bytes += message.weight();
        self.state.queues_mut().queued.push_back(message);
        true
    }

    /// After CONNACK on a resumed session: resend unacknowledged PUBLISH packets with DUP set
    /// and PUBREL packets, with their original identifiers and in their original order
    /// [MQTT-4.4.0-1], [MQTT-4.6.0-1], [MQTT-3.3.1-1]; then the pending acknowledgements and
    /// the queue.
    pub(crate) fn resume(&mut self) {
        self.unacked_before = self
            .state
            .queues()
            .inbound
            .iter()
            .filter(|i| i.ack.is_none())
            .map(|i| i.packet_id)
            .collect();
        let mut i = 0;
        while i < self.state.queues().outgoing.len() {
            let entry = &self.state.queues().outgoing[i];
            let max = self.send.maximum_packet_size as usize;
            let fits = match entry.phase {
                OutgoingPhase::AwaitPubComp => {
                    let packet = Packet::PubRel(Ack::new(entry.packet_id));
                    self.queue(packet);
                    true
                }
                OutgoingPhase::AwaitPubAck | OutgoingPhase::AwaitPubRec => {
                    let flags = entry.flags(true);
                    let fits = entry
                        .publish
                        .encoded_len_with(flags, self.version)
                        .is_ok_and(|len| len <= max);
                    if fits {
                        let publish = entry.publish.clone();
                        self.queue_shared(&publish, flags, Choice::None);
                    }
                    fits
                }
            };
            if fits {
                i += 1;
            } else {
                // Too large for the peer's new Maximum Packet Size: dropped as if delivered
                // [MQTT-3.1.2-25].
                self.finish_outgoing(i, ReasonCode::PacketTooLarge, AckProperties::default());
            }
        }
        self.flush_acks();
        self.pump_queue();
    }

    /// A protocol error from a decode failure in a role (used for packets a side never
    /// receives).
    pub(crate) fn unexpected(&mut self, packet: PacketType, citation: &'static str) {
        self.protocol_error(ProtocolError::UnexpectedPacket { packet, citation });
    }

    /// The first broken invariant of the engine, if any: for tests and fuzzers.
    /// `queue_limits`: the most messages and bytes the queue may hold (the server's
    /// configuration keeps them, not every engine).
    pub(crate) fn invariant_violation(&self, queue_limits: (usize, usize)) -> Option<&'static str> {
        let mut ids = std::collections::BTreeSet::new();
        for o in &self.state.queues().outgoing {
            if !ids.insert(o.packet_id) {
                return Some("two outgoing messages share a packet identifier");
            }
            if !self.ids.is_in_use(o.packet_id) {
                return Some("an outgoing packet identifier in flight is not reserved");
            }
            if o.publish.topic.is_empty() || o.publish.properties.topic_alias.is_some() {
                return Some("an outgoing entry keeps a topic alias instead of its topic");
            }
        }
        if self.side == Side::Client {
            for (id, _, _) in &self.requests {
                if !ids.insert(*id) || !self.ids.is_in_use(*id) {
                    return Some("a SUBSCRIBE/UNSUBSCRIBE identifier is shared or not reserved");
                }
            }
        }
        let mut inbound = std::collections::BTreeSet::new();
        if !self
            .state
            .queues()
            .inbound
            .iter()
            .all(|i| inbound.insert(i.packet_id))
        {
            return Some("two inbound messages share a packet identifier");
        }
        let unacked = self.state.queues().inbound.len() + self.state.queues().awaiting_pubrel.len();
        if self.version.is_v5() && unacked > usize::from(self.recv.receive_maximum) {
            return Some("more unacknowledged inbound messages than the Receive Maximum");
        }
        let (max_count, max_bytes) = queue_limits;
        if self.queued_bytes != self.state.queues().queued_bytes() {
            return Some("the queue's byte count is off");
        }
        if self.state.queues().queued.len() > max_count || self.queued_bytes > max_bytes {
            return Some("the queue exceeds its limits");
        }
        if self.phase == Phase::Closed
            && Timer::ALL
                .iter()
                .any(|&t| t != Timer::WillDelay && self.timers.get(t).is_some())
        {
            return Some("a connection timer is armed after the connection closed");
        }
        None
    }

    /// Forgets pending SUBSCRIBE/UNSUBSCRIBE requests; a client frees their identifiers (a
    /// server's requests carry the client's identifiers, not its own).
    fn drop_requests(&mut self) {
        for (id, _, _) in std::mem::take(&mut self.requests) {
            if self.side == Side::Client {
                self.ids.release(id);
            }
        }
    }

    /// Whether a packet identifier of an outgoing SUBSCRIBE/UNSUBSCRIBE is pending.
    pub(crate) fn take_request(&mut self, id: PacketId, kind: PacketType) -> Option<usize> {
        let pos = self
            .requests
            .iter()
            .position(|&(p, k, _)| p == id && k == kind)?;
        let (_, _, n) = self.requests.swap_remove(pos);
        Some(n)
    }
}
