//! The client role: CONNECT/CONNACK, SUBSCRIBE, UNSUBSCRIBE, keepalive pings, and session
//! resume across reconnects on top of the shared core.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tern_codec::{
    AckKind, Auth, ConnAck, Decoder, Disconnect, MAX_PACKET_SIZE, MqttString, Packet, PacketId,
    PacketType, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscribe, SubscribeProperties,
    Subscription, UnsubAck, Unsubscribe, UnsubscribeProperties,
};

use crate::alias::{InboundAliases, OutboundAliases};
use crate::config::ClientConfig;
use crate::core::{Core, Phase, Side};
use crate::error::{ConnectionError, ProtocolError, PublishError, UserError};
use crate::event::Event;
use crate::state::SessionState;
use crate::timer::Timer;

/// What the server said about itself in CONNACK (defaults for MQTT 3.x).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Receive Maximum of the server: the client's in-flight window.
    pub receive_maximum: u16,
    /// Maximum Packet Size the server accepts.
    pub maximum_packet_size: u32,
    /// Topic Alias Maximum of the server.
    pub topic_alias_maximum: u16,
    /// Maximum QoS the server accepts.
    pub maximum_qos: QoS,
    /// Whether the server accepts retained messages.
    pub retain_available: bool,
    /// Whether wildcard subscriptions are available.
    pub wildcard_subscription_available: bool,
    /// Whether subscription identifiers are available.
    pub subscription_identifiers_available: bool,
    /// Whether shared subscriptions are available.
    pub shared_subscription_available: bool,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            receive_maximum: u16::MAX,
            maximum_packet_size: MAX_PACKET_SIZE,
            topic_alias_maximum: 0,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            shared_subscription_available: true,
        }
    }
}

/// The client side of an MQTT session: one object for the session's whole life, reconnected
/// with [`connect`](ClientSession::connect) after each connection ends.
#[derive(Debug)]
pub struct ClientSession {
    core: Core,
    config: ClientConfig,
    limits: ServerLimits,
    client_id: MqttString,
    session_present: bool,
}

impl ClientSession {
    /// A client with an empty session.
    pub fn new(config: ClientConfig) -> Self {
        ClientSession::with_state(config, SessionState::new())
    }

    /// A client that resumes a session taken out of an earlier one with
    /// [`into_state`](ClientSession::into_state).
    pub fn with_state(config: ClientConfig, state: SessionState) -> Self {
        let version = config.connect.protocol;
        let max = config
            .connect
            .properties
            .maximum_packet_size
            .map_or(MAX_PACKET_SIZE, |m| m.get());
        let mut core = Core::new(Side::Client, version, Decoder::with_version(version, max));
        core.install_state(state);
        core.ack_mode = config.ack_mode;
        core.max_inflight = config.max_inflight;
        core.ping_timeout = config.ping_timeout;
        let client_id = config.connect.client_id.clone();
        ClientSession {
            core,
            config,
            limits: ServerLimits::default(),
            client_id,
            session_present: false,
        }
    }

