//! The broker's configuration: plain data, read from TOML by [`Config::from_toml_str`] or
//! [`Config::from_file`], or built in code.
//!
//! Every table and key is optional; an unknown key is an error that names it and its line.
//!
//! ```toml
//! # Seconds between updates of the retained `$SYS/broker/...` topics; 0 disables them.
//! sys_interval = 10
//!
//! # Durable state (see "Persistence" below). The keys come before the first table.
//! persistence = true               # false (or `ternd --memory`): everything in memory
//! persistence_location = "tern-data"   # the data directory, created if missing
//! persistence_group_commit_ms = 0  # how long a commit gathers operations (one fsync
//!                                  # for all); 0: what waited while the last commit ran
//! persistence_group_commit_ops = 4096  # at most this many operations per commit
//! persistence_snapshot_ms = 100    # a connected session's QoS 1 in-flight state is
//!                                  # written at most this often (QoS 2: before each step)
//!
//! # Where to listen. Without any `[[listener]]`, ternd listens on 127.0.0.1:1883 only.
//! [[listener]]
//! bind = "0.0.0.0:1883"
//! # protocol = "mqtt"               # "mqtt" (MQTT over TCP) or "websocket"
//! # path = "/mqtt"                  # websocket only: the HTTP path; any other gets 404
//! # [listener.tls]                  # TLS on this listener (mqtts, or wss for websocket);
//!                                   # see "Listeners" below
//! max_connections = 0              # open connections on this listener; 0: no limit of
//!                                  # its own (limits.max_connections still applies)
//!
//! [limits]
//! maximum_packet_size = 1048576    # bytes, enforced from the fixed header (0x95); up to
//!                                  # 268435460, the largest packet MQTT can carry
//! max_connections = 0              # open connections in all; 0: no limit. Beyond it a
//!                                  # new connection is closed at once
//! max_topic_length = 65535         # bytes of a PUBLISH topic or SUBSCRIBE filter
//! max_topic_levels = 128           # levels of a topic or filter (`a/b/c` has 3)
//! max_subscriptions = 0            # subscriptions per client; 0: no limit (SUBACK 0x97)
//! max_inbound_messages_per_second = 0  # PUBLISH packets a connection may send per
//!                                      # second; 0: no limit. Reads pause, nothing drops
//! max_inbound_bytes_per_second = 0     # bytes a connection may send per second; 0: no limit
//! receive_maximum = 65535          # inbound QoS 1/2 unacknowledged at once (0x93)
//! maximum_qos = 2                  # 0, 1 or 2; a PUBLISH above it: DISCONNECT 0x9B
//! retain_available = true          # false: a retained PUBLISH gets DISCONNECT 0x9A
//! topic_alias_maximum = 0          # topic aliases accepted from 5.0 clients
//! wildcard_subscription_available = true        # false: SUBACK 0xA2 for `+`/`#` filters
//! subscription_identifiers_available = true     # false: SUBACK 0xA1 for a SUBSCRIBE with one
//! shared_subscription_available = true          # false: SUBACK 0x9E for `$share/...`
//! max_keepalive = 65535            # seconds; a 5.0 client asking more gets Server Keep Alive
//! allow_zero_keepalive = true      # false: keep alive 0 is replaced by max_keepalive
//! connect_timeout = 10             # seconds to wait for CONNECT; 0 waits for ever
//! max_session_expiry = 4294967295  # seconds; a client asking more gets this
//!
//! [session]
//! max_inflight = 65535             # outgoing QoS 1/2 in flight per client
//! max_queued_messages = 1000       # queued per session beyond the in-flight window
//! max_queued_bytes = 16777216      # topic + payload bytes queued per session
//!
//! [mailbox]
//! max_messages = 1024              # routed messages waiting for a connection's task
//! max_bytes = 16777216
//!
//! [backpressure]
//! write_buffer = 65536             # bytes waiting for a client's socket before its task
//!                                  # stops taking new work
//! stall_timeout = 30               # seconds a socket may accept nothing, and a publisher
//!                                  # may wait for a full mailbox, before the slow client
//!                                  # is disconnected
//! qos0_wait_ms = 1000              # how long a QoS 0 publisher may wait for a full
//!                                  # mailbox before its consumer sheds QoS 0
//!
//! [shutdown]
//! timeout = 5                      # seconds to flush DISCONNECT 0x8B before exiting
//!
//! [metrics]
//! # bind = "127.0.0.1:9090"        # serve Prometheus metrics at http://ADDR/metrics;
//!                                  # default: off
//! ```
//!
//! # Listeners
//!
//! Each `[[listener]]` has its own transport. `protocol = "websocket"` serves MQTT over
//! WebSocket (the `mqtt` subprotocol) on `path`; a `[listener.tls]` table adds TLS (rustls,
//! TLS 1.2 and 1.3), with optional client certificates (mutual TLS):
//!
//! ```toml
//! [[listener]]                     # mqtts: MQTT over TLS
//! bind = "0.0.0.0:8883"
//! [listener.tls]
//! certfile = "/etc/ternd/server.pem"   # PEM: the certificate chain, leaf first
//! keyfile = "/etc/ternd/server.key"    # PEM: its private key (PKCS#8, PKCS#1 or SEC1)
//! cafile = "/etc/ternd/ca.pem"         # PEM: CAs that sign client certificates (optional)
//! require_certificate = true           # clients must present a certificate signed by cafile
//!                                      # (default false: one is verified if presented)
//! use_identity_as_username = true      # the certificate's subject CN is the username,
//!                                      # in place of CONNECT's (needs require_certificate)
//! tls_version = "tlsv1.2"              # the oldest version accepted: "tlsv1.2" (default,
//!                                      # 1.2 and 1.3) or "tlsv1.3"; also "1.2", "1.3"
//!
//! [[listener]]                     # ws: MQTT over WebSocket
//! bind = "0.0.0.0:8080"
//! protocol = "websocket"
//! path = "/mqtt"
//!
//! [[listener]]                     # wss: MQTT over WebSocket over TLS
//! bind = "0.0.0.0:8443"
//! protocol = "websocket"
//! [listener.tls]
//! certfile = "/etc/ternd/server.pem"
//! keyfile = "/etc/ternd/server.key"
//! ```
//!
//! The certificate and key files are read when the broker starts: a missing or invalid file
//! is a start-up error naming the listener, the key and the file. The TLS and WebSocket
//! handshakes run in the connection's task, each bounded by `limits.connect_timeout` (after
//! them, CONNECT has `limits.connect_timeout` of its own). A WebSocket message may be at most
//! `limits.maximum_packet_size` (plus 5 bytes of fixed header) long.
//!
//! # Authentication
//!
//! ```toml
//! [auth]
//! password_file = "/etc/ternd/passwd" # mosquitto's format: `user:$7$...` (PBKDF2-SHA512),
//!                                     # `user:$6$...` (SHA-512) or `user:$argon2id$...`;
//!                                     # written by `ternd passwd` or mosquitto_passwd
//! acl_file = "/etc/ternd/acl"         # mosquitto's format: `user`, `topic [read|write|
//!                                     # readwrite|deny]`, `pattern` with %c and %u
//! allow_anonymous = false             # clients without a username; default true, false
//!                                     # when password_file is set
//! max_concurrent_checks = 4           # password checks at once (each on a blocking
//!                                     # thread; argon2id: ~25 ms, 19 MiB); a CONNECT
//!                                     # waits at most connect_timeout, then gets 0x89
//!
//! [[listener]]
//! bind = "127.0.0.1:1883"
//! allow_anonymous = true              # this listener's own rule (default: auth's)
//! ```
//!
//! Relative paths are taken from the working directory. With a password file, a client that
//! sends a username must send its password: an unknown
//! user or a wrong password gets CONNACK 0x86 (3.1.1: return code 4). A client without a
//! username where anonymous clients are not allowed gets CONNACK 0x87 (3.1.1: 5). A client
//! authenticated by its certificate (`use_identity_as_username`) needs no password. With an
//! ACL file, whatever it does not grant is denied; see [`crate::auth`] for the rules and what
//! each refusal looks like. Both files are read at start (a bad one is a start-up error
//! naming file and line; `ternd --check-config` reads them too) and again, together, by
//! [`BrokerHandle::reload_auth`](crate::BrokerHandle::reload_auth) (`ternd`: on SIGHUP): a
//! bad file on reload is logged and the files in use are kept. Connections stay open across
//! a reload; what they do next is checked against the new files.
//!
//! # Memory bounds and slow consumers
//!
//! What a client costs the broker is bounded whatever the client does:
//!
//! - **Outgoing bytes.** A connection's task writes from one buffer when the socket is
//!   writable and never blocks on a write. While that buffer holds [`Backpressure::write_buffer`]
//!   bytes or more, the task neither reads the client's socket nor takes messages from its
//!   mailbox, so the buffer exceeds the limit by at most one mailbox batch. A socket that
//!   accepts no byte for [`Backpressure::stall_timeout`] is closed (a slow consumer, counted
//!   in [`Stats::slow_consumers`](crate::Stats)); its session stays as its expiry says.
//! - **Routed messages** wait in the session's mailbox, bounded by [`MailboxLimits`]. A
//!   **QoS 0** message beyond the limits puts back-pressure on its publisher too (below), so
//!   a subscriber that keeps up at its own pace loses nothing; but a QoS 0 publisher waits at
//!   most [`Backpressure::qos0_wait_ms`]. If the mailbox is still full then, its subscriber
//!   *sheds*: QoS 0 beyond its limits is dropped and counted
//!   ([`Stats::dropped_qos0`](crate::Stats)) until it has emptied its mailbox, and it stays
//!   connected. QoS 0 at twice the limits is always dropped.
//! - **QoS 1/2 are never dropped silently.** A QoS 1/2 message that meets a full mailbox of a
//!   connected subscriber is admitted (beyond the limit by at most one message per waiting
//!   publisher) and *back-pressure* applies to the client that published it: its connection
//!   stops reading and withholds the PUBACK/PUBREC until the mailbox has room again
//!   ([`Stats::publisher_waits`](crate::Stats)). After [`Backpressure::stall_timeout`] the
//!   subscriber that still has no room is disconnected as a slow consumer (5.0: DISCONNECT
//!   0x97) and the publisher goes on. A message that cannot wait (a Will, an in-process
//!   publish) is admitted too; a mailbox at twice its limits disconnects its subscriber at
//!   once.
//! - **A session whose client is away** keeps QoS 1/2 messages in its queue, bounded by
//!   [`SessionLimits`] (this is also where a disconnected slow consumer's mailbox goes). A
//!   message beyond it is refused: logged at `warn`, counted
//!   ([`Stats::dropped_queue_full`](crate::Stats)), and when no other subscriber took it, a
//!   5.0 publisher gets PUBACK/PUBREC 0x97 Quota exceeded.
//! - **Incoming bytes.** A packet announced larger than [`Limits::maximum_packet_size`] is
//!   refused from its fixed header; a socket that sends no complete CONNECT within
//!   [`Limits::connect_timeout`] is closed, however slowly its bytes trickle in; the inbound
//!   rate limits pause reading rather than buffer.
//!
//! # Persistence
//!
//! With `persistence = true` (the default for `ternd`), the broker keeps its durable state
//! in a [redb](https://docs.rs/redb) database, `tern.redb` in `persistence_location`:
//! retained messages, and every session with a Session Expiry Interval above 0 (Clean
//! Session 0 in 3.x) with its subscriptions, its queued QoS 1/2 messages and its in-flight
//! state. A QoS 1/2 PUBLISH is acknowledged (PUBACK/PUBREC) only after every durable copy
//! it made is committed; commits are grouped (one fsync per batch). Messages for sessions
//! without expiry never touch the disk. At start the store is read back: retained messages
//! and sessions whose expiry passed while the broker was down are dropped. A store that
//! cannot be opened (corrupt, another format version, permissions, held by another
//! process) stops the start with an error; it is never replaced. See
//! [`storage`](crate::storage) for the records.
//!
//! The library's [`Broker::new`](crate::Broker::new) keeps everything in memory whatever
//! these keys say; [`Broker::from_config`](crate::Broker::from_config) (what `ternd` uses)
//! honours them, and [`Broker::with_storage`](crate::Broker::with_storage) takes any
//! [`Storage`](crate::Storage). [`Config::with_listeners`] sets `persistence = false`.
//!
//! # Connection limits
//!
//! [`Limits::max_connections`] and [`ListenerConfig::max_connections`] count open
//! connections, from accept to close (a connection that has not sent CONNECT yet counts too).
//! Beyond either, a new connection is closed as soon as it is accepted: no task, buffer or
//! timer is made for it, so a flood of connections costs the broker nothing that grows. The
//! client sees the close without a CONNACK (reading its CONNECT to answer 0x97 would mean
//! keeping every refused socket open for up to the connect timeout); the refusal is logged
//! and counted (`mqtt_connections_refused_total`).
//!
//! # Topic limits
//!
//! [`Limits::max_topic_length`] and [`Limits::max_topic_levels`] bound the topic of a PUBLISH
//! (after a Topic Alias is resolved) and the filter of a SUBSCRIBE (of a shared subscription:
//! the whole `$share/...` string for the length, the filter after the share name for the
//! levels). The topic of a Will is checked at CONNECT.
//!
//! - A PUBLISH beyond them is not routed. MQTT 5.0: a QoS 1/2 one is answered PUBACK/PUBREC
//!   0x90 Topic Name invalid ("correctly formed, but not accepted by this Server", sections
//!   3.4.2.1 and 3.5.2.1); a QoS 0 one, which has no acknowledgement, with DISCONNECT 0x90.
//!   MQTT 3.x has no reason codes: the connection is closed.
//! - A SUBSCRIBE filter beyond them gets SUBACK 0x8F Topic Filter invalid (5.0) or 0x80
//!   Failure (3.1.1); the other filters of the packet are handled as usual.
//! - A CONNECT whose Will topic is beyond them is refused: CONNACK 0x90 Topic Name invalid
//!   (5.0, section 3.2.2.2) or return code 5 Not authorized (3.x, the closest of its six).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// Seconds between updates of the retained `$SYS/broker/...` topics (mosquitto's names);
    /// 0 disables them.
    pub sys_interval: u64,
    /// The listeners, `[[listener]]` in TOML. Empty means the default: 127.0.0.1:1883.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// Protocol limits announced to clients and enforced.
    pub limits: Limits,
    /// Per-session delivery limits.
    pub session: SessionLimits,
    /// Per-session mailbox limits.
    pub mailbox: MailboxLimits,
    /// Slow consumers: the write buffer and the stall timeout.
    pub backpressure: Backpressure,
    /// Graceful shutdown.
    pub shutdown: Shutdown,
    /// The Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
    /// Password and ACL files, anonymous clients. See [Authentication](self#authentication).
    pub auth: crate::auth::AuthConfig,
    /// Whether [`Broker::from_config`](crate::Broker::from_config) keeps the durable state on
    /// disk (see [Persistence](self#persistence)).
    pub persistence: bool,
    /// The data directory.
    pub persistence_location: PathBuf,
    /// Milliseconds a commit gathers operations for. 0 (the default): a commit takes what
    /// waited while the previous one ran, so batches grow with the load and the fsync time
    /// by themselves and a lone message waits for nothing.
    pub persistence_group_commit_ms: u64,
    /// The most operations in one commit.
    pub persistence_group_commit_ops: usize,
    /// Milliseconds between snapshots of a connected session's QoS 1 in-flight state.
    pub persistence_snapshot_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sys_interval: 10,
            listeners: Vec::new(),
            limits: Limits::default(),
            session: SessionLimits::default(),
            mailbox: MailboxLimits::default(),
            backpressure: Backpressure::default(),
            shutdown: Shutdown::default(),
            metrics: MetricsConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            persistence: true,
            persistence_location: PathBuf::from("tern-data"),
            persistence_group_commit_ms: 0,
            persistence_group_commit_ops: 4096,
            persistence_snapshot_ms: 100,
        }
    }
}

