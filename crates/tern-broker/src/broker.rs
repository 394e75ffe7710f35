//! The public face of the broker: [`Broker`] (configure and start) and [`BrokerHandle`]
//! (addresses, in-process publish, more listeners or connections, shutdown).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::counter::{Counter, Peak};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tern_codec::{MqttString, Publish, QoS};
use tern_proto::{AckMode, Message, ServerConfig, ServerSession};
use tern_topic::{SubscriptionFilter, TopicFilter, validate_topic_name};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::auth::{AuthFileError, AuthMethod, AuthState, Authenticator, Authorizer};
use crate::config::{Config, ConfigError};
use crate::connection;
use crate::limits::{ConnectionCount, Refused};
use crate::listener::Listener;
use crate::retained::RetainedStore;
use crate::router::{Router, Subscription};
use crate::session::{Delivery, Registry};
use crate::storage::writer::Persistence;
use crate::storage::{Recovered, RedbStorage, Storage, StorageError, StorageOp};
use crate::transport::{Acceptor, ClientInfo, ConnectionInfo, Transport};

/// A broker not started yet: a configuration and, for durable state, a storage.
#[derive(Debug)]
pub struct Broker {
    config: Config,
    storage: Option<Arc<dyn Storage>>,
    /// The application's hooks (see [`crate::auth`]).
    auth: AuthHooks,
}

