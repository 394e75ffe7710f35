//! The driver: one task per client that owns the [`ClientSession`], the transport and one
//! timer, after quinn's connection driver. Each turn it feeds one input to the session
//! (bytes read, a command, a queued message, an expired deadline), then drains the session:
//! events first, then the outgoing bytes into one buffer, then the next deadline.
//!
//! Between connections it keeps the session (its state survives), serves commands, and waits
//! out the reconnect backoff.
//!
//! Nothing here awaits an application channel: subscription streams are fed with `try_send`,
//! and a message for a full stream waits in `deliveries` while the socket keeps being read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::{Future, poll_fn};
use std::io;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tern_codec::{
    AckProperties, Auth, AuthProperties, ConnAck, Disconnect, MqttString, PacketId, Publish, QoS,
    ReasonCode, SubAck, SubscribeProperties, Subscription as SubscriptionEntry,
    SubscriptionOptions, UnsubAck, UnsubscribeProperties, UserProperties,
};
use tern_proto::{
    AckMode, ClientConfig, ClientSession, Event, OutgoingPhase, OutgoingPublish, PublishError,
    UserError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::auth::AuthHandler;
use crate::client::{Command, ConnectionEvent, PublishCommand, SubscribeReply};
use crate::error::{DisconnectReason, Error};
use crate::message::{AckHandle, Message, PublishAck};
use crate::options::{Settings, SubscribeOptions};
use crate::reconnect::Backoff;
use crate::transport::{self, BoxedIo, Endpoint};

/// The receiver of the first connection's outcome ([`ClientBuilder::connect`]).
///
/// [`ClientBuilder::connect`]: crate::ClientBuilder::connect
pub(crate) type FirstConnect = oneshot::Receiver<Result<(), DisconnectReason>>;

type PublishReply = oneshot::Sender<Result<PublishAck, Error>>;

/// Outgoing bytes beyond which the driver takes no new message from the queue.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Messages taken from the offline queue per wake-up of the driver at most.
const PUBLISH_BATCH: usize = 256;
/// Bytes reserved for each socket read.
const READ_CHUNK: usize = 8 * 1024;
/// How long a final DISCONNECT may take to leave.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);
/// The largest Subscription Identifier [MQTT-3.8.2.1.2]: 268,435,455.
const MAX_SUBSCRIPTION_ID: u32 = 268_435_455;

/// How one connection ended.
enum Outcome {
    /// The driver must stop.
    Stop,
    /// The connection was lost or could not be made.
    Lost(DisconnectReason),
}

/// Why the driver stops.
enum Stop {
    /// `disconnect()`; each caller is answered once the driver stopped.
    Disconnect(Vec<oneshot::Sender<()>>),
    /// Every handle is gone.
    Dropped,
}

/// What woke the connected loop.
enum Wake {
    Written(io::Result<()>),
    Read(io::Result<usize>),
    Command(Option<Command>),
    Publish(Option<PublishCommand>),
    Capacity,
    Timer,
}

/// One filter subscribed at the broker, shared by the streams that asked for it.
struct FilterEntry {
    options: SubscriptionOptions,
    user_properties: UserProperties,
    /// The Subscription Identifier (MQTT 5.0), one per filter so that every stream of the
    /// filter is found by it.
    sub_id: Option<NonZeroU32>,
    /// The filter to match topics against: without `$share/{name}/`.
    match_filter: String,
    streams: Vec<(u64, mpsc::Sender<Message>)>,
    /// Subscribe calls whose SUBSCRIBE is not sent yet.
    waiters: Vec<Waiter>,
    /// A SUBSCRIBE must be sent (new options, a waiter, or a restore).
    needs_send: bool,
    /// The SUBSCRIBE in flight.
    pending: Option<PacketId>,
}

/// A `subscribe` call waiting for SUBACK.
struct Waiter {
    stream: u64,
    rx: mpsc::Receiver<Message>,
    reply: oneshot::Sender<Result<SubscribeReply, Error>>,
}

/// A SUBSCRIBE or UNSUBSCRIBE waiting for its answer.
enum Request {
    Subscribe {
        filter: MqttString,
        waiters: Vec<Waiter>,
    },
    Unsubscribe {
        reply: Option<oneshot::Sender<Result<(), Error>>>,
    },
}

/// A received message on its way into its streams.
struct Delivery {
    message: Message,
    targets: Vec<mpsc::Sender<Message>>,
    /// The acknowledgement the driver sends once the message is in every stream
    /// (automatic mode, QoS 1/2).
    auto_ack: Option<u64>,
    /// Whether it is QoS 1/2 (counted against the read pause).
    acked_qos: bool,
}

/// The driver of one client.
pub(crate) struct Driver {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
    config: ClientConfig,
    connect_timeout: Duration,
    backoff: Backoff,
    inbound_limit: usize,
    ack_mode: AckMode,
    auth: Option<Box<dyn AuthHandler>>,

    session: ClientSession,
    ctrl_rx: mpsc::UnboundedReceiver<Command>,
    ctrl_weak: mpsc::WeakUnboundedSender<Command>,
    pub_rx: mpsc::Receiver<PublishCommand>,
    pub_closed: bool,
    events: broadcast::Sender<ConnectionEvent>,
    first: Option<oneshot::Sender<Result<(), DisconnectReason>>>,
    connected_once: bool,
    stop: Option<Stop>,

    // ----- outgoing messages -----
    /// Messages taken from the queue but not yet accepted by the session (blocked by the
    /// in-flight window, or re-published after the broker lost the session).
    outbox: VecDeque<PublishCommand>,
    /// QoS 1/2 messages in the session, by packet identifier.
    inflight: HashMap<PacketId, PublishCommand>,
    /// The session refused a message for back-pressure; `Event::Writable` clears it.
    blocked: bool,
    /// QoS 0 messages accepted by the session, not yet in the output buffer.
    new_qos0: Vec<PublishReply>,
    /// QoS 0 messages in the output buffer, with the byte count that must be written.
    qos0_waiters: VecDeque<(u64, PublishReply)>,
    queued_bytes: u64,
    written_bytes: u64,
    /// The outgoing phases before the last CONNECT, in order, to know what the broker had
    /// when it turns out to have lost the session.
    // ----- subscriptions -----
    filters: HashMap<MqttString, FilterEntry>,
    stream_filters: HashMap<u64, MqttString>,
    next_stream: u64,
    next_sub_id: u32,
    requests: HashMap<PacketId, Request>,
    /// Filters to unsubscribe once connected again (dropped while offline).
    to_unsubscribe: HashSet<MqttString>,
    catch_all: Vec<mpsc::Sender<Message>>,

    // ----- inbound messages -----
    deliveries: VecDeque<Delivery>,
    pending_acked_qos: usize,
    /// Inbound QoS 1/2 messages not yet acknowledged, by delivery number.
    unacked: HashMap<u64, PacketId>,
    next_seq: u64,

    // ----- the current connection -----
    io_error: Option<io::Error>,
    /// The transport failed: nothing more can be written to it.
    io_failed: bool,
    auth_error: Option<String>,
    last_reason: Option<DisconnectReason>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    pub(crate) fn new(
        settings: Settings,
        ctrl_rx: mpsc::UnboundedReceiver<Command>,
        ctrl_weak: mpsc::WeakUnboundedSender<Command>,
        pub_rx: mpsc::Receiver<PublishCommand>,
        events: broadcast::Sender<ConnectionEvent>,
        first: Option<oneshot::Sender<Result<(), DisconnectReason>>>,
    ) -> Self {
        let session = ClientSession::new(settings.config.clone());
        Driver {
            endpoint: settings.endpoint,
            tls: settings.tls,
            config: settings.config,
            connect_timeout: settings.connect_timeout,
            backoff: Backoff::new(settings.reconnect),
            inbound_limit: settings.inbound_limit,
            ack_mode: settings.ack_mode,
            auth: settings.auth,
            session,
            ctrl_rx,
            ctrl_weak,
            pub_rx,
            pub_closed: false,
            events,
            first,
            connected_once: false,
            stop: None,
            outbox: VecDeque::new(),
            inflight: HashMap::new(),
            blocked: false,
            new_qos0: Vec::new(),
            qos0_waiters: VecDeque::new(),
            queued_bytes: 0,
            written_bytes: 0,
            filters: HashMap::new(),
            stream_filters: HashMap::new(),
            next_stream: 0,
            next_sub_id: 0,
            requests: HashMap::new(),
            to_unsubscribe: HashSet::new(),
            catch_all: Vec::new(),
            deliveries: VecDeque::new(),
            pending_acked_qos: 0,
            unacked: HashMap::new(),
            next_seq: 0,
            io_error: None,
            io_failed: false,
            auth_error: None,
            last_reason: None,
        }
    }

    /// Runs the client until it stops.
    pub(crate) async fn run(mut self) {
        let mut final_reason = DisconnectReason::Local;
        loop {
            let reason = match self.connection().await {
                Outcome::Stop => break,
                Outcome::Lost(reason) => reason,
            };
            tracing::debug!(%reason, "connection ended");
            self.connection_lost();
            self.emit(ConnectionEvent::Disconnected {
                reason: reason.clone(),
            });
            final_reason = reason.clone();
            if let Some(first) = self.first.take() {
                let _ = first.send(Err(reason));
                break;
            }
            if reason.is_fatal() {
                tracing::warn!(%reason, "not reconnecting");
                break;
            }
            let Some((delay, attempt)) = self.backoff.next_delay() else {
                break;
            };
            self.emit(ConnectionEvent::Reconnecting { delay, attempt });
            if self.offline(tokio::time::sleep(delay)).await.is_none() {
                break;
            }
        }
        self.shutdown(final_reason);
    }

    fn emit(&self, event: ConnectionEvent) {
        // No receiver is not an error: nobody listens.
        let _ = self.events.send(event);
    }

    /// Runs `fut` while serving commands and feeding streams; `None` when the driver must
    /// stop first.
    async fn offline<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            self.process_deliveries();
            if self.stop.is_some() {
                return None;
            }
            let blocked = self.blocked_target();
            let has_blocked = blocked.is_some();
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                command = self.ctrl_rx.recv() => self.command(command),
                () = wait_capacity(blocked), if has_blocked => {}
            }
        }
    }

    /// One connection: the transport, CONNECT, and the connected loop.
    async fn connection(&mut self) -> Outcome {
        let endpoint = self.endpoint.clone();
        let tls = self.tls.clone();
        let timeout = self.connect_timeout;
        let establish = async move {
            tokio::time::timeout(timeout, transport::connect(&endpoint, tls.as_ref())).await
        };
        let io = match self.offline(establish).await {
            None => return Outcome::Stop,
            Some(Err(_elapsed)) => return Outcome::Lost(DisconnectReason::ConnectTimeout),
            Some(Ok(Err(e))) => return Outcome::Lost(DisconnectReason::Transport(Arc::new(e))),
            Some(Ok(Ok(io))) => io,
        };
        // A fresh session with this attempt's CONNECT around the state kept so far.
        let config = self.attempt_config();
        let previous = std::mem::replace(&mut self.session, ClientSession::new(config.clone()));
        let state = previous.into_state();
        self.session = ClientSession::with_state(config, state);
        self.io_error = None;
        self.io_failed = false;
        self.auth_error = None;
        self.last_reason = None;
        if let Err(e) = self.session.connect(now()) {
            return Outcome::Lost(DisconnectReason::Transport(Arc::new(io::Error::other(e))));
        }
        self.connected(io).await
    }

    /// The CONNECT of the next attempt: MQTT 5.0 reconnections resume the session (Clean
    /// Start 0), and enhanced authentication starts afresh.
    fn attempt_config(&mut self) -> ClientConfig {
        let mut config = self.config.clone();
        if self.connected_once && config.connect.protocol.is_v5() {
            config.connect.clean_start = false;
        }
        if let Some(auth) = self.auth.as_mut() {
            config.connect.properties.authentication_data = auth.initial_data();
        }
        config
    }

    /// The connected loop: until the session closes.
    async fn connected(&mut self, io: BoxedIo) -> Outcome {
        let (mut reader, mut writer) = tokio::io::split(io);
        let mut input = BytesMut::with_capacity(READ_CHUNK);
        let mut output = BytesMut::new();
        let mut need_flush = false;
        let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
        loop {
            self.drain(&mut output);
            if self.session.is_closed() {
                return self.close(&mut writer, &mut output).await;
            }
            let deadline = self.session.poll_timeout();
            if let Some(deadline) = deadline {
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(deadline));
            }
            if input.capacity() - input.len() < READ_CHUNK / 2 {
                input.reserve(READ_CHUNK);
            }
            let can_write = !output.is_empty() || need_flush;
            // Reading stops only when QoS 1/2 messages for full streams exceed the inbound
            // limit (see `ClientBuilder::inbound_limit`).
            let can_read = self.pending_acked_qos < self.inbound_limit;
            let can_take = !self.pub_closed
                && self.session.is_connected()
                && !self.blocked
                && self.outbox.is_empty()
                && output.len() < WRITE_HIGH_WATER
                && self.stop.is_none();
            let blocked = self.blocked_target();
            let has_blocked = blocked.is_some();
            let written = &mut self.written_bytes;
            // Not biased: branches are polled from a random start, so a socket that is always
            // readable cannot starve the queue, the commands or the timer (nor the reverse).
            let wake = tokio::select! {
                r = poll_fn(|cx| poll_write_all(&mut writer, &mut output, &mut need_flush, written, cx)),
                    if can_write => Wake::Written(r),
                r = reader.read_buf(&mut input), if can_read => Wake::Read(r),
                c = self.ctrl_rx.recv() => Wake::Command(c),
                p = self.pub_rx.recv(), if can_take => Wake::Publish(p),
                () = wait_capacity(blocked), if has_blocked => Wake::Capacity,
                () = &mut timer, if deadline.is_some() => Wake::Timer,
            };
            let now = now();
            match wake {
                Wake::Written(Ok(())) => self.resolve_written(),
                Wake::Written(Err(e)) | Wake::Read(Err(e)) => {
                    self.io_error = Some(e);
                    self.io_failed = true;
                    self.session.handle_transport_closed(now);
                }
                Wake::Read(Ok(0)) => {
                    self.io_failed = true;
                    self.io_error = Some(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the broker closed the connection",
                    ));
                    self.session.handle_transport_closed(now);
                }
                Wake::Read(Ok(_)) => self.session.handle_input(now, &mut input),
                Wake::Command(command) => self.command(command),
                Wake::Publish(Some(publish)) => self.take_publishes(publish, &mut output),
                Wake::Publish(None) => self.pub_closed = true,
                Wake::Capacity => {}
                Wake::Timer => self.session.handle_timeout(now),
            }
        }
    }

    /// The session closed: send what is left (a final DISCONNECT), briefly, and end.
    async fn close<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        output: &mut BytesMut,
    ) -> Outcome {
        if !self.io_failed {
            let flush = async {
                writer.write_all(output).await?;
                writer.flush().await?;
                writer.shutdown().await
            };
            if let Ok(Ok(())) = tokio::time::timeout(CLOSE_FLUSH, flush).await {
                self.written_bytes += output.len() as u64;
                self.resolve_written();
            }
        }
        output.clear();
        if self.stop.is_some() {
            let reason = self.last_reason.take().unwrap_or(DisconnectReason::Local);
            self.emit(ConnectionEvent::Disconnected { reason });
            return Outcome::Stop;
        }
        Outcome::Lost(self.last_reason.take().unwrap_or(DisconnectReason::Session(
            tern_proto::ConnectionError::TransportLost,
        )))
    }

    /// Drains the session after an input: events, then queued work, then the bytes to send,
    /// until nothing moves.
    fn drain(&mut self, output: &mut BytesMut) {
        loop {
            let mut moved = false;
            while let Some(event) = self.session.poll_event() {
                moved = true;
                self.on_event(event);
            }
            // Subscriptions first: after a reconnection they are restored before the queued
            // messages go out, so a message to one's own subscription is not missed.
            self.send_requests();
            self.pump_outbox();
            self.process_deliveries();
            let n = self.transmit(output);
            if !moved && n == 0 {
                break;
            }
        }
    }

    // ----- commands -----

    fn command(&mut self, command: Option<Command>) {
        let now = now();
        match command {
            None => self.request_stop(Stop::Dropped),
            Some(Command::Disconnect { reply }) => {
                self.request_stop(Stop::Disconnect(vec![reply]));
            }
            Some(Command::Subscribe {
                filter,
                options,
                reply,
            }) => self.subscribe(filter, options, reply),
            Some(Command::Unsubscribe { stream, reply }) => self.unsubscribe(stream, reply),
            Some(Command::CatchAll { tx }) => self.catch_all.push(tx),
            Some(Command::Ack { seq, reason }) => self.ack(seq, reason),
            Some(Command::Reauthenticate { reply }) => {
                let result = match self.auth.as_mut() {
                    None => Err(Error::NotSupported("no authentication method configured")),
                    Some(_) if !self.session.is_connected() => {
                        Err(Error::Usage(UserError::NotConnected))
                    }
                    Some(handler) => {
                        let auth = Auth {
                            reason_code: ReasonCode::ReAuthenticate,
                            properties: AuthProperties {
                                authentication_data: handler.initial_data(),
                                ..AuthProperties::default()
                            },
                        };
                        self.session.auth(now, auth).map_err(Error::Usage)
                    }
                };
                let _ = reply.send(result);
            }
        }
    }

    fn request_stop(&mut self, stop: Stop) {
        match (&mut self.stop, stop) {
            (Some(Stop::Disconnect(replies)), Stop::Disconnect(more)) => replies.extend(more),
            (Some(_), _) => {}
            (None, stop) => {
                self.stop = Some(stop);
                let now = now();
                if self.session.is_connected() {
                    if let Err(e) = self.session.disconnect(now, Disconnect::default()) {
                        tracing::debug!("DISCONNECT refused: {e}");
                        self.session.handle_transport_closed(now);
                    }
                } else if !self.session.is_closed() {
                    self.session.handle_transport_closed(now);
                }
            }
        }
    }

    fn ack(&mut self, seq: u64, reason: ReasonCode) {
        let Some(packet_id) = self.unacked.remove(&seq) else {
            // Acknowledged already, or the broker lost the session since.
            return;
        };
        let now = now();
        if let Err(e) = self.session.ack(now, packet_id, reason) {
            tracing::warn!(%reason, "acknowledgement refused ({e}); acknowledging with Success");
            // Never leave a message unacknowledged: the ones after it would wait for ever.
            if let Err(e) = self.session.ack(now, packet_id, ReasonCode::Success) {
                tracing::debug!("acknowledgement of {packet_id} failed: {e}");
            }
        }
    }

    // ----- subscriptions -----

    fn subscribe(
        &mut self,
        filter: MqttString,
        options: SubscribeOptions,
        reply: oneshot::Sender<Result<SubscribeReply, Error>>,
    ) {
        let capacity = options.buffer.unwrap_or(256);
        let (tx, rx) = mpsc::channel(capacity);
        let stream = self.next_stream;
        self.next_stream += 1;
        let v5 = self.config.connect.protocol.is_v5();
        let entry = match self.filters.entry(filter.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let sub_id = if v5 {
                    self.next_sub_id = self.next_sub_id % MAX_SUBSCRIPTION_ID + 1;
                    NonZeroU32::new(self.next_sub_id)
                } else {
                    None
                };
                let match_filter = match tern_topic::parse_shared(filter.as_str()) {
                    Ok(Some((_, inner))) => inner.to_owned(),
                    _ => filter.as_str().to_owned(),
                };
                e.insert(FilterEntry {
                    options: options.options,
                    user_properties: UserProperties::new(),
                    sub_id,
                    match_filter,
                    streams: Vec::new(),
                    waiters: Vec::new(),
                    needs_send: false,
                    pending: None,
                })
            }
        };
        entry.options = options.options;
        entry.user_properties = options.user_properties;
        entry.streams.push((stream, tx));
        entry.waiters.push(Waiter { stream, rx, reply });
        entry.needs_send = true;
        self.stream_filters.insert(stream, filter.clone());
        self.to_unsubscribe.remove(&filter);
    }

    fn unsubscribe(&mut self, stream: u64, reply: Option<oneshot::Sender<Result<(), Error>>>) {
        match self.remove_stream(stream) {
            Some(filter) => self.filter_unused(filter, reply),
            None => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }

    /// Removes a stream; returns its filter when no stream uses it any more (the entry is
    /// gone then).
    fn remove_stream(&mut self, stream: u64) -> Option<MqttString> {
        let filter = self.stream_filters.remove(&stream)?;
        let entry = self.filters.get_mut(&filter)?;
        entry.streams.retain(|(id, _)| *id != stream);
        if entry.streams.is_empty() && entry.waiters.is_empty() {
            self.filters.remove(&filter);
            Some(filter)
        } else {
            None
        }
    }

    /// No stream uses `filter` any more: UNSUBSCRIBE now, or after reconnecting.
    fn filter_unused(
        &mut self,
        filter: MqttString,
        reply: Option<oneshot::Sender<Result<(), Error>>>,
    ) {
        if self.session.is_connected() {
            match self.session.unsubscribe(
                now(),
                vec![filter.clone()],
                UnsubscribeProperties::default(),
            ) {
                Ok(packet_id) => {
                    self.requests
                        .insert(packet_id, Request::Unsubscribe { reply });
                    return;
                }
                Err(e) => {
                    tracing::debug!(%filter, "UNSUBSCRIBE deferred: {e}");
                }
            }
        }
        self.to_unsubscribe.insert(filter);
        if let Some(reply) = reply {
            let _ = reply.send(Ok(()));
        }
    }

    /// Sends the SUBSCRIBE and UNSUBSCRIBE packets that wait for a connection.
    fn send_requests(&mut self) {
        if !self.session.is_connected() {
            return;
        }
        let now = now();
        let sub_ids = self.config.connect.protocol.is_v5()
            && self
                .session
                .server_limits()
                .subscription_identifiers_available;
        let mut failed = Vec::new();
        for (filter, entry) in &mut self.filters {
            if !entry.needs_send || entry.pending.is_some() {
                continue;
            }
            let properties = SubscribeProperties {
                subscription_identifier: entry.sub_id.filter(|_| sub_ids),
                user_properties: entry.user_properties.clone(),
            };
            let subscription = SubscriptionEntry {
                filter: filter.clone(),
                options: entry.options,
            };
            match self.session.subscribe(now, vec![subscription], properties) {
                Ok(packet_id) => {
                    entry.needs_send = false;
                    entry.pending = Some(packet_id);
                    let waiters = std::mem::take(&mut entry.waiters);
                    self.requests.insert(
                        packet_id,
                        Request::Subscribe {
                            filter: filter.clone(),
                            waiters,
                        },
                    );
                }
                // Every packet identifier is in use: try again after an acknowledgement.
                Err(UserError::InvalidState(_)) => break,
                Err(e) => {
                    entry.needs_send = false;
                    failed.push((filter.clone(), std::mem::take(&mut entry.waiters), e));
                }
            }
        }
        for (filter, waiters, e) in failed {
            tracing::warn!(%filter, "SUBSCRIBE refused by the session: {e}");
            for waiter in waiters {
                self.stream_filters.remove(&waiter.stream);
                if let Some(entry) = self.filters.get_mut(&filter) {
                    entry.streams.retain(|(id, _)| *id != waiter.stream);
                }
                let _ = waiter.reply.send(Err(Error::Usage(e.clone())));
            }
            self.drop_filter_if_empty(&filter);
        }
        for filter in std::mem::take(&mut self.to_unsubscribe) {
            match self.session.unsubscribe(
                now,
                vec![filter.clone()],
                UnsubscribeProperties::default(),
            ) {
                Ok(packet_id) => {
                    self.requests
                        .insert(packet_id, Request::Unsubscribe { reply: None });
                }
                Err(e) => {
                    tracing::debug!(%filter, "UNSUBSCRIBE deferred: {e}");
                    self.to_unsubscribe.insert(filter);
                    break;
                }
            }
        }
    }

    fn drop_filter_if_empty(&mut self, filter: &MqttString) {
        if let Some(entry) = self.filters.get(filter)
            && entry.streams.is_empty()
            && entry.waiters.is_empty()
        {
            self.filters.remove(filter);
            self.filter_unused(filter.clone(), None);
        }
    }

    fn on_suback(&mut self, suback: SubAck) {
        let Some(Request::Subscribe { filter, waiters }) = self.requests.remove(&suback.packet_id)
        else {
            return;
        };
        let code = suback
            .reason_codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UnspecifiedError);
        let Some(entry) = self.filters.get_mut(&filter) else {
            for waiter in waiters {
                let _ = waiter.reply.send(Err(Error::Closed));
            }
            return;
        };
        if entry.pending == Some(suback.packet_id) {
            entry.pending = None;
        }
        if code.is_error() {
            tracing::warn!(%filter, %code, "subscription refused");
            if waiters.is_empty() {
                // A restore after reconnecting was refused: its streams end.
                for (stream, _) in std::mem::take(&mut entry.streams) {
                    self.stream_filters.remove(&stream);
                }
            }
            for waiter in waiters {
                entry.streams.retain(|(id, _)| *id != waiter.stream);
                self.stream_filters.remove(&waiter.stream);
                let _ = waiter.reply.send(Err(Error::Refused(code)));
            }
        } else {
            for waiter in waiters {
                let reply = SubscribeReply {
                    stream: waiter.stream,
                    rx: waiter.rx,
                    reason_code: code,
                };
                if waiter.reply.send(Ok(reply)).is_err() {
                    // The caller gave up waiting: its stream goes.
                    entry.streams.retain(|(id, _)| *id != waiter.stream);
                    self.stream_filters.remove(&waiter.stream);
                }
            }
        }
        self.drop_filter_if_empty(&filter);
    }

    fn on_unsuback(&mut self, unsuback: UnsubAck) {
        let Some(Request::Unsubscribe { reply }) = self.requests.remove(&unsuback.packet_id) else {
            return;
        };
        let result = match unsuback.reason_codes.first() {
            Some(&code) if code.is_error() => Err(Error::Refused(code)),
            _ => Ok(()),
        };
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    // ----- outgoing messages -----

    /// Hands queued messages to the session while it accepts them.
    fn pump_outbox(&mut self) {
        if !self.session.is_connected() {
            return;
        }
        let now = now();
        while let Some(command) = self.outbox.pop_front() {
            match self.session.publish(now, &command.publish) {
                Ok(Some(packet_id)) => {
                    self.inflight.insert(packet_id, command);
                }
                Ok(None) => self.new_qos0.push(command.reply),
                Err(PublishError::Blocked) => {
                    self.blocked = true;
                    self.outbox.push_front(command);
                    break;
                }
                Err(e) => {
                    let _ = command.reply.send(Err(Error::Publish(e)));
                }
            }
        }
    }

    /// Encodes what the session has to send into `output`; QoS 0 messages now encoded
    /// resolve once the bytes up to theirs are written. Returns the bytes added.
    fn transmit(&mut self, output: &mut BytesMut) -> usize {
        let n = self.session.poll_transmit(output);
        self.queued_bytes += n as u64;
        for reply in self.new_qos0.drain(..) {
            self.qos0_waiters.push_back((self.queued_bytes, reply));
        }
        n
    }

    /// Takes `first` and, while the session accepts them and the output is below its high
    /// water mark, up to [`PUBLISH_BATCH`] more messages already waiting in the offline
    /// queue: one wake-up and one write for many messages. As with one message, the outbox
    /// holds at most the one the session could not take.
    fn take_publishes(&mut self, first: PublishCommand, output: &mut BytesMut) {
        self.outbox.push_back(first);
        for _ in 0..PUBLISH_BATCH {
            self.pump_outbox();
            // Encoded now, so that the high water mark sees them.
            self.transmit(output);
            if self.blocked || !self.outbox.is_empty() || output.len() >= WRITE_HIGH_WATER {
                return;
            }
            match self.pub_rx.try_recv() {
                Ok(next) => self.outbox.push_back(next),
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.pub_closed = true;
                    return;
                }
            }
        }
    }

    fn resolve_written(&mut self) {
        while let Some(&(mark, _)) = self.qos0_waiters.front() {
            if mark > self.written_bytes {
                break;
            }
            if let Some((_, reply)) = self.qos0_waiters.pop_front() {
                let _ = reply.send(Ok(PublishAck {
                    qos: QoS::AtMostOnce,
                    reason_code: ReasonCode::Success,
                    properties: AckProperties::default(),
                    session_lost: false,
                }));
            }
        }
    }

    fn on_acknowledged(
        &mut self,
        packet_id: PacketId,
        qos: QoS,
        reason_code: ReasonCode,
        properties: AckProperties,
    ) {
        let Some(command) = self.inflight.remove(&packet_id) else {
            return;
        };
        let result = if reason_code.is_error() {
            Err(Error::Refused(reason_code))
        } else {
            Ok(PublishAck {
                qos,
                reason_code,
                properties,
                session_lost: false,
            })
        };
        let _ = command.reply.send(result);
    }

    // ----- connection life -----

    fn on_connected(
        &mut self,
        session_present: bool,
        connack: Box<ConnAck>,
        discarded: Vec<OutgoingPublish>,
    ) {
        self.backoff.reset();
        self.connected_once = true;
        if let Some(handler) = self.auth.as_mut()
            && let Err(e) = handler.success(connack.properties.authentication_data.as_ref())
        {
            self.auth_failed(e);
            return;
        }
        if !session_present {
            // The broker has no session: the engine discarded ours [MQTT-3.2.2-5] and lists
            // the messages that were in flight. They are published again as new ones (the
            // broker may not have had them), except QoS 2 ones past PUBREC, which the broker
            // had taken.
            self.unacked.clear();
            let mut again = Vec::new();
            for outgoing in discarded {
                let Some(command) = self.inflight.remove(&outgoing.packet_id) else {
                    continue;
                };
                if outgoing.phase == OutgoingPhase::AwaitPubComp {
                    let _ = command.reply.send(Ok(PublishAck {
                        qos: QoS::ExactlyOnce,
                        reason_code: ReasonCode::Success,
                        properties: AckProperties::default(),
                        session_lost: true,
                    }));
                } else {
                    again.push(command);
                }
            }
            again.extend(self.inflight.drain().map(|(_, c)| c));
            for command in again.into_iter().rev() {
                self.outbox.push_front(command);
            }
            // Subscribe again to every filter [MQTT-3.2.2-5]; nothing to unsubscribe.
            self.to_unsubscribe.clear();
            for entry in self.filters.values_mut() {
                entry.needs_send = true;
                entry.pending = None;
            }
        }
        self.blocked = false;
        tracing::debug!(session_present, "connected");
        self.emit(ConnectionEvent::Connected {
            session_present,
            connack: Arc::from(connack),
        });
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
    }

    /// The connection ended: what belonged to it is settled.
    fn connection_lost(&mut self) {
        for (_, reply) in self.qos0_waiters.drain(..) {
            let _ = reply.send(Err(Error::ConnectionLost));
        }
        for reply in self.new_qos0.drain(..) {
            let _ = reply.send(Err(Error::ConnectionLost));
        }
        self.queued_bytes = 0;
        self.written_bytes = 0;
        self.blocked = false;
        // The engine forgot the SUBSCRIBE/UNSUBSCRIBE requests in flight: send them again.
        for (_, request) in std::mem::take(&mut self.requests) {
            match request {
                Request::Subscribe { filter, waiters } => match self.filters.get_mut(&filter) {
                    Some(entry) => {
                        entry.pending = None;
                        entry.needs_send = true;
                        entry.waiters.extend(waiters);
                    }
                    None => {
                        for waiter in waiters {
                            let _ = waiter.reply.send(Err(Error::Closed));
                        }
                    }
                },
                Request::Unsubscribe { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
        }
        for entry in self.filters.values_mut() {
            if entry.pending.take().is_some() {
                entry.needs_send = true;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected {
                session_present,
                connack,
                discarded,
            } => self.on_connected(session_present, connack, discarded),
            Event::Publish { publish, needs_ack } => self.on_publish(publish, needs_ack),
            Event::PublishAcknowledged {
                packet_id,
                qos,
                reason_code,
                properties,
            } => self.on_acknowledged(packet_id, qos, reason_code, properties),
            Event::SubAck(suback) => self.on_suback(suback),
            Event::UnsubAck(unsuback) => self.on_unsuback(unsuback),
            Event::Auth(auth) => self.on_auth(auth),
            Event::Writable => self.blocked = false,
            Event::Disconnected(error) => {
                let reason = if let Some(message) = self.auth_error.take() {
                    DisconnectReason::Auth(message)
                } else if let Some(e) = self.io_error.take() {
                    DisconnectReason::Transport(Arc::new(e))
                } else if matches!(self.stop, Some(Stop::Disconnect(_))) {
                    DisconnectReason::Local
                } else {
                    DisconnectReason::Session(error)
                };
                self.last_reason = Some(reason);
            }
            other => tracing::debug!(?other, "unexpected event for a client"),
        }
    }

    fn on_auth(&mut self, auth: Auth) {
        let Some(handler) = self.auth.as_mut() else {
            return;
        };
        let result = match auth.reason_code {
            ReasonCode::ContinueAuthentication => handler.step(&auth).and_then(|data| {
                let answer = Auth {
                    reason_code: ReasonCode::ContinueAuthentication,
                    properties: AuthProperties {
                        authentication_data: data,
                        ..AuthProperties::default()
                    },
                };
                self.session
                    .auth(now(), answer)
                    .map_err(|e| format!("AUTH refused by the session: {e}"))
            }),
            // The end of a re-authentication.
            _ => handler.success(auth.properties.authentication_data.as_ref()),
        };
        if let Err(message) = result {
            self.auth_failed(message);
        }
    }

    fn auth_failed(&mut self, message: String) {
        tracing::warn!("authentication failed: {message}");
        self.auth_error = Some(message);
        let now = now();
        let disconnect = Disconnect {
            reason_code: ReasonCode::UnspecifiedError,
            ..Disconnect::default()
        };
        if self.session.disconnect(now, disconnect).is_err() {
            self.session.handle_transport_closed(now);
        }
    }

    // ----- inbound messages -----

    fn on_publish(&mut self, publish: Publish, needs_ack: bool) {
        let seq = match publish.packet_id {
            Some(packet_id) if needs_ack => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.unacked.insert(seq, packet_id);
                Some(seq)
            }
            _ => None,
        };
        let targets = self.route(&publish);
        if targets.is_empty() {
            // Nobody listens: acknowledge at once.
            if let Some(seq) = seq {
                self.ack(seq, ReasonCode::Success);
            }
            return;
        }
        if seq.is_none() && self.deliveries.len() >= self.inbound_limit {
            tracing::warn!(topic = %publish.topic, "streams full: QoS 0 message dropped");
            return;
        }
        let manual = self.ack_mode == AckMode::Manual;
        let handle = seq.filter(|_| manual).and_then(|seq| {
            Some(AckHandle {
                seq,
                ctrl: self.ctrl_weak.upgrade()?,
            })
        });
        let auto_ack = if handle.is_some() { None } else { seq };
        let acked_qos = seq.is_some();
        if acked_qos {
            self.pending_acked_qos += 1;
        }
        self.deliveries.push_back(Delivery {
            message: Message {
                publish,
                ack: handle,
            },
            targets,
            auto_ack,
            acked_qos,
        });
    }

    /// The streams a message goes to: by Subscription Identifier when the broker sent some,
    /// else by matching the topic against each filter; plus the catch-all streams.
    fn route(&mut self, publish: &Publish) -> Vec<mpsc::Sender<Message>> {
        let ids = &publish.properties.subscription_identifiers;
        let mut targets = Vec::new();
        for entry in self.filters.values() {
            let hit = match entry.sub_id {
                Some(id) if !ids.is_empty() => ids.contains(&id),
                _ => tern_topic::matches(&entry.match_filter, publish.topic.as_str()),
            };
            if hit {
                targets.extend(
                    entry
                        .streams
                        .iter()
                        .filter(|(_, tx)| !tx.is_closed())
                        .map(|(_, tx)| tx.clone()),
                );
            }
        }
        self.catch_all.retain(|tx| !tx.is_closed());
        targets.extend(self.catch_all.iter().cloned());
        targets
    }

    /// Moves waiting messages into their streams, in arrival order, and acknowledges each one
    /// that is in all of them (automatic mode).
    fn process_deliveries(&mut self) {
        while let Some(front) = self.deliveries.front_mut() {
            let mut i = 0;
            while i < front.targets.len() {
                match front.targets[i].try_send(front.message.clone()) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {
                        front.targets.swap_remove(i);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => i += 1,
                }
            }
            if !front.targets.is_empty() {
                break;
            }
            let Some(done) = self.deliveries.pop_front() else {
                break;
            };
            if done.acked_qos {
                self.pending_acked_qos -= 1;
            }
            if let Some(seq) = done.auto_ack {
                self.ack(seq, ReasonCode::Success);
            }
        }
    }

    /// The full stream the first waiting message is stuck on.
    fn blocked_target(&self) -> Option<mpsc::Sender<Message>> {
        self.deliveries.front()?.targets.first().cloned()
    }

    // ----- the end -----

    fn shutdown(mut self, reason: DisconnectReason) {
        tracing::debug!(%reason, "client stopped");
        let closed = || Err(Error::Closed);
        for command in self.outbox.drain(..) {
            let _ = command.reply.send(closed());
        }
        for (_, command) in self.inflight.drain() {
            let _ = command.reply.send(closed());
        }
        for (_, reply) in self.qos0_waiters.drain(..) {
            let _ = reply.send(closed());
        }
        for reply in self.new_qos0.drain(..) {
            let _ = reply.send(closed());
        }
        for (_, request) in self.requests.drain() {
            match request {
                Request::Subscribe { waiters, .. } => {
                    for waiter in waiters {
                        let _ = waiter.reply.send(Err(Error::Closed));
                    }
                }
                Request::Unsubscribe { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(Error::Closed));
                    }
                }
            }
        }
        for (_, entry) in self.filters.drain() {
            for waiter in entry.waiters {
                let _ = waiter.reply.send(Err(Error::Closed));
            }
        }
        self.catch_all.clear();
        self.deliveries.clear();
        self.pub_rx.close();
        while let Ok(command) = self.pub_rx.try_recv() {
            let _ = command.reply.send(closed());
        }
        self.ctrl_rx.close();
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(reason));
        }
        if let Some(Stop::Disconnect(replies)) = self.stop.take() {
            for reply in replies {
                let _ = reply.send(());
            }
        }
    }
}

