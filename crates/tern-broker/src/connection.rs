//! The per-connection driver: one tokio task owns one [`ServerSession`] and its byte stream.
//!
//! The task loops polling its inputs in order (`poll_input`): the broker's shutdown, the
//! socket becoming writable while bytes wait in its write buffer, the session's mailbox
//! being notified, room in the mailboxes a held-back publish waits for, the stall deadlines,
//! bytes from the socket, and the engine's `poll_timeout` deadline. After each input it drains the engine
//! ("one change, then drain"): every event is handled (CONNECT, PUBLISH, SUBSCRIBE, …), then
//! every packet to send is appended to the write buffer.
//!
//! The task never waits on a write: it writes what the socket takes when it is writable. While
//! the write buffer holds `backpressure.write_buffer` bytes or more it stops reading the
//! socket and taking deliveries from its mailbox, and a socket that takes nothing for
//! `backpressure.stall_timeout` is closed. While a publish of its client waits for room in a
//! subscriber's mailbox, it stops reading and withholds the acknowledgement (back-pressure).
//! See [the policy](crate::config#memory-bounds-and-slow-consumers).

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use tern_codec::{
    AckProperties, ConnAckProperties, Connect, Disconnect, MqttString, PacketId, ProtocolVersion,
    Publish, QoS, ReasonCode, RetainHandling, Subscribe, SubscriptionOptions, Unsubscribe,
};
use tern_proto::{
    Accept, ConnectionError, DeliverOutcome, DeliveryOptions, Event, Message, ServerSession,
};
use tern_topic::{SubscriptionFilter, TopicFilter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::futures::OwnedNotified;

use crate::auth::{Access, AuthMethod, Identity};
use crate::broker::{Shared, StatsCounters, TaskGuard};
use crate::limits::{InboundRate, topic_within};
use crate::read_buffer::ReadBuffer;
use crate::router::{Routed, Subscription};
use crate::session::{Delivery, Previous, Released, SessionHandle, Wake};
use crate::storage::StoredSubscription;
use crate::storage::writer::Committed;
use crate::transport::{ConnectionInfo, Transport};

mod auth_hooks;
use auth_hooks::{Authenticated, Exchange};

/// The driver's clock: tokio's, so that tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Records a message as received, updates the retained store and routes it. Sessions whose
/// mailbox took it beyond its limits are appended to `congested`; `None`: the caller cannot
/// wait (see [`SessionHandle::push`]).
pub(crate) fn route(
    shared: &Shared,
    message: &Arc<Message>,
    now: Instant,
    congested: Option<&mut Vec<Arc<SessionHandle>>>,
) -> Routed {
    shared.stats.messages_received.add(1);
    shared.stats.traffic.received(message.publish.qos);
    let mut retained = false;
    if message.publish.retain {
        retained = shared
            .retained
            .update(message, shared.persistence.as_deref());
    }
    // Each delivery needs read access to the topic (see `crate::auth`).
    let readable = shared.auth.readable(&message.publish.topic);
    let mut routed = shared.router.route(message, now, congested, &readable);
    routed.persisted += usize::from(retained);
    shared.stats.deliveries.add(routed.taken as u64);
    routed
}

/// Runs one connection to its end.
///
/// Not an `async fn`: the connection is set up before the future is made, so that the future
/// holds it once (an `async fn` keeps its arguments besides what it makes of them, and its
/// future is most of what an idle connection costs).
pub(crate) fn run<S>(
    shared: Arc<Shared>,
    stream: S,
    info: ConnectionInfo,
    guard: TaskGuard,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_conn();
    let write_progress = Progress::now(&shared);
    let session = Box::new(ServerSession::new(shared.engine.clone()));
    let rate = InboundRate::new(&shared.config.limits);
    let persisting = shared
        .persistence
        .is_some()
        .then(|| Box::new(Persisting::new()));
    let conn = Connection {
        shared,
        id,
        rate,
        refusal_logged: false,
        session,
        handle: None,
        inbox: VecDeque::new(),
        out: BytesMut::new(),
        write_progress,
        reported_out: 0,
        mailbox_pending: false,
        blocked: None,
        abandoned: false,
        accepted: false,
        last_queued: 0,
        queued_adds: 0,
        unflushed: false,
        stopping: false,
        info: Arc::new(info),
        identity: None,
        exchange: None,
        auth_method: None,
        durable: false,
        persisting,
    };
    tracing::debug!(peer = %conn.info.peer, conn = id, transport = %conn.info.transport, "connection opened");
    conn.serve(stream, guard)
}

impl Connection {
    /// The connection's task: drives it, then settles the session and closes the stream.
    ///
    /// Not an `async fn` either: one stores its arguments twice (as captured and as moved
    /// into its body), and the connection is most of its future.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn stores its arguments twice"
    )]
    fn serve<S>(
        mut self,
        mut stream: S,
        guard: TaskGuard,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        async move {
            // One stream, not split in halves: the loop polls reads and writes itself, so it
            // needs neither the halves' lock nor their shared allocation.
            self.drive(&mut stream).await;
            // What runs after `drive` is in futures of its own: locals held across several
            // awaits here would take room in the future for the connection's whole life.
            // Boxed, like the close below: they run once, at the end.
            if self.persisting.as_ref().is_some_and(|p| p.hold.is_some()) {
                Box::pin(self.release_held()).await;
            }
            let closing = self.closing();
            let (peer, id) = (self.info.peer, self.id);
            // The session is settled (handed over, offline or ended) before the client sees the
            // close, so that a reconnect right after it finds the session where it should be.
            self.finish();
            // By reference: a stream moved into the close future would be held twice in this
            // future (a TLS stream is over a kilobyte), for the connection's whole life.
            Box::pin(closing.close(&mut stream)).await;
            drop(stream);
            tracing::debug!(%peer, conn = id, "connection closed");
            drop(guard);
        }
    }

    /// Packets held for a snapshot (and the DISCONNECT behind them) leave once it is committed.
    async fn release_held(&mut self) {
        let stall = self.shared.config.backpressure.stall_timeout();
        let hold = self.persisting.as_mut().and_then(|p| p.hold.take());
        if let (Some(ticket), Some(store)) = (hold, self.shared.persistence.clone()) {
            let mut committed = store.subscribe();
            let _ = tokio::time::timeout(stall, committed.wait_for(|c| c.upto >= ticket)).await;
            if self.session.has_transmit() {
                let before = self.out.len();
                self.session.poll_transmit(&mut self.out);
                self.shared.stats.traffic.count_sent(&self.out[before..]);
            }
        }
    }

    /// What is left to write, and how long it may take.
    fn closing(&mut self) -> Closing {
        let stall = self.shared.config.backpressure.stall_timeout();
        // A client that stopped reading gets one try, not another stall timeout; during shutdown
        // the flush fits in the shutdown timeout.
        let budget = if self.abandoned {
            Duration::ZERO
        } else if self.shared.is_stopping() {
            stall.min(self.shared.config.shutdown.timeout())
        } else {
            stall
        };
        Closing {
            out: std::mem::take(&mut self.out),
            stats: self.shared.stats.clone(),
            reported: self.reported_out,
            budget,
        }
    }
}

