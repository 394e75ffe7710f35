//! Shared helpers of the client tests: an in-process `ternd`, a mosquitto child process on a
//! free port, a TCP proxy that can record, swallow and cut traffic, and waits that are always
//! guarded by a timeout (nothing sleeps a fixed time to wait for something to happen).

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tern_broker::{Broker, BrokerHandle, Config};
use tern_client::{ConnectionEvent, ConnectionEvents, Message, ReconnectOptions, Subscription};
use tern_codec::{Decoder, MAX_PACKET_SIZE, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast};

/// How long any wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Fails the test if `fut` does not finish within [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Fast reconnects for tests: 20 ms doubling up to 200 ms.
pub fn fast_reconnect() -> ReconnectOptions {
    ReconnectOptions::exponential(Duration::from_millis(20), Duration::from_millis(200))
}

/// A ternd broker on an ephemeral loopback port.
pub async fn ternd() -> BrokerHandle {
    ternd_with(Config::with_listeners(["127.0.0.1:0".parse().unwrap()])).await
}

/// A ternd broker with this configuration.
pub async fn ternd_with(config: Config) -> BrokerHandle {
    Broker::new(config).start().await.expect("ternd starts")
}

/// A ternd broker on this address (for restarts on the same port).
pub async fn ternd_on(addr: SocketAddr) -> BrokerHandle {
    // The previous broker's socket may linger for a moment after shutdown: retry the bind.
    within("ternd to bind its port", async {
        loop {
            match Broker::new(Config::with_listeners([addr])).start().await {
                Ok(broker) => return broker,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
}

/// `mqtt://` URL of a broker address.
pub fn url(addr: SocketAddr) -> String {
    format!("mqtt://{addr}")
}

/// Waits until something accepts TCP connections on this loopback port.
pub async fn wait_listening(port: u16) {
    within("the port to listen", async {
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A loopback port that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The next message of a subscription, within the timeout.
pub async fn next(sub: &mut Subscription) -> Message {
    within("a message", sub.recv())
        .await
        .expect("subscription stream ended")
}

/// Waits for the first connection event that `pred` accepts.
pub async fn wait_event(
    events: &mut ConnectionEvents,
    what: &str,
    pred: impl Fn(&ConnectionEvent) -> bool,
) -> ConnectionEvent {
    within(what, async {
        loop {
            let event = events.recv().await.expect("events ended");
            if pred(&event) {
                return event;
            }
        }
    })
    .await
}

/// Waits for `Connected`.
pub async fn wait_connected(events: &mut ConnectionEvents) -> bool {
    match wait_event(events, "Connected", |e| {
        matches!(e, ConnectionEvent::Connected { .. })
    })
    .await
    {
        ConnectionEvent::Connected {
            session_present, ..
        } => session_present,
        _ => unreachable!(),
    }
}

/// Waits for `Disconnected`.
pub async fn wait_disconnected(events: &mut ConnectionEvents) {
    wait_event(events, "Disconnected", |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await;
}

/// Polls `cond` until it holds (each check yields to the runtime), within the timeout.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Decodes every whole packet a client sent on one connection (CONNECT first).
pub fn decode_all(bytes: &[u8]) -> Vec<Packet> {
    let mut decoder = Decoder::new(MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(bytes);
    let mut packets = Vec::new();
    while let Ok(Some(packet)) = decoder.decode(&mut buf) {
        packets.push(packet);
    }
    packets
}

// ----- mosquitto -----

/// Where mosquitto is, or `None` (the test then skips; with `TERN_INTEROP=1` it fails).
pub fn mosquitto_path() -> Option<PathBuf> {
    let mut candidates = vec![
        PathBuf::from("/usr/sbin/mosquitto"),
        PathBuf::from("/usr/local/sbin/mosquitto"),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|p| p.join("mosquitto")));
    }
    let found = candidates.into_iter().find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("TERN_INTEROP").as_deref() == Ok("1") {
            panic!("TERN_INTEROP=1 but mosquitto is not installed (apt-get install mosquitto)");
        }
        println!("skipped: mosquitto not installed");
    }
    found
}

/// A mosquitto broker run as a child process with a generated configuration in a temp
/// directory; killed on drop.
pub struct Mosquitto {
    child: Option<Child>,
    binary: PathBuf,
    pub port: u16,
    pub dir: tempfile::TempDir,
    config: String,
}

impl Mosquitto {
    /// A plain TCP mosquitto on a free port, anonymous access allowed; `None` when mosquitto
    /// is not installed (and `TERN_INTEROP` is not set).
    pub async fn start() -> Option<Mosquitto> {
        Mosquitto::start_with(|_dir| "allow_anonymous true\n".to_owned()).await
    }

    /// mosquitto with `listener PORT 127.0.0.1` followed by the lines `extra` returns (given
    /// the temp directory, for certificate or password files).
    pub async fn start_with(extra: impl FnOnce(&Path) -> String) -> Option<Mosquitto> {
        let binary = mosquitto_path()?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "user root\npersistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\n{}",
            extra(dir.path())
        );
        let mut m = Mosquitto {
            child: None,
            binary,
            port,
            dir,
            config,
        };
        m.spawn().await;
        Some(m)
    }

    async fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(&conf, &self.config).unwrap();
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let port = self.port;
        let log_path = self.dir.path().join("mosquitto.log");
        let child = self.child.as_mut().unwrap();
        within("mosquitto to listen", async {
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("mosquitto exited with {status}:\n{log}");
                }
                if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// The `mqtt://` URL.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL: no DISCONNECT, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same configuration.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

// ----- a TCP proxy -----

/// A loopback TCP proxy in front of a broker. It records what the client sends on each
/// connection, can swallow the client's bytes (the broker never sees them), and can cut
/// every connection at once.
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<ProxyShared>,
}

struct ProxyShared {
    upstream: SocketAddr,
    swallow: AtomicBool,
    /// Client-to-broker bytes of each connection, in connection order.
    sent: Mutex<Vec<Vec<u8>>>,
    /// Wakes waiters when bytes arrive from a client.
    activity: Notify,
    cut: broadcast::Sender<()>,
}

impl Proxy {
    /// A proxy to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared {
            upstream,
            swallow: AtomicBool::new(false),
            sent: Mutex::new(Vec::new()),
            activity: Notify::new(),
            cut: broadcast::channel(4).0,
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.serve(client).await });
            }
        });
        Proxy { addr, shared }
    }

    /// The client's bytes are dropped (`true`) or forwarded (`false`).
    pub fn swallow(&self, on: bool) {
        self.shared.swallow.store(on, Ordering::SeqCst);
    }

    /// Closes every current connection.
    pub fn cut(&self) {
        let _ = self.shared.cut.send(());
    }

    /// Client-to-broker bytes of connection `index` (0-based) so far.
    pub fn sent(&self, index: usize) -> Vec<u8> {
        self.shared
            .sent
            .lock()
            .unwrap()
            .get(index)
            .cloned()
            .unwrap_or_default()
    }

    /// How many connections the proxy accepted.
    pub fn connections(&self) -> usize {
        self.shared.sent.lock().unwrap().len()
    }

    /// Waits until the client's packets on connection `index` satisfy `pred`.
    pub async fn wait_sent(
        &self,
        what: &str,
        index: usize,
        pred: impl Fn(&[Packet]) -> bool,
    ) -> Vec<Packet> {
        within(what, async {
            loop {
                let notified = self.shared.activity.notified();
                let packets = decode_all(&self.sent(index));
                if pred(&packets) {
                    return packets;
                }
                notified.await;
            }
        })
        .await
    }
}