/// The wall-clock time of `at`, a time of the broker's clock (tokio's, see `connection`).
pub(crate) fn wall_clock(at: Instant) -> SystemTime {
    let age = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(at);
    SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The broker's clock time of the wall-clock time `at` (not after now). A time before the
/// monotonic clock's origin (the machine booted since) becomes that origin's nearest.
pub(crate) fn from_wall_clock(at: SystemTime) -> Instant {
    let now = tokio::time::Instant::now().into_std();
    let age = SystemTime::now().duration_since(at).unwrap_or_default();
    now.checked_sub(age).unwrap_or(now)
}

/// What [`Broker::with_authenticator`] and the like installed.
#[derive(Debug, Default)]
struct AuthHooks {
    authenticator: Option<Arc<dyn Authenticator>>,
    authorizer: Option<Arc<dyn Authorizer>>,
    methods: Vec<Arc<dyn AuthMethod>>,
}

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The storage could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Broker {
    /// A broker with this configuration, keeping everything in memory (the `persistence`
    /// keys are not looked at; see [`from_config`](Self::from_config)).
    pub fn new(config: Config) -> Self {
        Broker {
            config,
            storage: None,
            auth: AuthHooks::default(),
        }
    }

    /// Decides on each CONNECT with `authenticator`, in place of the `[auth]` password file.
    pub fn with_authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.auth.authenticator = Some(authenticator);
        self
    }

    /// Decides on each PUBLISH, SUBSCRIBE, Will and delivery with `authorizer`, in place of
    /// the `[auth]` ACL file.
    pub fn with_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.auth.authorizer = Some(authorizer);
        self
    }

    /// Offers an MQTT 5.0 enhanced authentication method (chosen by the Authentication
    /// Method of CONNECT), e.g. [`ScramSha256`](crate::auth::ScramSha256). A CONNECT naming
    /// a method not offered gets CONNACK 0x8C Bad authentication method.
    pub fn with_auth_method(mut self, method: Arc<dyn AuthMethod>) -> Self {
        self.auth.methods.push(method);
        self
    }

    /// A broker as `ternd` runs it: with `persistence = true`, its durable state in a
    /// [`RedbStorage`] in `persistence_location` (opened now), otherwise in memory.
    ///
    /// # Errors
    ///
    /// [`StartError::Storage`] if the store cannot be opened (it is never replaced).
    pub fn from_config(config: Config) -> Result<Self, StartError> {
        let storage: Option<Arc<dyn Storage>> = if config.persistence {
            Some(Arc::new(RedbStorage::open(&config.persistence_location)?))
        } else {
            None
        };
        Ok(Broker {
            config,
            storage,
            auth: AuthHooks::default(),
        })
    }

    /// Keeps retained messages and persistent sessions in `storage`: read back at start,
    /// written through while running (see [`storage`](crate::storage)).
    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Validates the configuration, loads the retained messages, binds every configured
    /// listener (default: 127.0.0.1:1883) and starts serving. Must be called within a tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`StartError`] if the configuration is invalid, an address cannot be bound or the
    /// storage cannot be read.
    pub async fn start(self) -> Result<BrokerHandle, StartError> {
        self.config.validate()?;
        // Certificate files first: a bad one is reported before anything is bound.
        let acceptors = self
            .config
            .listener_configs()
            .iter()
            .enumerate()
            .map(|(i, l)| Acceptor::new(i, l, &self.config.limits))
            .collect::<Result<Vec<_>, _>>()?;
        let mut listeners = Vec::new();
        for addr in self.config.bind_addresses() {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            listeners.push(listener);
        }
        let metrics = match self.config.metrics.bind {
            Some(addr) => Some(
                crate::metrics::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        // Per listener: its own connection limit, if any (none for the default listener).
        let limits: Vec<usize> = self
            .config
            .listener_configs()
            .iter()
            .map(|l| l.max_connections)
            .collect();
        // Per listener: its own anonymous rule, if any.
        let anonymous: Vec<Option<bool>> = self
            .config
            .listener_configs()
            .iter()
            .map(|l| l.allow_anonymous)
            .collect();
        let handle = self.start_without_listeners()?;
        let unbound = |source| StartError::Bind {
            addr: "0.0.0.0:0".parse().expect("valid"),
            source,
        };
        let mut addrs = Vec::new();
        for (((listener, acceptor), max), anonymous) in listeners
            .into_iter()
            .zip(acceptors)
            .zip(limits)
            .zip(anonymous)
        {
            let count = (max > 0).then(|| ConnectionCount::new(max));
            let served = match acceptor {
                None => handle.serve_with(listener, count, move |shared, tcp, mut info, guard| {
                    info.allow_anonymous = anonymous;
                    connection::run(shared, tcp, info, guard)
                }),
                Some(acceptor) => {
                    handle.serve_with(listener, count, move |shared, tcp, mut info, guard| {
                        info.allow_anonymous = anonymous;
                        acceptor.clone().run(shared, tcp, info, guard)
                    })
                }
            };
            addrs.push(served.map_err(unbound)?);
        }
        let metrics_addr = match (metrics, handle.shared.task_guard()) {
            (Some(listener), Some(guard)) => Some(
                crate::metrics::serve(handle.shared.clone(), listener, guard).map_err(unbound)?,
            ),
            _ => None,
        };
        Ok(BrokerHandle {
            addrs,
            metrics_addr,
            ..handle
        })
    }

    /// Starts the broker without binding anything: connections come through
    /// [`BrokerHandle::serve`] and [`BrokerHandle::serve_connection`].
    ///
    /// # Errors
    ///
    /// [`StartError`] if the configuration is invalid or the storage cannot be read.
    pub fn start_without_listeners(self) -> Result<BrokerHandle, StartError> {
        self.config.validate()?;
        let auth = auth_state(&self.config, self.auth)?;
        let retained = RetainedStore::default();
        let started = Instant::now();
        let (recovered, persistence) = match self.storage {
            Some(storage) => {
                let recovered = storage.load()?;
                let persistence = Persistence::start(
                    storage,
                    Duration::from_millis(self.config.persistence_group_commit_ms),
                    self.config.persistence_group_commit_ops,
                )
                .map_err(|e| StorageError::new(format!("cannot start the store's thread: {e}")))?;
                (recovered, Some(persistence))
            }
            None => (Recovered::default(), None),
        };
        let Recovered {
            retained: stored_retained,
            sessions: stored_sessions,
            last_commit,
            ..
        } = recovered;
        let now_wall = SystemTime::now();
        let retained_count = stored_retained.len();
        for message in stored_retained {
            if message.is_expired(now_wall) {
                // Expired while the broker was down [MQTT-3.3.2-5].
                if let Some(p) = &persistence {
                    p.send(StorageOp::RemoveRetained(message.publish.topic.to_string()));
                }
                continue;
            }
            let Ok(origin) = message.origin.map(MqttString::try_from).transpose() else {
                continue;
            };
            retained.load(Message::new(
                message.publish,
                origin,
                from_wall_clock(message.received_at),
            ));
        }
        let (task_tx, task_rx) = mpsc::channel(1);
        let (shutdown, _) = watch::channel(false);
        let nonce = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let shared = Arc::new(Shared {
            engine: Arc::new(engine_config(&self.config)),
            open: ConnectionCount::new(self.config.limits.max_connections),
            refused: Refused::default(),
            started: tokio::time::Instant::now(),
            config: self.config,
            router: Router::default(),
            retained,
            registry: Registry::default(),
            persistence,
            stats: Arc::new(StatsCounters::default()),
            shutdown,
            stopping: AtomicBool::new(false),
            stop: Arc::new(tokio::sync::Notify::new()),
            tasks: Mutex::new(Some(task_tx)),
            done: tokio::sync::Mutex::new(task_rx),
            next_conn: AtomicU64::new(1),
            nonce,
            auth,
        });
        if let Some(store) = shared.persistence.clone() {
            let sessions = stored_sessions.len();
            let messages: usize = stored_sessions.iter().map(|s| s.deliveries.len()).sum();
            for session in stored_sessions {
                restore_session(&shared, &store, session, last_commit, now_wall);
            }
            tracing::info!(
                retained = retained_count,
                sessions,
                messages,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "store recovered"
            );
        }
        if shared.config.sys_interval > 0 {
            tokio::spawn(crate::sys::run(shared.clone()));
        }
        Ok(BrokerHandle {
            shared,
            addrs: Vec::new(),
            metrics_addr: None,
        })
    }
}

/// The hooks in force: the application's, else those of the `[auth]` files.
fn auth_state(config: &Config, hooks: AuthHooks) -> Result<AuthState, ConfigError> {
    let files = config.auth.load()?.map(Arc::new);
    if let Some(files) = &files {
        let (users, acl) = files.summary();
        tracing::info!(users, acl, "authentication files loaded");
    }
    Ok(AuthState {
        authenticator: hooks.authenticator.or_else(|| {
            files
                .clone()
                .filter(|_| config.auth.password_file.is_some())
                .map(|f| f as Arc<dyn Authenticator>)
        }),
        authorizer: hooks.authorizer.or_else(|| {
            files
                .clone()
                .filter(|_| config.auth.acl_file.is_some())
                .map(|f| f as Arc<dyn Authorizer>)
        }),
        methods: hooks.methods,
        files,
        allow_anonymous: config.auth.anonymous_default(),
        checks: Arc::new(tokio::sync::Semaphore::new(
            config.auth.max_concurrent_checks.max(1),
        )),
    })
}

/// Puts a persistent session read from the store back: offline, with its subscriptions and
/// queue, watched by a keeper for its remaining expiry; dropped if it expired while the
/// broker was down.
fn restore_session(
    shared: &Arc<Shared>,
    store: &Arc<Persistence>,
    stored: crate::storage::RecoveredSession,
    last_commit: Option<SystemTime>,
    now_wall: SystemTime,
) {
    let crate::storage::RecoveredSession {
        client_id,
        session,
        deliveries,
        ..
    } = stored;
    // A session that was connected at the crash ended with the last commit.
    let gone_at = session.disconnected_at.or(last_commit).unwrap_or(now_wall);
    let expiry = session
        .state
        .session_expiry_interval
        .min(shared.config.limits.max_session_expiry);
    let away = now_wall.duration_since(gone_at).unwrap_or_default();
    let expired = expiry == 0 || (expiry != u32::MAX && away.as_secs() >= u64::from(expiry));
    let Ok(id) = MqttString::try_from(client_id.clone()) else {
        tracing::warn!(%client_id, "stored session with an invalid client identifier dropped");
        store.send(StorageOp::RemoveSession { client_id });
        return;
    };
    if expired {
        // Its Session Expiry Interval passed while the broker was down [MQTT-3.1.2-23].
        tracing::debug!(%client_id, "stored session expired");
        shared.stats.sessions_expired.add(1);
        store.send(StorageOp::RemoveSession { client_id });
        return;
    }
    let remaining = if expiry == u32::MAX {
        u32::MAX
    } else {
        expiry - u32::try_from(away.as_secs()).unwrap_or(expiry)
    };
    let v5 = session.version.is_v5();
    let engine = ServerSession::restored(
        shared.engine.clone(),
        session.version,
        id.clone(),
        session.state,
    );
    let (handle, offline) = shared.registry.restore(
        id,
        Box::new(engine),
        session.delivered,
        store.clone(),
        &shared.config.mailbox,
        &shared.stats,
    );
    // The ACL judges its deliveries by the identity of its last connection until the client
    // comes back (a reconnect sets the new one).
    handle.set_identity(
        Arc::new(crate::auth::Identity::new(
            client_id.clone(),
            session.username.clone(),
        )),
        None,
    );
    for s in &session.subscriptions {
        handle.record_subscription(s.clone());
        let parsed = if v5 {
            SubscriptionFilter::new(s.filter.as_str())
        } else {
            TopicFilter::new(s.filter.as_str()).map(SubscriptionFilter::Plain)
        };
        match parsed {
            Ok(filter) => {
                shared.router.subscribe(
                    &filter,
                    Subscription {
                        session: handle.clone(),
                        options: s.options,
                        identifier: s.identifier,
                    },
                );
            }
            Err(_) => {
                tracing::warn!(%client_id, filter = %s.filter, "stored subscription with an invalid filter dropped")
            }
        }
    }
    let now = tokio::time::Instant::now().into_std();
    for (seq, d) in deliveries {
        let expired = d.message.is_expired(now_wall);
        let origin = d.message.origin.map(MqttString::try_from).transpose();
        let (false, Ok(origin)) = (expired, origin) else {
            // Expired while the broker was down [MQTT-3.3.2-5] (or damaged).
            store.send(StorageOp::RemoveDelivery {
                client_id: client_id.clone(),
                seq,
            });
            continue;
        };
        let message = Message::new(
            d.message.publish,
            origin,
            from_wall_clock(d.message.received_at),
        );
        handle.push(
            Delivery {
                message: Arc::new(message),
                qos: d.qos,
                subscription_ids: d.subscription_ids,
                options: d.options,
                seq: Some(seq),
            },
            now,
            false,
        );
    }
    // Rewritten with the time the client went away, so that expiry keeps counting from it
    // (the Will, if any, stays stored until it is sent).
    let will = session.will.map(|w| {
        let due = gone_at + Duration::from_secs(w.delay.into());
        let wait = due.duration_since(now_wall).unwrap_or_default();
        (w.publish, tokio::time::Instant::now() + wait)
    });
    if will.is_none() {
        handle.snapshot_offline(offline, gone_at);
    }
    tokio::spawn(connection::keep_offline(
        shared.clone(),
        handle,
        offline,
        remaining,
        gone_at,
        will,
    ));
}

fn engine_config(config: &Config) -> ServerConfig {
    let limits = &config.limits;
    ServerConfig {
        receive_maximum: limits.receive_maximum,
        maximum_packet_size: limits.maximum_packet_size,
        topic_alias_maximum: limits.topic_alias_maximum,
        maximum_qos: QoS::from_u8(limits.maximum_qos).unwrap_or(QoS::ExactlyOnce),
        retain_available: limits.retain_available,
        // The broker routes a message before it acknowledges it.
        ack_mode: AckMode::Manual,
        outgoing_topic_aliases: true,
        max_inflight: config.session.max_inflight,
        max_queued_messages: config.session.max_queued_messages,
        max_queued_bytes: config.session.max_queued_bytes,
        // The connection task bounds its output itself: it takes nothing from the mailbox
        // while its write buffer is over `backpressure.write_buffer`.
        max_transmit_backlog: usize::MAX,
        // Nothing in the broker waits for them.
        acknowledgement_events: false,
        connect_timeout: (limits.connect_timeout > 0)
            .then(|| Duration::from_secs(limits.connect_timeout)),
    }
}

/// What every task of the broker shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// When the broker started, for `$SYS/broker/uptime`.
    pub(crate) started: tokio::time::Instant,
    /// The engine's configuration, shared by every session.
    pub(crate) engine: Arc<ServerConfig>,
    pub(crate) router: Router,
    pub(crate) retained: RetainedStore,
    pub(crate) registry: Registry,
    /// The writer thread of the storage, when the broker has one.
    pub(crate) persistence: Option<Arc<Persistence>>,
    pub(crate) stats: Arc<StatsCounters>,
    /// Open connections, against `limits.max_connections`.
    pub(crate) open: Arc<ConnectionCount>,
    /// Connections refused at accept.
    pub(crate) refused: Refused,
    /// Whether shutdown began.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Set when shutdown begins, before anyone is told: an accepted connection's task reads it
    /// when its mailbox wakes it.
    pub(crate) stopping: AtomicBool,
    /// Woken when shutdown begins: the connection tasks that have no mailbox yet (before
    /// CONNECT is accepted) wait on it.
    pub(crate) stop: Arc<tokio::sync::Notify>,
    /// Each connection task holds a clone; shutdown drops this one and waits for the rest.
    tasks: Mutex<Option<mpsc::Sender<()>>>,
    done: tokio::sync::Mutex<mpsc::Receiver<()>>,
    next_conn: AtomicU64,
    nonce: u64,
    /// Authentication and authorisation hooks.
    pub(crate) auth: AuthState,
}