/// The address the broker listens on when no listener is configured (loopback only, like
/// mosquitto 2).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";

impl Config {
    /// Parses a TOML configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] with the line, column and message (naming the key) of the first
    /// problem.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let (line, column) = e
                .span()
                .map_or((0, 0), |span| line_column(text, span.start));
            ConfigError::Parse {
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] if the file cannot be read, [`ConfigError::Parse`] if it is not a
    /// valid configuration.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    /// A configuration listening on these addresses, in memory (`persistence = false`),
    /// everything else default.
    pub fn with_listeners(addrs: impl IntoIterator<Item = SocketAddr>) -> Config {
        Config {
            listeners: addrs.into_iter().map(ListenerConfig::new).collect(),
            persistence: false,
            ..Config::default()
        }
    }

    /// The listeners to start: the configured ones, or a plain one on [`DEFAULT_LISTEN`].
    pub fn listener_configs(&self) -> Vec<ListenerConfig> {
        if self.listeners.is_empty() {
            self.bind_addresses()
                .into_iter()
                .map(ListenerConfig::new)
                .collect()
        } else {
            self.listeners.clone()
        }
    }

    /// Reads every listener's certificate and key files and the password and ACL files, as [`Broker::start`](crate::Broker::start)
    /// does, without binding anything (for `ternd --check-config`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Listener`] naming the listener, the key and the file that cannot be used.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        for (index, listener) in self.listener_configs().iter().enumerate() {
            crate::transport::Acceptor::new(index, listener, &self.limits)?;
        }
        self.auth.load()?;
        Ok(())
    }

    /// The addresses to bind: the configured listeners, or [`DEFAULT_LISTEN`].
    pub fn bind_addresses(&self) -> Vec<SocketAddr> {
        if self.listeners.is_empty() {
            vec![
                DEFAULT_LISTEN
                    .parse()
                    .expect("the default address is valid"),
            ]
        } else {
            self.listeners.iter().map(|l| l.bind).collect()
        }
    }

    /// Checks the values serde cannot check.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &'static str, reason: &'static str| Err(ConfigError::Invalid { key, reason });
        if self.limits.maximum_qos > 2 {
            return invalid("limits.maximum_qos", "must be 0, 1 or 2");
        }
        if self.limits.receive_maximum == 0 {
            return invalid("limits.receive_maximum", "must be at least 1");
        }
        if self.limits.maximum_packet_size < 16
            || self.limits.maximum_packet_size > tern_codec::MAX_PACKET_SIZE
        {
            return invalid(
                "limits.maximum_packet_size",
                "must be at least 16 and at most the largest MQTT packet",
            );
        }
        if self.limits.max_topic_length == 0 || self.limits.max_topic_length > 65535 {
            return invalid("limits.max_topic_length", "must be 1 to 65535");
        }
        if self.limits.max_keepalive == 0 && !self.limits.allow_zero_keepalive {
            return invalid(
                "limits.max_keepalive",
                "must be at least 1 when allow_zero_keepalive is false",
            );
        }
        if self.session.max_inflight == 0 {
            return invalid("session.max_inflight", "must be at least 1");
        }
        if self.persistence_group_commit_ops == 0 {
            return invalid("persistence_group_commit_ops", "must be at least 1");
        }
        if self.persistence && self.persistence_location.as_os_str().is_empty() {
            return invalid("persistence_location", "must not be empty");
        }
        if self.mailbox.max_messages == 0 {
            return invalid("mailbox.max_messages", "must be at least 1");
        }
        if self.backpressure.write_buffer == 0 {
            return invalid("backpressure.write_buffer", "must be at least 1");
        }
        if self.backpressure.stall_timeout == 0 {
            return invalid("backpressure.stall_timeout", "must be at least 1 second");
        }
        if self.auth.max_concurrent_checks == 0 {
            return invalid("auth.max_concurrent_checks", "must be at least 1");
        }
        for (index, listener) in self.listeners.iter().enumerate() {
            listener.validate(index)?;
        }
        Ok(())
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// One listener, `[[listener]]` in TOML. See [Listeners](self#listeners).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// The address to bind, e.g. `"0.0.0.0:1883"`.
    pub bind: SocketAddr,
    /// MQTT directly over the (TLS) stream, or over WebSocket.
    #[serde(default)]
    pub protocol: Protocol,
    /// The HTTP path of a WebSocket listener (default [`DEFAULT_WS_PATH`]); others get 404.
    #[serde(default)]
    pub path: Option<String>,
    /// TLS on this listener, `[listener.tls]` in TOML.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Connections open at once on this listener; 0: no limit of its own. Beyond it a new
    /// connection is closed at once.
    #[serde(default)]
    pub max_connections: usize,
    /// Whether clients without a username may connect on this listener; `None`: as
    /// `auth.allow_anonymous` says. See [Authentication](self#authentication).
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
}

