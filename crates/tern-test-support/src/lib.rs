//! Test support for Tern (dev-only, not published): a deterministic simulation of a
//! [`ClientSession`] and a [`ServerSession`] over a byte pipe, in virtual time.
//!
//! - **Seeded**: every random choice comes from [`Rng`] (SplitMix64) seeded by the test, so a
//!   failing case replays exactly and proptest can shrink it.
//! - **The pipe** splits each write at random points and delays each chunk by a random amount
//!   (order is kept, as TCP does), and the link can be broken at chosen steps: the bytes in
//!   flight are lost, both sides see the transport close, and the client reconnects after a
//!   delay with a fresh server session that resumes the broker's stored session state.
//! - **Virtual time**: one base `Instant` is captured when the simulation is made; time then
//!   only moves by jumping to the next deadline (a chunk's arrival, a timer, a scheduled ack or
//!   reconnect). Nothing sleeps.
//! - **A minimal broker**: it accepts every CONNECT with the stored session, grants every
//!   subscription, acknowledges inbound messages after a random delay in manual-ack mode, and
//!   records everything both sides surfaced for the properties to check.

use std::collections::{BTreeSet, VecDeque};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tern_codec::{
    ConnAckProperties, MqttString, PacketId, Publish, QoS, ReasonCode, SubAck, SubscribeProperties,
    Subscription, UnsubAck, UnsubscribeProperties,
};
use tern_proto::{
    Accept, ClientConfig, ClientSession, ConnectionError, DeliverOutcome, DeliveryOptions, Event,
    Message, PublishError, ServerConfig, ServerSession, UserError,
};

/// A small deterministic random number generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// One direction of the link: chunks in order, each with its arrival time.
#[derive(Clone, Debug, Default)]
pub struct Pipe {
    chunks: VecDeque<(Instant, Bytes)>,
}

impl Pipe {
    /// Writes `bytes` at `now`: split at up to three random points, each chunk delayed by up
    /// to `max_delay`, never overtaking an earlier chunk.
    pub fn write(&mut self, bytes: Bytes, now: Instant, max_delay: Duration, rng: &mut Rng) {
        let mut rest = bytes;
        let splits = rng.below(4);
        let mut last = self.chunks.back().map_or(now, |(at, _)| *at).max(now);
        for i in 0..=splits {
            if rest.is_empty() {
                break;
            }
            let take = if i == splits {
                rest.len()
            } else {
                1 + rng.below(rest.len() as u64) as usize
            };
            let chunk = rest.split_to(take.min(rest.len()));
            let delay = Duration::from_millis(rng.below(max_delay.as_millis() as u64 + 1));
            last = last.max(now + delay);
            self.chunks.push_back((last, chunk));
        }
    }

    /// When the next chunk arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.chunks.front().map(|(at, _)| *at)
    }

    /// Moves every chunk that arrived by `now` into `into`; returns whether any did.
    pub fn read(&mut self, now: Instant, into: &mut BytesMut) -> bool {
        let mut any = false;
        while self.chunks.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, chunk)) = self.chunks.pop_front() {
                into.extend_from_slice(&chunk);
                any = true;
            }
        }
        any
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Loses everything in flight.
    pub fn clear(&mut self) {
        self.chunks.clear();
    }
}

/// The knobs of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed of every random choice.
    pub seed: u64,
    /// The client's configuration.
    pub client: ClientConfig,
    /// The server's configuration.
    pub server: ServerConfig,
    /// The longest delay of a chunk in the pipe.
    pub max_delay: Duration,
    /// The longest delay of an application acknowledgement in manual-ack mode.
    pub max_ack_delay: Duration,
    /// How long the client waits before reconnecting after the link broke.
    pub reconnect_delay: Duration,
    /// The steps after which the link breaks.
    pub break_at: BTreeSet<u64>,
}

impl SimConfig {
    /// A configuration with small delays, no link breaks, and a persistent session
    /// (Clean Start 0, and a Session Expiry Interval in 5.0).
    pub fn new(seed: u64, version: tern_codec::ProtocolVersion) -> Self {
        let mut client = ClientConfig::new(version, MqttString::from_static("sim-client"));
        client.connect.clean_start = false;
        client.connect.keep_alive = 30;
        if version.is_v5() {
            client.connect.properties.session_expiry_interval = Some(3600);
        }
        SimConfig {
            seed,
            client,
            server: ServerConfig::default(),
            max_delay: Duration::from_millis(20),
            max_ack_delay: Duration::from_millis(50),
            reconnect_delay: Duration::from_millis(100),
            break_at: BTreeSet::new(),
        }
    }
}