/// Held by a connection task while it runs; shutdown waits until every guard is dropped.
pub(crate) type TaskGuard = mpsc::Sender<()>;

impl Shared {
    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> Stats {
        let c = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            connections: load(&c.connections),
            clients_connected: load(&c.clients_connected),
            clients_maximum: load(&c.clients_maximum),
            sessions_expired: c.sessions_expired.get(),
            messages_received: c.messages_received.get(),
            messages_sent: c.messages_sent.get(),
            bytes_received: c.bytes_received.get(),
            bytes_sent: c.bytes_sent.get(),
            deliveries: c.deliveries.get(),
            dropped_qos0: c.dropped_qos0.get(),
            dropped_queue_full: c.dropped_queue_full.get(),
            mailbox_messages: c.mailbox_messages.get(),
            mailbox_bytes: c.mailbox_bytes.get(),
            mailbox_peak_messages: c.mailbox_peak_messages.get(),
            mailbox_peak_bytes: c.mailbox_peak_bytes.get(),
            queued_messages: c.queued_messages.get(),
            queued_peak_messages: c.queued_peak_messages.get(),
            write_buffer_bytes: c.write_buffer_bytes.get(),
            write_buffer_peak_bytes: c.write_buffer_peak_bytes.get(),
            publisher_waits: c.publisher_waits.get(),
            slow_consumers: c.slow_consumers.get(),
            read_buffer_peak_bytes: c.read_buffer_peak_bytes.get(),
            connections_open: self.open.open(),
            sessions: self.registry.len(),
            subscriptions: self.router.len(),
            retained: self.retained.len(),
        }
    }

    /// A guard for a new connection task, or `None` once shutdown began.
    pub(crate) fn task_guard(&self) -> Option<TaskGuard> {
        self.tasks.lock().clone()
    }

    /// Whether shutdown began.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// A new connection id, unique within this broker.
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A client identifier for a client that sent none.
    pub(crate) fn assign_client_id(&self, conn: u64) -> String {
        format!("tern-{:012x}-{conn}", self.nonce & 0xffff_ffff_ffff)
    }
}