/// The WebSocket path when none is configured.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

impl ListenerConfig {
    /// A plain MQTT (TCP) listener on `bind`, without a connection limit of its own.
    pub fn new(bind: SocketAddr) -> Self {
        ListenerConfig {
            bind,
            protocol: Protocol::Mqtt,
            path: None,
            tls: None,
            max_connections: 0,
            allow_anonymous: None,
        }
    }

    /// Serves MQTT over WebSocket on `path`.
    pub fn websocket(mut self, path: impl Into<String>) -> Self {
        self.protocol = Protocol::WebSocket;
        self.path = Some(path.into());
        self
    }

    /// Adds TLS.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The WebSocket path: the configured one or [`DEFAULT_WS_PATH`].
    pub fn ws_path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_WS_PATH)
    }

    /// A short description for logs: `mqtt`, `mqtt+tls`, `websocket /mqtt`, ….
    pub fn describe(&self) -> String {
        let tls = if self.tls.is_some() { "+tls" } else { "" };
        match self.protocol {
            Protocol::Mqtt => format!("mqtt{tls}"),
            Protocol::WebSocket => format!("websocket{tls} {}", self.ws_path()),
        }
    }

    fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: &str| {
            Err(ConfigError::Listener {
                index,
                bind: self.bind,
                key,
                reason: reason.to_owned(),
            })
        };
        match (&self.protocol, &self.path) {
            (Protocol::Mqtt, Some(_)) => {
                return invalid("path", "only for protocol = \"websocket\"");
            }
            (Protocol::WebSocket, Some(path)) if !path.starts_with('/') => {
                return invalid("path", "must start with `/`");
            }
            _ => {}
        }
        if let Some(tls) = &self.tls {
            if tls.require_certificate && tls.cafile.is_none() {
                return invalid(
                    "tls.require_certificate",
                    "needs tls.cafile, the CAs to verify client certificates with",
                );
            }
            if tls.use_identity_as_username && !tls.require_certificate {
                return invalid(
                    "tls.use_identity_as_username",
                    "needs tls.require_certificate = true",
                );
            }
        }
        Ok(())
    }
}

