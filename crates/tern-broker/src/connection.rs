//! The per-connection driver: one tokio task owns one [`ServerSession`] and its byte stream.
//!
//! The task loops on a `select!` over four inputs: bytes from the stream, the session's
//! mailbox being notified, the engine's `poll_timeout` deadline, and the broker's shutdown.
//! After each input it drains the engine ("one change, then drain"): every event is handled
//! (CONNECT, PUBLISH, SUBSCRIBE, …), then every packet to send is appended to one buffer and
//! written with one `write_all`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tern_codec::{
    AckProperties, ConnAckProperties, Connect, Disconnect, MqttString, ProtocolVersion, Publish,
    QoS, ReasonCode, RetainHandling, Subscribe, SubscriptionOptions, Unsubscribe,
};
use tern_proto::{Accept, DeliveryOptions, Event, Message, ServerSession};
use tern_topic::{SubscriptionFilter, TopicFilter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::broker::{Shared, TaskGuard};
use crate::router::{Subscription, Target};
use crate::session::{Delivery, Previous, Released, SessionHandle, Wake};
use crate::storage::{StoredSession, StoredSubscription};

/// The driver's clock: tokio's, so that tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Records a message as received, updates the retained store and routes it.
pub(crate) fn route(
    shared: &Shared,
    message: &Arc<Message>,
    now: Instant,
    scratch: &mut Vec<Target>,
) -> usize {
    shared
        .stats
        .messages_received
        .fetch_add(1, Ordering::Relaxed);
    if message.publish.retain {
        shared.retained.update(message, &*shared.storage);
    }
    let delivered = shared.router.route(message, now, scratch);
    shared
        .stats
        .deliveries
        .fetch_add(delivered as u64, Ordering::Relaxed);
    delivered
}

/// Runs one connection to its end.
pub(crate) async fn run<S>(shared: Arc<Shared>, mut stream: S, peer: SocketAddr, guard: TaskGuard)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_conn();
    let session = ServerSession::new(shared.engine.clone());
    let mut conn = Connection {
        shared,
        id,
        session,
        handle: None,
        inbox: VecDeque::new(),
        scratch: Vec::new(),
        retained: Vec::new(),
    };
    tracing::debug!(%peer, conn = id, "connection opened");
    conn.drive(&mut stream).await;
    // The session is settled (handed over, offline or ended) before the client sees the
    // close, so that a reconnect right after it finds the session where it should be.
    conn.finish();
    let _ = stream.shutdown().await;
    tracing::debug!(%peer, conn = id, "connection closed");
    drop(guard);
}

struct Connection {
    shared: Arc<Shared>,
    id: u64,
    session: ServerSession,
    /// The session's mailbox, once CONNECT was accepted.
    handle: Option<Arc<SessionHandle>>,
    inbox: VecDeque<Delivery>,
    scratch: Vec<Target>,
    retained: Vec<Arc<Message>>,
}

impl Connection {
    async fn drive<S>(&mut self, stream: &mut S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut shutdown = self.shared.shutdown.subscribe();
        let mut stopping = *shutdown.borrow_and_update();
        if stopping {
            return;
        }
        let mut read_buf = BytesMut::new();
        let mut write_buf = BytesMut::new();
        self.session.start(now());
        loop {
            let deadline = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let handle = self.handle.clone();
            // Sized lazily: nothing until the first read, then grown as packets need it.
            if read_buf.capacity() - read_buf.len() < 512 {
                read_buf.reserve(4096);
            }
            tokio::select! {
                biased;
                _ = shutdown.changed(), if !stopping => {
                    stopping = true;
                    self.close(ReasonCode::ServerShuttingDown);
                }
                _ = async { handle.as_deref().expect("guarded").notified().await }, if handle.is_some() => {
                    self.on_mailbox();
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    self.session.handle_timeout(now());
                }
                read = stream.read_buf(&mut read_buf) => match read {
                    Ok(0) => self.session.handle_transport_closed(now()),
                    Ok(_) => self.session.handle_input(now(), &mut read_buf),
                    Err(e) => {
                        tracing::debug!(conn = self.id, "read failed: {e}");
                        self.session.handle_transport_closed(now());
                    }
                },
            }
            self.drain_events().await;
            if self.session.has_transmit() {
                self.session.poll_transmit(&mut write_buf);
                if let Err(e) = stream.write_all(&write_buf).await {
                    tracing::debug!(conn = self.id, "write failed: {e}");
                    self.session.handle_transport_closed(now());
                    self.drain_events().await;
                }
                write_buf.clear();
            }
            if self.session.is_closed() {
                return;
            }
        }
    }