impl ProxyShared {
    async fn serve(self: Arc<Self>, mut client: TcpStream) {
        let Ok(mut broker) = TcpStream::connect(self.upstream).await else {
            return;
        };
        let index = {
            let mut sent = self.sent.lock().unwrap();
            sent.push(Vec::new());
            sent.len() - 1
        };
        let mut cut = self.cut.subscribe();
        let (mut cr, mut cw) = client.split();
        let (mut br, mut bw) = broker.split();
        let up = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = cr.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                self.sent.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                self.activity.notify_waiters();
                if !self.swallow.load(Ordering::SeqCst) && bw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        };
        let down = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = br.read(&mut buf).await.unwrap_or(0);
                if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = up => {}
            () = down => {}
            _ = cut.recv() => {}
        }
    }
}

// ----- certificates -----

/// A test PKI made with rcgen: a CA, a server certificate for `localhost` and `127.0.0.1`,
/// and a client certificate, all PEM.
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl Pki {
    /// A fresh PKI.
    pub fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Tern test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "tern-client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();

        Pki {
            ca: ca.pem(),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            client_cert: client_cert.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    /// Writes `ca.pem`, `server.pem`, `server.key` into `dir` and returns mosquitto's TLS
    /// lines, requiring a client certificate.
    pub fn mosquitto_tls(&self, dir: &Path) -> String {
        let ca = dir.join("ca.pem");
        let cert = dir.join("server.pem");
        let key = dir.join("server.key");
        std::fs::write(&ca, &self.ca).unwrap();
        std::fs::write(&cert, &self.server_cert).unwrap();
        std::fs::write(&key, &self.server_key).unwrap();
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            ca.display(),
            cert.display(),
            key.display()
        )
    }
}