/// What a listener speaks over its (TLS) stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Protocol {
    /// MQTT packets directly on the stream (`mqtt://`, `mqtts://`).
    #[default]
    Mqtt,
    /// MQTT over WebSocket, subprotocol `mqtt` (`ws://`, `wss://`).
    #[serde(rename = "websocket")]
    WebSocket,
}

/// TLS settings of a listener, `[listener.tls]` in TOML.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM file with the server's certificate chain, leaf first.
    pub certfile: PathBuf,
    /// PEM file with the certificate's private key.
    pub keyfile: PathBuf,
    /// PEM file with the CA certificates that client certificates are verified against.
    /// Without it no client certificate is asked for.
    #[serde(default)]
    pub cafile: Option<PathBuf>,
    /// Whether a client must present a certificate signed by [`cafile`](Self::cafile): the
    /// TLS handshake fails without one. When false, one presented is still verified.
    #[serde(default)]
    pub require_certificate: bool,
    /// The subject common name (CN) of the client's certificate becomes its username, in
    /// place of the one in CONNECT (a client whose certificate has no CN is refused, CONNACK
    /// 0x87 / 5). Needs [`require_certificate`](Self::require_certificate).
    #[serde(default)]
    pub use_identity_as_username: bool,
    /// The oldest TLS version accepted.
    #[serde(default)]
    pub tls_version: TlsVersion,
}