    /// Ends the connection from the broker's side: DISCONNECT with `reason` (5.0) once
    /// connected, otherwise just a close.
    fn close(&mut self, reason: ReasonCode) {
        let now = now();
        let disconnect = Disconnect {
            reason_code: reason,
            ..Disconnect::default()
        };
        if self.session.disconnect(now, disconnect).is_err() {
            self.session.handle_transport_closed(now);
        }
    }

    fn on_mailbox(&mut self) {
        let Some(handle) = self.handle.clone() else {
            return;
        };
        match handle.wake(self.id, &mut self.inbox) {
            Wake::TakenOver => {
                tracing::debug!(conn = self.id, client_id = %handle.client_id, "session taken over");
                // [MQTT-3.1.4-3]: DISCONNECT 0x8E to the existing client, then close.
                self.close(ReasonCode::SessionTakenOver);
            }
            Wake::Deliveries { overloaded } => {
                let now = now();
                for delivery in self.inbox.drain(..) {
                    delivery.deliver_to(&mut self.session, now, &self.shared.stats);
                }
                if overloaded {
                    tracing::warn!(conn = self.id, client_id = %handle.client_id, "mailbox over its limits: disconnecting");
                    self.close(ReasonCode::QuotaExceeded);
                }
            }
        }
    }

