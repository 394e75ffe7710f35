//! The client's configuration: [`ClientBuilder`], built from a URL, plus the options of one
//! subscription ([`SubscribeOptions`]) and the offline queue's [`OverflowPolicy`].

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tern_codec::{
    Connect, ConnectProperties, MqttString, ProtocolVersion, QoS, RetainHandling,
    SubscriptionOptions, UserProperties, Will,
};
use tern_proto::{AckMode, ClientConfig};

use crate::auth::AuthHandler;
use crate::client::Client;
use crate::error::{BuildError, Error};
use crate::reconnect::ReconnectOptions;
use crate::transport::{self, Endpoint, Scheme};

/// What happens when the offline queue is full.
///
/// The offline queue is the bounded channel between the handles and the driver: messages
/// wait there while the client is offline, while the broker's Receive Maximum (or the
/// configured in-flight window) is full, and while the socket is slower than the
/// application. Nothing else buffers outgoing messages, so memory stays bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// `publish` waits for room (back-pressure on the caller). `try_publish` never waits and
    /// fails with [`Error::QueueFull`](crate::Error::QueueFull).
    #[default]
    Wait,
    /// `publish` fails at once with [`Error::QueueFull`](crate::Error::QueueFull): the newest
    /// message is refused, the queued ones are kept.
    Reject,
}

/// The options of one subscription. A [`QoS`] converts into options with that maximum QoS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    pub(crate) options: SubscriptionOptions,
    pub(crate) user_properties: UserProperties,
    pub(crate) buffer: Option<usize>,
}

impl SubscribeOptions {
    /// Options with this maximum QoS and the defaults of MQTT otherwise.
    pub fn new(qos: QoS) -> Self {
        SubscribeOptions {
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
            ..SubscribeOptions::default()
        }
    }

    /// MQTT 5.0 No Local: the broker does not send this client its own messages.
    pub fn no_local(mut self, no_local: bool) -> Self {
        self.options.no_local = no_local;
        self
    }

    /// MQTT 5.0 Retain As Published: keep the RETAIN flag of forwarded messages.
    pub fn retain_as_published(mut self, keep: bool) -> Self {
        self.options.retain_as_published = keep;
        self
    }

    /// MQTT 5.0 Retain Handling: when retained messages are sent for this subscription.
    pub fn retain_handling(mut self, handling: RetainHandling) -> Self {
        self.options.retain_handling = handling;
        self
    }

    /// Adds an MQTT 5.0 user property to the SUBSCRIBE.
    ///
    /// # Errors
    /// A name or value that is not a valid MQTT string.
    pub fn user_property(mut self, name: &str, value: &str) -> Result<Self, Error> {
        self.user_properties
            .push((MqttString::try_from(name)?, MqttString::try_from(value)?));
        Ok(self)
    }

    /// The capacity of this subscription's stream (default: the client's
    /// [`subscription_buffer`](ClientBuilder::subscription_buffer)).
    pub fn buffer(mut self, capacity: usize) -> Self {
        self.buffer = Some(capacity.max(1));
        self
    }

    /// The maximum QoS asked for.
    pub fn qos(&self) -> QoS {
        self.options.qos
    }
}

impl From<QoS> for SubscribeOptions {
    fn from(qos: QoS) -> Self {
        SubscribeOptions::new(qos)
    }
}

/// Where the trusted CA certificates come from.
#[derive(Clone, Debug)]
enum CaSource {
    File(PathBuf),
    Pem(Vec<u8>),
}

/// A client certificate chain and its key.
#[derive(Clone, Debug)]
enum ClientCert {
    Files(PathBuf, PathBuf),
    Pem(Vec<u8>, Vec<u8>),
}