impl TlsConfig {
    /// TLS with this certificate chain and key (PEM files), no client certificates.
    pub fn new(certfile: impl Into<PathBuf>, keyfile: impl Into<PathBuf>) -> Self {
        TlsConfig {
            certfile: certfile.into(),
            keyfile: keyfile.into(),
            cafile: None,
            require_certificate: false,
            use_identity_as_username: false,
            tls_version: TlsVersion::default(),
        }
    }

    /// Verifies client certificates against the CAs of `cafile`; `required`: the handshake
    /// fails without one.
    pub fn client_ca(mut self, cafile: impl Into<PathBuf>, required: bool) -> Self {
        self.cafile = Some(cafile.into());
        self.require_certificate = required;
        self
    }

    /// Uses the client certificate's subject CN as the username.
    pub fn use_identity_as_username(mut self, on: bool) -> Self {
        self.use_identity_as_username = on;
        self
    }

    /// Sets the oldest TLS version accepted.
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.tls_version = version;
        self
    }
}

/// A TLS protocol version, as the minimum a listener accepts (mosquitto's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    #[default]
    #[serde(rename = "tlsv1.2", alias = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "tlsv1.3", alias = "1.3")]
    Tls13,
}

/// Protocol limits, `[limits]` in TOML.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Limits {
    /// Maximum Packet Size accepted, in bytes (default 1 MiB). A packet announced larger is
    /// refused from its fixed header, before its body is buffered: DISCONNECT 0x95 (5.0) or
    /// a close. The decoder reserves room for a whole packet once its header is read, so this
    /// is also the most a connection may buffer for one incoming packet.
    pub maximum_packet_size: u32,
    /// Connections open at once, over all listeners; 0: no limit. Beyond it a new connection
    /// is closed as soon as it is accepted, before anything is read or allocated for it.
    pub max_connections: usize,
    /// The longest PUBLISH topic or SUBSCRIBE filter accepted, in bytes (at most 65535). See
    /// [`crate::config#topic-limits`] for the answers.
    pub max_topic_length: usize,
    /// The most levels a PUBLISH topic or SUBSCRIBE filter may have (`a/b/c` has 3); 0: no
    /// limit.
    pub max_topic_levels: usize,
    /// Subscriptions per client; 0: no limit. A SUBSCRIBE for a new filter beyond it gets
    /// SUBACK 0x97 Quota exceeded (5.0) or 0x80 (3.x) for that filter; replacing an existing
    /// subscription is always allowed.
    pub max_subscriptions: usize,
    /// PUBLISH packets per second a connection may send (a token bucket holding one second's
    /// worth); 0: no limit. A client above it is not dropped: the broker stops reading its
    /// socket until the rate is back under the limit, and does not count that pause against
    /// its keep alive.
    pub max_inbound_messages_per_second: u32,
    /// Bytes per second a connection may send, limited like
    /// [`max_inbound_messages_per_second`](Self::max_inbound_messages_per_second); 0: no
    /// limit.
    pub max_inbound_bytes_per_second: u32,
    /// Receive Maximum announced to MQTT 5.0 clients.
    pub receive_maximum: u16,
    /// Maximum QoS accepted from clients (0 to 2).
    pub maximum_qos: u8,
    /// Whether retained messages are accepted.
    pub retain_available: bool,
    /// Topic Alias Maximum announced to MQTT 5.0 clients.
    pub topic_alias_maximum: u16,
    /// Whether wildcard subscriptions are accepted (CONNACK Wildcard Subscription Available;
    /// otherwise SUBACK 0xA2, 3.x: 0x80).
    pub wildcard_subscription_available: bool,
    /// Whether Subscription Identifiers are accepted (CONNACK Subscription Identifiers
    /// Available; otherwise SUBACK 0xA1 for every filter of a SUBSCRIBE that has one).
    pub subscription_identifiers_available: bool,
    /// Whether shared subscriptions are accepted (CONNACK Shared Subscription Available;
    /// otherwise SUBACK 0x9E).
    pub shared_subscription_available: bool,
    /// The longest keep alive granted, in seconds. A 5.0 client asking more is told this one
    /// in CONNACK's Server Keep Alive; a 3.x client asking more is refused with return code 2
    /// (identifier rejected, as mosquitto does: 3.x has no way to tell it).
    pub max_keepalive: u16,
    /// Whether a client may ask for keep alive 0 (no keep alive). When false, a 5.0 client
    /// asking 0 gets [`max_keepalive`](Self::max_keepalive) as Server Keep Alive and a 3.x
    /// client is refused like one asking too much.
    pub allow_zero_keepalive: bool,
    /// Seconds to wait for CONNECT after the transport connected; 0 waits for ever.
    pub connect_timeout: u64,
    /// The longest Session Expiry Interval granted, in seconds.
    pub max_session_expiry: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            maximum_packet_size: DEFAULT_MAXIMUM_PACKET_SIZE,
            max_connections: 0,
            max_topic_length: usize::from(u16::MAX),
            max_topic_levels: 128,
            max_subscriptions: 0,
            max_inbound_messages_per_second: 0,
            max_inbound_bytes_per_second: 0,
            receive_maximum: u16::MAX,
            maximum_qos: 2,
            retain_available: true,
            topic_alias_maximum: 0,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            shared_subscription_available: true,
            max_keepalive: u16::MAX,
            allow_zero_keepalive: true,
            connect_timeout: 10,
            max_session_expiry: u32::MAX,
        }
    }
}

