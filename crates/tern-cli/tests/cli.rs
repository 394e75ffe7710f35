//! `tern pub` and `tern sub` (the built binary) against an in-process ternd over loopback
//! TCP and WebSocket: QoS round trips, retained messages, exit codes, input and output modes.

mod support;

use support::*;
use tern_broker::Config;
use tern_broker::config::ListenerConfig;
use tern_client::{Client, QoS};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// `tern pub` with the broker's host and port first.
fn publish(addr: std::net::SocketAddr, rest: &[&str]) -> tokio::process::Command {
    let mut cmd = tern(["pub"]);
    cmd.args(host_port(addr)).args(rest);
    cmd
}

async fn sub(addr: std::net::SocketAddr, rest: &[&str], filters: usize) -> Sub {
    let mut a = host_port(addr);
    a.extend(args(rest));
    Sub::start(&a, filters).await
}

/// pub → sub at QoS 0, 1 and 2, in 3.1.1 and 5.0: the message arrives with the QoS asked
/// for (the minimum of the publish QoS and the granted QoS [MQTT-3.8.4-6]), and both exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn round_trips_at_every_qos_and_version() {
    let (_broker, addr) = ternd().await;
    for version in ["311", "5"] {
        for qos in ["0", "1", "2"] {
            let topic = format!("rt/{version}/{qos}");
            let mut s = sub(
                addr,
                &[
                    "-V",
                    version,
                    "-q",
                    "2",
                    "-t",
                    "rt/#",
                    "-C",
                    "1",
                    "-F",
                    "%t %q %r %p",
                ],
                1,
            )
            .await;
            let out = run(publish(
                addr,
                &["-V", version, "-q", qos, "-t", &topic, "-m", "hello"],
            ))
            .await;
            assert!(out.status.success(), "{}", describe(&out));
            assert_eq!(s.line().await, format!("{topic} {qos} 0 hello"));
            assert_eq!(s.finish().await.0, Some(0));
        }
    }
}

