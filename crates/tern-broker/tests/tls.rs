//! MQTT over TLS: real rustls handshakes against listeners configured in TOML, with
//! certificates made by rcgen in the test (see `pki`). Clients: tern-client (`mqtts://`) and
//! a raw tokio-rustls client speaking tern-codec packets.

mod pki;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use pki::{CLIENT_CN, Identity, Pki};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{TIMEOUT, opts, publish, s};
use tern_broker::config::ConfigError;
use tern_broker::{Broker, BrokerHandle, Config, StartError, Transport};
use tern_codec::{Decoder, MAX_PACKET_SIZE, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A configuration with one TLS listener on an ephemeral loopback port: `tls` is its
/// `[listener.tls]` table; `limits` goes into `[limits]`.
fn tls_config(tls: &str, limits: &str) -> Config {
    let text = format!(
        "sys_interval = 0\n[limits]\n{limits}\n[[listener]]\nbind = \"127.0.0.1:0\"\n{tls}"
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn start(config: Config) -> (BrokerHandle, SocketAddr) {
    let broker = Broker::new(config).start().await.expect("broker starts");
    let addr = broker.local_addrs()[0];
    (broker, addr)
}

/// Which TLS versions a raw client offers.
#[derive(Clone, Copy, Debug)]
enum Versions {
    Only12,
    Only13,
}

/// A rustls client configuration trusting the test CA, with an optional client certificate.
fn client_tls(pki: &Pki, versions: Versions, cert: Option<&Identity>) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] = match versions {
        Versions::Only12 => &[&rustls::version::TLS12],
        Versions::Only13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some(id) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

/// A raw MQTT client over any byte stream.
struct Raw<S> {
    stream: S,
    version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    fn new(stream: S, version: ProtocolVersion) -> Self {
        Raw {
            stream,
            version,
            decoder: Decoder::with_version(version, MAX_PACKET_SIZE),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).unwrap();
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    /// The next packet, or `None` when the connection closed or failed (a TLS alert).
    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf).expect("valid packets") {
                    return Some(p);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("a packet or a close in time")
    }

    /// CONNECT with this client id and username; the CONNACK's reason code, `None` if closed.
    async fn connect(&mut self, client_id: &str, username: Option<&str>) -> Option<ReasonCode> {
        let mut connect = support::connect(self.version, client_id, true);
        connect.username = username.map(s);
        self.send(Packet::from(connect)).await.ok()?;
        match self.recv().await? {
            Packet::ConnAck(c) => Some(c.reason_code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

/// TLS to `addr` with `connector`; the handshake's error if it fails on the client's side.
async fn tls_connect(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("handshake ends in time")
}

/// Subscribe, publish to ourselves, get it back: an MQTT round trip over `raw`.
async fn raw_round_trip<S: AsyncRead + AsyncWrite + Unpin>(raw: &mut Raw<S>) {
    raw.send(Packet::Subscribe(tern_codec::Subscribe {
        packet_id: support::pid(1),
        properties: Default::default(),
        subscriptions: tern_codec::smallvec::smallvec![tern_codec::Subscription {
            filter: s("tls/raw"),
            options: opts(QoS::AtLeastOnce),
        }],
    }))
    .await
    .unwrap();
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    raw.send(Packet::Publish(publish(
        "tls/raw",
        "sealed",
        QoS::AtLeastOnce,
        Some(2),
    )))
    .await
    .unwrap();
    let mut got_ack = false;
    let mut got_publish = false;
    while !(got_ack && got_publish) {
        match raw.recv().await.expect("connection open") {
            Packet::PubAck(a) => got_ack = a.packet_id == support::pid(2),
            Packet::Publish(p) => {
                assert_eq!(&p.payload[..], b"sealed");
                got_publish = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn tern_client_round_trip_over_mqtts() {
    let pki = Pki::new();
    let (broker, addr) = start(tls_config(&pki.tls_table(""), "")).await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let url = format!("mqtts://localhost:{}", addr.port());
        let client = tokio::time::timeout(
            TIMEOUT,
            tern_client::Client::builder(&url)
                .unwrap()
                .protocol(version)
                .ca_pem(pki.ca_pem.clone())
                .connect(),
        )
        .await
        .expect("connect in time")
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        let mut sub = client
            .subscribe("tls/t", tern_client::QoS::ExactlyOnce)
            .await
            .unwrap();
        for qos in [
            tern_client::QoS::AtMostOnce,
            tern_client::QoS::AtLeastOnce,
            tern_client::QoS::ExactlyOnce,
        ] {
            client.publish("tls/t", qos, "sealed").await.unwrap();
            let message = tokio::time::timeout(TIMEOUT, sub.recv())
                .await
                .expect("message in time")
                .expect("stream open");
            // [MQTT-3.8.4-6] / [MQTT-3.8.4-8]: delivered at the publish QoS (granted 2).
            assert_eq!(
                (message.qos(), &message.payload()[..]),
                (qos, &b"sealed"[..])
            );
        }
        let clients = broker.clients();
        assert_eq!(clients.len(), 1, "{clients:?}");
        assert_eq!(clients[0].transport, Transport::Tls);
        assert_eq!(clients[0].tls_identity, None);
        client.disconnect().await;
    }
}

#[tokio::test]
async fn raw_client_over_tls_1_2_and_1_3() {
    let pki = Pki::new();
    let (_broker, addr) = start(tls_config(&pki.tls_table(""), "")).await;
    for (versions, expected) in [
        (Versions::Only12, rustls::ProtocolVersion::TLSv1_2),
        (Versions::Only13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let stream = tls_connect(&client_tls(&pki, versions, None), addr)
            .await
            .unwrap_or_else(|e| panic!("{versions:?}: {e}"));
        assert_eq!(stream.get_ref().1.protocol_version(), Some(expected));
        let mut raw = Raw::new(stream, ProtocolVersion::V5);
        assert_eq!(
            raw.connect(&format!("raw-{versions:?}"), None).await,
            Some(ReasonCode::Success)
        );
        raw_round_trip(&mut raw).await;
    }
}

#[tokio::test]
async fn minimum_tls_version_is_enforced() {
    let pki = Pki::new();
    let (_broker, addr) = start(tls_config(
        &pki.tls_table("tls_version = \"tlsv1.3\"\n"),
        "",
    ))
    .await;
    let refused = tls_connect(&client_tls(&pki, Versions::Only12, None), addr).await;
    assert!(refused.is_err(), "a TLS 1.2 client got through");
    let stream = tls_connect(&client_tls(&pki, Versions::Only13, None), addr)
        .await
        .unwrap();
    let mut raw = Raw::new(stream, ProtocolVersion::V3_1_1);
    assert_eq!(raw.connect("tls13", None).await, Some(ReasonCode::Success));
}

#[tokio::test]
async fn mutual_tls_accepts_only_certificates_of_the_ca() {
    let pki = Pki::new();
    let (broker, addr) = start(tls_config(&pki.mtls_table(""), "")).await;

    // A certificate signed by the CA: accepted, its CN is the connection's TLS identity.
    let stream = tls_connect(&client_tls(&pki, Versions::Only13, Some(&pki.client)), addr)
        .await
        .unwrap();
    let mut raw = Raw::new(stream, ProtocolVersion::V5);
    assert_eq!(
        raw.connect("with-cert", Some("alice")).await,
        Some(ReasonCode::Success)
    );
    raw_round_trip(&mut raw).await;
    let clients = broker.clients();
    assert_eq!(clients[0].tls_identity.as_deref(), Some(CLIENT_CN));
    // Without use_identity_as_username, CONNECT's username stands.
    assert_eq!(clients[0].username.as_deref(), Some("alice"));

    // No certificate, or one of another CA: the handshake fails, no CONNACK ever comes.
    for (what, cert) in [
        ("no certificate", None),
        ("another CA's certificate", Some(&pki.stranger)),
    ] {
        for versions in [Versions::Only12, Versions::Only13] {
            let connector = client_tls(&pki, versions, cert);
            // TLS 1.2 fails in the handshake; in 1.3 the client finishes first and the
            // server's alert ends the connection at the first read.
            if let Ok(stream) = tls_connect(&connector, addr).await {
                let mut raw = Raw::new(stream, ProtocolVersion::V5);
                assert_eq!(
                    raw.connect("refused", None).await,
                    None,
                    "{what} {versions:?}: CONNACK"
                );
            }
        }
    }
    // tern-client without a certificate: refused too.
    let url = format!("mqtts://localhost:{}", addr.port());
    let refused = tokio::time::timeout(
        TIMEOUT,
        tern_client::Client::builder(&url)
            .unwrap()
            .ca_pem(pki.ca_pem.clone())
            .connect(),
    )
    .await
    .expect("ends in time");
    assert!(refused.is_err());
    assert_eq!(broker.clients().len(), 1, "{:?}", broker.clients());
}

#[tokio::test]
async fn identity_replaces_the_username() {
    let pki = Pki::new();
    let (broker, addr) = start(tls_config(
        &pki.mtls_table("use_identity_as_username = true\n"),
        "",
    ))
    .await;
    let url = format!("mqtts://localhost:{}", addr.port());
    let client = tokio::time::timeout(
        TIMEOUT,
        tern_client::Client::builder(&url)
            .unwrap()
            .client_id("by-cert")
            .credentials("claimed-name", "secret")
            .ca_pem(pki.ca_pem.clone())
            .client_cert_files(&pki.client.cert_file, &pki.client.key_file)
            .connect(),
    )
    .await
    .expect("connect in time")
    .unwrap();
    let clients = broker.clients();
    assert_eq!(clients.len(), 1, "{clients:?}");
    let info = &clients[0];
    assert_eq!(info.client_id, "by-cert");
    // The certificate's CN, not the username CONNECT carried.
    assert_eq!(info.username.as_deref(), Some(CLIENT_CN));
    assert_eq!(info.tls_identity.as_deref(), Some(CLIENT_CN));
    client.disconnect().await;

    // A certificate of the CA without a CN has no identity to use: refused, CONNACK 0x87
    // (5.0) / 5 Not authorized (3.1.1).
    for (version, expected) in [
        (ProtocolVersion::V5, ReasonCode::NotAuthorized),
        (ProtocolVersion::V3_1_1, ReasonCode::NotAuthorized),
    ] {
        let stream = tls_connect(
            &client_tls(&pki, Versions::Only13, Some(&pki.client_without_cn)),
            addr,
        )
        .await
        .unwrap();
        let mut raw = Raw::new(stream, version);
        assert_eq!(raw.connect("no-cn", Some("x")).await, Some(expected));
    }
}

#[tokio::test]
async fn idle_socket_without_tls_handshake_is_closed_after_connect_timeout() {
    let pki = Pki::new();
    let (_broker, addr) = start(tls_config(&pki.tls_table(""), "connect_timeout = 1")).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // Meanwhile the listener accepts and serves others: handshakes run in their own tasks.
    let stream = tls_connect(&client_tls(&pki, Versions::Only13, None), addr)
        .await
        .unwrap();
    let mut raw = Raw::new(stream, ProtocolVersion::V5);
    assert_eq!(raw.connect("busy", None).await, Some(ReasonCode::Success));
    // The idle socket is closed by the broker (end of stream), not by our guard timeout.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(TIMEOUT, idle.read(&mut byte))
        .await
        .expect("closed by the broker within the test's guard");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The client that completed its handshake is still served.
    raw_round_trip(&mut raw).await;
}

#[tokio::test]
async fn unusable_certificate_files_are_startup_errors_naming_them() {
    let pki = Pki::new();
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = pki.path("missing.pem");
    let server_cert = pki.server.cert_file.display().to_string();
    let server_key = pki.server.key_file.display().to_string();
    let cases = [
        (
            missing.display().to_string(),
            server_key.clone(),
            "",
            "tls.certfile",
            missing.clone(),
        ),
        (
            garbage.display().to_string(),
            server_key.clone(),
            "",
            "tls.certfile",
            garbage.clone(),
        ),
        (
            server_cert.clone(),
            missing.display().to_string(),
            "",
            "tls.keyfile",
            missing.clone(),
        ),
        (
            server_cert.clone(),
            garbage.display().to_string(),
            "",
            "tls.keyfile",
            garbage.clone(),
        ),
        // A key that is not the certificate's.
        (
            server_cert.clone(),
            pki.client.key_file.display().to_string(),
            "",
            "tls.keyfile",
            pki.client.key_file.clone(),
        ),
        (
            server_cert.clone(),
            server_key.clone(),
            "cafile = \"MISSING\"\nrequire_certificate = true\n",
            "tls.cafile",
            missing.clone(),
        ),
    ];
    for (cert, key, extra, expected_key, file) in cases {
        let extra = extra.replace("MISSING", &missing.display().to_string());
        let table = format!("[listener.tls]\ncertfile = {cert:?}\nkeyfile = {key:?}\n{extra}");
        let err = Broker::new(tls_config(&table, ""))
            .start()
            .await
            .expect_err("must not start");
        let message = err.to_string();
        match err {
            StartError::Config(ConfigError::Listener { index: 0, key, .. }) => {
                assert_eq!(key, expected_key, "{message}")
            }
            other => panic!("{table}: {other:?}"),
        }
        assert!(
            message.contains(&file.display().to_string()),
            "{message} does not name {}",
            file.display()
        );
    }
}

/// `ternd` prints a line per listener with its transport, and `--check-config` reads the
/// certificate files.
#[tokio::test(flavor = "multi_thread")]
async fn ternd_lists_listeners_and_checks_certificate_files() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let pki = Pki::new();
    let config = pki.path("ternd.toml");
    let text = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\npath = \"/ws\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n{}",
        pki.mtls_table("use_identity_as_username = true\n")
    );
    std::fs::write(&config, &text).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_ternd"))
        .arg("-c")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_ternd"))
        .arg("-c")
        .arg(&config)
        .arg("--memory")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(4)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(TIMEOUT, lines)
        .await
        .expect("startup lines in time")
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(lines[0].contains("listening on 127.0.0.1:"), "{lines:?}");
    assert!(lines[1].trim_end().ends_with(" mqtt"), "{lines:?}");
    assert!(lines[2].trim_end().ends_with(" websocket /ws"), "{lines:?}");
    assert!(
        lines[3]
            .ends_with(" mqtt+tls (TLS 1.2+, client certificates required, identity as username)"),
        "{lines:?}"
    );

    // A missing key file: --check-config fails naming it (exit 2), and so does the start.
    let missing = pki.path("missing.key");
    std::fs::write(
        &config,
        text.replace(
            &format!("{:?}", pki.server.key_file),
            &format!("{missing:?}"),
        ),
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_ternd"))
        .arg("-c")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("tls.keyfile") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    let start = Command::new(env!("CARGO_BIN_EXE_ternd"))
        .arg("-c")
        .arg(&config)
        .arg("--memory")
        .output()
        .unwrap();
    assert!(!start.status.success());
    assert!(
        String::from_utf8_lossy(&start.stderr).contains(&missing.display().to_string()),
        "{start:?}"
    );
}