/// The default [`Limits::maximum_packet_size`]: 1 MiB.
pub const DEFAULT_MAXIMUM_PACKET_SIZE: u32 = 1 << 20;

/// Per-session delivery limits, `[session]` in TOML.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SessionLimits {
    /// Outgoing QoS 1/2 messages in flight per client, on top of its Receive Maximum.
    pub max_inflight: u16,
    /// Messages queued per session beyond the in-flight window or while the client is away.
    pub max_queued_messages: usize,
    /// Bytes (topic + payload) queued per session.
    pub max_queued_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_inflight: u16::MAX,
            max_queued_messages: 1000,
            max_queued_bytes: 16 << 20,
        }
    }
}

/// Per-session mailbox limits, `[mailbox]` in TOML: how many routed messages may wait for
/// the connection's task to hand them to its session engine.
///
/// A message beyond either limit puts back-pressure on its publisher; a **QoS 0** one is
/// dropped and counted ([`Stats::dropped_qos0`](crate::Stats)) once its subscriber sheds.
/// See [the policy](self#memory-bounds-and-slow-consumers).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MailboxLimits {
    /// Messages waiting at most.
    pub max_messages: usize,
    /// Bytes (topic + payload) waiting at most.
    pub max_bytes: usize,
}

impl Default for MailboxLimits {
    fn default() -> Self {
        MailboxLimits {
            max_messages: 1024,
            max_bytes: 16 << 20,
        }
    }
}