/// Counters and gauges of the broker: sharded per thread where the hot paths update them
/// (see [`crate::counter`]), plain atomics for the rare ones. See [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct StatsCounters {
    pub(crate) connections: AtomicU64,
    pub(crate) clients_connected: AtomicU64,
    pub(crate) clients_maximum: AtomicU64,
    pub(crate) sessions_expired: Counter,
    pub(crate) messages_received: Counter,
    pub(crate) messages_sent: Counter,
    pub(crate) bytes_received: Counter,
    pub(crate) bytes_sent: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) dropped_qos0: Counter,
    pub(crate) dropped_queue_full: Counter,
    pub(crate) mailbox_messages: Counter,
    pub(crate) mailbox_bytes: Counter,
    pub(crate) mailbox_peak_messages: Peak,
    pub(crate) mailbox_peak_bytes: Peak,
    pub(crate) queued_messages: Counter,
    pub(crate) queued_peak_messages: Peak,
    pub(crate) write_buffer_bytes: Counter,
    pub(crate) write_buffer_peak_bytes: Peak,
    pub(crate) publisher_waits: Counter,
    pub(crate) slow_consumers: Counter,
    pub(crate) read_buffer_peak_bytes: Peak,
    /// The counters by label of the metrics endpoint.
    pub(crate) traffic: crate::metrics::Traffic,
}

