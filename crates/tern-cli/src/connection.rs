//! The connection flags shared by `tern pub` and `tern sub` (mosquitto's names), and the
//! tern-client [`Client`] they make.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args};
use tern_client::{Client, ClientBuilder, ConnectError, ProtocolVersion, QoS, ReconnectOptions};

use crate::Failure;

/// Connection flags (mosquitto's).
#[derive(Args, Debug, Clone)]
pub(crate) struct ConnArgs {
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// The broker's host.
    #[arg(short = 'h', long, default_value = "localhost")]
    pub(crate) host: String,
    /// The broker's port (default 1883, 8883 with TLS).
    #[arg(short = 'p', long)]
    pub(crate) port: Option<u16>,
    /// mqtt(s)://[user[:password]@]host[:port]/topic, also ws:// and wss:// (WebSocket on
    /// the path /mqtt); instead of -h, -p, -u, -P and -t.
    #[arg(short = 'L', long)]
    pub(crate) url: Option<String>,
    /// The client identifier (default: a random `tern-…`).
    #[arg(short = 'i', long = "id")]
    pub(crate) id: Option<String>,
    /// A client identifier prefix: the process id is appended.
    #[arg(short = 'I', long = "id-prefix", conflicts_with = "id")]
    pub(crate) id_prefix: Option<String>,
    /// The user name.
    #[arg(short = 'u', long)]
    pub(crate) username: Option<String>,
    /// The password.
    #[arg(short = 'P', long = "pw")]
    pub(crate) password: Option<String>,
    /// The protocol version: mqttv311 (311, the default), mqttv5 (5) or mqttv31 (31).
    #[arg(short = 'V', long = "protocol-version", default_value = "311", value_parser = parse_version)]
    pub(crate) version: ProtocolVersion,
    /// The keep alive in seconds (0: no pings).
    #[arg(short = 'k', long, default_value_t = 60)]
    pub(crate) keepalive: u16,
    /// Keep the session: Clean Session 0 (3.1.1) / Clean Start 0 (5.0); give a client id.
    #[arg(short = 'c', long = "disable-clean-session")]
    pub(crate) disable_clean_session: bool,
    /// MQTT 5.0 Session Expiry Interval in seconds, -1 for never (default: -1 with -c, else 0).
    #[arg(
        short = 'x',
        long = "session-expiry-interval",
        allow_hyphen_values = true
    )]
    pub(crate) session_expiry: Option<i64>,
    /// Debug output of the client (tracing events on stderr).
    #[arg(short = 'd', long)]
    pub(crate) debug: bool,
    /// Trust the CA certificates of this PEM file (turns TLS on).
    #[arg(long)]
    pub(crate) cafile: Option<PathBuf>,
    /// The client certificate (PEM; with --key; turns TLS on).
    #[arg(long, requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Do not check that the server certificate's name matches the host (the chain is still
    /// verified against --cafile).
    #[arg(long, requires = "cafile")]
    pub(crate) insecure: bool,
    /// The topic of the Will Message.
    #[arg(long = "will-topic")]
    pub(crate) will_topic: Option<String>,
    /// The payload of the Will Message.
    #[arg(long = "will-payload", requires = "will_topic", default_value = "")]
    pub(crate) will_payload: String,
    /// The QoS of the Will Message.
    #[arg(long = "will-qos", requires = "will_topic", default_value = "0", value_parser = parse_qos)]
    pub(crate) will_qos: QoS,
    /// Retain the Will Message.
    #[arg(long = "will-retain", requires = "will_topic")]
    pub(crate) will_retain: bool,
    /// Seconds establishing the connection and receiving CONNACK may take.
    #[arg(long = "connect-timeout", default_value_t = 30)]
    pub(crate) connect_timeout: u64,
}

