//! The transports of configured listeners: TLS (rustls with the `ring` provider), MQTT over
//! WebSocket and over WebSocket over TLS, all feeding the one connection task.
//!
//! The accept loop only accepts: each TCP connection gets its own task, which runs the TLS
//! and WebSocket handshakes (bounded by `limits.connect_timeout` and by shutdown) and then
//! [`connection::run`] over the resulting byte stream, with a [`ConnectionInfo`] that tells
//! the connection what the transport learnt (the peer, the transport, the verified client
//! certificate's identity).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tern_codec::MqttString;
use tern_ws::WsStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::broker::{Shared, TaskGuard};
use crate::config::{ConfigError, Limits, ListenerConfig, Protocol, TlsConfig, TlsVersion};
use crate::connection;

/// The transport a connection came over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    WebSocket,
    /// MQTT over WebSocket over TLS.
    WebSocketTls,
    /// A stream given to [`BrokerHandle::serve`](crate::BrokerHandle::serve) by a custom
    /// [`Listener`](crate::Listener) or to
    /// [`serve_connection`](crate::BrokerHandle::serve_connection).
    Other,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::WebSocket => "ws",
            Transport::WebSocketTls => "wss",
            Transport::Other => "other",
        })
    }
}

/// What the transport knows about a connection, handed to its task with the stream.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionInfo {
    /// The peer's address.
    pub(crate) peer: SocketAddr,
    pub(crate) transport: Transport,
    /// The subject CN of the client certificate, verified against the listener's CA. A
    /// client with one is identified by its certificate.
    pub(crate) tls_identity: Option<String>,
    /// `use_identity_as_username`: the identity replaces the username of CONNECT, and the
    /// client counts as authenticated by its certificate.
    pub(crate) identity_as_username: bool,
    /// The local address of the listener that accepted it (`None` for
    /// [`serve_connection`](crate::BrokerHandle::serve_connection)), for the logs: shared by
    /// the listener's connections, a word in each instead of a `SocketAddr`.
    pub(crate) listener: Option<Arc<SocketAddr>>,
    /// The listener's `allow_anonymous` (`None`: the broker's default).
    pub(crate) allow_anonymous: Option<bool>,
}

impl ConnectionInfo {
    /// The local address of the listener that accepted the connection, if one did.
    pub(crate) fn listener_addr(&self) -> Option<SocketAddr> {
        self.listener.as_deref().copied()
    }

    /// A connection without TLS identity.
    pub(crate) fn new(peer: SocketAddr, transport: Transport) -> Self {
        ConnectionInfo {
            peer,
            transport,
            tls_identity: None,
            identity_as_username: false,
            listener: None,
            allow_anonymous: None,
        }
    }

    /// The username the connection uses: the certificate's identity when the listener says
    /// so, otherwise CONNECT's. `Err` when the identity is to be used and there is none (a
    /// certificate without a CN): the client must be refused.
    pub(crate) fn username(
        &self,
        from_connect: Option<&MqttString>,
    ) -> Result<Option<MqttString>, ()> {
        if !self.identity_as_username {
            return Ok(from_connect.cloned());
        }
        let identity = self.tls_identity.as_deref().ok_or(())?;
        MqttString::try_from(identity).map(Some).map_err(|_| ())
    }
}

/// A connected client, as [`BrokerHandle::clients`](crate::BrokerHandle::clients) shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The client identifier (assigned by the broker if the client sent none).
    pub client_id: String,
    /// The username the broker uses for it: CONNECT's, or the certificate's CN on a listener
    /// with `use_identity_as_username`.
    pub username: Option<String>,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The transport it connected over.
    pub transport: Transport,
    /// The subject CN of its verified client certificate, if it presented one.
    pub tls_identity: Option<String>,
}