/// Builds a [`Client`] from a URL and options.
///
/// URLs are `scheme://[user[:password]@]host[:port][/path]`:
///
/// | scheme | transport | default port |
/// |---|---|---|
/// | `mqtt` (`tcp`) | TCP | 1883 |
/// | `mqtts` (`ssl`, `tls`) | TLS over TCP | 8883 |
/// | `ws` | WebSocket, subprotocol `mqtt` | 80 |
/// | `wss` | WebSocket over TLS | 443 |
///
/// The WebSocket path defaults to `/mqtt`. TLS trusts the Mozilla roots of `webpki-roots`
/// unless CA certificates are given.
///
/// Defaults: MQTT 5.0, a random client identifier `tern-…`, keep alive 60 s, clean start,
/// session expiry 0, no packet size limit (the protocol's 256 MiB), outgoing topic aliases
/// when the broker allows them, automatic acknowledgements, reconnects with
/// [`ReconnectOptions::default`], an offline queue of 1000 messages with
/// [`OverflowPolicy::Wait`], subscription streams of 256 messages.
pub struct ClientBuilder {
    endpoint: Endpoint,
    url_credentials: (Option<String>, Option<String>),
    version: ProtocolVersion,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<Bytes>,
    keep_alive: Duration,
    clean_start: bool,
    session_expiry: Option<u32>,
    will: Option<Will>,
    receive_maximum: Option<u16>,
    maximum_packet_size: Option<u32>,
    topic_alias_maximum: u16,
    outgoing_topic_aliases: bool,
    max_inflight: u16,
    connect_timeout: Duration,
    ping_timeout: Option<Duration>,
    user_properties: Vec<(String, String)>,
    request_response_information: bool,
    reconnect: ReconnectOptions,
    queue_capacity: usize,
    overflow: OverflowPolicy,
    subscription_buffer: usize,
    inbound_limit: usize,
    ack_mode: AckMode,
    auth: Option<(String, Box<dyn AuthHandler>)>,
    ca: Vec<CaSource>,
    client_cert: Option<ClientCert>,
    tls_config: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("version", &self.version)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("keep_alive", &self.keep_alive)
            .field("clean_start", &self.clean_start)
            .field("session_expiry", &self.session_expiry)
            .field("reconnect", &self.reconnect)
            .field("queue_capacity", &self.queue_capacity)
            .field("overflow", &self.overflow)
            .field("ack_mode", &self.ack_mode)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder for the broker at `url` (see the table above).
    ///
    /// # Errors
    /// A URL that does not parse or has an unknown scheme.
    pub fn new(url: &str) -> Result<Self, BuildError> {
        let (endpoint, user, password) = transport::parse_url(url)?;
        Ok(ClientBuilder {
            endpoint,
            url_credentials: (user, password),
            version: ProtocolVersion::V5,
            client_id: None,
            username: None,
            password: None,
            keep_alive: Duration::from_secs(60),
            clean_start: true,
            session_expiry: None,
            will: None,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: 0,
            outgoing_topic_aliases: true,
            max_inflight: u16::MAX,
            connect_timeout: Duration::from_secs(30),
            ping_timeout: None,
            user_properties: Vec::new(),
            request_response_information: false,
            reconnect: ReconnectOptions::default(),
            queue_capacity: 1000,
            overflow: OverflowPolicy::Wait,
            subscription_buffer: 256,
            inbound_limit: 1024,
            ack_mode: AckMode::Auto,
            auth: None,
            ca: Vec::new(),
            client_cert: None,
            tls_config: None,
        })
    }

    /// The protocol version: [`ProtocolVersion::V5`] (default) or
    /// [`ProtocolVersion::V3_1_1`] (3.1 works too).
    pub fn protocol(mut self, version: ProtocolVersion) -> Self {
        self.version = version;
        self
    }