/// A snapshot of the broker's counters and sizes.
///
/// The `*_peak_*` fields are the largest value any one session or connection reached since
/// start, so that a test or a monitor can check the memory bounds of
/// [the slow-consumer policy](crate::config#memory-bounds-and-slow-consumers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted since start.
    pub connections: u64,
    /// Clients connected now (CONNECT accepted, connection not ended).
    pub clients_connected: u64,
    /// The most clients connected at once.
    pub clients_maximum: u64,
    /// Sessions ended by their Session Expiry Interval.
    pub sessions_expired: u64,
    /// Application messages received (from clients, wills and [`BrokerHandle::publish`]).
    pub messages_received: u64,
    /// PUBLISH packets sent to clients (a queued message counts when it leaves the queue).
    pub messages_sent: u64,
    /// Bytes read from clients.
    pub bytes_received: u64,
    /// Bytes written to clients.
    pub bytes_sent: u64,
    /// Deliveries made to sessions by routing.
    pub deliveries: u64,
    /// QoS 0 messages dropped because a mailbox was full.
    pub dropped_qos0: u64,
    /// QoS 1/2 messages refused because a session's queue was full.
    pub dropped_queue_full: u64,
    /// Messages waiting in the mailboxes of all sessions now.
    pub mailbox_messages: u64,
    /// Bytes (topic + payload) waiting in the mailboxes of all sessions now.
    pub mailbox_bytes: u64,
    /// The most messages one mailbox held.
    pub mailbox_peak_messages: u64,
    /// The most bytes one mailbox held.
    pub mailbox_peak_bytes: u64,
    /// Messages in the session queues (beyond the in-flight windows, or for absent clients).
    pub queued_messages: u64,
    /// The most messages one session queue held.
    pub queued_peak_messages: u64,
    /// Encoded bytes waiting for the clients' sockets now.
    pub write_buffer_bytes: u64,
    /// The most encoded bytes one connection had waiting for its socket.
    pub write_buffer_peak_bytes: u64,
    /// Times a publishing client was held back because a subscriber's mailbox was full.
    pub publisher_waits: u64,
    /// Clients disconnected because they did not read: their socket accepted nothing for the
    /// stall timeout, or a publisher waited for them that long.
    pub slow_consumers: u64,
    /// The most bytes one connection had allocated for reading (its read buffer's capacity,
    /// which holds at most one incoming packet and what arrived after it).
    pub read_buffer_peak_bytes: u64,
    /// Network connections open now (CONNECT received or not).
    pub connections_open: usize,
    /// Sessions, online and offline.
    pub sessions: usize,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Retained messages.
    pub retained: usize,
}