/// An identifier the client got for a new QoS 1/2 message while an earlier one with the same
/// identifier was still unacknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReusedPacketId(pub u16);

/// A seeded client/server pair over a lossy pipe, in virtual time.
#[derive(Debug)]
pub struct Sim {
    /// The configuration.
    pub config: SimConfig,
    /// The client.
    pub client: ClientSession,
    /// The server session of the current (or last) connection.
    pub server: ServerSession,
    rng: Rng,
    base: Instant,
    now: Instant,
    step: u64,
    c2s: Pipe,
    s2c: Pipe,
    client_in: BytesMut,
    server_in: BytesMut,
    link_up: bool,
    reconnect_at: Option<Instant>,
    /// The session state the "broker" keeps between connections.
    broker_state: Option<tern_proto::SessionState>,
    server_accepted: bool,
    server_acks: Vec<(Instant, PacketId)>,
    client_acks: Vec<(Instant, PacketId)>,
    outstanding: BTreeSet<u16>,
    /// Every PUBLISH the server surfaced, in order.
    pub server_received: Vec<Publish>,
    /// Every PUBLISH the client surfaced, in order.
    pub client_received: Vec<Publish>,
    /// Packet identifiers of client messages acknowledged, in order.
    pub client_acked: Vec<PacketId>,
    /// Why each client connection ended.
    pub client_disconnects: Vec<(Instant, ConnectionError)>,
    /// Why each server connection ended.
    pub server_disconnects: Vec<(Instant, ConnectionError)>,
    /// Wills the server asked the broker to publish.
    pub wills: Vec<Publish>,
    /// Every SUBACK the client surfaced, in order.
    pub client_subacks: Vec<SubAck>,
    /// Every UNSUBACK the client surfaced, in order.
    pub client_unsubacks: Vec<UnsubAck>,
    /// Connections the client completed (CONNACK received).
    pub connects: usize,
    /// The largest number of client messages in flight seen.
    pub max_client_inflight: usize,
    /// The largest number of server messages in flight seen.
    pub max_server_inflight: usize,
    /// Identifier reuse seen by [`Sim::client_publish`].
    pub reused_ids: Vec<ReusedPacketId>,
    /// Invariant violations reported by either engine.
    pub violations: Vec<&'static str>,
    /// While true, bytes from the client are lost (a silent client).
    pub mute_client: bool,
}

impl Sim {
    /// A simulation; the client sends CONNECT at time zero.
    pub fn new(config: SimConfig) -> Self {
        let base = Instant::now();
        let mut sim = Sim {
            client: ClientSession::new(config.client.clone()),
            server: ServerSession::new(config.server.clone()),
            rng: Rng::new(config.seed),
            config,
            base,
            now: base,
            step: 0,
            c2s: Pipe::default(),
            s2c: Pipe::default(),
            client_in: BytesMut::new(),
            server_in: BytesMut::new(),
            link_up: true,
            reconnect_at: None,
            broker_state: None,
            server_accepted: false,
            server_acks: Vec::new(),
            client_acks: Vec::new(),
            outstanding: BTreeSet::new(),
            server_received: Vec::new(),
            client_received: Vec::new(),
            client_acked: Vec::new(),
            client_disconnects: Vec::new(),
            server_disconnects: Vec::new(),
            wills: Vec::new(),
            client_subacks: Vec::new(),
            client_unsubacks: Vec::new(),
            connects: 0,
            max_client_inflight: 0,
            max_server_inflight: 0,
            reused_ids: Vec::new(),
            violations: Vec::new(),
            mute_client: false,
        };
        sim.server.start(sim.now);
        sim.client
            .connect(sim.now)
            .expect("the first connect is valid");
        sim.drain();
        sim
    }

    /// The virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Whether the link is up.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Publishes from the client, recording identifier reuse.
    pub fn client_publish(&mut self, publish: &Publish) -> Result<Option<PacketId>, PublishError> {
        let result = self.client.publish(self.now, publish);
        if let Ok(Some(id)) = result
            && !self.outstanding.insert(id.get())
        {
            self.reused_ids.push(ReusedPacketId(id.get()));
        }
        self.drain();
        result
    }

    /// Subscribes from the client; the "broker" grants each filter its requested QoS.
    pub fn client_subscribe(
        &mut self,
        subscriptions: Vec<Subscription>,
    ) -> Result<PacketId, UserError> {
        let result = self
            .client
            .subscribe(self.now, subscriptions, SubscribeProperties::default());
        self.drain();
        result
    }

    /// Unsubscribes from the client; the "broker" answers Success for each filter.
    pub fn client_unsubscribe(&mut self, filters: Vec<MqttString>) -> Result<PacketId, UserError> {
        let result = self
            .client
            .unsubscribe(self.now, filters, UnsubscribeProperties::default());
        self.drain();
        result
    }