/// -r keeps the message: a later subscriber gets it with RETAIN set [MQTT-3.3.1-6]; with
/// --retained-only it prints only retained messages and exits at the first live one.
#[tokio::test(flavor = "multi_thread")]
async fn retained_and_retained_only() {
    let (_broker, addr) = ternd().await;
    for (topic, payload) in [("ret/1", "one"), ("ret/2", "two")] {
        let out = run(publish(
            addr,
            &["-q", "1", "-r", "-t", topic, "-m", payload],
        ))
        .await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    let mut s = sub(
        addr,
        &["-t", "ret/#", "--retained-only", "-v", "-q", "1"],
        1,
    )
    .await;
    let mut got = vec![s.line().await, s.line().await];
    got.sort();
    assert_eq!(got, ["ret/1 one", "ret/2 two"]);
    // A live message (RETAIN 0 for a live delivery [MQTT-3.3.1-9]) ends it.
    let out = run(publish(addr, &["-t", "ret/3", "-m", "live"])).await;
    assert!(out.status.success(), "{}", describe(&out));
    let (code, rest) = s.finish().await;
    assert_eq!(code, Some(0));
    assert_eq!(rest, "", "the live message is not printed");

    // -R hides retained messages: only the live one is printed.
    let mut s = sub(addr, &["-t", "ret/#", "-R", "-C", "1"], 1).await;
    let out = run(publish(addr, &["-t", "ret/4", "-m", "fresh"])).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(s.line().await, "fresh");
    assert_eq!(s.finish().await.0, Some(0));
}

/// --remove-retained clears what it receives: an empty retained message deletes the
/// retained message of the topic [MQTT-3.3.1-10], so a new subscriber gets none.
#[tokio::test(flavor = "multi_thread")]
async fn remove_retained_clears_the_topic() {
    let (_broker, addr) = ternd().await;
    let out = run(publish(addr, &["-q", "1", "-r", "-t", "rr/1", "-m", "old"])).await;
    assert!(out.status.success(), "{}", describe(&out));
    let mut s = sub(
        addr,
        &["-t", "rr/#", "--remove-retained", "--retained-only", "-v"],
        1,
    )
    .await;
    assert_eq!(s.line().await, "rr/1 old");
    // The deletion reaches the subscriber as a live (not retained) message: it exits.
    assert_eq!(s.finish().await.0, Some(0));

    // A new subscriber gets no retained message: the first message is a live marker.
    let client = within(
        "connect",
        Client::builder(&format!("mqtt://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    let mut check = client.subscribe("rr/#", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("rr/marker", QoS::AtLeastOnce, "m")
        .await
        .unwrap();
    let first = within("a message", check.recv()).await.unwrap();
    assert_eq!(first.topic(), "rr/marker");
    client.disconnect().await;
}

/// -l publishes each line of stdin (empty lines skipped); -C exits after that many.
#[tokio::test(flavor = "multi_thread")]
async fn stdin_lines_and_count() {
    let (_broker, addr) = ternd().await;
    let mut s = sub(addr, &["-t", "lines", "-C", "3", "-q", "1"], 1).await;
    let out = run_with_stdin(
        publish(addr, &["-t", "lines", "-l", "-q", "1"]),
        b"first\n\nsecond\r\nthird\n",
    )
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(s.line().await, "first");
    assert_eq!(s.line().await, "second");
    assert_eq!(s.line().await, "third");
    let (code, rest) = s.finish().await;
    assert_eq!(code, Some(0));
    assert_eq!(rest, "");
}

/// -f sends a file as is (binary), -n a zero-length message; -F prints %x, %l, %%, escapes.
#[tokio::test(flavor = "multi_thread")]
async fn file_null_message_and_format() {
    let (_broker, addr) = ternd().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payload.bin");
    std::fs::write(&path, [0u8, 1, 0xfe, b'\n', b'A']).unwrap();
    let mut s = sub(
        addr,
        &["-t", "f/#", "-C", "2", "-F", "%t\\t%l %x %X 100%%"],
        1,
    )
    .await;
    let out = run(publish(
        addr,
        &["-t", "f/file", "-f", path.to_str().unwrap()],
    ))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(s.line().await, "f/file\t5 0001fe0a41 0001FE0A41 100%");
    let out = run(publish(addr, &["-t", "f/null", "-n"])).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(s.line().await, "f/null\t0   100%");
    assert_eq!(s.finish().await.0, Some(0));

    // A missing file fails before connecting, with status 1.
    let out = run(publish(addr, &["-t", "f/x", "-f", "/nonexistent/file"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

/// -N drops the newline; -F %j is JSON; -v prints the topic.
#[tokio::test(flavor = "multi_thread")]
async fn verbose_no_eol_and_json() {
    let (_broker, addr) = ternd().await;
    let mut s = sub(addr, &["-t", "j", "-C", "1", "-F", "%j", "-q", "1"], 1).await;
    let out = run(publish(addr, &["-t", "j", "-m", "x", "-q", "1"])).await;
    assert!(out.status.success(), "{}", describe(&out));
    let json: serde_json::Value = serde_json::from_str(&s.line().await).unwrap();
    assert_eq!(json["topic"], "j");
    assert_eq!(json["qos"], 1);
    assert_eq!(json["payloadlen"], 1);
    assert_eq!(s.finish().await.0, Some(0));

    let s = sub(addr, &["-t", "n/#", "-C", "2", "-N", "-v"], 1).await;
    for (t, m) in [("n/a", "1"), ("n/b", "2")] {
        let out = run(publish(addr, &["-t", t, "-m", m])).await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    let (code, rest) = s.finish().await;
    assert_eq!(code, Some(0));
    assert_eq!(rest, "n/a 1n/b 2");
}

/// -W ends a subscriber that got nothing with mosquitto's MOSQ_ERR_TIMEOUT, 27.
#[tokio::test(flavor = "multi_thread")]
async fn timeout_exit_code() {
    let (_broker, addr) = ternd().await;
    let s = sub(addr, &["-t", "quiet", "-W", "1"], 1).await;
    let (code, rest) = s.finish().await;
    assert_eq!(code, Some(27));
    assert_eq!(rest, "");
}

/// -L URLs: mqtt:// with the topic as path, and ws:// against a WebSocket listener.
#[tokio::test(flavor = "multi_thread")]
async fn url_option_over_tcp_and_websocket() {
    let mut config = Config::with_listeners(["127.0.0.1:0".parse().unwrap()]);
    config
        .listeners
        .push(ListenerConfig::new("127.0.0.1:0".parse().unwrap()).websocket("/mqtt"));
    let (broker, tcp) = ternd_with(config).await;
    let ws = broker.local_addrs()[1];
    let mut s = Sub::start(
        &args(&[
            "-L",
            &format!("ws://{ws}/url/#"),
            "-C",
            "2",
            "-v",
            "-V",
            "5",
        ]),
        1,
    )
    .await;
    let out = run(tern([
        "pub",
        "-L",
        &format!("mqtt://user:pw@{tcp}/url/tcp"),
        "-m",
        "via tcp",
    ]))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(tern([
        "pub",
        "-L",
        &format!("ws://{ws}/url/ws"),
        "-m",
        "via ws",
        "-q",
        "1",
    ]))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(s.line().await, "url/tcp via tcp");
    assert_eq!(s.line().await, "url/ws via ws");
    assert_eq!(s.finish().await.0, Some(0));
}

/// A refused CONNECT exits with the CONNACK code, like mosquitto_pub: the 3.1.1 return
/// code, or the 5.0 reason code. ternd has no password check yet, so the refusals are those
/// it has: a 3.1.1 keep alive above its maximum (return code 2, Identifier rejected, as
/// mosquitto does), and a Will topic beyond its topic length limit (5.0: 0x90 Topic Name
/// invalid; 3.1.1: 5 Not authorized).
#[tokio::test(flavor = "multi_thread")]
async fn refused_connect_exit_codes() {
    let mut config = Config::with_listeners(["127.0.0.1:0".parse().unwrap()]);
    config.limits.max_keepalive = 100;
    config.limits.max_topic_length = 16;
    let (_broker, addr) = ternd_with(config).await;
    let out = run(publish(addr, &["-t", "t", "-m", "x", "-k", "200"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let long = "will/a/very/long/topic";
    let out = run(publish(
        addr,
        &["-t", "t", "-m", "x", "--will-topic", long, "-V", "5"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0x90), "{}", describe(&out));
    let out = run(publish(addr, &["-t", "t", "-m", "x", "--will-topic", long])).await;
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    // The same for tern sub.
    let mut cmd = tern(["sub"]);
    cmd.args(host_port(addr)).args(["-t", "t", "-k", "200"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // Nobody listening: not a CONNACK, status 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cmd = tern([
        "pub",
        "-p",
        &port.to_string(),
        "-h",
        "127.0.0.1",
        "-t",
        "t",
        "-m",
        "x",
    ]);
    cmd.args(["--connect-timeout", "10"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // A usage error is status 1 too (mosquitto's), not clap's 2.
    let out = run(tern(["pub", "-q", "7", "-t", "t", "-m", "x"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // -x needs 5.0.
    let out = run(publish(addr, &["-t", "t", "-m", "x", "-x", "10"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

/// --repeat sends the message N times.
#[tokio::test(flavor = "multi_thread")]
async fn repeat() {
    let (_broker, addr) = ternd().await;
    let s = sub(addr, &["-t", "rep", "-C", "3"], 1).await;
    let out = run(publish(
        addr,
        &[
            "-t",
            "rep",
            "-m",
            "r",
            "--repeat",
            "3",
            "--repeat-delay",
            "0.01",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let (code, rest) = s.finish().await;
    assert_eq!(code, Some(0));
    assert_eq!(rest, "r\nr\nr\n");
}