/// How a configured listener turns an accepted TCP connection into an MQTT byte stream.
#[derive(Clone)]
pub(crate) struct Acceptor {
    tls: Option<TlsAcceptor>,
    /// The WebSocket path, for a WebSocket listener.
    ws_path: Option<Arc<str>>,
    ws_config: WebSocketConfig,
    identity_as_username: bool,
    handshake_timeout: Option<Duration>,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("tls", &self.tls.is_some())
            .field("ws_path", &self.ws_path)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// The acceptor of `listener` (the `index`th): reads its certificate files. `None` for a
    /// plain MQTT listener, which needs no handshake.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Listener`] naming the key and the file that cannot be used.
    pub(crate) fn new(
        index: usize,
        listener: &ListenerConfig,
        limits: &Limits,
    ) -> Result<Option<Acceptor>, ConfigError> {
        let tls = listener
            .tls
            .as_ref()
            .map(|tls| {
                server_config(tls).map_err(|(key, reason)| ConfigError::Listener {
                    index,
                    bind: listener.bind,
                    key,
                    reason,
                })
            })
            .transpose()?;
        let ws_path = match listener.protocol {
            Protocol::Mqtt if tls.is_none() => return Ok(None),
            Protocol::Mqtt => None,
            Protocol::WebSocket => Some(Arc::from(listener.ws_path())),
        };
        // A message may carry the largest packet allowed (with its longest fixed header); a
        // larger one is refused before it is buffered.
        let max_message = (limits.maximum_packet_size as usize).saturating_add(5);
        let mut ws_config = WebSocketConfig::default();
        ws_config.max_message_size = Some(max_message);
        ws_config.max_frame_size = Some(max_message);
        Ok(Some(Acceptor {
            identity_as_username: listener
                .tls
                .as_ref()
                .is_some_and(|t| t.use_identity_as_username),
            tls: tls.map(|c| TlsAcceptor::from(Arc::new(c))),
            ws_path,
            ws_config,
            handshake_timeout: (limits.connect_timeout > 0)
                .then(|| Duration::from_secs(limits.connect_timeout)),
        }))
    }

    /// Runs the handshakes of one accepted connection and then the connection itself.
    ///
    /// The handshake and the connection are boxed: this future is one type for every kind of
    /// listener, and inline it would be as large as its largest state, a TLS and WebSocket
    /// handshake (about 20 KB for every TLS or WebSocket connection, for its whole life).
    /// Boxed, the task holds little more than a pointer while the connection runs, the
    /// connection future has its own kind's size, and the handshake's memory is freed when
    /// the handshake ends.
    pub(crate) async fn run(
        self,
        shared: Arc<Shared>,
        tcp: TcpStream,
        mut info: ConnectionInfo,
        guard: TaskGuard,
    ) {
        let peer = info.peer;
        info.identity_as_username = self.identity_as_username;
        let connection: Pin<Box<dyn Future<Output = ()> + Send>> = match (&self.tls, &self.ws_path)
        {
            (Some(tls), None) => {
                info.transport = Transport::Tls;
                let handshake = tls.accept(tcp);
                let Some(stream) = Box::pin(self.bounded(&shared, peer, "TLS", handshake)).await
                else {
                    return;
                };
                info.tls_identity = identity(&stream);
                Box::pin(connection::run(shared, stream, info, guard))
            }
            (None, Some(path)) => {
                info.transport = Transport::WebSocket;
                let ws = self.websocket(tcp, path);
                let Some(stream) = Box::pin(self.bounded(&shared, peer, "WebSocket", ws)).await
                else {
                    return;
                };
                Box::pin(connection::run(shared, stream, info, guard))
            }
            (Some(tls), Some(path)) => {
                info.transport = Transport::WebSocketTls;
                let handshakes = async {
                    let stream = tls.accept(tcp).await?;
                    self.websocket(stream, path).await
                };
                let bounded = self.bounded(&shared, peer, "TLS/WebSocket", handshakes);
                let Some(stream) = Box::pin(bounded).await else {
                    return;
                };
                info.tls_identity = identity(stream.get_ref());
                Box::pin(connection::run(shared, stream, info, guard))
            }
            (None, None) => Box::pin(connection::run(shared, tcp, info, guard)),
        };
        drop(self);
        connection.await;
    }