    /// Delivers a message from the "broker" to the client through the server session.
    pub fn deliver(&mut self, publish: Publish, granted: QoS) -> DeliverOutcome {
        let message = Message::new(publish, None, self.now);
        let outcome = self.server.deliver(
            self.now,
            &message,
            granted,
            &[] as &[NonZeroU32],
            DeliveryOptions::default(),
        );
        self.drain();
        outcome
    }

    /// Breaks the link now: bytes in flight are lost and both sides see the transport close.
    pub fn break_link(&mut self) {
        if !self.link_up {
            return;
        }
        self.link_up = false;
        self.c2s.clear();
        self.s2c.clear();
        self.client_in.clear();
        self.server_in.clear();
        self.client.handle_transport_closed(self.now);
        self.server.handle_transport_closed(self.now);
        self.reconnect_at = Some(self.now + self.config.reconnect_delay);
        self.drain();
    }

    fn reconnect(&mut self) {
        self.reconnect_at = None;
        let old = std::mem::replace(
            &mut self.server,
            ServerSession::new(self.config.server.clone()),
        );
        let old_state = old.into_state();
        if self.server_accepted {
            self.broker_state = Some(old_state);
        } else if !old_state.queued.is_empty() {
            // Messages the broker routed to a connection that died before it was accepted
            // still belong to the session: keep them for the next connection.
            self.broker_state
                .get_or_insert_with(tern_proto::SessionState::new)
                .queued
                .extend(old_state.queued);
        }
        self.server_accepted = false;
        self.link_up = true;
        self.server.start(self.now);
        if self.client.connect(self.now).is_err() {
            self.violations.push("client refused to reconnect");
        }
        self.drain();
    }