    // ----- getters -----

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.core.version
    }

    /// Whether CONNACK accepted the connection and it has not ended.
    pub fn is_connected(&self) -> bool {
        self.core.phase == Phase::Connected
    }

    /// Whether the connection ended (or never started); `connect` starts a new one.
    pub fn is_closed(&self) -> bool {
        matches!(self.core.phase, Phase::Closed | Phase::Idle)
    }

    /// The client identifier: the configured one, or the one the server assigned.
    pub fn client_id(&self) -> &MqttString {
        &self.client_id
    }

    /// Whether the server resumed the session on the last CONNACK.
    pub fn session_present(&self) -> bool {
        self.session_present
    }

    /// The keep alive in force in seconds (the server's Server Keep Alive when it sent one).
    pub fn keep_alive(&self) -> u16 {
        self.core.keep_alive
    }

    /// The server's limits from the last CONNACK.
    pub fn server_limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// Outgoing QoS 1/2 messages in flight.
    pub fn inflight(&self) -> usize {
        self.core.inflight()
    }

    /// Whether a QoS 1/2 `publish` would be accepted now (the window has room).
    pub fn can_publish(&self) -> bool {
        self.is_connected() && !self.core.is_full()
    }

    /// The session state (borrowed, or built empty when the session holds nothing: the
    /// engine keeps no queues while they are empty).
    pub fn state(&self) -> Cow<'_, SessionState> {
        self.core.state.view()
    }

    /// Takes the session state out, e.g. to persist it.
    pub fn into_state(self) -> SessionState {
        self.core.state.into_state()
    }

    /// The first broken internal invariant, if any (identifiers unique and reserved, inbound
    /// window within the Receive Maximum, queue within its limits, no connection timer after
    /// close). For tests and fuzzers; `None` always, unless the engine has a bug.
    pub fn invariant_violation(&self) -> Option<&'static str> {
        self.core.invariant_violation((usize::MAX, usize::MAX))
    }

    // ----- inputs -----

    /// Starts a connection: queues CONNECT. Valid before the first connection and after one
    /// ended. With Clean Start the session state is discarded first [MQTT-3.1.2-4].
    pub fn connect(&mut self, now: Instant) -> Result<(), UserError> {
        if matches!(self.core.phase, Phase::Connecting | Phase::Connected) {
            return Err(UserError::InvalidState("connect while connected"));
        }
        let connect = self.config.connect.clone();
        let packet = Packet::from(connect.clone());
        tern_codec::Packet::encoded_len(&packet, self.core.version).map_err(UserError::Encode)?;
        self.core.set_now(now);
        self.core.reset_connection();
        if connect.clean_start {
            let next = self.core.state.next_packet_id();
            self.core.install_state(SessionState {
                next_packet_id: next,
                ..SessionState::new()
            });
        }
        let props = &connect.properties;
        let max = props
            .maximum_packet_size
            .map_or(MAX_PACKET_SIZE, |m| m.get());
        self.core.decoder = Decoder::with_version(self.core.version, max);
        self.core.recv.receive_maximum = props.receive_maximum.map_or(u16::MAX, |r| r.get());
        self.core.in_aliases = InboundAliases::new(props.topic_alias_maximum.unwrap_or(0));
        self.core.auth_method = props.authentication_method.clone().map(Box::new);
        self.core.keep_alive = connect.keep_alive;
        self.core.connect_session_expiry = props.session_expiry_interval.unwrap_or(0);
        self.core.state.set_expiry(self.core.connect_session_expiry);
        self.core.phase = Phase::Connecting;
        if let Some(timeout) = self.config.connect_timeout {
            self.core.timers.set(Timer::Connect, now + timeout);
        }
        self.core.queue(packet);
        Ok(())
    }

    /// Feeds bytes read from the transport; whole packets are consumed from `buf`, a partial
    /// one is left for the next call.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        self.core.set_now(now);
        if self.core.phase == Phase::Idle {
            buf.clear();
            return;
        }
        while let Some(packet) = self.core.next_packet(buf) {
            self.handle_packet(packet);
        }
    }

    /// Handles expired timers; a call with nothing expired is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    /// The driver reports that the transport closed or failed.
    pub fn handle_transport_closed(&mut self, now: Instant) {
        self.core.set_now(now);
        self.core.close(ConnectionError::TransportLost, None);
    }

    // ----- outputs -----

    /// Appends the packets to send to `buf` (many packets in one write); returns the bytes
    /// appended.
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

    // ----- mutators -----

    /// Tells the engine that the driver stopped (`reading == false`) or resumed reading the
    /// peer's bytes, e.g. under back-pressure or a rate limit. While reads are held back the
    /// keep-alive checks of the peer are suspended (the server's 1.5 × Keep Alive deadline
    /// [MQTT-3.1.2-22], the client's wait for PINGRESP) and start again from `now` on resuming.
    pub fn set_reading(&mut self, now: Instant, reading: bool) {
        self.core.set_reading(now, reading);
    }

    /// Publishes a message. QoS 1/2 messages get a packet identifier (returned) and stay in
    /// the session until acknowledged; back-pressure is [`PublishError::Blocked`], followed by
    /// [`Event::Writable`]. The caller keeps its message: one that was refused can be offered
    /// again as it is. The engine owns DUP, the packet identifier and topic aliases: those set
    /// by the caller are ignored.
    pub fn publish(
        &mut self,
        now: Instant,
        publish: &Publish,
    ) -> Result<Option<PacketId>, PublishError> {
        self.core.set_now(now);
        if publish.qos > self.limits.maximum_qos {
            return Err(UserError::NotSupported(
                "QoS above the server's Maximum QoS [MQTT-3.2.2-11]",
            )
            .into());
        }
        if publish.retain && !self.limits.retain_available {
            return Err(UserError::NotSupported("retain is not available [MQTT-3.2.2-14]").into());
        }
        if !publish.properties.subscription_identifiers.is_empty() {
            return Err(UserError::InvalidValue(
                "a client PUBLISH carries no subscription identifier [MQTT-3.3.4-6]",
            )
            .into());
        }
        if publish.qos != QoS::AtMostOnce && self.core.is_full() {
            // Refused before anything is copied.
            self.core.set_blocked();
            return Err(PublishError::Blocked);
        }
        let result = self.core.send_publish(publish.clone());
        if matches!(result, Err((PublishError::Blocked, _))) {
            self.core.set_blocked();
        }
        result.map_err(|(e, _)| e)
    }

    /// Acknowledges an inbound QoS 1/2 message (manual-ack mode) with `reason` (Success in 3.x).
    /// Acknowledgements leave in the order the messages arrived [MQTT-4.6.0-2].
    pub fn ack(
        &mut self,
        now: Instant,
        packet_id: PacketId,
        reason: ReasonCode,
    ) -> Result<(), UserError> {
        self.core.set_now(now);
        self.core.ack(packet_id, reason)
    }

    /// Sends SUBSCRIBE; the answer is [`Event::SubAck`].
    pub fn subscribe(
        &mut self,
        now: Instant,
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<PacketId, UserError> {
        self.core.set_now(now);
        if properties.subscription_identifier.is_some()
            && !self.limits.subscription_identifiers_available
        {
            return Err(UserError::NotSupported(
                "subscription identifiers are not available",
            ));
        }
        self.request(PacketType::Subscribe, subscriptions.len(), |packet_id| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions: subscriptions.into(),
            })
        })
    }

    /// Sends UNSUBSCRIBE; the answer is [`Event::UnsubAck`].
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        filters: Vec<MqttString>,
        properties: UnsubscribeProperties,
    ) -> Result<PacketId, UserError> {
        self.core.set_now(now);
        self.request(PacketType::Unsubscribe, filters.len(), |packet_id| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
    }

    fn request(
        &mut self,
        kind: PacketType,
        count: usize,
        build: impl FnOnce(PacketId) -> Packet,
    ) -> Result<PacketId, UserError> {
        if self.core.phase != Phase::Connected {
            return Err(UserError::NotConnected);
        }
        let Some(id) = self.core.ids.allocate() else {
            return Err(UserError::InvalidState("every packet identifier is in use"));
        };
        let packet = build(id);
        if let Err(e) = self.core.check_size(&packet) {
            self.core.ids.release(id);
            return Err(e);
        }
        self.core
            .state
            .set_next_packet_id(self.core.ids.next_hint());
        self.core.requests.push((id, kind, count));
        self.core.queue(packet);
        Ok(id)
    }

    /// Sends AUTH (5.0 enhanced authentication): Continue authentication while connecting
    /// [MQTT-4.12.0-3]; once connected, Re-authenticate to start a re-authentication and
    /// Continue authentication for its further steps [MQTT-4.12.1-1]. The Authentication
    /// Method of CONNECT is filled in when left out; another one is refused [MQTT-4.12.0-5].
    pub fn auth(&mut self, now: Instant, auth: Auth) -> Result<(), UserError> {
        self.core.set_now(now);
        let allowed = match self.core.phase {
            Phase::Connecting => auth.reason_code == ReasonCode::ContinueAuthentication,
            _ => matches!(
                auth.reason_code,
                ReasonCode::ContinueAuthentication | ReasonCode::ReAuthenticate
            ),
        };
        if !allowed {
            return Err(UserError::ReasonCode {
                packet: PacketType::Auth,
                code: auth.reason_code,
            });
        }
        self.core.send_auth(auth)
    }

    /// Sends DISCONNECT and ends the connection. In 5.0 the reason and properties travel
    /// (0x04 asks the server to publish the Will); 3.x sends a bare DISCONNECT.
    pub fn disconnect(&mut self, now: Instant, disconnect: Disconnect) -> Result<(), UserError> {
        self.core.set_now(now);
        if self.core.phase != Phase::Connected {
            return Err(UserError::NotConnected);
        }
        if let Some(expiry) = disconnect.properties.session_expiry_interval
            && self.core.connect_session_expiry == 0
            && expiry != 0
        {
            return Err(UserError::InvalidValue(
                "session expiry raised from 0 (MQTT 5.0 section 3.14.2.2.2)",
            ));
        }
        let code = disconnect.reason_code;
        let disconnect = if self.core.version.is_v5() {
            if !code.is_allowed_in(PacketType::Disconnect) {
                return Err(UserError::ReasonCode {
                    packet: PacketType::Disconnect,
                    code,
                });
            }
            disconnect
        } else {
            Disconnect::default()
        };
        let packet = Packet::Disconnect(disconnect);
        self.core.check_size(&packet)?;
        if let Packet::Disconnect(d) = &packet
            && let Some(expiry) = d.properties.session_expiry_interval
        {
            self.core.state.set_expiry(expiry);
        }
        self.core.queue(packet);
        self.core.close(ConnectionError::LocallyClosed(code), None);
        Ok(())
    }

    // ----- packets -----

    fn handle_packet(&mut self, packet: Packet) {
        let phase = self.core.phase;
        if phase == Phase::Connecting
            && !matches!(
                packet,
                Packet::ConnAck(_) | Packet::Auth(_) | Packet::Disconnect(_)
            )
        {
            return self.core.unexpected(packet.packet_type(), "MQTT-3.2.0-1");
        }
        let result = match packet {
            Packet::ConnAck(connack) => {
                if phase != Phase::Connecting {
                    return self.core.unexpected(PacketType::ConnAck, "MQTT-3.2.0-2");
                }
                self.on_connack(*connack)
            }
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
            Packet::SubAck(s) => self.on_suback(s),
            Packet::UnsubAck(u) => self.on_unsuback(u),
            Packet::PingResp => {
                self.core.on_pingresp();
                Ok(())
            }
            Packet::Disconnect(d) => {
                self.core.on_disconnect(d);
                Ok(())
            }
            Packet::Auth(a) => self.core.on_auth(a),
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

    fn on_connack(&mut self, connack: ConnAck) -> Result<(), ProtocolError> {
        if connack.reason_code.is_error() {
            self.core
                .close(ConnectionError::Refused(connack.reason_code), None);
            return Ok(());
        }
        let clean_start = self.config.connect.clean_start;
        let session_present = match self.core.version {
            // 3.1 has no Session Present flag: a persistent session is assumed kept.
            ProtocolVersion::V3_1 => !clean_start,
            _ => connack.session_present,
        };
        if clean_start && session_present {
            return Err(ProtocolError::SessionPresentAfterCleanStart);
        }
        if self.core.version.is_v5() {
            // A successful CONNACK repeats the Authentication Method of CONNECT
            // [MQTT-4.12.0-5], and names none when CONNECT had none [MQTT-4.12.0-6].
            match (
                self.core.auth_method.as_deref(),
                &connack.properties.authentication_method,
            ) {
                (None, None) => {}
                (None, Some(_)) => return Err(ProtocolError::UnexpectedAuth),
                (Some(sent), Some(got)) if got == sent => {}
                (Some(_), _) => return Err(ProtocolError::AuthMethodMismatch),
            }
        }
        let mut discarded = Vec::new();
        if !session_present {
            // The server has no session: discard ours [MQTT-3.2.2-5]. The messages that were
            // in flight are handed back in the Connected event.
            let next = self.core.ids.next_hint();
            let expiry = self.core.state.expiry();
            let old = std::mem::take(&mut self.core.state).into_state();
            discarded = old.outgoing.into();
            self.core.install_state(SessionState {
                next_packet_id: next,
                session_expiry_interval: expiry,
                ..SessionState::new()
            });
        }
        self.session_present = session_present;
        let p = &connack.properties;
        let mut limits = ServerLimits::default();
        if self.core.version.is_v5() {
            limits.receive_maximum = p.receive_maximum.map_or(u16::MAX, |r| r.get());
            limits.maximum_packet_size = p.maximum_packet_size.map_or(MAX_PACKET_SIZE, |m| m.get());
            limits.topic_alias_maximum = p.topic_alias_maximum.unwrap_or(0);
            limits.maximum_qos = p.maximum_qos.unwrap_or(QoS::ExactlyOnce);
            limits.retain_available = p.retain_available.unwrap_or(true);
            limits.wildcard_subscription_available =
                p.wildcard_subscription_available.unwrap_or(true);
            limits.subscription_identifiers_available =
                p.subscription_identifiers_available.unwrap_or(true);
            limits.shared_subscription_available = p.shared_subscription_available.unwrap_or(true);
            if let Some(ka) = p.server_keep_alive {
                // The Server Keep Alive replaces the client's [MQTT-3.2.2-21].
                self.core.keep_alive = ka;
            }
            if let Some(id) = &p.assigned_client_identifier {
                self.client_id = id.clone();
            }
            if let Some(expiry) = p.session_expiry_interval {
                self.core.state.set_expiry(expiry);
            }
        }
        self.core.send.receive_maximum = limits.receive_maximum;
        self.core.send.maximum_packet_size = limits.maximum_packet_size;
        self.core.send.maximum_qos = limits.maximum_qos;
        self.core.send.retain_available = limits.retain_available;
        self.core.out_aliases = OutboundAliases::new(
            limits.topic_alias_maximum,
            self.config.outgoing_topic_aliases,
        );
        self.limits = limits;
        self.core.phase = Phase::Connected;
        self.core.timers.stop(Timer::Connect);
        self.core.start_keepalive();
        self.core.push_event(Event::Connected {
            session_present,
            connack: Box::new(connack),
            discarded,
        });
        self.core.resume();
        Ok(())
    }

    /// SUBACK: one reason code per topic filter [MQTT-3.8.4-6]; the identifier is free again.
    /// A SUBACK for no pending SUBSCRIBE is ignored.
    fn on_suback(&mut self, suback: SubAck) -> Result<(), ProtocolError> {
        if let Some(expected) = self
            .core
            .take_request(suback.packet_id, PacketType::Subscribe)
        {
            self.core.ids.release(suback.packet_id);
            if suback.reason_codes.len() != expected {
                return Err(ProtocolError::ReasonCodeCount {
                    expected,
                    received: suback.reason_codes.len(),
                });
            }
            self.core.push_event(Event::SubAck(suback));
        }
        Ok(())
    }

    /// UNSUBACK: in 5.0 one reason code per topic filter [MQTT-3.11.3-1], [MQTT-3.11.3-2]
    /// (3.x has none); the identifier is free again.
    fn on_unsuback(&mut self, unsuback: UnsubAck) -> Result<(), ProtocolError> {
        if let Some(expected) = self
            .core
            .take_request(unsuback.packet_id, PacketType::Unsubscribe)
        {
            self.core.ids.release(unsuback.packet_id);
            if self.core.version.is_v5() && unsuback.reason_codes.len() != expected {
                return Err(ProtocolError::ReasonCodeCount {
                    expected,
                    received: unsuback.reason_codes.len(),
                });
            }
            self.core.push_event(Event::UnsubAck(unsuback));
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A timeout for PINGRESP other than one keep alive period.
    pub fn set_ping_timeout(&mut self, timeout: Option<Duration>) {
        self.config.ping_timeout = timeout;
        self.core.ping_timeout = timeout;
    }
}