/// The end of a connection: its last bytes, written within `budget`, then the close.
struct Closing {
    out: BytesMut,
    stats: Arc<StatsCounters>,
    /// The length of `out` as counted in the stats.
    reported: usize,
    budget: Duration,
}

impl Closing {
    async fn close<W: AsyncWrite + Unpin>(self, writer: &mut W) {
        let Closing {
            out,
            stats,
            reported,
            budget,
        } = self;
        if !out.is_empty()
            && let Ok(Ok(())) = tokio::time::timeout(budget, writer.write_all(&out)).await
        {
            stats.bytes_sent.add(out.len() as u64);
        }
        stats.write_buffer_bytes.sub(reported as u64);
        let _ = tokio::time::timeout(budget, writer.shutdown()).await;
    }
}

/// What [`Connection::next_step`] found.
struct Next {
    can_read: bool,
    /// At most this many bytes may be read (the inbound byte rate).
    read_limit: u64,
    /// The earliest deadline and what it is for.
    wake: Option<(tokio::time::Instant, Deadline)>,
}

/// What the connection's one timer is armed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deadline {
    /// A held-back publish gives up waiting ([`Blocked::deadline`]).
    Blocked,
    /// The socket took nothing for the stall timeout.
    Stalled,
    /// The inbound rate limit lets reading resume.
    Paused,
    /// A deferred (QoS 1 only) snapshot is due.
    Snapshot,
    /// The engine's `poll_timeout` (keep alive, connect timeout).
    Engine,
}

/// A boxed wait of one step (see [`Connection::extra_waits`]).
type BoxedWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// When the output last moved: milliseconds since the broker started (half the room of an
/// `Instant`, which every connection's future holds).
#[derive(Clone, Copy, Debug)]
struct Progress(u64);