/// A running broker: cheap to clone; the broker runs until [`shutdown`](Self::shutdown).
#[derive(Clone, Debug)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
}

/// An in-process publish that cannot be routed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is not a valid topic name.
    #[error("invalid topic name: {0}")]
    InvalidTopic(#[from] tern_topic::TopicError),
}

impl BrokerHandle {
    /// The addresses the broker's own listeners are bound to, in configuration order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The address of the Prometheus metrics endpoint (`[metrics] bind`), if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Publishes `publish` as the broker itself (no client origin): retained if RETAIN is set,
    /// routed to every matching subscription. `$` topics are allowed here. Returns the number of
    /// sessions that took it. Never waits: a QoS 1/2 message to a full mailbox is taken
    /// beyond its limits (see [the policy](crate::config#memory-bounds-and-slow-consumers)).
    ///
    /// # Errors
    ///
    /// [`PublishError::InvalidTopic`] if the topic is not a valid topic name.
    pub fn publish(&self, publish: Publish) -> Result<usize, PublishError> {
        validate_topic_name(publish.topic.as_str())?;
        let now = tokio::time::Instant::now().into_std();
        let message = Arc::new(Message::new(publish, None, now));
        // The caller cannot be made to wait: a congested mailbox takes a QoS 1/2 message
        // anyway (bounded at twice its limits) and drops a QoS 0 one (see the policy).
        let routed = connection::route(&self.shared, &message, now, None);
        Ok(routed.taken)
    }