/// Slow consumers, `[backpressure]` in TOML. See
/// [the policy](self#memory-bounds-and-slow-consumers).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Backpressure {
    /// Bytes of encoded packets waiting for a client's socket at which its connection stops
    /// reading from the client and taking messages from its mailbox (at least 1).
    pub write_buffer: usize,
    /// Seconds a client's socket may accept no byte while the broker has some to write, and
    /// that a publisher may wait for room in a full mailbox, before the slow client is
    /// disconnected (at least 1). Also bounds the final flush of a closing connection.
    pub stall_timeout: u64,
    /// Milliseconds a QoS 0 publish may wait for room in a full mailbox; past it the
    /// mailbox's consumer drops QoS 0 beyond its limits until it has emptied it (0: QoS 0
    /// never waits and is dropped beyond the limits at once).
    pub qos0_wait_ms: u64,
}

impl Default for Backpressure {
    fn default() -> Self {
        Backpressure {
            write_buffer: 64 << 10,
            stall_timeout: 30,
            qos0_wait_ms: 1000,
        }
    }
}

impl Backpressure {
    /// The QoS 0 wait as a duration.
    pub fn qos0_wait(&self) -> Duration {
        Duration::from_millis(self.qos0_wait_ms)
    }

    /// The stall timeout as a duration.
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout)
    }
}

/// Graceful shutdown, `[shutdown]` in TOML.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Shutdown {
    /// Seconds given to connections to send DISCONNECT and flush.
    pub timeout: u64,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { timeout: 5 }
    }
}

