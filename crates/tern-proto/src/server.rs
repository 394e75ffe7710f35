//! The server role: one session per network connection. CONNECT is surfaced as a request the
//! broker core accepts or rejects (like quinn's `Incoming`); SUBSCRIBE and UNSUBSCRIBE are
//! surfaced for the broker to answer; routed messages come back in through
//! [`ServerSession::deliver`].

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tern_codec::{
    AckKind, AckProperties, Auth, ConnAck, ConnAckProperties, Connect, Decoder, Disconnect,
    EncodedPublish, MqttString, Packet, PacketId, PacketType, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode, SubAck, SubscriptionOptions, UnsubAck, Will,
};
use thin_vec::ThinVec;

use crate::alias::{InboundAliases, OutboundAliases};
use crate::config::ServerConfig;
use crate::core::{Core, Phase, Side};
use crate::error::{ConnectionError, PublishError, UserError};
use crate::event::Event;
use crate::message::Message;
use crate::state::{QueuedMessage, SessionState};
use crate::timer::Timer;

/// The broker's answer to [`Event::ConnectRequest`]: the session to resume and the CONNACK
/// properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accept {
    /// The client's existing session, if the broker has one. Ignored with Clean Start, which
    /// always starts anew [MQTT-3.1.2-4]; Session Present is set exactly when it is used
    /// [MQTT-3.2.2-2], [MQTT-3.2.2-3].
    pub session: Option<SessionState>,
    /// CONNACK properties (5.0 only; ignored for 3.x). Receive Maximum, Maximum Packet Size,
    /// Topic Alias Maximum, Maximum QoS and Retain Available are filled from the
    /// [`ServerConfig`] when left unset. A 5.0 client that sent an empty client identifier
    /// must get an Assigned Client Identifier [MQTT-3.2.2-16].
    pub properties: ConnAckProperties,
}

/// How the subscriber's options shape a delivery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeliveryOptions {
    /// No Local: do not deliver the subscriber's own messages [MQTT-3.8.3-3].
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag [MQTT-3.3.1-12], [MQTT-3.3.1-13].
    pub retain_as_published: bool,
    /// The message is a retained one sent because of a new subscription: RETAIN stays 1
    /// (5.0 section 3.3.1.3, after [MQTT-3.3.1-9]; 3.1.1: [MQTT-3.3.1-8]).
    pub retained_replay: bool,
}

impl From<SubscriptionOptions> for DeliveryOptions {
    fn from(options: SubscriptionOptions) -> Self {
        DeliveryOptions {
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            retained_replay: false,
        }
    }
}

/// What [`ServerSession::deliver`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliverOutcome {
    /// Sent now, with this packet identifier for QoS 1/2.
    Sent(Option<PacketId>),
    /// Queued beyond the in-flight window (or until the client comes back).
    Queued,
    /// Not delivered.
    Dropped(DropReason),
}

/// Why a message was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The subscriber published it and subscribed with No Local [MQTT-3.8.3-3].
    NoLocal,
    /// Its Message Expiry Interval passed [MQTT-3.3.2-5].
    Expired,
    /// Larger than the client's Maximum Packet Size: discarded as if sent [MQTT-3.1.2-25].
    PacketTooLarge,
    /// The queue is at its message or byte limit.
    QueueFull,
    /// A QoS 0 message while the client is not connected.
    Offline,
    /// A QoS 0 message while more than
    /// [`max_transmit_backlog`](crate::ServerConfig::max_transmit_backlog) bytes of PUBLISH
    /// packets wait for `poll_transmit`.
    Backlog,
}

/// The server side of one network connection.
#[derive(Debug)]
pub struct ServerSession {
    core: Core,
    /// Shared: every connection of a server uses the same configuration.
    config: Arc<ServerConfig>,
    connect: Option<Box<Connect>>,
    client_id: MqttString,
    deferred: ThinVec<Packet>,
    session_present: bool,
}