impl Progress {
    fn now(shared: &Shared) -> Self {
        let ms = shared.started.elapsed().as_millis();
        Progress(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn at(self, shared: &Shared) -> tokio::time::Instant {
        shared.started + Duration::from_millis(self.0)
    }
}

/// The rare waits of one step, boxed together (a step without them holds one null pointer).
struct ExtraWaits {
    room: Option<BoxedWait>,
    committed: Option<BoxedWait>,
}

/// What one step of [`Connection::drive`] waits for besides the socket and the mailbox
/// (`None`: not this step).
struct Waits<'a> {
    shutdown: Option<Pin<&'a mut OwnedNotified>>,
    timer: Option<Pin<&'a mut tokio::time::Sleep>>,
    /// Room in subscribers' mailboxes, a commit.
    extra: Option<Box<ExtraWaits>>,
    /// The read buffer and the most that may be read (the inbound byte rate).
    read: Option<(&'a mut ReadBuffer, u64)>,
}

/// An engine event whose handling waits (see [`Connection::on_slow_event`]); boxed, so that
/// the wait holds two pointers.
enum SlowEvent {
    Connect(Box<Connect>),
    Auth(Box<tern_codec::Auth>),
}

/// The input that ended one wait of [`Connection::drive`].
enum Input {
    Shutdown,
    /// Bytes written (`Some(n)`) or a flush (`None`).
    Written(std::io::Result<Option<usize>>),
    Mailbox,
    Room,
    Timer,
    Committed,
    Read(std::io::Result<usize>),
}

/// A publish of this connection's client that waits for room in subscribers' mailboxes.
#[derive(Debug)]
struct Blocked {
    /// The sessions whose mailbox took the message beyond its limits.
    waiting: Vec<Arc<SessionHandle>>,
    /// The withheld acknowledgement.
    ack: Option<(PacketId, ReasonCode)>,
    /// The message was stored: once unblocked, the acknowledgement also waits for the commit.
    durable: Option<QoS>,
    /// When the slow subscribers are disconnected and the publisher goes on.
    deadline: tokio::time::Instant,
}

struct Connection {
    shared: Arc<Shared>,
    id: u64,
    /// The inbound rate limit.
    rate: InboundRate,
    /// The broker refused the CONNECT and logged it.
    refusal_logged: bool,
    /// Boxed: the engine moves whole to the session when the connection ends, and the task's
    /// future (whose size tokio rounds up to 128 bytes) need not hold room for it.
    session: Box<ServerSession>,
    /// The session's mailbox, once CONNECT was accepted.
    handle: Option<Arc<SessionHandle>>,
    inbox: VecDeque<Delivery>,
    /// Encoded packets waiting for the socket.
    out: BytesMut,
    /// When the socket last took bytes, or when `out` became non-empty.
    write_progress: Progress,
    /// The length of `out` as last counted in the stats.
    reported_out: usize,
    /// The mailbox has deliveries that were left there while `out` was full.
    mailbox_pending: bool,
    /// Boxed, like `exchange`: rare, and every connection's future holds room for it.
    blocked: Option<Box<Blocked>>,
    /// Closed as a slow consumer: nothing more is flushed.
    abandoned: bool,
    /// CONNECT was accepted (the client counts as connected).
    accepted: bool,
    /// The engine's queue length after the last step, and what was queued since.
    last_queued: u32,
    queued_adds: u32,
    /// Bytes were written since the last flush: a TLS or WebSocket stream may hold them.
    unflushed: bool,
    /// The broker's shutdown closed this connection.
    stopping: bool,
    /// What the transport knows: peer, transport, certificate identity. Shared with the
    /// session's handle once CONNECT was accepted (see `Registry::connected`).
    info: Arc<ConnectionInfo>,
    /// Who the client is for the authorizer, once CONNECT was accepted.
    identity: Option<Arc<Identity>>,
    /// An enhanced authentication exchange in progress (CONNECT or re-authentication).
    exchange: Option<Box<Exchange>>,
    /// The enhanced authentication method CONNECT used, for re-authentication.
    /// Boxed: a thin pointer (few connections have one).
    auth_method: Option<Box<Arc<dyn AuthMethod>>>,
    /// The session is persistent: its snapshot is kept in the storage.
    durable: bool,
    /// What the connection keeps for the storage; `None` without persistence.
    persisting: Option<Box<Persisting>>,
}

/// What a connection keeps for the storage, with persistence only: boxed, so that the
/// connections of a broker without it do not hold room for it.
#[derive(Debug)]
struct Persisting {
    /// Acknowledgements of stored messages waiting for their commit, in arrival order.
    pending_acks: VecDeque<PendingAck>,
    /// Acknowledgements of this step, ticketed at its end (after the session's snapshot).
    unticketed: Vec<PendingAck>,
    /// Nothing is sent until this ticket is committed: the session's snapshot, which the
    /// packets waiting to leave depend on (QoS 2 state, subscriptions).
    hold: Option<u64>,
    /// Hashes of the session's in-flight state at the last snapshot: (everything, QoS 2).
    signatures: (u64, u64),
    /// SUBSCRIBE or UNSUBSCRIBE changed the subscriptions since the last snapshot.
    subscriptions_changed: bool,
    /// When a deferred (QoS 1 only) snapshot is due.
    snapshot_due: Option<tokio::time::Instant>,
    last_snapshot: tokio::time::Instant,
}

impl Persisting {
    fn new() -> Self {
        Persisting {
            pending_acks: VecDeque::new(),
            unticketed: Vec::new(),
            hold: None,
            signatures: (0, 0),
            subscriptions_changed: false,
            snapshot_due: None,
            last_snapshot: tokio::time::Instant::now(),
        }
    }
}

/// An acknowledgement that waits until the storage committed what the message produced.
#[derive(Debug)]
struct PendingAck {
    ticket: u64,
    packet_id: PacketId,
    reason: ReasonCode,
    qos: QoS,
}

impl Connection {
    // A function returning an async block, not an `async fn`: the arguments of an `async fn`
    // are stored twice in its future (as arguments and as the locals they are bound to).
    // With `serve`'s, this future is 520 bytes over TCP: the most a 640-byte task cell (tokio
    // rounds to 128) holds. State added to `Connection` or held across the wait below costs
    // every connection 128 bytes; check with `cargo +nightly rustc -p tern-broker --bin ternd
    // --release -- -Zprint-type-sizes`.
    #[allow(clippy::manual_async_fn)]
    fn drive<'a, S>(&'a mut self, stream: &'a mut S) -> impl Future<Output = ()> + 'a
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        async move {
            // The waits are polled by hand (see `poll_input`), not through `select!`: its futures
            // would take room in every connection's future, and an idle connection is mostly that.
            // Before CONNECT is accepted the connection has no mailbox, so it waits for the stop
            // signal itself, boxed (only for that while); once accepted, the broker tells it
            // through its mailbox (see `BrokerHandle::shutdown`) and the box is dropped.
            let mut shutdown = Some(Box::pin(self.shared.stop.clone().notified_owned()));
            // Registered before the flag is read, so that a shutdown right after is not missed.
            if let Some(wait) = shutdown.as_mut() {
                wait.as_mut().enable();
            }
            if self.shared.is_stopping() {
                return;
            }
            let mut read_buf = ReadBuffer::new();
            // One timer for every deadline below, reset to the earliest (a connection's memory is
            // mostly its task's future: one `Sleep` instead of five saves a few hundred bytes).
            let timer = tokio::time::sleep_until(far_future());
            tokio::pin!(timer);
            self.session.start(now());
            loop {
                if self.mailbox_pending
                    && self.out.len() < self.shared.config.backpressure.write_buffer
                {
                    self.on_mailbox();
                    self.step_done().await;
                }
                if self.session.is_closed() {
                    return;
                }
                if shutdown.is_some() && self.handle.is_some() {
                    shutdown = None;
                    // The mailbox was registered after the broker signalled every mailbox.
                    if self.shared.is_stopping() {
                        self.stop_for_shutdown();
                        continue;
                    }
                }
                // In a block of its own, so that what only the wait needs is not held across the
                // step below (it would take room in the future for the connection's whole life).
                let (input, wake) = {
                    // Taken apart: only `wake` is held across the wait.
                    let Next {
                        can_read,
                        read_limit,
                        wake,
                    } = self.next_step();
                    // Moved earlier at once, later only once it fired: a deadline that moves later
                    // with every packet (keep alive, stall) costs no timer operation per step, and at
                    // most one early wake.
                    if let Some((at, _)) = wake
                        && (at < timer.deadline() || timer.is_elapsed())
                    {
                        timer.as_mut().reset(at);
                    }
                    let mut waits = Waits {
                        shutdown: shutdown.as_mut().map(|wait| wait.as_mut()),
                        timer: wake.is_some().then_some(timer.as_mut()),
                        read: can_read.then_some((&mut read_buf, read_limit)),
                        extra: self.extra_waits(),
                    };
                    let input =
                        std::future::poll_fn(|cx| self.poll_input(cx, stream, &mut waits)).await;
                    (input, wake)
                };
                if matches!(input, Input::Shutdown) {
                    shutdown = None;
                }
                self.on_input(input, wake, &mut read_buf);
                self.step_done().await;
            }
        }
    }

    /// The broker shuts down: DISCONNECT 0x8B (5.0), then close; once.
    fn stop_for_shutdown(&mut self) {
        if !self.stopping {
            self.stopping = true;
            self.close(ReasonCode::ServerShuttingDown);
        }
    }

    /// The waits of one step that rarely run, boxed so that every connection's future need not
    /// hold room for them: room in the mailboxes a held-back publish waits for, and the commit
    /// this connection waits for (its oldest withheld acknowledgement, or the snapshot its
    /// output waits for).
    fn extra_waits(&self) -> Option<Box<ExtraWaits>> {
        let commit_target = self.persisting.as_ref().and_then(|p| {
            let oldest = p.pending_acks.front().map(|a| a.ticket);
            oldest.into_iter().chain(p.hold).min()
        });
        let committed =
            commit_target
                .zip(self.shared.persistence.as_ref())
                .map(|(target, store)| {
                    let mut rx = store.subscribe();
                    Box::pin(async move {
                        let _ = rx.wait_for(|c: &Committed| c.upto >= target).await;
                    }) as BoxedWait
                });
        let room = self.blocked.as_ref().map(|b| {
            let waiting = b.waiting.clone();
            Box::pin(async move {
                for session in &waiting {
                    session.room().await;
                }
            }) as BoxedWait
        });
        (room.is_some() || committed.is_some()).then(|| Box::new(ExtraWaits { room, committed }))
    }

    /// Handles the input that ended a wait of `drive`; `wake` is the deadline the timer was
    /// armed for.
    fn on_input(
        &mut self,
        input: Input,
        wake: Option<(tokio::time::Instant, Deadline)>,
        read_buf: &mut ReadBuffer,
    ) {
        match input {
            Input::Shutdown => self.stop_for_shutdown(),
            Input::Written(written) => match written {
                Ok(None) => {
                    self.unflushed = false;
                    self.write_progress = Progress::now(&self.shared);
                }
                Ok(Some(0)) => self.session.handle_transport_closed(now()),
                Ok(Some(n)) => {
                    self.out.advance(n);
                    self.shared.stats.bytes_sent.add(n as u64);
                    self.write_progress = Progress::now(&self.shared);
                    // TCP sends what it takes; other streams may buffer it.
                    self.unflushed = self.info.transport != Transport::Tcp;
                }
                Err(e) => {
                    tracing::debug!(conn = self.id, "write failed: {e}");
                    self.session.handle_transport_closed(now());
                }
            },
            Input::Mailbox if self.shared.is_stopping() => self.stop_for_shutdown(),
            Input::Mailbox => self.on_mailbox(),
            Input::Room => self.unblock(false),
            // The earliest deadline passed: its handler runs (one per step, in this order);
            // another one that passed too fires at once on the next step.
            Input::Timer => match wake {
                // Armed earlier than the deadline now is: nothing is due yet.
                Some((at, _)) if at > tokio::time::Instant::now() => {}
                Some((_, Deadline::Blocked)) => self.unblock(true),
                Some((_, Deadline::Stalled)) => self.on_write_stall(),
                // Reading resumes.
                Some((_, Deadline::Paused)) | None => {}
                Some((_, Deadline::Snapshot)) => {
                    if let Some(p) = self.persisting.as_mut() {
                        p.snapshot_due = None;
                        p.signatures.0 = p.signatures.0.wrapping_add(1);
                    }
                }
                Some((_, Deadline::Engine)) => self.session.handle_timeout(now()),
            },
            Input::Committed => {}
            Input::Read(read) => match read {
                Ok(0) => self.session.handle_transport_closed(now()),
                Ok(n) => {
                    self.shared.stats.bytes_received.add(n as u64);
                    self.rate.on_bytes(n);
                    read_buf.filled(n);
                    self.shared.stats.traffic.count_received(read_buf.data());
                    self.session.handle_input(now(), read_buf.data());
                    // What reading costs: at most one packet (the decoder reserves the rest
                    // of a packet once its header is read) and what came after it.
                    self.shared
                        .stats
                        .read_buffer_peak_bytes
                        .record(read_buf.capacity() as u64);
                    read_buf.settle();
                }
                Err(e) => {
                    tracing::debug!(conn = self.id, "read failed: {e}");
                    self.session.handle_transport_closed(now());
                }
            },
        }
    }

    /// Polls the inputs of one step of `drive` in order, and returns the first that is ready:
    /// the broker's shutdown; the socket, while bytes wait to be written (once the buffer is
    /// written, a flush: TLS and WebSocket streams keep what they were given until flushed);
    /// the mailbox; room in the mailboxes a held-back publish waits for; the timer; the
    /// storage's commit; bytes from the socket (sized to what the client sends, see
    /// `ReadBuffer`: no buffer while it idles; at most what the byte rate allows).
    fn poll_input<S>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        waits: &mut Waits<'_>,
    ) -> Poll<Input>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(shutdown) = waits.shutdown.as_mut()
            && shutdown.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Input::Shutdown);
        }
        if !self.out.is_empty() {
            if let Poll::Ready(written) = Pin::new(&mut *stream).poll_write(cx, &self.out) {
                return Poll::Ready(Input::Written(written.map(Some)));
            }
        } else if self.unflushed
            && let Poll::Ready(flushed) = Pin::new(&mut *stream).poll_flush(cx)
        {
            return Poll::Ready(Input::Written(flushed.map(|()| None)));
        }
        if let Some(handle) = &self.handle
            && handle.poll_notified(cx).is_ready()
        {
            return Poll::Ready(Input::Mailbox);
        }
        if let Some(room) = waits.extra.as_mut().and_then(|e| e.room.as_mut())
            && room.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Input::Room);
        }
        if let Some(timer) = waits.timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Input::Timer);
        }
        if let Some(committed) = waits.extra.as_mut().and_then(|e| e.committed.as_mut())
            && committed.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Input::Committed);
        }
        if let Some((read_buf, limit)) = waits.read.as_mut() {
            let mut limited = (&mut *stream).take(*limit);
            if let Poll::Ready(read) = read_buf.poll_read(cx, &mut limited) {
                return Poll::Ready(Input::Read(read));
            }
        }
        Poll::Pending
    }

    /// What the next step of `drive` may wait for: whether to read and how much, and the
    /// earliest deadline. Tells the engine whether its client is being read.
    fn next_step(&mut self) -> Next {
        let high_water = self.shared.config.backpressure.write_buffer;
        let stall = self.shared.config.backpressure.stall_timeout();
        let blocked_until = self.blocked.as_ref().map(|b| b.deadline);
        // Reading may pause for the inbound rate limit (until `paused_until`).
        let (read_limit, paused_until) = match self.rate.poll() {
            Ok(limit) => (limit, None),
            Err(at) => (0, Some(at)),
        };
        let stalled_at = (!self.out.is_empty() || self.unflushed)
            .then(|| self.write_progress.at(&self.shared) + stall);
        // Stored messages waiting for their commit count against the Receive Maximum.
        let waiting_acks = self
            .persisting
            .as_ref()
            .map_or(0, |p| p.pending_acks.len() + p.unticketed.len());
        let can_read = blocked_until.is_none()
            && paused_until.is_none()
            && self.out.len() < high_water
            && waiting_acks < usize::from(self.shared.config.limits.receive_maximum);
        // While a publish is held back, the rate limit pauses reading, the write buffer is
        // full or stored messages wait for their commit, nothing is read, so the client
        // cannot be blamed for silence: the engine suspends its keep-alive deadline and
        // restarts it when reading resumes. (Before CONNECT, the connect timeout runs on.)
        self.session.set_reading(now(), can_read);
        let deadline = self
            .session
            .poll_timeout()
            .map(tokio::time::Instant::from_std);
        // The earliest deadline and what it is for (the first of equal ones, in this order).
        let wake = [
            (blocked_until, Deadline::Blocked),
            (stalled_at, Deadline::Stalled),
            (paused_until, Deadline::Paused),
            (
                self.persisting.as_ref().and_then(|p| p.snapshot_due),
                Deadline::Snapshot,
            ),
            (deadline, Deadline::Engine),
        ]
        .into_iter()
        .filter_map(|(at, what)| at.map(|at| (at, what)))
        .min_by_key(|&(at, _)| at);
        Next {
            can_read,
            read_limit,
            wake,
        }
    }

    /// After each input: handles the engine's events, moves its packets into the write
    /// buffer and updates the gauges.
    async fn step_done(&mut self) {
        while let Some(slow) = self.handle_events() {
            self.on_slow_event(slow).await;
        }
        self.after_events();
    }

    /// The part of [`step_done`](Self::step_done) after the events: the engine's packets into
    /// the write buffer, the gauges.
    fn after_events(&mut self) {
        let may_send = self.durable_step();
        if may_send && self.session.has_transmit() {
            let was_empty = self.out.is_empty();
            let before = self.out.len();
            self.session.poll_transmit(&mut self.out);
            self.shared.stats.traffic.count_sent(&self.out[before..]);
            if was_empty && !self.out.is_empty() {
                self.write_progress = Progress::now(&self.shared);
            }
        }
        let stats = &self.shared.stats;
        let len = self.out.len();
        if len > self.reported_out {
            stats
                .write_buffer_bytes
                .add((len - self.reported_out) as u64);
            stats.write_buffer_peak_bytes.record(len as u64);
        } else {
            stats
                .write_buffer_bytes
                .sub((self.reported_out - len) as u64);
        }
        self.reported_out = len;
        if self.accepted
            && let Some(handle) = &self.handle
        {
            let queued = self.session.queued_len();
            // What left the queue was sent (or expired on the way out).
            let pumped =
                (self.last_queued as usize + self.queued_adds as usize).saturating_sub(queued);
            stats.messages_sent.add(pumped as u64);
            self.last_queued = saturate_u32(queued);
            self.queued_adds = 0;
            handle.set_queued(queued);
        }
    }

    /// The storage's part of a step: releases the acknowledgements whose messages are
    /// committed, writes the session's snapshot when its in-flight state changed, tickets
    /// this step's acknowledgements, and says whether the engine's packets may leave now.
    fn durable_step(&mut self) -> bool {
        let Some(store) = self.shared.persistence.clone() else {
            return true;
        };
        let mut p = self
            .persisting
            .take()
            .unwrap_or_else(|| Box::new(Persisting::new()));
        let committed = store.committed();
        while p
            .pending_acks
            .front()
            .is_some_and(|a| a.ticket <= committed.upto)
        {
            let ack = p.pending_acks.pop_front().expect("checked");
            self.release_ack(&ack, committed.broken);
        }
        if self.durable
            && self.accepted
            && !self.session.is_closed()
            && let Some(handle) = self.handle.clone()
        {
            let awaiting: Vec<PacketId> = p
                .pending_acks
                .iter()
                .chain(&p.unticketed)
                .filter(|a| a.qos == QoS::ExactlyOnce)
                .map(|a| a.packet_id)
                .chain(
                    self.blocked
                        .as_ref()
                        .filter(|b| b.durable == Some(QoS::ExactlyOnce))
                        .and_then(|b| b.ack.map(|(id, _)| id)),
                )
                .collect();
            let (all, qos2) = signatures(&self.session, &awaiting);
            let now = tokio::time::Instant::now();
            let interval = Duration::from_millis(self.shared.config.persistence_snapshot_ms);
            if qos2 != p.signatures.1 || p.subscriptions_changed {
                // What is about to be sent (a QoS 2 PUBLISH, PUBREL, PUBREC, PUBCOMP, SUBACK)
                // depends on this state: it leaves once the snapshot is committed.
                let ticket = handle.snapshot(&self.session, &awaiting, None);
                p.hold = Some(ticket);
                p.signatures = (all, qos2);
                p.subscriptions_changed = false;
                p.snapshot_due = None;
                p.last_snapshot = now;
            } else if all != p.signatures.0 {
                // QoS 1 only: a stale snapshot means a redelivery at worst, so it is
                // written at most every `persistence_snapshot_ms`.
                if now >= p.last_snapshot + interval {
                    handle.snapshot(&self.session, &awaiting, None);
                    p.signatures = (all, qos2);
                    p.snapshot_due = None;
                    p.last_snapshot = now;
                } else if p.snapshot_due.is_none() {
                    p.snapshot_due = Some(p.last_snapshot + interval);
                }
            }
        }
        if !p.unticketed.is_empty() {
            let ticket = store.sent();
            for mut ack in p.unticketed.drain(..) {
                ack.ticket = ticket;
                p.pending_acks.push_back(ack);
            }
        }
        let committed = store.committed();
        if p.hold.is_some_and(|t| t <= committed.upto) {
            p.hold = None;
        }
        let may_send = p.hold.is_none();
        self.persisting = Some(p);
        may_send
    }

    /// Sends an acknowledgement whose message is committed; refuses it if the store broke.
    fn release_ack(&mut self, ack: &PendingAck, broken: bool) {
        let reason = if !broken {
            ack.reason
        } else if self.session.version().is_v5() {
            ReasonCode::UnspecifiedError
        } else {
            // 3.x cannot refuse: the publisher resends after reconnecting.
            self.session.handle_transport_closed(now());
            return;
        };
        if let Err(e) = self.session.ack(now(), ack.packet_id, reason) {
            tracing::error!(conn = self.id, "cannot acknowledge: {e}");
        }
    }

    /// Acknowledges now, or once the message's durable copies are committed.
    fn acknowledge(&mut self, packet_id: PacketId, reason: ReasonCode, durable: Option<QoS>) {
        match (durable, self.persisting.as_mut()) {
            (Some(qos), Some(p)) => p.unticketed.push(PendingAck {
                ticket: 0,
                packet_id,
                reason,
                qos,
            }),
            _ => {
                if let Err(e) = self.session.ack(now(), packet_id, reason) {
                    tracing::error!(conn = self.id, "cannot acknowledge: {e}");
                }
            }
        }
    }

    /// The socket took no byte for the stall timeout: the client does not read.
    fn on_write_stall(&mut self) {
        tracing::warn!(
            conn = self.id,
            client_id = %self.session.client_id(),
            pending = self.out.len(),
            "client does not read: disconnecting a slow consumer"
        );
        self.shared.stats.slow_consumers.add(1);
        self.abandoned = true;
        self.session.handle_transport_closed(now());
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
        // Borrowed, not cloned: the publishers' routing updates the same reference count.
        let Some(handle) = self.handle.as_deref() else {
            return;
        };
        let room = self.out.len() < self.shared.config.backpressure.write_buffer;
        match handle.wake(self.id, &mut self.inbox, room) {
            Wake::TakenOver => {
                tracing::debug!(conn = self.id, client_id = %self.session.client_id(), "session taken over");
                // [MQTT-3.1.4-3]: DISCONNECT 0x8E to the existing client, then close.
                self.close(ReasonCode::SessionTakenOver);
            }
            Wake::Kicked => {
                tracing::warn!(conn = self.id, client_id = %self.session.client_id(), "publishers waited too long for this client: disconnecting a slow consumer");
                self.shared.stats.slow_consumers.add(1);
                self.abandoned = true;
                self.close(ReasonCode::QuotaExceeded);
            }
            Wake::Waiting => self.mailbox_pending = true,
            Wake::Taken => {
                self.mailbox_pending = false;
                let now = now();
                while let Some(delivery) = self.inbox.pop_front() {
                    self.deliver(&delivery, now);
                }
            }
        }
    }

    /// Hands one delivery to the engine, counting what it sent or queued.
    fn deliver(&mut self, delivery: &Delivery, now: Instant) {
        let outcome = delivery.deliver_to(&mut self.session, now, &self.shared.stats);
        if self.durable
            && let Some(handle) = &self.handle
        {
            handle.track(delivery.seq, outcome, self.session.queued_len());
        }
        match outcome {
            DeliverOutcome::Sent(_) => {
                self.shared.stats.messages_sent.add(1);
            }
            DeliverOutcome::Queued => self.queued_adds = self.queued_adds.saturating_add(1),
            DeliverOutcome::Dropped(_) => {}
        }
    }

    /// The publish held back may go on: every mailbox it waited for has room, or (`timed_out`)
    /// the stall timeout passed and the subscribers still without room are disconnected.
    fn unblock(&mut self, timed_out: bool) {
        let Some(blocked) = self.blocked.take() else {
            return;
        };
        if timed_out {
            for session in &blocked.waiting {
                if !session.has_room() && session.stalled() {
                    tracing::warn!(conn = self.id, publisher = %self.session.client_id(), subscriber = %session.client_id, "subscriber's mailbox stayed full: disconnecting it");
                }
            }
        }
        if let Some((id, reason)) = blocked.ack {
            self.acknowledge(id, reason, blocked.durable);
        }
    }

    /// Handles an event that waits. Boxed: at most a few times per connection, and its
    /// future would otherwise make every connection's future larger.
    fn on_slow_event(&mut self, slow: SlowEvent) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        match slow {
            SlowEvent::Connect(connect) => Box::pin(self.on_connect(connect)),
            SlowEvent::Auth(auth) => Box::pin(self.on_auth(*auth)),
        }
    }

    /// Handles the engine's events until one that must wait (CONNECT or AUTH, which may ask
    /// an authenticator), which it returns; `None` when none is left or the client is held
    /// back.
    fn handle_events(&mut self) -> Option<SlowEvent> {
        loop {
            if self.session.is_closed() && self.blocked.is_some() {
                // Nothing waits any more; the acknowledgement stays in the session state.
                self.unblock(false);
            }
            if self.blocked.is_some() {
                // Held back: what the client sent next waits in the engine.
                return None;
            }
            match self.session.poll_event()? {
                Event::ConnectRequest(connect) => return Some(SlowEvent::Connect(connect)),
                Event::Auth(auth) => return Some(SlowEvent::Auth(Box::new(auth))),
                Event::Publish { publish, needs_ack } => {
                    self.rate.on_message();
                    self.on_publish(publish, needs_ack);
                }
                Event::Subscribe(subscribe) => self.on_subscribe(subscribe),
                Event::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe),
                Event::Will(will) => {
                    let origin = self.session.client_id().clone();
                    let identity = self.identity.clone();
                    publish_will(&self.shared, origin, identity.as_deref(), will);
                }
                Event::Disconnected(reason) => self.on_disconnected(&reason),
                other => tracing::trace!(conn = self.id, event = ?other, "event ignored"),
            }
        }
    }

    fn on_disconnected(&mut self, reason: &ConnectionError) {
        if self.accepted {
            tracing::info!(conn = self.id, client_id = %self.session.client_id(), peer = %self.info.peer, %reason, "client disconnected");
        } else if let ConnectionError::Rejected(code) = reason {
            // Refused by the engine (the broker's own refusals are logged with the CONNECT).
            if !self.refusal_logged {
                tracing::info!(conn = self.id, version = %version_name(self.session.version()), peer = %self.info.peer, listener = %listener_name(self.info.listener_addr()), reason = %code, "connect refused");
            }
        } else {
            // Never connected: a connect timeout, a bad first packet, a close.
            tracing::info!(conn = self.id, peer = %self.info.peer, listener = %listener_name(self.info.listener_addr()), %reason, "connection ended before CONNECT");
        }
    }

    /// Checks the CONNECT against the broker's keep alive limits: `Ok(Some(k))` for a 5.0
    /// client that must use Server Keep Alive `k`, `Err` for a 3.x client that cannot be told.
    fn keep_alive(&self, connect: &Connect) -> Result<Option<u16>, ()> {
        let limits = &self.shared.config.limits;
        let asked = connect.keep_alive;
        let too_long = asked > limits.max_keepalive || (asked == 0 && !limits.allow_zero_keepalive);
        match (too_long, connect.protocol.is_v5()) {
            (false, _) => Ok(None),
            // [MQTT-3.2.2-21]: the client must use the Server Keep Alive.
            (true, true) => Ok(Some(limits.max_keepalive)),
            (true, false) => Err(()),
        }
    }

    async fn on_connect(&mut self, connect: Box<Connect>) {
        let v5 = connect.protocol.is_v5();
        let limits = &self.shared.config.limits;
        let refusal = if connect.client_id.is_empty() && connect.protocol == ProtocolVersion::V3_1 {
            // MQTT 3.1 client identifiers are 1 to 23 characters.
            Some(ReasonCode::ClientIdentifierNotValid)
        } else if self.info.username(connect.username.as_ref()).is_err() {
            // `use_identity_as_username` and a certificate without a subject CN.
            tracing::info!(conn = self.id, peer = %self.info.peer, "client certificate has no CN to use as username: refused");
            Some(ReasonCode::NotAuthorized)
        } else if self.keep_alive(&connect).is_err() {
            // 3.x has no Server Keep Alive; like mosquitto, refuse with "identifier rejected".
            tracing::debug!(
                conn = self.id,
                keep_alive = connect.keep_alive,
                "keep alive not allowed"
            );
            Some(ReasonCode::ClientIdentifierNotValid)
        } else if connect
            .will
            .as_ref()
            .is_some_and(|w| !topic_within(limits, &w.topic, &w.topic))
        {
            // A Will topic beyond the topic limits (5.0: "not accepted by this Server",
            // section 3.2.2.2; 3.x: the closest return code).
            Some(if v5 {
                ReasonCode::TopicNameInvalid
            } else {
                ReasonCode::NotAuthorized
            })
        } else if let Some(will) = connect.will.as_ref().filter(|_| v5) {
            // A Will the server could not publish as asked [MQTT-3.2.2-12], [MQTT-3.2.2-13].
            if will.qos > self.shared.engine.maximum_qos {
                Some(ReasonCode::QoSNotSupported)
            } else if will.retain && !limits.retain_available {
                Some(ReasonCode::RetainNotSupported)
            } else {
                None
            }
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.refuse(&connect, reason);
            return;
        }
        // Authentication (see `crate::auth`): enhanced, or username and password.
        let Some(authenticated) = self.authenticate(connect).await else {
            return;
        };
        self.complete_connect(authenticated).await;
    }

    /// Refuses the CONNECT with `reason`, logged at info.
    fn refuse(&mut self, connect: &Connect, reason: ReasonCode) {
        let now = now();
        tracing::info!(
            conn = self.id,
            client_id = %connect.client_id,
            username = %connect.username.as_ref().map_or("-", |u| u.as_str()),
            version = %version_name(connect.protocol),
            peer = %self.info.peer,
            listener = %listener_name(self.info.listener_addr()),
            %reason,
            "connect refused"
        );
        self.refusal_logged = true;
        if let Err(e) = self.session.reject(now, reason) {
            tracing::error!(conn = self.id, "cannot refuse CONNECT: {e}");
            self.session.handle_transport_closed(now);
        }
    }

    /// Accepts an authenticated CONNECT: claims the session and sends CONNACK.
    async fn complete_connect(&mut self, authenticated: Authenticated) {
        let Authenticated {
            connect,
            username: auth_username,
            data: auth_data,
        } = authenticated;
        let now = now();
        let v5 = connect.protocol.is_v5();
        let limits = &self.shared.config.limits;
        // An empty identifier gets one of the broker's [MQTT-3.1.3-6]; a 5.0 client is told
        // which [MQTT-3.2.2-16]. (3.1.1 requires Clean Session 1 for it [MQTT-3.1.3-7], refused
        // by the engine otherwise [MQTT-3.1.3-8].)
        let assigned = connect.client_id.is_empty().then(|| {
            MqttString::try_from(self.shared.assign_client_id(self.id)).expect("short ASCII")
        });
        // Detached from the CONNECT packet, which it would otherwise keep alive (see
        // `MqttString::detached`).
        let client_id = assigned
            .clone()
            .unwrap_or_else(|| connect.client_id.detached());
        let server_keep_alive = self.keep_alive(&connect).unwrap_or(None);
        // CONNECT's, the client certificate's identity (`use_identity_as_username`), or the
        // one enhanced authentication established.
        let username = auth_username;
        // Who the client is for the authorizer (a Will is checked when it is published).
        let identity = Identity::new(client_id.to_string(), username);
        self.identity = Some(Arc::new(identity));
        let shared = self.shared.clone();
        let claim = shared.registry.claim(
            client_id,
            self.id,
            connect.clean_start,
            &shared.config.mailbox,
            &shared.stats,
        );
        // The session's own copy, for the logs below (borrowed: a clone would share it).
        let handle = claim.handle.clone();
        let client_id = &handle.client_id;
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
        if let Some(ended) = &claim.ended {
            // Its engine (if any) is dropped below: nothing of it stays queued.
            ended.set_queued(0);
        }
        let resumed = previous.is_some() && !connect.clean_start;
        let state = previous
            .filter(|_| !connect.clean_start)
            .map(|s| s.into_state());
        self.last_queued = state.as_ref().map_or(0, |s| saturate_u32(s.queued.len()));
        let mut properties = ConnAckProperties::default();
        if v5 {
            properties.assigned_client_identifier = assigned;
            let max = limits.max_session_expiry;
            if connect
                .properties
                .session_expiry_interval
                .is_some_and(|e| e > max)
            {
                properties.session_expiry_interval = Some(max);
            }
            properties.server_keep_alive = server_keep_alive;
            // Only what is not available is announced: absent means available
            // (sections 3.2.2.3.11 to 3.2.2.3.13).
            properties.wildcard_subscription_available =
                (!limits.wildcard_subscription_available).then_some(false);
            properties.subscription_identifiers_available =
                (!limits.subscription_identifiers_available).then_some(false);
            properties.shared_subscription_available =
                (!limits.shared_subscription_available).then_some(false);
            properties.authentication_data = auth_data;
        }
        if let Some(identity) = &self.identity {
            claim
                .handle
                .set_identity(identity.clone(), Some(self.info.clone()));
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
        self.accepted = true;
        let stats = &shared.stats;
        let connected = stats.clients_connected.fetch_add(1, Ordering::Relaxed) + 1;
        stats
            .clients_maximum
            .fetch_max(connected, Ordering::Relaxed);
        // Persistent (kept in the storage) while its Session Expiry Interval is above 0.
        if let Some(ended) = &claim.ended {
            ended.stop_durable();
        }
        let expiry = self
            .session
            .session_expiry_interval()
            .min(limits.max_session_expiry);
        match &shared.persistence {
            Some(store) if expiry > 0 => {
                claim.handle.start_durable(store.clone(), &self.session);
                self.durable = true;
            }
            _ => claim.handle.stop_durable(),
        }
        tracing::info!(
            conn = self.id,
            %client_id,
            version = %version_name(connect.protocol),
            peer = %self.info.peer,
            listener = %listener_name(self.info.listener_addr()),
            keep_alive = server_keep_alive.unwrap_or(connect.keep_alive),
            resumed,
            "client connected"
        );
        // Messages routed to the session before the accept.
        claim.handle.signal();
    }

    fn on_publish(&mut self, publish: Publish, needs_ack: bool) {
        let now = now();
        let packet_id = publish.packet_id;
        let v5 = self.session.version().is_v5();
        // The subscribers whose mailbox took the message beyond its limits.
        let mut congested = Vec::new();
        let limits = &self.shared.config.limits;
        if !topic_within(limits, &publish.topic, &publish.topic) {
            tracing::debug!(conn = self.id, client_id = %self.session.client_id(), length = publish.topic.len(), "publish topic beyond the topic limits");
            match packet_id.filter(|_| needs_ack && v5) {
                // Well formed but not accepted by this server: PUBACK/PUBREC 0x90 (MQTT 5.0
                // sections 3.4.2.1 and 3.5.2.1); the message is not routed.
                Some(id) => {
                    if let Err(e) = self.session.ack(now, id, ReasonCode::TopicNameInvalid) {
                        tracing::error!(conn = self.id, "cannot acknowledge: {e}");
                    }
                }
                // QoS 0 has no acknowledgement to carry the refusal: DISCONNECT 0x90 (5.0);
                // 3.x has no reason codes at all: the connection is closed.
                None => self.close(ReasonCode::TopicNameInvalid),
            }
            return;
        }
        let qos = publish.qos;
        let mut durable = None;
        let reason = if !self.allowed(Access::Write, &publish.topic) {
            // Not authorized: never routed. 5.0: PUBACK/PUBREC 0x87 (QoS 0: dropped); 3.1.1
            // has no way to say it: a positive acknowledgement [MQTT-3.3.5-2].
            tracing::debug!(conn = self.id, client_id = %self.session.client_id(), topic = %publish.topic, "publish not authorized");
            ReasonCode::NotAuthorized
        } else if publish.topic.starts_with('$') {
            // Topics starting with `$` are the server's: it prevents clients from exchanging
            // messages on them (section 4.7.2).
            tracing::debug!(conn = self.id, topic = %publish.topic, "publish to a $ topic refused");
            ReasonCode::NotAuthorized
        } else {
            let message = Arc::new(Message::new(
                publish,
                Some(self.session.client_id().clone()),
                now,
            ));
            let routed = route(&self.shared, &message, now, Some(&mut congested));
            if routed.persisted > 0 {
                // Acknowledged once every durable copy is committed.
                durable = Some(qos);
            }
            if routed.taken > 0 {
                ReasonCode::Success
            } else if routed.refused > 0 {
                // Every session that matched refused it (full queues): the publisher is told
                // (PUBACK/PUBREC reason codes, MQTT 5.0 sections 3.4.2.1 and 3.5.2.1).
                ReasonCode::QuotaExceeded
            } else {
                ReasonCode::NoMatchingSubscribers
            }
        };
        let ack = packet_id
            .filter(|_| needs_ack)
            .map(|id| (id, if v5 { reason } else { ReasonCode::Success }));
        if !congested.is_empty() && !self.session.is_closed() {
            // Back-pressure: hold the acknowledgement and stop reading until the subscribers
            // made room, at most the stall timeout (QoS 0: `qos0_wait_ms`).
            self.shared.stats.publisher_waits.add(1);
            tracing::debug!(conn = self.id, client_id = %self.session.client_id(), "publisher waits for full mailboxes");
            self.blocked = Some(Box::new(Blocked {
                waiting: congested,
                ack,
                durable,
                deadline: tokio::time::Instant::now()
                    + if qos == QoS::AtMostOnce {
                        self.shared.config.backpressure.qos0_wait()
                    } else {
                        self.shared.config.backpressure.stall_timeout()
                    },
            }));
            return;
        }
        if let Some((id, reason)) = ack {
            self.acknowledge(id, reason, durable);
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
        let limits = &self.shared.config.limits;
        let mut codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut replays: Vec<(TopicFilter, SubscriptionOptions)> = Vec::new();
        for request in &subscribe.subscriptions {
            if identifier.is_some() && !limits.subscription_identifiers_available {
                // Announced as not available in CONNACK (section 3.2.2.3.12); refused per
                // filter with the SUBACK reason code for it.
                codes.push(ReasonCode::SubscriptionIdentifiersNotSupported);
                continue;
            }
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
            if !topic_within(limits, &request.filter, filter.topic_filter().as_str()) {
                // Beyond the topic limits: refused like an invalid filter.
                codes.push(if v5 {
                    ReasonCode::TopicFilterInvalid
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            if !handle.has_subscription_room(&request.filter, limits.max_subscriptions) {
                // A new filter beyond `max_subscriptions` (replacing one is always allowed).
                tracing::debug!(conn = self.id, client_id = %handle.client_id, "subscription quota exceeded");
                codes.push(if v5 {
                    ReasonCode::QuotaExceeded
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            if !self.allowed(Access::Subscribe, filter.topic_filter().as_str()) {
                tracing::debug!(conn = self.id, client_id = %handle.client_id, filter = %request.filter, "subscription not authorized");
                codes.push(if v5 {
                    ReasonCode::NotAuthorized
                } else {
                    // 3.1.1: 0x80 Failure (section 3.9.3).
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let shared = matches!(filter, SubscriptionFilter::Shared(_));
            if shared && !limits.shared_subscription_available {
                // Announced as not available (section 3.2.2.3.13).
                codes.push(ReasonCode::SharedSubscriptionsNotSupported);
                continue;
            }
            if filter.topic_filter().has_wildcards() && !limits.wildcard_subscription_available {
                // Announced as not available (section 3.2.2.3.11); 3.1.1: a server that does
                // not support wildcards rejects such a subscription [MQTT-3.8.3-2] with 0x80.
                codes.push(if v5 {
                    ReasonCode::WildcardSubscriptionsNotSupported
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            if shared && request.options.no_local {
                // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
                self.close(ReasonCode::ProtocolError);
                return;
            }
            let mut options = request.options;
            // A server without QoS 2 still accepts the SUBSCRIBE [MQTT-3.2.2-10] and grants at
            // most its Maximum QoS, which the reason code shows [MQTT-3.8.4-7].
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
            if let Some(p) = self.persisting.as_mut() {
                p.subscriptions_changed = true;
            }
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
        let mut messages = Vec::new();
        for (filter, options) in replays {
            messages.clear();
            self.shared
                .retained
                .matching(filter.as_str(), &mut messages);
            let delivery_options = DeliveryOptions {
                no_local: options.no_local,
                retain_as_published: options.retain_as_published,
                retained_replay: true,
            };
            for message in &messages {
                // Retained messages need read access like any delivery.
                if !self.allowed(Access::Read, &message.publish.topic) {
                    continue;
                }
                let delivery = Delivery {
                    message: message.clone(),
                    qos: options.qos,
                    subscription_ids: ids.clone(),
                    options: delivery_options,
                    seq: None,
                };
                if self.durable {
                    // Through the mailbox, to be logged in order with what waits there.
                    handle.push(delivery, now, false);
                } else {
                    self.deliver(&delivery, now);
                }
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
                        if let Some(p) = self.persisting.as_mut() {
                            p.subscriptions_changed = true;
                        }
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
            accepted,
            ..
        } = self;
        if accepted {
            shared
                .stats
                .clients_connected
                .fetch_sub(1, Ordering::Relaxed);
        }
        let Some(handle) = handle else { return };
        let expiry = session
            .session_expiry_interval()
            .min(shared.config.limits.max_session_expiry);
        match shared
            .registry
            .release(&handle, id, session, expiry > 0, now())
        {
            Released::HandedOver | Released::NotOwner => {}
            Released::Ended => {
                shared.router.remove_session(handle.key);
                handle.stop_durable();
            }
            Released::Offline(n) => {
                handle.snapshot_offline(n, SystemTime::now());
                tokio::spawn(keep_offline(
                    shared,
                    handle,
                    n,
                    expiry,
                    SystemTime::now(),
                    None,
                ));
            }
        }
    }
}

/// The protocol version for the logs.
fn version_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        _ => "5.0",
    }
}

/// A count kept in 32 bits (a connection's fields are memory for every idle client).
fn saturate_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The listener for the logs (`-` for a connection served by `serve_connection`).
fn listener_name(listener: Option<SocketAddr>) -> String {
    listener.map_or_else(|| "-".to_owned(), |a| a.to_string())
}

/// Hashes of a session's in-flight state: everything a snapshot holds (outgoing messages and
/// their phases, inbound QoS 2 identifiers, queue length), and only what QoS 2 depends on.
fn signatures(session: &ServerSession, awaiting: &[PacketId]) -> (u64, u64) {
    use std::hash::BuildHasher;
    // Runs at every step over the whole in-flight state, so a fast hash: SipHash was about
    // 3 % of the connection threads' samples in a durable run with 4,096 messages in flight.
    let hasher = foldhash::fast::FixedState::with_seed(0x7465_726e);
    let state = session.state();
    let mut qos2 = hasher.build_hasher();
    for o in &state.outgoing {
        if o.qos() == QoS::ExactlyOnce {
            (o.packet_id, o.phase).hash(&mut qos2);
        }
    }
    state.awaiting_pubrel.hash(&mut qos2);
    awaiting.hash(&mut qos2);
    for i in &state.inbound {
        if i.qos == QoS::ExactlyOnce {
            (i.packet_id, i.ack.is_some()).hash(&mut qos2);
        }
    }
    let qos2 = qos2.finish();
    let mut all = hasher.build_hasher();
    qos2.hash(&mut all);
    for o in &state.outgoing {
        (o.packet_id, o.phase).hash(&mut all);
    }
    state.queued.len().hash(&mut all);
    (all.finish(), qos2)
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

/// Publishes a Will, if its client may write its topic (checked now, against the ACL in
/// force, as mosquitto does: a denied Will is dropped, the CONNECT was accepted).
fn publish_will(shared: &Shared, origin: MqttString, identity: Option<&Identity>, will: Publish) {
    if !shared.auth.allows(identity, Access::Write, &will.topic) {
        tracing::info!(client_id = %origin, topic = %will.topic, "will not authorized: not published");
        return;
    }
    tracing::debug!(client_id = %origin, topic = %will.topic, "publishing will");
    let now = now();
    let message = Arc::new(Message::new(will, Some(origin), now));
    // A Will cannot wait: a congested mailbox takes it anyway (bounded, see the policy).
    route(shared, &message, now, None);
}

/// Watches an offline session: publishes its Will when the Will Delay passes and ends the
/// session when its Session Expiry Interval passes (kept until then [MQTT-3.1.2-23]); stops as soon as a
/// connection resumes it (another offline period gets another keeper).
///
/// `gone_at` is when the client went away (for the stored snapshot); `restored_will` is a
/// Will read back from the storage at start, published when due or when the session ends,
/// whichever comes first [MQTT-3.1.3-9].
pub(crate) async fn keep_offline(
    shared: Arc<Shared>,
    handle: Arc<SessionHandle>,
    offline: u64,
    expiry: u32,
    gone_at: SystemTime,
    mut restored_will: Option<(Publish, tokio::time::Instant)>,
) {
    let expires_at = (expiry != u32::MAX)
        .then(|| tokio::time::Instant::now() + Duration::from_secs(expiry.into()));
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let Some(timer) = handle.with_offline(offline, |s| s.poll_timeout()) else {
            return;
        };
        let timer = timer.map(tokio::time::Instant::from_std);
        let Some(deadline) = [timer, expires_at, restored_will.as_ref().map(|w| w.1)]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
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
        let mut wills = wills;
        let ending = expires_at.is_some_and(|e| e <= tokio::time::Instant::now());
        if restored_will
            .as_ref()
            .is_some_and(|w| ending || w.1 <= tokio::time::Instant::now())
            && let Some((will, _)) = restored_will.take()
        {
            wills.push(will);
        }
        let published = !wills.is_empty();
        for will in wills {
            let identity = handle.identity();
            publish_will(&shared, handle.client_id.clone(), identity.as_deref(), will);
        }
        if published {
            // Sent: the stored session must not send it again after a restart.
            handle.snapshot_offline(offline, gone_at);
        }
        if expires_at.is_some_and(|e| e <= tokio::time::Instant::now())
            && shared.registry.expire(&handle, offline)
        {
            tracing::debug!(client_id = %handle.client_id, "session expired");
            shared.stats.sessions_expired.add(1);
            shared.router.remove_session(handle.key);
            handle.stop_durable();
            return;
        }
    }
}