    /// The next instant something happens, if anything is scheduled.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.c2s.next_arrival(),
            self.s2c.next_arrival(),
            self.client.poll_timeout(),
            self.server.poll_timeout(),
            self.reconnect_at,
            self.server_acks.iter().map(|(at, _)| *at).min(),
            self.client_acks.iter().map(|(at, _)| *at).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advances to the next deadline and handles everything due then; returns false when
    /// nothing is scheduled at all.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_deadline() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        if self.c2s.read(now, &mut self.server_in) {
            self.server.handle_input(now, &mut self.server_in);
        }
        if self.s2c.read(now, &mut self.client_in) {
            self.client.handle_input(now, &mut self.client_in);
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        let (due, later): (Vec<_>, Vec<_>) =
            self.server_acks.drain(..).partition(|(at, _)| *at <= now);
        self.server_acks = later;
        for (_, id) in due {
            // The application acknowledges what it was given, across reconnects: the message
            // stays in the session until then. An ack for a session that started anew has
            // nothing to answer and is refused; that is fine.
            if self.server.ack(now, id, ReasonCode::Success).is_err()
                && !self.server.is_connected()
                && !self.server.is_closed()
            {
                // The new connection's session is not accepted yet: try again shortly.
                self.server_acks.push((now + Duration::from_millis(10), id));
            }
        }
        let (due, later): (Vec<_>, Vec<_>) =
            self.client_acks.drain(..).partition(|(at, _)| *at <= now);
        self.client_acks = later;
        for (_, id) in due {
            let _ = self.client.ack(now, id, ReasonCode::Success);
        }
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect();
        }
        self.drain();
        self.step += 1;
        if self.config.break_at.contains(&self.step) {
            self.break_link();
        }
        true
    }

    /// Drains transmits and events of both sides until nothing changes.
    pub fn drain(&mut self) {
        loop {
            let mut progress = false;
            let mut buf = BytesMut::new();
            if self.client.poll_transmit(&mut buf) > 0 && self.link_up && !self.mute_client {
                self.c2s.write(
                    buf.split().freeze(),
                    self.now,
                    self.config.max_delay,
                    &mut self.rng,
                );
            }
            buf.clear();
            if self.server.poll_transmit(&mut buf) > 0 && self.link_up {
                self.s2c.write(
                    buf.split().freeze(),
                    self.now,
                    self.config.max_delay,
                    &mut self.rng,
                );
            }
            while let Some(event) = self.client.poll_event() {
                progress = true;
                self.on_client_event(event);
            }
            while let Some(event) = self.server.poll_event() {
                progress = true;
                self.on_server_event(event);
            }
            if self.client.has_transmit() || self.server.has_transmit() {
                progress = true;
            }
            if !progress {
                break;
            }
        }
        self.max_client_inflight = self.max_client_inflight.max(self.client.inflight());
        self.max_server_inflight = self.max_server_inflight.max(self.server.inflight());
        for v in [
            self.client.invariant_violation(),
            self.server.invariant_violation(),
        ]
        .into_iter()
        .flatten()
        {
            self.violations.push(v);
        }
        // A side that closed its end: the peer sees the transport close once the bytes in
        // flight arrived.
        if self.link_up
            && (self.client.is_closed() || self.server.is_closed())
            && self.c2s.is_empty()
            && self.s2c.is_empty()
        {
            self.break_link();
        }
    }

    fn ack_delay(&mut self) -> Duration {
        Duration::from_millis(
            self.rng
                .below(self.config.max_ack_delay.as_millis() as u64 + 1),
        )
    }

    fn on_client_event(&mut self, event: Event) {
        match event {
            Event::Connected { .. } => self.connects += 1,
            Event::Publish { publish, needs_ack } => {
                if needs_ack && let Some(id) = publish.packet_id {
                    let at = self.now + self.ack_delay();
                    self.client_acks.push((at, id));
                }
                self.client_received.push(publish);
            }
            Event::PublishAcknowledged { packet_id, .. } => {
                self.outstanding.remove(&packet_id.get());
                self.client_acked.push(packet_id);
            }
            Event::Disconnected(reason) => {
                self.client_disconnects.push((self.now, reason));
            }
            Event::SubAck(suback) => self.client_subacks.push(suback),
            Event::UnsubAck(unsuback) => self.client_unsubacks.push(unsuback),
            _ => {}
        }
    }

    fn on_server_event(&mut self, event: Event) {
        match event {
            Event::ConnectRequest(connect) => {
                let mut properties = ConnAckProperties::default();
                if connect.client_id.is_empty() && connect.protocol.is_v5() {
                    properties.assigned_client_identifier =
                        Some(MqttString::from_static("assigned"));
                }
                let accept = Accept {
                    session: self.broker_state.take(),
                    properties,
                };
                match self.server.accept(self.now, accept) {
                    Ok(()) => self.server_accepted = true,
                    Err(_) => self.violations.push("the server refused a valid accept"),
                }
            }
            Event::Publish { publish, needs_ack } => {
                if needs_ack && let Some(id) = publish.packet_id {
                    let at = self.now + self.ack_delay();
                    self.server_acks.push((at, id));
                }
                self.server_received.push(publish);
            }
            Event::Subscribe(subscribe) => {
                let codes = subscribe
                    .subscriptions
                    .iter()
                    .map(|s| match s.options.qos {
                        QoS::AtMostOnce => ReasonCode::Success,
                        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                    })
                    .collect();
                let _ =
                    self.server
                        .suback(self.now, subscribe.packet_id, codes, Default::default());
            }
            Event::Unsubscribe(u) => {
                let codes = vec![ReasonCode::Success; u.filters.len()];
                let _ = self
                    .server
                    .unsuback(self.now, u.packet_id, codes, Default::default());
            }
            Event::Disconnected(reason) => {
                self.server_disconnects.push((self.now, reason));
            }
            Event::Will(will) => self.wills.push(will),
            _ => {}
        }
    }

    /// Runs until `done` holds or `max_steps` steps were taken; returns whether `done` held.
    pub fn run_until(&mut self, max_steps: u64, mut done: impl FnMut(&Sim) -> bool) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    /// Publishes `messages` from the client in order, as fast as the window allows, across
    /// link breaks, until each is acknowledged; returns whether all were within `max_steps`.
    pub fn publish_all(&mut self, messages: Vec<Publish>, max_steps: u64) -> bool {
        let mut pending: VecDeque<Publish> = messages.into();
        for _ in 0..max_steps {
            while let Some(next) = pending.front() {
                if !self.client.is_connected() {
                    break;
                }
                match self.client_publish(next) {
                    Ok(_) => {}
                    Err(PublishError::Blocked) => break,
                    Err(e) => panic!("publish failed: {e}"),
                }
                pending.pop_front();
            }
            if pending.is_empty() && self.client.state().outgoing.is_empty() {
                return true;
            }
            if !self.step() {
                return false;
            }
        }
        false
    }
}

/// A PUBLISH on `topic` whose payload is `seq` in decimal.
pub fn numbered(topic: &'static str, qos: QoS, seq: u32) -> Publish {
    Publish {
        qos,
        topic: MqttString::from_static(topic),
        payload: Bytes::from(seq.to_string()),
        ..Publish::default()
    }
}

/// The sequence number in a payload made by [`numbered`].
pub fn seq_of(publish: &Publish) -> Option<u32> {
    std::str::from_utf8(&publish.payload).ok()?.parse().ok()
}