/// Resolves once `tx` has room (or its stream is gone).
async fn wait_capacity(tx: Option<mpsc::Sender<Message>>) {
    if let Some(tx) = tx {
        // The permit is released at once: the driver then sends with `try_send`.
        let _ = tx.reserve().await;
    }
}

/// Writes `output` and flushes, recording progress as it goes so that the future can be
/// dropped at any point without losing track of what was written.
fn poll_write_all<R: AsyncRead + AsyncWrite>(
    writer: &mut WriteHalf<R>,
    output: &mut BytesMut,
    need_flush: &mut bool,
    written: &mut u64,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !output.is_empty() {
        let n = ready!(Pin::new(&mut *writer).poll_write(cx, output))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        output.advance(n);
        *written += n as u64;
        *need_flush = true;
    }
    if *need_flush {
        ready!(Pin::new(&mut *writer).poll_flush(cx))?;
        *need_flush = false;
    }
    Poll::Ready(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ClientBuilder;

    fn driver(limit: usize) -> Driver {
        let settings = ClientBuilder::new("mqtt://127.0.0.1:1")
            .unwrap()
            .inbound_limit(limit)
            .settings()
            .unwrap();
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (_pub_tx, pub_rx) = mpsc::channel(1);
        let (events, _) = broadcast::channel(1);
        Driver::new(settings, ctrl_rx, ctrl_tx.downgrade(), pub_rx, events, None)
    }

    fn publish(payload: &str, qos: QoS, id: u16) -> Publish {
        Publish {
            qos,
            topic: MqttString::from_static("slow/t"),
            packet_id: PacketId::new(id).filter(|_| qos != QoS::AtMostOnce),
            payload: payload.to_owned().into(),
            ..Publish::default()
        }
    }

    /// The documented overflow policy of the inbound limit: a stream of one message and a
    /// limit of three; QoS 0 beyond the limit is dropped, QoS 1 is kept (and unacknowledged),
    /// and reads pause once the limit of QoS 1/2 messages wait.
    #[test]
    fn inbound_limit_drops_qos0_keeps_qos1_and_pauses_reads() {
        let mut d = driver(3);
        let (reply, mut granted) = oneshot::channel();
        let options = SubscribeOptions::new(QoS::AtLeastOnce).buffer(1);
        d.subscribe(MqttString::from_static("slow/#"), options, reply);
        let waiter = d
            .filters
            .values_mut()
            .next()
            .unwrap()
            .waiters
            .pop()
            .unwrap();
        let mut rx = waiter.rx;
        assert!(granted.try_recv().is_err(), "no SUBACK yet");

        for i in 0..10 {
            d.on_publish(publish(&i.to_string(), QoS::AtMostOnce, 0), false);
            d.process_deliveries();
        }
        // One in the stream, three waiting, six dropped.
        assert_eq!(d.deliveries.len(), 3);
        for id in 1..=3 {
            d.on_publish(publish(&format!("q{id}"), QoS::AtLeastOnce, id), true);
            d.process_deliveries();
        }
        assert_eq!(d.deliveries.len(), 6, "QoS 1 is never dropped");
        assert_eq!(d.pending_acked_qos, 3);
        assert_eq!(d.unacked.len(), 3, "acknowledged only once in the stream");
        assert!(d.pending_acked_qos >= d.inbound_limit, "reads pause");

        let mut got = Vec::new();
        while let Ok(m) = rx.try_recv() {
            got.push(String::from_utf8(m.payload().to_vec()).unwrap());
            d.process_deliveries();
        }
        assert_eq!(got, ["0", "1", "2", "3", "q1", "q2", "q3"]);
        assert_eq!(d.pending_acked_qos, 0);
        assert!(
            d.unacked.is_empty(),
            "each QoS 1 message acknowledged once delivered"
        );
    }
}