    /// Serves the connections of `listener` until shutdown; returns its address. After
    /// shutdown began, the listener is dropped at once.
    ///
    /// # Errors
    ///
    /// The listener's address cannot be read.
    pub fn serve<L: Listener>(&self, listener: L) -> io::Result<SocketAddr> {
        self.serve_counted(listener, None)
    }

    /// [`serve`](Self::serve), with the listener's own connection limit.
    fn serve_counted<L: Listener>(
        &self,
        listener: L,
        count: Option<Arc<ConnectionCount>>,
    ) -> io::Result<SocketAddr> {
        let transport = listener.transport();
        self.serve_with(listener, count, move |shared, stream, mut info, guard| {
            info.transport = transport;
            connection::run(shared, stream, info, guard)
        })
    }

    /// The accept loop of [`serve`](Self::serve): admits each accepted connection against
    /// the connection limits and spawns the task `run` makes for it (for a configured
    /// listener: its handshakes, then the connection).
    fn serve_with<L: Listener, F>(
        &self,
        mut listener: L,
        count: Option<Arc<ConnectionCount>>,
        run: impl Fn(Arc<Shared>, L::Stream, ConnectionInfo, TaskGuard) -> F + Send + 'static,
    ) -> io::Result<SocketAddr>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let shared = self.shared.clone();
        let mut shutdown = shared.shutdown.subscribe();
        // Shutdown also waits for the listener to be dropped, so its address is free after.
        let Some(guard) = shared.task_guard() else {
            return Ok(addr);
        };
        let listener_addr = Arc::new(addr);
        tokio::spawn(async move {
            loop {
                if *shutdown.borrow_and_update() {
                    break;
                }
                tokio::select! {
                    _ = shutdown.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let mut info = ConnectionInfo::new(peer, Transport::Tcp);
                            info.listener = Some(listener_addr.clone());
                            spawn_connection(&shared, count.as_ref(), info, |shared, info, guard| {
                                run(shared, stream, info, guard)
                            });
                        }
                        Err(e) => {
                            tracing::warn!(%addr, "accept failed: {e}");
                            // Out of descriptors or similar: give the system a moment.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                }
            }
            drop(listener);
            drop(guard);
            tracing::debug!(%addr, "listener stopped");
        });
        Ok(addr)
    }