impl ServerSession {
    /// A session waiting for CONNECT. A server passes one `Arc<ServerConfig>` to all its
    /// sessions, so that each holds a pointer rather than a copy.
    pub fn new(config: impl Into<Arc<ServerConfig>>) -> Self {
        let config = config.into();
        // The version is not known before CONNECT; 3.1.1 is a placeholder until then.
        let decoder = Decoder::new(config.maximum_packet_size);
        let mut core = Core::new(Side::Server, ProtocolVersion::V3_1_1, decoder);
        core.ack_mode = config.ack_mode;
        core.acknowledgement_events = config.acknowledgement_events;
        core.max_inflight = config.max_inflight;
        ServerSession {
            core,
            config,
            connect: None,
            client_id: MqttString::new(),
            deferred: ThinVec::new(),
            session_present: false,
        }
    }

    /// A closed session holding `state`, as a broker restores a persistent session from its
    /// storage: it queues deliveries (QoS 1/2) like a session whose client went away, and
    /// gives the state to the next connection of `client_id` through
    /// [`into_state`](Self::into_state). The state is checked like one put back by
    /// [`Accept`].
    pub fn restored(
        config: impl Into<Arc<ServerConfig>>,
        version: ProtocolVersion,
        client_id: MqttString,
        state: SessionState,
    ) -> Self {
        let mut session = ServerSession::new(config);
        session.core.version = version;
        session.core.install_state(state);
        session.core.phase = Phase::Closed;
        session.client_id = client_id;
        session
    }

    /// Arms the connect timeout, if configured; call once when the connection is accepted
    /// by the transport.
    pub fn start(&mut self, now: Instant) {
        self.core.set_now(now);
        if let Some(timeout) = self.config.connect_timeout
            && self.core.phase == Phase::Idle
        {
            self.core.timers.set(Timer::Connect, now + timeout);
        }
    }

    // ----- getters -----

    /// The protocol version (from CONNECT; 3.1.1 before it arrived).
    pub fn version(&self) -> ProtocolVersion {
        self.core.version
    }

    /// Whether the connection is established.
    pub fn is_connected(&self) -> bool {
        self.core.phase == Phase::Connected
    }

    /// Whether the connection ended.
    pub fn is_closed(&self) -> bool {
        self.core.phase == Phase::Closed
    }

    /// The client identifier (the assigned one when the broker assigned one).
    pub fn client_id(&self) -> &MqttString {
        &self.client_id
    }

    /// The CONNECT waiting for the broker's answer.
    pub fn connect_request(&self) -> Option<&Connect> {
        self.connect.as_deref()
    }

    /// Whether the session was resumed.
    pub fn session_present(&self) -> bool {
        self.session_present
    }

    /// The keep alive in force in seconds.
    pub fn keep_alive(&self) -> u16 {
        self.core.keep_alive
    }

    /// The Will Message of the connection, until it is discarded or published.
    pub fn will(&self) -> Option<&Will> {
        self.core
            .will
            .as_deref()
            .or(self.core.pending_will.as_deref())
    }

    /// The Session Expiry Interval in force (seconds).
    pub fn session_expiry_interval(&self) -> u32 {
        self.core.state.expiry()
    }

    /// Outgoing QoS 1/2 messages in flight.
    pub fn inflight(&self) -> usize {
        self.core.inflight()
    }

    /// The most messages and bytes the queue may hold, as configured.
    fn queue_limits(&self) -> (usize, usize) {
        (
            self.config.max_queued_messages,
            self.config.max_queued_bytes,
        )
    }

    /// Messages queued beyond the in-flight window.
    pub fn queued_len(&self) -> usize {
        self.core.state.queues().queued.len()
    }

