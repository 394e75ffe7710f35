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
        .args(["--listen", "127.0.0.1:0"])
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