    /// Serves one connection over any byte stream (e.g. one a TLS or WebSocket layer already
    /// accepted). Dropped at once if the broker is shutting down.
    pub fn serve_connection<S>(&self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let info = ConnectionInfo::new(peer, Transport::Other);
        spawn_connection(&self.shared, None, info, |shared, info, guard| {
            connection::run(shared, stream, info, guard)
        });
    }

    /// The connected clients (CONNECT accepted, connection not ended), by client identifier:
    /// identifier, username, address, transport and TLS identity.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.shared.registry.connected()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Reads the `[auth]` password and ACL files again and uses them if both are valid (a
    /// bad file leaves the ones in use in place). Connections stay open. Returns whether
    /// there were files to reload.
    ///
    /// # Errors
    ///
    /// [`AuthFileError`] naming the file and line that cannot be used.
    pub fn reload_auth(&self) -> Result<bool, AuthFileError> {
        match &self.shared.auth.files {
            Some(files) => files.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Shuts down gracefully: stops accepting, sends MQTT 5.0 clients DISCONNECT 0x8B Server
    /// shutting down (3.x clients are just closed), flushes, and waits for the connections to
    /// end, at most the configured `shutdown.timeout`. Returns whether every connection ended
    /// in time.
    pub async fn shutdown(&self) -> bool {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.shutdown.send_replace(true);
        // Connections without a mailbox wait on `stop`; the others are woken through theirs
        // (one that registers its mailbox after this finds `stopping` set).
        self.shared.stop.notify_waiters();
        self.shared.registry.signal_all();
        drop(self.shared.tasks.lock().take());
        let timeout = self.shared.config.shutdown.timeout();
        let mut done = self.shared.done.lock().await;
        // `recv` returns `None` once every task guard is gone.
        let ended = tokio::time::timeout(timeout, done.recv()).await.is_ok();
        if let Some(store) = self.shared.persistence.clone() {
            // The sessions of the connections just closed are written; then the store is
            // closed, so that another broker may open it.
            let _ = tokio::time::timeout(timeout, store.flush()).await;
            let _ = tokio::task::spawn_blocking(move || store.stop()).await;
        }
        ended
    }
}

/// Admits a connection against the connection limits and spawns its task, which holds the
/// admission until it ends.
fn spawn_connection<F>(
    shared: &Arc<Shared>,
    count: Option<&Arc<ConnectionCount>>,
    info: ConnectionInfo,
    run: impl FnOnce(Arc<Shared>, ConnectionInfo, TaskGuard) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let Some(guard) = shared.task_guard() else {
        return;
    };
    // Over a connection limit, the stream is dropped (closed) here: nothing more is made for
    // it (see the configuration's "Connection limits").
    let Ok(admission) = crate::limits::admit(
        &shared.open,
        count,
        &shared.refused,
        info.peer,
        info.listener_addr(),
    ) else {
        return;
    };
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    // Not an `async` block: one that awaits a future it captured stores it twice (the capture
    // and the pinned awaitee), which doubled every connection task's memory; boxing the future
    // instead cost a second allocation. `map` keeps both in the task's own allocation.
    let task = run(shared.clone(), info, guard);
    tokio::spawn(futures_util::FutureExt::map(task, move |()| {
        drop(admission)
    }));
}
