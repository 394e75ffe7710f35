//! The `ternd` binary: startup line, signals, configuration errors.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use support::*;
use tern_codec::{ProtocolVersion, ReasonCode};

fn ternd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ternd"))
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_until_sigterm_then_exits_zero() {
    let mut child = ternd()
        .args(["--listen", "127.0.0.1:0", "--memory"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    let line = tokio::time::timeout(TIMEOUT, line)
        .await
        .expect("startup line in time")
        .unwrap();
    assert!(
        line.starts_with("ternd ") && line.contains("listening on 127.0.0.1:"),
        "{line}"
    );
    let addr: std::net::SocketAddr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();

    let mut client = Client::connected(addr, ProtocolVersion::V5, "bin", true).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        client.expect_disconnect().await.reason_code,
        ReasonCode::ServerShuttingDown
    );
    let status = tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("exits in time")
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A supervisor that closes ternd's stdout before the startup lines are written must not take
/// the broker down: it serves, then still shuts down gracefully on SIGTERM. (`println!` panics
/// on EPIPE; this is what made the test above fail when the reader went away between lines.)
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_does_not_stop_the_broker() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = ternd()
        .args(["--listen", &format!("127.0.0.1:{port}"), "--memory"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The read end goes before ternd can print anything.
    drop(child.stdout.take());
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ternd exited before listening"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "ternd listens in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut client = Client::connected(addr, ProtocolVersion::V5, "no-stdout", true).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "ternd is still running"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        client.expect_disconnect().await.reason_code,
        ReasonCode::ServerShuttingDown
    );
    let status = tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("exits in time")
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn malformed_config_names_key_and_line_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("ternd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    write!(file, "[limits]\nmaximum_qos = 1\nmaximum_packets = 5\n").unwrap();
    drop(file);
    let output = ternd()
        .arg("-c")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("maximum_packets"),
        "{stderr}"
    );

    let good = dir.join("good.toml");
    std::fs::write(&good, "[[listener]]\nbind = \"0.0.0.0:1883\"\n").unwrap();
    let output = ternd()
        .arg("-c")
        .arg(&good)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_the_connection_lifecycle_at_info() {
    let mut child = ternd()
        .args(["--listen", "127.0.0.1:0", "--memory"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    let line = tokio::time::timeout(TIMEOUT, line)
        .await
        .expect("startup line in time")
        .unwrap();
    let addr: std::net::SocketAddr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    let client = Client::connected(addr, ProtocolVersion::V5, "logged", true).await;
    client.disconnect().await;
    let mut c = connect(ProtocolVersion::V3_1_1, "", false);
    c.keep_alive = 5;
    let (mut refused, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    refused.expect_closed().await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let logs = tokio::time::timeout(TIMEOUT, logs)
        .await
        .expect("stderr closed in time")
        .unwrap();
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let find = |what: &str, fields: &[&str]| {
        logs.iter()
            .find(|l| {
                l.contains(" INFO ") && l.contains(what) && fields.iter().all(|f| l.contains(f))
            })
            .unwrap_or_else(|| panic!("no INFO {what:?} with {fields:?} in {logs:#?}"))
            .clone()
    };
    let listener = format!("listener={addr}");
    find(
        "client connected",
        &[
            "client_id=logged",
            "version=5.0",
            "peer=127.0.0.1:",
            &listener,
        ],
    );
    find("client disconnected", &["client_id=logged", "reason="]);
    // 3.1.1 with an empty client identifier and Clean Session 0 [MQTT-3.1.3-8].
    find(
        "connect refused",
        &[
            "version=3.1.1",
            "peer=127.0.0.1:",
            "reason=ClientIdentifierNotValid (0x85)",
        ],
    );
}
