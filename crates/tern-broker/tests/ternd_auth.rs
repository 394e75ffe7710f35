//! The `ternd` binary with `[auth]` files: SIGHUP reloads them without dropping connections,
//! a bad file on reload is logged and the old files kept, failed logins are logged without
//! the password, and `--check-config` reads the files.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use bytes::Bytes;
use support::*;
use tern_codec::{ProtocolVersion, QoS, ReasonCode};

fn ternd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ternd"))
}

fn passwd(file: &Path, user: &str, password: &str, create: bool) {
    let mut c = ternd();
    c.arg("passwd");
    if create {
        c.arg("-c");
    }
    let status = c
        .arg("-b")
        .arg(file)
        .args([user, password])
        .status()
        .unwrap();
    assert!(status.success());
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The log lines of a running ternd, waited for one by one.
struct Logs {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Logs {
    /// Waits for a line containing every one of `needles`; fails after [`TIMEOUT`].
    fn wait_for(&mut self, needles: &[&str]) -> String {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needles:?} in time; saw {:#?}", self.seen),
            }
        }
    }
}

fn login(client_id: &str, user: &str, password: &'static str) -> tern_codec::Connect {
    let mut c = connect(ProtocolVersion::V5, client_id, true);
    c.username = Some(s(user));
    c.password = Some(Bytes::from_static(password.as_bytes()));
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_password_and_acl_files_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    let acl = dir.path().join("acl");
    passwd(&pw, "alice", "alice-pw", true);
    std::fs::write(&acl, "user alice\ntopic readwrite a/#\n").unwrap();
    let config = dir.path().join("ternd.toml");
    std::fs::write(
        &config,
        format!(
            "sys_interval = 0\n[[listener]]\nbind = \"127.0.0.1:0\"\n[auth]\npassword_file = {:?}\nacl_file = {:?}\n",
            pw.to_str().unwrap(),
            acl.to_str().unwrap()
        ),
    )
    .unwrap();
    let check = ternd()
        .arg("-c")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    let mut child = ternd()
        .arg("-c")
        .arg(&config)
        .arg("--memory")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stdout is read to its end (the listener lines follow the startup line).
    let stdout = child.stdout.take().unwrap();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let _ = first_tx.send(lines.next().unwrap_or_default());
        lines.for_each(drop);
    });
    let line = tokio::time::timeout(TIMEOUT, first_rx)
        .await
        .expect("startup line in time")
        .unwrap();
    let addr: std::net::SocketAddr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut logs = Logs {
        lines: rx,
        seen: Vec::new(),
    };

    // A failed login is logged with client id, username and peer, never the password.
    let (_refused, connack) =
        Client::connect_with(addr, login("intruder", "alice", "not-the-password")).await;
    assert_eq!(connack.reason_code, ReasonCode::BadUserNameOrPassword);
    let logged = logs.wait_for(&["authentication failed", "client_id=intruder"]);
    assert!(
        logged.contains("username=alice") && logged.contains("peer=127.0.0.1:"),
        "{logged}"
    );
    assert!(!logged.contains("not-the-password"), "{logged}");
    let refused = logs.wait_for(&["connect refused", "client_id=intruder"]);
    assert!(!refused.contains("not-the-password"), "{refused}");

    // Bob is not in the file yet; alice may write a/# only.
    let (_bob, connack) = Client::connect_with(addr, login("bob-1", "bob", "bob-pw")).await;
    assert_eq!(connack.reason_code, ReasonCode::BadUserNameOrPassword);
    let (mut alice, connack) =
        Client::connect_with(addr, login("alice-1", "alice", "alice-pw")).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    let ack = alice.publish_qos1(1, "b/x", "before", false).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);

    // New user, new ACL, SIGHUP.
    passwd(&pw, "bob", "bob-pw", false);
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite b/#\nuser bob\ntopic read b/#\n",
    )
    .unwrap();
    signal(&child, "-HUP");
    logs.wait_for(&["SIGHUP", "reloaded"]);

    // Alice's connection is still open, and the new ACL applies to it.
    assert!(alice.ping().await.is_empty());
    let (mut bob, connack) = Client::connect_with(addr, login("bob-1", "bob", "bob-pw")).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        bob.subscribe(1, "b/#", opts(QoS::AtLeastOnce))
            .await
            .reason_codes,
        [ReasonCode::GrantedQoS1]
    );
    let ack = alice.publish_qos1(2, "a/x", "now denied", false).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    let ack = alice.publish_qos1(3, "b/x", "now allowed", false).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(bob.expect_publish().await.topic.as_str(), "b/x");

    // A bad ACL on reload: logged, and the files in use stay (bob can still log in, alice
    // may still write b/#).
    std::fs::write(&acl, "user alice\nthis is not an ACL line\n").unwrap();
    signal(&child, "-HUP");
    let failed = logs.wait_for(&["reload failed", "line 2"]);
    assert!(failed.contains("ERROR"), "{failed}");
    let ack = alice.publish_qos1(4, "b/y", "still allowed", false).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(bob.expect_publish().await.topic.as_str(), "b/y");
    let (_again, connack) = Client::connect_with(addr, login("bob-2", "bob", "bob-pw")).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);

    signal(&child, "-TERM");
    let status = tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("exits in time")
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn check_config_reads_the_auth_files() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic read a/#\nuser\n").unwrap();
    let config = dir.path().join("ternd.toml");
    std::fs::write(
        &config,
        format!("[auth]\nacl_file = {:?}\n", acl.to_str().unwrap()),
    )
    .unwrap();
    let output = ternd()
        .arg("-c")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("acl") && stderr.contains("line 2"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        "[auth]\npassword_file = \"/nonexistent/passwd\"\n",
    )
    .unwrap();
    let output = ternd()
        .arg("-c")
        .arg(&missing)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/passwd"));

    // A hash line that is not a hash: named by line, its text not echoed.
    let pw = dir.path().join("passwd");
    std::fs::write(&pw, "alice:plaintext-secret\n").unwrap();
    let bad_pw = dir.path().join("pw.toml");
    std::fs::write(
        &bad_pw,
        format!("[auth]\npassword_file = {:?}\n", pw.to_str().unwrap()),
    )
    .unwrap();
    let output = ternd()
        .arg("-c")
        .arg(&bad_pw)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 1") && !stderr.contains("plaintext-secret"),
        "{stderr}"
    );

    // Unknown keys of [auth] and of a listener are named.
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[auth]\nallow_anonymus = true\n").unwrap();
    let output = ternd()
        .arg("-c")
        .arg(&typo)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("allow_anonymus") && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[test]
fn ternd_passwd_refuses_what_mosquitto_passwd_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    passwd(&file, "alice", "a", true);
    let run = |args: &[&str]| {
        let output = ternd()
            .arg("passwd")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let f = file.to_str().unwrap();
    // -c and -D together, -U with a username, a password without -b.
    assert!(!run(&["-c", "-D", f, "alice"]).0);
    assert!(!run(&["-U", f, "alice"]).0);
    assert!(!run(&[f, "alice", "pw"]).0);
    // No terminal to prompt on: -b is needed.
    let (ok, stderr) = run(&[f, "bob"]);
    assert!(!ok && stderr.contains("-b"), "{stderr}");
    // Deleting a user that is not there; editing a file that does not exist without -c.
    assert!(!run(&["-D", f, "nobody"]).0);
    let missing = dir.path().join("missing");
    assert!(!run(&["-b", missing.to_str().unwrap(), "bob", "b"]).0);
    assert!(!missing.exists());
    // A username with ':' would break the format.
    assert!(!run(&["-b", f, "a:b", "pw"]).0);
    // The file is intact and readable by its owner only.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("alice:$argon2id$") && text.lines().count() == 1,
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