impl Shutdown {
    /// The timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// The Prometheus metrics endpoint, `[metrics]` in TOML.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics` (the OpenMetrics text format Prometheus reads; the
    /// names are listed in [`crate::metrics`]); `None` (the default): no endpoint.
    pub bind: Option<SocketAddr>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key or a value of the wrong type.
    #[error("line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A listener's setting is invalid, or one of its files cannot be used.
    #[error("listener {index} ({bind}): {key}: {reason}")]
    Listener {
        /// The listener's position among the `[[listener]]` tables, from 0.
        index: usize,
        /// Its address.
        bind: SocketAddr,
        /// The key, as in its table (`path`, `tls.certfile`, …).
        key: &'static str,
        /// What is wrong (for a file: its path and why it cannot be used).
        reason: String,
    },
    /// The password or ACL file of `[auth]` cannot be used.
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthFileError),
    /// A value is out of range.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, as `table.key`.
        key: &'static str,
        /// What is allowed.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default_on_loopback() {
        let config = Config::from_toml_str("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.bind_addresses(), ["127.0.0.1:1883".parse().unwrap()]);
    }

    #[test]
    fn persistence_keys_parse_and_embedded_configs_stay_in_memory() {
        let config = Config::from_toml_str("").unwrap();
        assert!(config.persistence);
        assert_eq!(config.persistence_location, PathBuf::from("tern-data"));
        let config = Config::from_toml_str(
            "persistence = false\npersistence_location = \"/var/lib/ternd\"\n\
             persistence_group_commit_ms = 5\npersistence_group_commit_ops = 10\n\
             persistence_snapshot_ms = 50\n",
        )
        .unwrap();
        assert!(!config.persistence);
        assert_eq!(config.persistence_location, PathBuf::from("/var/lib/ternd"));
        assert_eq!(
            (
                config.persistence_group_commit_ms,
                config.persistence_group_commit_ops,
                config.persistence_snapshot_ms
            ),
            (5, 10, 50)
        );
        assert!(!Config::with_listeners(["127.0.0.1:0".parse().unwrap()]).persistence);
        let zero = Config::from_toml_str("persistence_group_commit_ops = 0").unwrap();
        assert!(matches!(
            zero.validate(),
            Err(ConfigError::Invalid {
                key: "persistence_group_commit_ops",
                ..
            })
        ));
    }

    #[test]
    fn full_example_parses() {
        let text = "sys_interval = 3\n[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"[::1]:1884\"\n\
                    [limits]\nmaximum_qos = 1\n[session]\nmax_queued_messages = 5\n\
                    [mailbox]\nmax_bytes = 100\n[backpressure]\nwrite_buffer = 10\n\
                    stall_timeout = 2\n[shutdown]\ntimeout = 1\n";
        let config = Config::from_toml_str(text).unwrap();
        assert_eq!(config.bind_addresses().len(), 2);
        assert_eq!(config.limits.maximum_qos, 1);
        assert_eq!(config.session.max_queued_messages, 5);
        assert_eq!(config.mailbox.max_bytes, 100);
        assert_eq!(config.shutdown.timeout(), Duration::from_secs(1));
        assert_eq!(config.sys_interval, 3);
        assert_eq!(config.backpressure.write_buffer, 10);
        assert_eq!(config.backpressure.stall_timeout(), Duration::from_secs(2));
        config.validate().unwrap();
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "[limits]\nmaximum_qos = 1\nmaximum_qso = 2\n";
        let err = Config::from_toml_str(text).unwrap_err();
        let ConfigError::Parse { line, message, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, 3);
        assert!(message.contains("maximum_qso"), "{message}");
    }

    #[test]
    fn wrong_type_names_line() {
        let err = Config::from_toml_str("\n\n[[listener]]\nbind = 5\n").unwrap_err();
        let ConfigError::Parse { line, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(line, 4);
    }

    #[test]
    fn out_of_range_is_invalid() {
        let config = Config::from_toml_str("[limits]\nmaximum_qos = 3\n").unwrap();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                key: "limits.maximum_qos",
                ..
            })
        ));
        let config =
            Config::from_toml_str("[limits]\nmax_keepalive = 0\nallow_zero_keepalive = false\n")
                .unwrap();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                key: "limits.max_keepalive",
                ..
            })
        ));
        let config = Config::from_toml_str("[backpressure]\nstall_timeout = 0\n").unwrap();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                key: "backpressure.stall_timeout",
                ..
            })
        ));
    }

    #[test]
    fn listener_transports_parse_and_validate() {
        // The "Listeners" example of this module, without its `//! ` prefixes.
        let source = include_str!("config.rs");
        let example: String = source
            .lines()
            .skip_while(|l| *l != "//! # Listeners")
            .skip_while(|l| *l != "//! ```toml")
            .skip(1)
            .take_while(|l| *l != "//! ```")
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        let config = Config::from_toml_str(&example).unwrap();
        config.validate().unwrap();
        let [mqtts, ws, wss] = &config.listeners[..] else {
            panic!("{config:?}")
        };
        let tls = mqtts.tls.as_ref().unwrap();
        assert_eq!(mqtts.protocol, Protocol::Mqtt);
        assert!(tls.require_certificate && tls.use_identity_as_username);
        assert_eq!(tls.tls_version, TlsVersion::Tls12);
        assert_eq!(tls.cafile.as_deref(), Some(Path::new("/etc/ternd/ca.pem")));
        assert_eq!((ws.protocol, ws.ws_path()), (Protocol::WebSocket, "/mqtt"));
        assert!(ws.tls.is_none());
        assert_eq!(wss.describe(), "websocket+tls /mqtt");
        let wss_tls = wss.tls.as_ref().unwrap();
        assert!(wss_tls.cafile.is_none() && !wss_tls.require_certificate);

        let v13 = "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncertfile = \"c\"\n\
                   keyfile = \"k\"\ntls_version = \"1.3\"\n";
        let config = Config::from_toml_str(v13).unwrap();
        assert_eq!(
            config.listeners[0].tls.as_ref().unwrap().tls_version,
            TlsVersion::Tls13
        );
    }

    #[test]
    fn listener_errors_name_the_key() {
        let unknown = "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncertfile = \"c\"\n\
                       keyfile = \"k\"\nrequire_certificates = true\n";
        let err = Config::from_toml_str(unknown).unwrap_err();
        assert!(err.to_string().contains("require_certificates"), "{err}");
        let bad_protocol = "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n";
        let err = Config::from_toml_str(bad_protocol).unwrap_err();
        assert!(err.to_string().contains("http"), "{err}");
        let bad_version = "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncertfile = \"c\"\n\
                           keyfile = \"k\"\ntls_version = \"tlsv1.1\"\n";
        assert!(Config::from_toml_str(bad_version).is_err());
        let missing_key =
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncertfile = \"c\"\n";
        let err = Config::from_toml_str(missing_key).unwrap_err();
        assert!(err.to_string().contains("keyfile"), "{err}");

        let cases = [
            ("path = \"/x\"\n", "path"),
            ("protocol = \"websocket\"\npath = \"x\"\n", "path"),
            (
                "[listener.tls]\ncertfile = \"c\"\nkeyfile = \"k\"\nrequire_certificate = true\n",
                "tls.require_certificate",
            ),
            (
                "[listener.tls]\ncertfile = \"c\"\nkeyfile = \"k\"\ncafile = \"a\"\n\
                 use_identity_as_username = true\n",
                "tls.use_identity_as_username",
            ),
        ];
        for (text, expected) in cases {
            let text = format!("[[listener]]\nbind = \"127.0.0.1:0\"\n{text}");
            let config = Config::from_toml_str(&text).unwrap();
            match config.validate() {
                Err(ConfigError::Listener { index: 0, key, .. }) => {
                    assert_eq!(key, expected, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn auth_example_parses() {
        // The "Authentication" example of this module, without its `//! ` prefixes.
        let source = include_str!("config.rs");
        let example: String = source
            .lines()
            .skip_while(|l| *l != "//! # Authentication")
            .skip_while(|l| *l != "//! ```toml")
            .skip(1)
            .take_while(|l| *l != "//! ```")
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        let config = Config::from_toml_str(&example).unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.auth.password_file.as_deref(),
            Some(Path::new("/etc/ternd/passwd"))
        );
        assert_eq!(
            config.auth.acl_file.as_deref(),
            Some(Path::new("/etc/ternd/acl"))
        );
        assert_eq!(config.auth.allow_anonymous, Some(false));
        assert_eq!(config.listeners[0].allow_anonymous, Some(true));
        let err = Config::from_toml_str("[auth]\npasword_file = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("pasword_file"), "{err}");
    }

    #[test]
    fn documented_example_is_the_default() {
        // The example at the top of this module, without its `//! ` prefixes.
        let source = include_str!("config.rs");
        let example: String = source
            .lines()
            .skip_while(|l| *l != "//! ```toml")
            .skip(1)
            .take_while(|l| *l != "//! ```")
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        let config = Config::from_toml_str(&example).unwrap();
        config.validate().unwrap();
        assert_eq!(
            config,
            Config {
                listeners: vec![ListenerConfig::new("0.0.0.0:1883".parse().unwrap())],
                ..Config::default()
            }
        );
    }
}