/// `-V`: mosquitto's names and tern's.
pub(crate) fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "mqttv5" | "5" | "v5" => Ok(ProtocolVersion::V5),
        "mqttv311" | "311" | "v311" => Ok(ProtocolVersion::V3_1_1),
        "mqttv31" | "31" | "v31" => Ok(ProtocolVersion::V3_1),
        other => Err(format!(
            "unknown protocol version {other:?} (mqttv311, 311, mqttv5, 5, mqttv31, 31)"
        )),
    }
}

/// `-q`: 0, 1 or 2.
pub(crate) fn parse_qos(s: &str) -> Result<QoS, String> {
    s.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("QoS must be 0, 1 or 2, not {s:?}"))
}

/// What an `-L` URL says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UrlParts {
    /// The URL for tern-client: scheme, host and port.
    pub(crate) url: String,
    /// User name and password.
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// The topic (the path without its leading `/`), if any.
    pub(crate) topic: Option<String>,
}

/// Splits an `-L` URL, `scheme://[user[:password]@]host[:port][/topic]`.
pub(crate) fn split_url(url: &str) -> Result<UrlParts, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("invalid URL {url:?}: missing `://`"))?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "mqtt" | "mqtts" | "ws" | "wss") {
        return Err(format!(
            "unsupported URL scheme {scheme:?} (mqtt, mqtts, ws, wss)"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if hostport.is_empty() {
        return Err(format!("invalid URL {url:?}: missing host"));
    }
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (Some(percent_decode(u)?), Some(percent_decode(p)?)),
            None => (Some(percent_decode(info)?), None),
        },
    };
    Ok(UrlParts {
        url: format!("{scheme}://{hostport}"),
        username,
        password,
        topic: path.filter(|p| !p.is_empty()).map(str::to_owned),
    })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

impl ConnArgs {
    /// The URL tern-client connects to, the credentials, and the `-L` topic.
    fn target(&self) -> Result<UrlParts, Failure> {
        if let Some(url) = &self.url {
            let mut parts = split_url(url).map_err(Failure::other)?;
            if self.username.is_some() {
                parts.username.clone_from(&self.username);
            }
            if self.password.is_some() {
                parts.password.clone_from(&self.password);
            }
            return Ok(parts);
        }
        let tls = self.cafile.is_some() || self.cert.is_some();
        let port = self.port.unwrap_or(if tls { 8883 } else { 1883 });
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        Ok(UrlParts {
            url: format!("{}://{host}:{port}", if tls { "mqtts" } else { "mqtt" }),
            username: self.username.clone(),
            password: self.password.clone(),
            topic: None,
        })
    }

    /// The client builder of these flags and the `-L` topic.
    pub(crate) fn builder(&self) -> Result<(ClientBuilder, Option<String>), Failure> {
        if self.debug {
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter("tern_client=trace,tern_proto=debug")
                .try_init();
        }
        let target = self.target()?;
        let mut builder = Client::builder(&target.url)
            .map_err(Failure::other)?
            .protocol(self.version)
            .keep_alive(Duration::from_secs(u64::from(self.keepalive)))
            .clean_start(!self.disable_clean_session)
            .reconnect(ReconnectOptions::disabled())
            .connect_timeout(Duration::from_secs(self.connect_timeout));
        if let Some(id) = &self.id {
            builder = builder.client_id(id.clone());
        } else if let Some(prefix) = &self.id_prefix {
            builder = builder.client_id(format!("{prefix}{}", std::process::id()));
        } else if self.disable_clean_session {
            return Err(Failure::other(
                "-c (disable clean session) needs a client id (-i)",
            ));
        }
        match (target.username, target.password) {
            (Some(u), Some(p)) => builder = builder.credentials(u, p.into_bytes()),
            (Some(u), None) => builder = builder.username(u),
            (None, Some(_)) => {
                return Err(Failure::other("a password (-P) needs a user name (-u)"));
            }
            (None, None) => {}
        }
        if self.version.is_v5() {
            let expiry = match self.session_expiry {
                Some(-1) => Some(u64::from(u32::MAX)),
                Some(s) if (0..=i64::from(u32::MAX)).contains(&s) => Some(s as u64),
                Some(s) => {
                    return Err(Failure::other(format!(
                        "session expiry {s} is not -1 nor 0 to 4294967295"
                    )));
                }
                None => self.disable_clean_session.then_some(u64::from(u32::MAX)),
            };
            if let Some(expiry) = expiry {
                builder = builder.session_expiry(Duration::from_secs(expiry));
            }
        } else if self.session_expiry.is_some() {
            return Err(Failure::other("-x needs MQTT 5.0 (-V 5)"));
        }
        if let Some(topic) = &self.will_topic {
            builder = builder
                .will(
                    topic,
                    self.will_payload.clone().into_bytes(),
                    self.will_qos,
                    self.will_retain,
                )
                .map_err(Failure::other)?;
        }
        if self.insecure {
            builder = builder.tls_config(insecure_tls(self)?);
        } else {
            if let Some(ca) = &self.cafile {
                builder = builder.ca_file(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                builder = builder.client_cert_files(cert.clone(), key.clone());
            }
        }
        Ok((builder, target.topic))
    }
}

/// Connects, mapping a refusal to mosquitto's exit status.
pub(crate) async fn connect(
    builder: ClientBuilder,
    version: ProtocolVersion,
) -> Result<Client, Failure> {
    builder
        .connect()
        .await
        .map_err(|e| connect_failure(&e, version))
}

/// The exit status of a failed connection: the CONNACK return code (3.x) or reason code (5.0)
/// when the broker refused, like mosquitto_pub and mosquitto_sub; 1 otherwise.
pub(crate) fn connect_failure(e: &ConnectError, version: ProtocolVersion) -> Failure {
    match e.reason().and_then(tern_client::DisconnectReason::refused) {
        Some(code) => Failure {
            code: if version.is_v5() {
                code.as_u8()
            } else {
                code.to_v3_connack().unwrap_or(code.as_u8())
            },
            message: format!("Connection error: {code}"),
        },
        None => Failure::other(e),
    }
}

/// The TLS configuration of `--insecure`: the chain is verified against `--cafile`, a name
/// mismatch is accepted (mosquitto's `--insecure`).
fn insecure_tls(args: &ConnArgs) -> Result<Arc<rustls::ClientConfig>, Failure> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| Failure::other(format!("{}: {e}", path.display())))
    };
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &args.cafile {
        for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
            let cert = cert.map_err(|e| Failure::other(format!("{}: {e}", ca.display())))?;
            roots
                .add(cert)
                .map_err(|e| Failure::other(format!("{}: {e}", ca.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| Failure::other(format!("TLS: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::other(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoNameCheck { inner }));
    let config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::other(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| Failure::other(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Failure::other(format!("TLS: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A verifier that checks the chain but not the name.
#[derive(Debug)]
struct NoNameCheck {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for NoNameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_credentials_port_and_topic() {
        let parts = split_url("mqtts://me:p%40ss@broker.example:8884/a/b").unwrap();
        assert_eq!(
            parts,
            UrlParts {
                url: "mqtts://broker.example:8884".into(),
                username: Some("me".into()),
                password: Some("p@ss".into()),
                topic: Some("a/b".into()),
            }
        );
        let ws = split_url("ws://[::1]:9001/t").unwrap();
        assert_eq!(ws.url, "ws://[::1]:9001");
        assert_eq!(ws.topic.as_deref(), Some("t"));
        assert_eq!(split_url("mqtt://h").unwrap().topic, None);
        assert!(split_url("http://h/t").is_err());
        assert!(split_url("mqtt:///t").is_err());
        assert!(split_url("mqtt://u:%zz@h").is_err());
    }

    #[test]
    fn versions_and_qos() {
        assert_eq!(parse_version("mqttv5"), Ok(ProtocolVersion::V5));
        assert_eq!(parse_version("311"), Ok(ProtocolVersion::V3_1_1));
        assert!(parse_version("4").is_err());
        assert_eq!(parse_qos("2"), Ok(QoS::ExactlyOnce));
        assert!(parse_qos("3").is_err());
    }
}