    /// Runs a handshake within the handshake timeout, unless the broker shuts down first.
    async fn bounded<T>(
        &self,
        shared: &Shared,
        peer: SocketAddr,
        what: &str,
        handshake: impl Future<Output = io::Result<T>>,
    ) -> Option<T> {
        let mut shutdown = shared.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return None;
        }
        let timeout = self.handshake_timeout.unwrap_or(Duration::MAX);
        tokio::select! {
            _ = shutdown.changed() => None,
            result = tokio::time::timeout(timeout, handshake) => match result {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "{what} handshake failed: {e}");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "{what} handshake not done within the connect timeout: closed");
                    None
                }
            },
        }
    }

    /// The WebSocket opening handshake: the path must be the listener's (otherwise 404) and
    /// the `mqtt` subprotocol is negotiated.
    // The callback's error type (an HTTP response) is tungstenite's.
    #[allow(clippy::result_large_err)]
    async fn websocket<S>(&self, stream: S, path: &str) -> io::Result<WsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let path = path.to_owned();
        let callback = move |request: &Request, mut response: Response| {
            if request.uri().path() != path {
                return Err(error_response(StatusCode::NOT_FOUND, "not found"));
            }
            match choose_subprotocol(request) {
                Ok(Some(chosen)) => {
                    response
                        .headers_mut()
                        .insert(header::SEC_WEBSOCKET_PROTOCOL, chosen);
                    Ok(response)
                }
                Ok(None) => Ok(response),
                Err(()) => Err(error_response(
                    StatusCode::BAD_REQUEST,
                    "MQTT over WebSocket needs the subprotocol mqtt",
                )),
            }
        };
        let ws =
            tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(self.ws_config))
                .await
                .map_err(io::Error::other)?;
        Ok(WsStream::new(ws))
    }
}

/// The subprotocol to answer with: the first the client offers among `mqtt` and `mqttv3.1`
/// (the name of 3.1's era, which mosquitto accepts too) [MQTT-6.0.0-3], [MQTT-6.0.0-4].
/// `Ok(None)` when the client offers none (accepted, as mosquitto does); `Err` when it offers
/// only others.
fn choose_subprotocol(request: &Request) -> Result<Option<HeaderValue>, ()> {
    let mut offered = false;
    for value in request.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let Ok(list) = value.to_str() else { continue };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            offered = true;
            if name == tern_ws::SUBPROTOCOL || name == "mqttv3.1" {
                return Ok(Some(HeaderValue::from_str(name).map_err(|_| ())?));
            }
        }
    }
    if offered { Err(()) } else { Ok(None) }
}

fn error_response(status: StatusCode, body: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body.to_owned()));
    *response.status_mut() = status;
    response
}

/// The subject CN of the client's certificate (verified by the handshake).
fn identity<S>(stream: &TlsStream<S>) -> Option<String> {
    let der = stream.get_ref().1.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The rustls configuration of a listener's `[listener.tls]`; `Err((key, reason))`.
fn server_config(tls: &TlsConfig) -> Result<rustls::ServerConfig, (&'static str, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.tls_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ("tls.tls_version", e.to_string()))?;
    let builder = match &tls.cafile {
        Some(cafile) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(cafile).map_err(|e| ("tls.cafile", e))? {
                roots
                    .add(cert)
                    .map_err(|e| ("tls.cafile", file_error(cafile, &e)))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if tls.require_certificate {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| ("tls.cafile", file_error(cafile, &e)))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = certificates(&tls.certfile).map_err(|e| ("tls.certfile", e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.keyfile)
        .map_err(|e| ("tls.keyfile", file_error(&tls.keyfile, &e)))?;
    builder.with_single_cert(chain, key).map_err(|e| {
        (
            "tls.keyfile",
            format!(
                "{} does not go with {}: {e}",
                tls.keyfile.display(),
                tls.certfile.display()
            ),
        )
    })
}

/// Every certificate of a PEM file, at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| file_error(path, &e))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

fn file_error(path: &Path, e: &dyn fmt::Display) -> String {
    format!("{}: {e}", path.display())
}