    /// The client identifier (default: `tern-` and 16 random hex digits). An empty one asks
    /// an MQTT 5.0 broker to assign one.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// User name and password (overrides those of the URL).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// A user name without password.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The keep alive (whole seconds, at most 65,535 s; zero turns pings off). Default 60 s.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Clean Start (5.0) / Clean Session (3.1.1) of the first connection; default true.
    ///
    /// With MQTT 5.0 reconnections always use Clean Start 0, so the session survives
    /// whenever the [session expiry](Self::session_expiry) allows it. With 3.1.1 every
    /// connection uses this value (Clean Session 0 makes the broker keep the session for ever).
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }

    /// MQTT 5.0 Session Expiry Interval: how long the broker keeps the session after a
    /// connection ends (whole seconds; `u32::MAX` seconds or more: never expires). Default 0.
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = Some(u32::try_from(expiry.as_secs()).unwrap_or(u32::MAX));
        self
    }

    /// The Will Message, published by the broker when the connection ends uncleanly.
    ///
    /// # Errors
    /// A topic that is not a valid topic name.
    pub fn will(
        mut self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<Self, BuildError> {
        tern_topic::validate_topic_name(topic).map_err(|_| BuildError::InvalidValue {
            field: "will topic",
            reason: "not a valid topic name",
        })?;
        self.will = Some(Will {
            topic: mqtt_string("will topic", topic)?,
            payload: payload.into(),
            qos,
            retain,
            properties: Default::default(),
        });
        Ok(self)
    }

    /// A Will Message with every MQTT 5.0 property.
    pub fn will_message(mut self, will: Will) -> Self {
        self.will = Some(will);
        self
    }

    /// MQTT 5.0 Receive Maximum announced to the broker: inbound QoS 1/2 messages
    /// unacknowledged at once. Default: the [inbound limit](Self::inbound_limit).
    pub fn receive_maximum(mut self, maximum: u16) -> Self {
        self.receive_maximum = Some(maximum.max(1));
        self
    }

    /// MQTT 5.0 Maximum Packet Size this client accepts. Default: no limit beyond the
    /// protocol's.
    pub fn maximum_packet_size(mut self, maximum: u32) -> Self {
        self.maximum_packet_size = Some(maximum);
        self
    }

    /// MQTT 5.0 Topic Alias Maximum this client accepts from the broker. Default 0.
    pub fn topic_alias_maximum(mut self, maximum: u16) -> Self {
        self.topic_alias_maximum = maximum;
        self
    }

    /// Whether the client uses MQTT 5.0 topic aliases for the topics it publishes, within
    /// the broker's Topic Alias Maximum. Default true.
    pub fn topic_aliases(mut self, enabled: bool) -> Self {
        self.outgoing_topic_aliases = enabled;
        self
    }

    /// A cap on outgoing QoS 1/2 messages in flight, below the broker's Receive Maximum
    /// (MQTT 3.1.1 has none). Default 65,535.
    pub fn max_inflight(mut self, maximum: u16) -> Self {
        self.max_inflight = maximum.max(1);
        self
    }

    /// How long establishing the transport and receiving CONNACK may take. Default 30 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for PINGRESP; default one keep alive period.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = Some(timeout);
        self
    }

    /// Adds an MQTT 5.0 user property to CONNECT.
    pub fn connect_user_property(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.user_properties.push((name.into(), value.into()));
        self
    }

    /// Asks an MQTT 5.0 broker for Response Information in CONNACK (a topic prefix for
    /// responses, see [`ConnectionEvent::Connected`](crate::ConnectionEvent)).
    pub fn request_response_information(mut self, request: bool) -> Self {
        self.request_response_information = request;
        self
    }

    /// Reconnection; [`ReconnectOptions::disabled`] turns it off.
    pub fn reconnect(mut self, options: ReconnectOptions) -> Self {
        self.reconnect = options;
        self
    }

    /// The offline queue: how many messages may wait for the driver, and what happens when
    /// it is full. Default 1000, [`OverflowPolicy::Wait`].
    pub fn offline_queue(mut self, capacity: usize, policy: OverflowPolicy) -> Self {
        self.queue_capacity = capacity.max(1);
        self.overflow = policy;
        self
    }

    /// The default capacity of a subscription stream and of the catch-all stream. Default
    /// 256.
    pub fn subscription_buffer(mut self, capacity: usize) -> Self {
        self.subscription_buffer = capacity.max(1);
        self
    }

    /// Inbound messages that may wait in the driver for a full stream. Default 1024.
    ///
    /// Messages wait here, in arrival order, behind the first one whose stream is full. The
    /// driver never stops reading the socket for a full stream below this limit, so
    /// acknowledgements keep arriving and a handler that publishes and awaits the
    /// acknowledgement cannot deadlock. QoS 1/2 messages waiting here are acknowledged only
    /// once they are in their streams, so the broker's window (the Receive Maximum announced,
    /// equal to this limit by default in MQTT 5.0) bounds them.
    ///
    /// Overflow policy: once `limit` messages wait, further QoS 0 messages are dropped (at
    /// most once) until the streams catch up, and when `limit` QoS 1/2 messages wait the
    /// driver stops reading the socket until a stream has room (only possible in 3.1.1, whose
    /// brokers bound their window themselves, or with a Receive Maximum above this limit).
    pub fn inbound_limit(mut self, limit: usize) -> Self {
        self.inbound_limit = limit.max(1);
        self
    }

    /// Acknowledgement of inbound QoS 1/2 messages: [`AckMode::Auto`] (default; once the
    /// message is in its streams) or [`AckMode::Manual`] (the application calls
    /// [`Message::ack`](crate::Message::ack); acknowledgements still leave in the order the
    /// messages arrived [MQTT-4.6.0-2]).
    pub fn ack_mode(mut self, mode: AckMode) -> Self {
        self.ack_mode = mode;
        self
    }

    /// MQTT 5.0 enhanced authentication with this Authentication Method and hook.
    pub fn authentication(
        mut self,
        method: impl Into<String>,
        handler: impl AuthHandler + 'static,
    ) -> Self {
        self.auth = Some((method.into(), Box::new(handler)));
        self
    }

    /// Trusts the CA certificates of this PEM file (instead of the webpki roots). May be
    /// called more than once.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca.push(CaSource::File(path.into()));
        self
    }

    /// Trusts the CA certificates of this PEM text (instead of the webpki roots).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca.push(CaSource::Pem(pem.into()));
        self
    }

    /// Authenticates with this client certificate chain and private key (PEM files).
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some(ClientCert::Files(cert.into(), key.into()));
        self
    }

    /// Authenticates with this client certificate chain and private key (PEM text).
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_cert = Some(ClientCert::Pem(cert.into(), key.into()));
        self
    }

    /// A complete rustls configuration, replacing the CA and client certificate options.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// Spawns the driver and returns at once: the client connects in the background and
    /// reconnects as configured; messages published meanwhile wait in the offline queue.
    ///
    /// # Errors
    /// An invalid option, unreadable certificates, or no tokio runtime.
    pub fn build(self) -> Result<Client, BuildError> {
        let (client, _first) = self.spawn(false)?;
        Ok(client)
    }

    /// Spawns the driver and waits for the first connection: Ok once CONNACK accepted it.
    /// If the first attempt fails the client stops and the reason is returned (later losses
    /// are reconnected as configured).
    ///
    /// # Errors
    /// [`Error::Connect`] with the reason of the failed first attempt, or an invalid option.
    pub async fn connect(self) -> Result<Client, ConnectError> {
        let (client, first) = self.spawn(true)?;
        match first {
            Some(rx) => match rx.await {
                Ok(Ok(())) => Ok(client),
                Ok(Err(reason)) => Err(ConnectError::Connect(Error::Connect(reason))),
                Err(_) => Err(ConnectError::Connect(Error::Closed)),
            },
            None => Ok(client),
        }
    }

    fn spawn(
        self,
        wait: bool,
    ) -> Result<(Client, Option<crate::driver::FirstConnect>), BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let settings = self.settings()?;
        Ok(crate::client::spawn(&runtime, settings, wait))
    }

    pub(crate) fn settings(self) -> Result<Settings, BuildError> {
        let keep_alive =
            u16::try_from(self.keep_alive.as_secs()).map_err(|_| BuildError::InvalidValue {
                field: "keep alive",
                reason: "more than 65,535 seconds",
            })?;
        let client_id = match self.client_id {
            Some(id) => id,
            None => format!("tern-{:016x}", rand::random::<u64>()),
        };
        let v5 = self.version.is_v5();
        let username = self.username.or(self.url_credentials.0);
        let password = self
            .password
            .or_else(|| self.url_credentials.1.map(Bytes::from));
        let mut properties = ConnectProperties::default();
        if v5 {
            properties.session_expiry_interval = self.session_expiry.filter(|&s| s != 0);
            let receive_maximum = self
                .receive_maximum
                .unwrap_or_else(|| u16::try_from(self.inbound_limit).unwrap_or(u16::MAX));
            properties.receive_maximum =
                NonZeroU16::new(receive_maximum).filter(|r| r.get() != u16::MAX);
            properties.maximum_packet_size = self.maximum_packet_size.and_then(NonZeroU32::new);
            properties.topic_alias_maximum = Some(self.topic_alias_maximum).filter(|&m| m != 0);
            properties.request_response_information =
                self.request_response_information.then_some(true);
            for (name, value) in &self.user_properties {
                properties.user_properties.push((
                    mqtt_string("user property", name)?,
                    mqtt_string("user property", value)?,
                ));
            }
        } else if self.session_expiry.is_some_and(|s| s != 0)
            || !self.user_properties.is_empty()
            || self.auth.is_some()
        {
            return Err(BuildError::InvalidValue {
                field: "protocol",
                reason: "session expiry, user properties and enhanced authentication need MQTT 5.0",
            });
        }
        let mut auth_handler = None;
        if let Some((method, handler)) = self.auth {
            properties.authentication_method = Some(mqtt_string("authentication method", &method)?);
            auth_handler = Some(handler);
        }
        let connect = Connect {
            protocol: self.version,
            clean_start: self.clean_start,
            keep_alive,
            client_id: mqtt_string("client id", &client_id)?,
            will: self.will,
            username: username.map(|u| mqtt_string("user name", &u)).transpose()?,
            password,
            properties,
        };
        let mut config = ClientConfig::new(self.version, connect.client_id.clone());
        config.connect = connect;
        // The driver acknowledges each message itself once it is in its streams (or the
        // application does): see `inbound_limit`.
        config.ack_mode = AckMode::Manual;
        config.outgoing_topic_aliases = self.outgoing_topic_aliases;
        config.max_inflight = self.max_inflight;
        config.connect_timeout = Some(self.connect_timeout);
        config.ping_timeout = self.ping_timeout;
        // Probe the CONNECT once so that an unencodable one fails here, not in the driver.
        tern_codec::Packet::from(config.connect.clone())
            .encoded_len(self.version)
            .map_err(|_| BuildError::InvalidValue {
                field: "connect",
                reason: "the CONNECT packet cannot be encoded for this protocol version",
            })?;

        let tls = match self.endpoint.scheme {
            Scheme::Mqtts | Scheme::Wss => Some(tls_connector(
                self.tls_config,
                &self.ca,
                self.client_cert.as_ref(),
            )?),
            Scheme::Mqtt | Scheme::Ws => None,
        };
        Ok(Settings {
            endpoint: self.endpoint,
            tls,
            config,
            connect_timeout: self.connect_timeout,
            reconnect: self.reconnect,
            queue_capacity: self.queue_capacity,
            overflow: self.overflow,
            subscription_buffer: self.subscription_buffer,
            inbound_limit: self.inbound_limit,
            ack_mode: self.ack_mode,
            auth: auth_handler,
        })
    }
}