    /// The session state (borrowed, or built empty when the session holds nothing: the
    /// engine keeps no queues while they are empty).
    pub fn state(&self) -> Cow<'_, SessionState> {
        self.core.state.view()
    }

    /// Takes the session state out, for the next connection of the same client or for
    /// persistence. A Will still waiting for its delay is not sent: a new connection to the
    /// session came first [MQTT-3.1.3-9].
    pub fn into_state(self) -> SessionState {
        let mut state = self.core.state;
        state.set_next_packet_id(self.core.ids.next_hint());
        state.into_state()
    }

    /// The first broken internal invariant, if any (identifiers unique and reserved, inbound
    /// window within the Receive Maximum, queue within its limits, no connection timer after
    /// close). For tests and fuzzers; `None` always, unless the engine has a bug.
    pub fn invariant_violation(&self) -> Option<&'static str> {
        self.core.invariant_violation(self.queue_limits())
    }

    // ----- inputs -----

    /// Feeds bytes read from the transport.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        self.core.set_now(now);
        while let Some(packet) = self.core.next_packet(buf) {
            self.handle_packet(packet);
        }
    }

    /// Handles expired timers; a call with nothing expired is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    /// The driver reports that the transport closed or failed: an unclean end, so the Will
    /// is published (after its delay).
    pub fn handle_transport_closed(&mut self, now: Instant) {
        self.core.set_now(now);
        self.core.close(ConnectionError::TransportLost, None);
    }

    // ----- outputs -----

    /// Appends the packets to send to `buf`; returns the bytes appended.
    pub fn poll_transmit(&mut self, buf: &mut BytesMut) -> usize {
        self.core.poll_transmit(buf)
    }

    /// Whether `poll_transmit` has something to write.
    pub fn has_transmit(&self) -> bool {
        self.core.has_transmit()
    }

    /// The next deadline at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    // ----- the broker's answers -----

    /// Accepts the pending CONNECT: sends CONNACK, resumes the session (resending in-flight
    /// messages with DUP [MQTT-4.4.0-1]) and handles packets that arrived meanwhile.
    ///
    /// In 5.0 the CONNACK carries the Authentication Method of CONNECT (filled in when left
    /// out) [MQTT-4.12.0-5] and none when CONNECT had none [MQTT-4.12.0-6]. A Will whose QoS
    /// is above the Maximum QoS, or that is retained while Retain Available is 0, cannot be
    /// accepted: the call fails with [`UserError::NotSupported`] and the broker rejects with
    /// 0x9B or 0x9A [MQTT-3.2.2-12], [MQTT-3.2.2-13].
    pub fn accept(&mut self, now: Instant, accept: Accept) -> Result<(), UserError> {
        self.core.set_now(now);
        if self.core.phase != Phase::Connecting {
            return Err(UserError::InvalidState("accept without a pending CONNECT"));
        }
        let Some(connect) = self.connect.as_deref() else {
            return Err(UserError::InvalidState("accept without a pending CONNECT"));
        };
        let v5 = self.core.version.is_v5();
        let mut props = accept.properties;
        if v5 {
            match (
                self.core.auth_method.as_deref(),
                &props.authentication_method,
            ) {
                (None, Some(_)) => {
                    return Err(UserError::InvalidValue(
                        "an Authentication Method in CONNACK needs one in CONNECT [MQTT-4.12.0-6]",
                    ));
                }
                (Some(sent), Some(answer)) if sent != answer => {
                    return Err(UserError::InvalidValue(
                        "CONNACK names another authentication method than CONNECT [MQTT-4.12.0-5]",
                    ));
                }
                (Some(sent), None) => props.authentication_method = Some(sent.clone()),
                _ => {}
            }
            if let Some(will) = &connect.will {
                let maximum_qos = props.maximum_qos.unwrap_or(self.config.maximum_qos);
                if will.qos > maximum_qos {
                    return Err(UserError::NotSupported(
                        "Will QoS above the Maximum QoS: reject with 0x9B [MQTT-3.2.2-12]",
                    ));
                }
                let retain = props
                    .retain_available
                    .unwrap_or(self.config.retain_available);
                if will.retain && !retain {
                    return Err(UserError::NotSupported(
                        "retained Will without Retain Available: reject with 0x9A [MQTT-3.2.2-13]",
                    ));
                }
            }
        }
        if v5 && connect.client_id.is_empty() {
            match &props.assigned_client_identifier {
                Some(id) if !id.is_empty() => {}
                _ => {
                    return Err(UserError::InvalidValue(
                        "an empty client identifier needs an assigned one [MQTT-3.2.2-16]",
                    ));
                }
            }
        }
        let connect = *self
            .connect
            .take()
            .unwrap_or_else(|| unreachable!("checked above"));
        let c = &self.config;
        if v5 {
            props.receive_maximum = props
                .receive_maximum
                .or(PacketId::new(c.receive_maximum).filter(|r| r.get() != u16::MAX));
            props.maximum_packet_size = props
                .maximum_packet_size
                .or(NonZeroU32::new(c.maximum_packet_size)
                    .filter(|&m| m.get() < tern_codec::MAX_PACKET_SIZE));
            props.topic_alias_maximum = props
                .topic_alias_maximum
                .or((c.topic_alias_maximum > 0).then_some(c.topic_alias_maximum));
            props.maximum_qos = props
                .maximum_qos
                .or((c.maximum_qos != QoS::ExactlyOnce).then_some(c.maximum_qos));
            props.retain_available = props
                .retain_available
                .or((!c.retain_available).then_some(false));
        } else {
            props = ConnAckProperties::default();
        }

        // The session.
        let resumed = if connect.clean_start {
            None
        } else {
            accept.session
        };
        self.session_present = resumed.is_some();
        let next = self.core.ids.next_hint();
        // Messages delivered before the broker accepted wait behind the resumed ones.
        let early = self
            .core
            .state
            .boxed_mut()
            .map(|q| std::mem::take(&mut q.queued))
            .unwrap_or_default();
        self.core.install_state(resumed.unwrap_or(SessionState {
            next_packet_id: next,
            ..SessionState::new()
        }));
        if !early.is_empty() {
            self.core.state.queues_mut().queued.extend(early);
        }
        self.core.recount_queue();
        let expiry = if v5 {
            props
                .session_expiry_interval
                .or(connect.properties.session_expiry_interval)
                .unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        self.core.state.set_expiry(expiry);
        self.core.connect_session_expiry = connect.properties.session_expiry_interval.unwrap_or(0);

        // Limits both ways.
        let cp = &connect.properties;
        self.core.send.receive_maximum = cp.receive_maximum.map_or(u16::MAX, |r| r.get());
        self.core.send.maximum_packet_size = cp
            .maximum_packet_size
            .map_or(tern_codec::MAX_PACKET_SIZE, |m| m.get());
        self.core.out_aliases = OutboundAliases::new(
            if v5 {
                cp.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            },
            self.config.outgoing_topic_aliases,
        );
        self.core.recv.receive_maximum = props.receive_maximum.map_or(u16::MAX, |r| r.get());
        self.core.recv.maximum_qos = props.maximum_qos.unwrap_or(QoS::ExactlyOnce);
        self.core.recv.retain_available = props.retain_available.unwrap_or(true);
        self.core.in_aliases = InboundAliases::new(props.topic_alias_maximum.unwrap_or(0));
        if let Some(max) = props.maximum_packet_size {
            self.core.decoder.set_max_packet_size(max.get());
        }
        self.core.keep_alive = props.server_keep_alive.unwrap_or(connect.keep_alive);

        self.client_id = props
            .assigned_client_identifier
            .clone()
            .filter(|_| v5)
            .unwrap_or_else(|| connect.client_id.detached());
        self.core.will = connect.will.clone().map(Box::new);
        self.core.pending_will = None;
        self.core.timers.stop(Timer::WillDelay);

        let connack = ConnAck {
            session_present: self.session_present && self.core.version != ProtocolVersion::V3_1,
            reason_code: ReasonCode::Success,
            properties: props,
        };
        let packet = Packet::from(connack);
        if let Err(e) = crate::core::wire_len(&packet, self.core.version) {
            return Err(UserError::Encode(e));
        }
        self.core.queue(packet);
        self.core.phase = Phase::Connected;
        self.core.timers.stop(Timer::Connect);
        self.core.start_keepalive();
        self.core.resume();
        for packet in std::mem::take(&mut self.deferred) {
            if self.core.phase != Phase::Connected {
                break;
            }
            self.handle_packet(packet);
        }
        Ok(())
    }

    /// Rejects the pending CONNECT with `reason` (an error code CONNACK can carry; in 3.x one
    /// of the six return codes) and closes. The Will is discarded.
    pub fn reject(&mut self, now: Instant, reason: ReasonCode) -> Result<(), UserError> {
        self.core.set_now(now);
        if self.core.phase != Phase::Connecting {
            return Err(UserError::InvalidState("reject without a pending CONNECT"));
        }
        let allowed = reason.is_error()
            && if self.core.version.is_v5() {
                reason.is_allowed_in(PacketType::ConnAck)
            } else {
                reason.to_v3_connack().is_some()
            };
        if !allowed {
            return Err(UserError::ReasonCode {
                packet: PacketType::ConnAck,
                code: reason,
            });
        }
        self.send_refusal(reason);
        Ok(())
    }

    fn send_refusal(&mut self, reason: ReasonCode) {
        self.connect = None;
        self.deferred.clear();
        self.core.will = None;
        self.core.queue(Packet::from(ConnAck {
            session_present: false,
            reason_code: reason,
            properties: ConnAckProperties::default(),
        }));
        self.core.close(ConnectionError::Rejected(reason), None);
    }

    /// Sends AUTH: Continue authentication during CONNECT or re-authentication, or Success
    /// to end a re-authentication (5.0).
    pub fn auth(&mut self, now: Instant, auth: Auth) -> Result<(), UserError> {
        self.core.set_now(now);
        if auth.reason_code == ReasonCode::ReAuthenticate
            || (self.core.phase == Phase::Connecting && auth.reason_code == ReasonCode::Success)
        {
            return Err(UserError::ReasonCode {
                packet: PacketType::Auth,
                code: auth.reason_code,
            });
        }
        self.core.send_auth(auth)
    }

    /// Answers a SUBSCRIBE with one reason code per topic filter [MQTT-3.8.4-6], in order
    /// [MQTT-3.9.3-1]
    /// (in 3.x: granted QoS 0 to 2, or 0x80 as [`ReasonCode::UnspecifiedError`]).
    pub fn suback(
        &mut self,
        now: Instant,
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
        properties: AckProperties,
    ) -> Result<(), UserError> {
        self.core.set_now(now);
        let v5 = self.core.version.is_v5();
        if let Some(&bad) = reason_codes.iter().find(|c| {
            if v5 {
                !c.is_allowed_in(PacketType::SubAck)
            } else {
                !c.is_v3_suback()
            }
        }) {
            return Err(UserError::ReasonCode {
                packet: PacketType::SubAck,
                code: bad,
            });
        }
        let properties = if v5 {
            properties
        } else {
            AckProperties::default()
        };
        self.answer(
            PacketType::Subscribe,
            packet_id,
            reason_codes.len(),
            |reason_codes| {
                Packet::SubAck(SubAck {
                    packet_id,
                    properties,
                    reason_codes,
                })
            },
            reason_codes,
        )
    }

    /// Answers an UNSUBSCRIBE with one reason code per topic filter (5.0; 3.x sends none and
    /// ignores them).
    pub fn unsuback(
        &mut self,
        now: Instant,
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
        properties: AckProperties,
    ) -> Result<(), UserError> {
        self.core.set_now(now);
        let v5 = self.core.version.is_v5();
        if let Some(&bad) = reason_codes
            .iter()
            .find(|c| v5 && !c.is_allowed_in(PacketType::UnsubAck))
        {
            return Err(UserError::ReasonCode {
                packet: PacketType::UnsubAck,
                code: bad,
            });
        }
        let (properties, count) = if v5 {
            (properties, reason_codes.len())
        } else {
            (AckProperties::default(), usize::MAX)
        };
        let codes = if v5 { reason_codes } else { Vec::new() };
        self.answer(
            PacketType::Unsubscribe,
            packet_id,
            count,
            |reason_codes| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties,
                    reason_codes,
                })
            },
            codes,
        )
    }

    fn answer(
        &mut self,
        kind: PacketType,
        packet_id: PacketId,
        count: usize,
        build: impl FnOnce(Vec<ReasonCode>) -> Packet,
        codes: Vec<ReasonCode>,
    ) -> Result<(), UserError> {
        let Some(&(_, _, expected)) = self
            .core
            .requests
            .iter()
            .find(|&&(p, k, _)| p == packet_id && k == kind)
        else {
            return Err(UserError::UnknownPacketId(packet_id.get()));
        };
        if count != usize::MAX && count != expected {
            return Err(UserError::ReasonCodeCount {
                expected,
                given: count,
            });
        }
        let mut packet = build(codes);
        if self.core.check_size(&packet).is_err() {
            // Drop the optional properties rather than exceed the client's limit
            // [MQTT-3.9.2-1], [MQTT-3.11.2-1].
            match &mut packet {
                Packet::SubAck(s) => s.properties = AckProperties::default(),
                Packet::UnsubAck(u) => u.properties = AckProperties::default(),
                _ => {}
            }
            self.core.check_size(&packet)?;
        }
        self.core.take_request(packet_id, kind);
        if self.core.phase == Phase::Connected {
            self.core.queue(packet);
        }
        Ok(())
    }

    /// Acknowledges an inbound QoS 1/2 message (manual-ack mode) after routing or persisting
    /// it; acknowledgements leave in arrival order [MQTT-4.6.0-2], [MQTT-4.6.0-3].
    pub fn ack(
        &mut self,
        now: Instant,
        packet_id: PacketId,
        reason: ReasonCode,
    ) -> Result<(), UserError> {
        self.core.set_now(now);
        self.core.ack(packet_id, reason)
    }

    /// Tells the engine that the driver stopped (`reading == false`) or resumed reading the
    /// peer's bytes, e.g. under back-pressure or a rate limit. While reads are held back the
    /// keep-alive checks of the peer are suspended (the server's 1.5 × Keep Alive deadline
    /// [MQTT-3.1.2-22], the client's wait for PINGRESP) and start again from `now` on resuming.
    pub fn set_reading(&mut self, now: Instant, reading: bool) {
        self.core.set_reading(now, reading);
    }

    /// Delivers a routed message with the subscriber's options: No Local, Retain As Published,
    /// QoS downgraded to `granted_qos` [MQTT-3.8.4-8], the subscription identifiers (5.0)
    /// [MQTT-3.3.4-3], Message Expiry (expired dropped, remaining interval rewritten), the
    /// client's Receive Maximum and Maximum Packet Size; beyond the window QoS 1/2 messages
    /// wait in the bounded queue. Works on a closed session too (QoS 1/2 are queued for the
    /// next connection).
    pub fn deliver(
        &mut self,
        now: Instant,
        message: &Message,
        granted_qos: QoS,
        subscription_ids: &[NonZeroU32],
        options: DeliveryOptions,
    ) -> DeliverOutcome {
        self.core.set_now(now);
        if options.no_local
            && message
                .origin
                .as_ref()
                .is_some_and(|o| *o == self.client_id)
        {
            return DeliverOutcome::Dropped(DropReason::NoLocal);
        }
        if self.as_is_qos0(message, subscription_ids, options) {
            let backlog = self.core.publish_backlog();
            let p = &message.publish;
            if backlog > 0
                && backlog + p.topic.len() + p.payload.len() > self.config.max_transmit_backlog
            {
                return DeliverOutcome::Dropped(DropReason::Backlog);
            }
            return match self
                .core
                .send_qos0_as_is(p, message.encoded(self.core.version))
            {
                Ok(()) => DeliverOutcome::Sent(None),
                Err(_) => DeliverOutcome::Dropped(DropReason::PacketTooLarge),
            };
        }
        let qos = message.publish.qos.min(granted_qos);
        let retain =
            message.publish.retain && (options.retain_as_published || options.retained_replay);
        let connected = self.core.phase == Phase::Connected;
        if qos != QoS::AtMostOnce && self.properties_as_sent(message, subscription_ids) {
            // The in-flight state shares the message: nothing is copied, and a message going
            // to many sessions is encoded once.
            let encoded = message
                .encoded(self.core.version)
                .filter(|e| e.has_packet_id());
            return self.deliver_shared(
                message.publish.clone(),
                qos,
                retain,
                message.received_at,
                encoded,
            );
        }
        let mut publish = Publish::clone(&message.publish);
        publish.qos = qos;
        publish.retain = retain;
        publish.dup = false;
        publish.packet_id = None;
        if self.core.version.is_v5() {
            publish.properties.topic_alias = None;
            publish.properties.subscription_identifiers = subscription_ids.to_vec();
        } else {
            publish.properties = PublishProperties::default();
        }
        if !self.core.rewrite_expiry(&mut publish, message.received_at) {
            return DeliverOutcome::Dropped(DropReason::Expired);
        }
        if qos != QoS::AtMostOnce {
            return self.deliver_shared(Arc::new(publish), qos, retain, message.received_at, None);
        }
        if !connected {
            return DeliverOutcome::Dropped(DropReason::Offline);
        }
        let backlog = self.core.publish_backlog();
        if backlog > 0
            && backlog + publish.topic.len() + publish.payload.len()
                > self.config.max_transmit_backlog
        {
            return DeliverOutcome::Dropped(DropReason::Backlog);
        }
        match self.core.send_publish(publish) {
            Ok(id) => DeliverOutcome::Sent(id),
            Err(_) => DeliverOutcome::Dropped(DropReason::PacketTooLarge),
        }
    }

    /// Sends a QoS 1/2 delivery now if the window has room (written from `encoded`, the
    /// message encoded once, when given), otherwise queues it (a queued message is kept as a
    /// copy with its options applied).
    fn deliver_shared(
        &mut self,
        mut publish: Arc<Publish>,
        qos: QoS,
        retain: bool,
        received_at: Instant,
        encoded: Option<&EncodedPublish>,
    ) -> DeliverOutcome {
        if self.core.phase == Phase::Connected
            && self.core.state.queues().queued.is_empty()
            && self.core.inflight() < self.core.window()
        {
            match self.core.send_shared(publish, qos, retain, encoded) {
                Ok(id) => return DeliverOutcome::Sent(Some(id)),
                Err((PublishError::Blocked, back)) => publish = back,
                Err(_) => return DeliverOutcome::Dropped(DropReason::PacketTooLarge),
            }
        }
        let mut publish = Arc::unwrap_or_clone(publish);
        (publish.dup, publish.qos, publish.retain, publish.packet_id) = (false, qos, retain, None);
        let limits = self.queue_limits();
        if self.core.enqueue(
            QueuedMessage {
                publish,
                received_at,
            },
            limits,
        ) {
            DeliverOutcome::Queued
        } else {
            DeliverOutcome::Dropped(DropReason::QueueFull)
        }
    }

    /// Whether this client gets the message's properties exactly as published: no
    /// subscription identifier or remaining expiry to write, no topic alias to take off, and
    /// (3.x) no 5.0 property to drop. Its fixed-header fields may still differ.
    fn properties_as_sent(&self, message: &Message, subscription_ids: &[NonZeroU32]) -> bool {
        let p = &message.publish.properties;
        subscription_ids.is_empty()
            && p.topic_alias.is_none()
            && p.message_expiry_interval.is_none()
            && (self.core.version.is_v5() || p.is_empty())
    }

    /// Whether `message` goes to this connected client exactly as the publisher sent it, at
    /// QoS 0: the RETAIN flag stays, no subscription identifier or remaining expiry is
    /// written, no topic alias is picked, and (3.x) it has no 5.0 property to take off.
    fn as_is_qos0(
        &self,
        message: &Message,
        subscription_ids: &[NonZeroU32],
        options: DeliveryOptions,
    ) -> bool {
        let p = &message.publish;
        p.qos == QoS::AtMostOnce
            && self.core.phase == Phase::Connected
            && !p.dup
            && p.packet_id.is_none()
            && (!p.retain || options.retain_as_published || options.retained_replay)
            && self.properties_as_sent(message, subscription_ids)
            && self.core.no_alias_for(&p.topic)
    }

    /// Sends DISCONNECT (5.0, e.g. 0x8E Session taken over or 0x8B Server shutting down; 3.x
    /// just closes) and ends the connection. Not a clean end for the client: its Will is
    /// published.
    pub fn disconnect(&mut self, now: Instant, disconnect: Disconnect) -> Result<(), UserError> {
        self.core.set_now(now);
        if self.core.phase != Phase::Connected {
            return Err(UserError::NotConnected);
        }
        let code = disconnect.reason_code;
        if self.core.version.is_v5() {
            if !code.is_allowed_in(PacketType::Disconnect)
                || code == ReasonCode::DisconnectWithWillMessage
            {
                return Err(UserError::ReasonCode {
                    packet: PacketType::Disconnect,
                    code,
                });
            }
            if disconnect.properties.session_expiry_interval.is_some() {
                return Err(UserError::InvalidValue(
                    "a server DISCONNECT carries no session expiry [MQTT-3.14.2-2]",
                ));
            }
            let packet = Packet::Disconnect(disconnect);
            self.core.check_size(&packet)?;
            self.core.queue(packet);
        }
        self.core.close(ConnectionError::LocallyClosed(code), None);
        Ok(())
    }

    // ----- packets -----

    fn handle_packet(&mut self, packet: Packet) {
        match self.core.phase {
            Phase::Idle => match packet {
                Packet::Connect(connect) => self.on_connect(*connect),
                other => self.core.unexpected(other.packet_type(), "MQTT-3.1.0-1"),
            },
            Phase::Connecting => match packet {
                Packet::Connect(_) => self.core.unexpected(PacketType::Connect, "MQTT-3.1.0-2"),
                Packet::Auth(auth) => {
                    if let Err(e) = self.core.on_auth(auth) {
                        self.core.protocol_error(e);
                    }
                }
                // The server processes nothing else before it accepted the connection.
                other => self.deferred.push(other),
            },
            Phase::Connected => self.on_connected_packet(packet),
            Phase::Closed => {}
        }
    }

    fn on_connect(&mut self, connect: Connect) {
        self.core.version = connect.protocol;
        // The connect timer keeps running until `accept` or `reject`: a client stalling in an
        // enhanced-authentication exchange is timed out like one that never sent CONNECT.
        self.core.phase = Phase::Connecting;
        if !connect.protocol.is_v5() && connect.client_id.is_empty() && !connect.clean_start {
            // A zero-byte identifier needs Clean Session 1 (3.1.1: [MQTT-3.1.3-8]).
            self.send_refusal(ReasonCode::ClientIdentifierNotValid);
            return;
        }
        self.core.auth_method = connect
            .properties
            .authentication_method
            .clone()
            .map(Box::new);
        self.core.connect_session_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
        self.core
            .push_event(Event::ConnectRequest(Box::new(connect.clone())));
        self.connect = Some(Box::new(connect));
    }

    fn on_connected_packet(&mut self, packet: Packet) {
        let result = match packet {
            Packet::Publish(p) => self.core.on_publish(p),
            Packet::PubAck(a) => {
                self.core.on_ack(AckKind::PubAck, a);
                Ok(())
            }
            Packet::PubRec(a) => {
                self.core.on_ack(AckKind::PubRec, a);
                Ok(())
            }
            Packet::PubRel(a) => {
                self.core.on_ack(AckKind::PubRel, a);
                Ok(())
            }
            Packet::PubComp(a) => {
                self.core.on_ack(AckKind::PubComp, a);
                Ok(())
            }
            Packet::Subscribe(s) => {
                self.core
                    .requests
                    .retain(|&(p, k, _)| !(p == s.packet_id && k == PacketType::Subscribe));
                self.core.requests.push((
                    s.packet_id,
                    PacketType::Subscribe,
                    s.subscriptions.len(),
                ));
                self.core.push_event(Event::Subscribe(s));
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.core
                    .requests
                    .retain(|&(p, k, _)| !(p == u.packet_id && k == PacketType::Unsubscribe));
                self.core
                    .requests
                    .push((u.packet_id, PacketType::Unsubscribe, u.filters.len()));
                self.core.push_event(Event::Unsubscribe(u));
                Ok(())
            }
            Packet::PingReq => {
                self.core.queue(Packet::PingResp);
                self.core.quiet();
                Ok(())
            }
            Packet::Disconnect(d) => {
                self.core.on_disconnect(d);
                Ok(())
            }
            Packet::Auth(a) => self.core.on_auth(a),
            Packet::Connect(_) => {
                return self.core.unexpected(PacketType::Connect, "MQTT-3.1.0-2");
            }
            other => {
                return self
                    .core
                    .unexpected(other.packet_type(), "section 2.1.2, direction of flow");
            }
        };
        if let Err(e) = result {
            self.core.protocol_error(e);
        }
    }
}