    async fn drain_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::ConnectRequest(connect) => self.on_connect(connect).await,
                Event::Publish { publish, needs_ack } => self.on_publish(publish, needs_ack),
                Event::Subscribe(subscribe) => self.on_subscribe(subscribe),
                Event::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe),
                Event::Will(will) => {
                    let origin = self.session.client_id().clone();
                    publish_will(&self.shared, origin, will, &mut self.scratch);
                }
                Event::Disconnected(reason) => {
                    tracing::debug!(conn = self.id, client_id = %self.session.client_id(), %reason, "disconnected");
                }
                other => tracing::trace!(conn = self.id, event = ?other, "event ignored"),
            }
        }
    }

    async fn on_connect(&mut self, connect: Box<Connect>) {
        let now = now();
        let v5 = connect.protocol.is_v5();
        if connect.properties.authentication_method.is_some() {
            // No enhanced authentication method is configured.
            let _ = self
                .session
                .reject(now, ReasonCode::BadAuthenticationMethod);
            return;
        }
        if connect.client_id.is_empty() && connect.protocol == ProtocolVersion::V3_1 {
            // MQTT 3.1 client identifiers are 1 to 23 characters.
            let _ = self
                .session
                .reject(now, ReasonCode::ClientIdentifierNotValid);
            return;
        }
        // An empty identifier gets one of the broker's [MQTT-3.1.3-6]; a 5.0 client is told
        // which [MQTT-3.2.2-16]. (3.1.1 requires Clean Session 1 for it, checked by the engine
        // [MQTT-3.1.3-8].)
        let assigned = connect.client_id.is_empty().then(|| {
            MqttString::try_from(self.shared.assign_client_id(self.id)).expect("short ASCII")
        });
        let client_id = assigned
            .clone()
            .unwrap_or_else(|| connect.client_id.clone());
        let shared = self.shared.clone();
        let claim = shared.registry.claim(
            &client_id,
            self.id,
            connect.clean_start,
            &shared.config.mailbox,
            &shared.stats,
        );
        if let Some(ended) = &claim.ended {
            shared.router.remove_session(ended.key);
        }
        let previous = match claim.previous {
            Previous::None => None,
            Previous::Offline(session) => Some(session),
            Previous::Online(rx) => {
                let wait = shared.config.shutdown.timeout().max(Duration::from_secs(1));
                match tokio::time::timeout(wait, rx).await {
                    Ok(Ok(session)) => Some(session),
                    _ => {
                        tracing::warn!(%client_id, "previous connection did not hand its session over");
                        None
                    }
                }
            }
        };
        let resumed = previous.is_some() && !connect.clean_start;
        let state = previous
            .filter(|_| !connect.clean_start)
            .map(|s| s.into_state());
        let mut properties = ConnAckProperties::default();
        if v5 {
            properties.assigned_client_identifier = assigned;
            let max = shared.config.limits.max_session_expiry;
            if connect
                .properties
                .session_expiry_interval
                .is_some_and(|e| e > max)
            {
                properties.session_expiry_interval = Some(max);
            }
        }
        self.handle = Some(claim.handle.clone());
        if let Err(e) = self.session.accept(
            now,
            Accept {
                session: state,
                properties,
            },
        ) {
            tracing::error!(conn = self.id, %client_id, "cannot accept CONNECT: {e}");
            self.session.handle_transport_closed(now);
            return;
        }
        if resumed && let Err(e) = shared.storage.remove_session(&client_id) {
            tracing::error!(%client_id, "storage: {e}");
        }
        tracing::debug!(conn = self.id, %client_id, resumed, "client connected");
        // Messages routed to the session before the accept.
        claim.handle.notify();
    }

    fn on_publish(&mut self, publish: Publish, needs_ack: bool) {
        let now = now();
        let packet_id = publish.packet_id;
        let v5 = self.session.version().is_v5();
        let reason = if publish.topic.starts_with('$') {
            // Topics starting with `$` are the server's; clients cannot publish to them
            // [MQTT-4.7.2-1] (section 4.7.2).
            tracing::debug!(conn = self.id, topic = %publish.topic, "publish to a $ topic refused");
            ReasonCode::NotAuthorized
        } else {
            let message = Arc::new(Message {
                publish,
                origin: Some(self.session.client_id().clone()),
                received_at: now,
            });
            if route(&self.shared, &message, now, &mut self.scratch) == 0 {
                ReasonCode::NoMatchingSubscribers
            } else {
                ReasonCode::Success
            }
        };
        if needs_ack && let Some(id) = packet_id {
            let reason = if v5 { reason } else { ReasonCode::Success };
            if let Err(e) = self.session.ack(now, id, reason) {
                tracing::error!(conn = self.id, "cannot acknowledge: {e}");
            }
        }
    }

    fn on_subscribe(&mut self, subscribe: Subscribe) {
        let now = now();
        let Some(handle) = self.handle.clone() else {
            return;
        };
        let v5 = self.session.version().is_v5();
        let identifier = subscribe.properties.subscription_identifier;
        let max_qos = self.shared.engine.maximum_qos;
        let mut codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut replays: Vec<(TopicFilter, SubscriptionOptions)> = Vec::new();
        for request in &subscribe.subscriptions {
            let parsed = if v5 {
                SubscriptionFilter::new(request.filter.as_str())
            } else {
                // 3.1.1 has no shared subscriptions: `$share/...` is an ordinary filter.
                TopicFilter::new(request.filter.as_str()).map(SubscriptionFilter::Plain)
            };
            let Ok(filter) = parsed else {
                codes.push(if v5 {
                    ReasonCode::TopicFilterInvalid
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            };
            let shared = matches!(filter, SubscriptionFilter::Shared(_));
            if shared && request.options.no_local {
                // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
                self.close(ReasonCode::ProtocolError);
                return;
            }
            let mut options = request.options;
            // Granted at most the server's Maximum QoS [MQTT-3.2.2-9].
            options.qos = options.qos.min(max_qos);
            let existed = self.shared.router.subscribe(
                &filter,
                Subscription {
                    session: handle.clone(),
                    options,
                    identifier,
                },
            );
            handle.record_subscription(StoredSubscription::new(
                request.filter.to_string(),
                options,
                identifier,
            ));
            codes.push(granted(options.qos));
            // Retained messages on subscribe, per Retain Handling [MQTT-3.3.1-9],
            // [MQTT-3.3.1-10], [MQTT-3.3.1-11]; none for shared subscriptions.
            let send = !shared
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send {
                replays.push((filter.topic_filter().clone(), options));
            }
        }
        if let Err(e) =
            self.session
                .suback(now, subscribe.packet_id, codes, AckProperties::default())
        {
            tracing::error!(conn = self.id, "cannot answer SUBSCRIBE: {e}");
            return;
        }
        let ids: Vec<_> = identifier.into_iter().collect();
        for (filter, options) in replays {
            self.retained.clear();
            self.shared
                .retained
                .matching(filter.as_str(), &mut self.retained);
            let delivery_options = DeliveryOptions {
                no_local: options.no_local,
                retain_as_published: options.retain_as_published,
                retained_replay: true,
            };
            for message in self.retained.drain(..) {
                Delivery {
                    message,
                    qos: options.qos,
                    subscription_ids: ids.clone(),
                    options: delivery_options,
                }
                .deliver_to(&mut self.session, now, &self.shared.stats);
            }
        }
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let now = now();
        let Some(handle) = self.handle.clone() else {
            return;
        };
        let v5 = self.session.version().is_v5();
        let codes = unsubscribe
            .filters
            .iter()
            .map(|f| {
                let parsed = if v5 {
                    SubscriptionFilter::new(f.as_str())
                } else {
                    TopicFilter::new(f.as_str()).map(SubscriptionFilter::Plain)
                };
                match parsed {
                    Ok(filter) => {
                        handle.forget_subscription(f.as_str());
                        if self.shared.router.unsubscribe(&filter, handle.key) {
                            ReasonCode::Success
                        } else {
                            ReasonCode::NoSubscriptionExisted
                        }
                    }
                    Err(_) => ReasonCode::TopicFilterInvalid,
                }
            })
            .collect();
        if let Err(e) =
            self.session
                .unsuback(now, unsubscribe.packet_id, codes, AckProperties::default())
        {
            tracing::error!(conn = self.id, "cannot answer UNSUBSCRIBE: {e}");
        }
    }

    /// After the stream closed: hands the session over, keeps it offline or ends it.
    fn finish(self) {
        let Connection {
            shared,
            id,
            session,
            handle,
            ..
        } = self;
        let Some(handle) = handle else { return };
        let expiry = session
            .session_expiry_interval()
            .min(shared.config.limits.max_session_expiry);
        match shared
            .registry
            .release(&handle, id, Box::new(session), expiry > 0, now())
        {
            Released::HandedOver | Released::NotOwner => {}
            Released::Ended => {
                shared.router.remove_session(handle.key);
                if let Err(e) = shared.storage.remove_session(&handle.client_id) {
                    tracing::error!(client_id = %handle.client_id, "storage: {e}");
                }
            }
            Released::Offline(n) => {
                let stored = handle.with_offline(n, |s| {
                    StoredSession::new(s.state().clone(), handle.subscriptions())
                });
                if let Some(stored) = stored
                    && let Err(e) = shared.storage.save_session(&handle.client_id, &stored)
                {
                    tracing::error!(client_id = %handle.client_id, "storage: {e}");
                }
                tokio::spawn(keep_offline(shared, handle, n, expiry));
            }
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}

fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

fn publish_will(shared: &Shared, origin: MqttString, will: Publish, scratch: &mut Vec<Target>) {
    tracing::debug!(client_id = %origin, topic = %will.topic, "publishing will");
    let now = now();
    let message = Arc::new(Message {
        publish: will,
        origin: Some(origin),
        received_at: now,
    });
    route(shared, &message, now, scratch);
}

/// Watches an offline session: publishes its Will when the Will Delay passes and ends the
/// session when its Session Expiry Interval passes [MQTT-3.1.2-23]; stops as soon as a
/// connection resumes it (another offline period gets another keeper).
async fn keep_offline(shared: Arc<Shared>, handle: Arc<SessionHandle>, offline: u64, expiry: u32) {
    let expires_at = (expiry != u32::MAX)
        .then(|| tokio::time::Instant::now() + Duration::from_secs(expiry.into()));
    let mut shutdown = shared.shutdown.subscribe();
    let mut scratch = Vec::new();
    loop {
        let Some(timer) = handle.with_offline(offline, |s| s.poll_timeout()) else {
            return;
        };
        let timer = timer.map(tokio::time::Instant::from_std);
        let deadline = match (timer, expires_at) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => return,
        }
        let now = now();
        let Some(wills) = handle.with_offline(offline, |s| {
            s.handle_timeout(now);
            std::iter::from_fn(|| s.poll_event())
                .filter_map(|e| {
                    if let Event::Will(will) = e {
                        Some(will)
                    } else {
                        None
                    }
                })
                .collect::<Vec<_>>()
        }) else {
            return;
        };
        for will in wills {
            publish_will(&shared, handle.client_id.clone(), will, &mut scratch);
        }
        if expires_at.is_some_and(|e| e <= tokio::time::Instant::now())
            && shared.registry.expire(&handle, offline)
        {
            tracing::debug!(client_id = %handle.client_id, "session expired");
            shared.router.remove_session(handle.key);
            if let Err(e) = shared.storage.remove_session(&handle.client_id) {
                tracing::error!(client_id = %handle.client_id, "storage: {e}");
            }
            return;
        }
    }
}