/// [`ClientBuilder::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The first connection failed ([`Error::Connect`] holds the reason).
    #[error(transparent)]
    Connect(Error),
}

impl ConnectError {
    /// The reason of the failed first connection, if that is what failed.
    pub fn reason(&self) -> Option<&crate::DisconnectReason> {
        match self {
            ConnectError::Connect(Error::Connect(reason)) => Some(reason),
            _ => None,
        }
    }
}

/// Everything the driver needs, checked.
pub(crate) struct Settings {
    pub(crate) endpoint: Endpoint,
    pub(crate) tls: Option<tokio_rustls::TlsConnector>,
    pub(crate) config: ClientConfig,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: ReconnectOptions,
    pub(crate) queue_capacity: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) subscription_buffer: usize,
    pub(crate) inbound_limit: usize,
    pub(crate) ack_mode: AckMode,
    pub(crate) auth: Option<Box<dyn AuthHandler>>,
}

fn mqtt_string(field: &'static str, s: &str) -> Result<MqttString, BuildError> {
    MqttString::try_from(s).map_err(|source| BuildError::InvalidString { field, source })
}

fn tls_connector(
    config: Option<Arc<rustls::ClientConfig>>,
    ca: &[CaSource],
    client_cert: Option<&ClientCert>,
) -> Result<tokio_rustls::TlsConnector, BuildError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    if let Some(config) = config {
        return Ok(tokio_rustls::TlsConnector::from(config));
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| BuildError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    let certs = |pem: &[u8], what: &str| -> Result<Vec<CertificateDer<'static>>, BuildError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BuildError::Tls(format!("{what}: {e}")))?;
        if certs.is_empty() {
            return Err(BuildError::Tls(format!(
                "{what}: no certificate in the PEM"
            )));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    if ca.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for source in ca {
        let pem = match source {
            CaSource::File(path) => read(path)?,
            CaSource::Pem(pem) => pem.clone(),
        };
        for cert in certs(&pem, "CA certificates")? {
            roots
                .add(cert)
                .map_err(|e| BuildError::Tls(format!("CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            let (cert_pem, key_pem) = match cert {
                ClientCert::Files(c, k) => (read(c)?, read(k)?),
                ClientCert::Pem(c, k) => (c.clone(), k.clone()),
            };
            let chain = certs(&cert_pem, "client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| BuildError::Tls(format!("client key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| BuildError::Tls(format!("client certificate: {e}")))?
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
