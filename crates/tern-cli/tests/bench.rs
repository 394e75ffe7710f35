//! `tern bench pubsub` and `tern bench conn` (the built binary) against an in-process ternd:
//! the `tern-bench {json}` line has the contract's fields and counts what happened.

mod support;

use support::*;

/// The JSON of the `tern-bench ` line of a successful run.
async fn bench(args: &[&str]) -> serde_json::Value {
    let out = run(tern(args)).await;
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tern-bench "))
        .unwrap_or_else(|| panic!("no tern-bench line in {stdout:?}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    for key in [
        "sent",
        "received",
        "lost",
        "msgs_per_s",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "connect_rate",
        "elapsed_s",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    json
}

fn n(json: &serde_json::Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} not a count in {json}"))
}

/// The flags bench-compare passes (xtask/src/bench_compare.rs), with small counts.
async fn pubsub(
    port: u16,
    qos: &str,
    publishers: &str,
    subscribers: &str,
    extra: &[&str],
) -> serde_json::Value {
    let port = port.to_string();
    let mut args = vec![
        "bench",
        "pubsub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "311",
        "--quiet",
        "--publishers",
        publishers,
        "--subscribers",
        subscribers,
        "--qos",
        qos,
        "--size",
        "64",
        "--topic",
        "bench/%i",
        "--sub-topic",
        "bench/#",
        "--count",
        "3001",
    ];
    args.extend_from_slice(extra);
    bench(&args).await
}

/// Every message reaches every subscriber: 3,001 messages from 3 publishers (1,001 + 1,000 +
/// 1,000) times 2 subscribers, at QoS 0, 1 and 2; QoS 1/2 publishes are all acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn pubsub_counts_at_every_qos() {
    // Queues sized like bench-compare's, so that ternd drops no QoS 0 message.
    let mut config = tern_broker::Config::with_listeners(["127.0.0.1:0".parse().unwrap()]);
    config.session.max_queued_messages = 1_000_000;
    config.mailbox.max_messages = 65_536;
    config.mailbox.max_bytes = 256 << 20;
    let (_broker, addr) = ternd_with(config).await;
    for qos in ["0", "1", "2"] {
        let json = pubsub(addr.port(), qos, "3", "2", &[]).await;
        assert_eq!(n(&json, "sent"), 3001, "{json}");
        assert_eq!(n(&json, "expected"), 6002, "{json}");
        assert_eq!(n(&json, "received"), 6002, "{json}");
        assert_eq!(n(&json, "lost"), 0, "{json}");
        if qos != "0" {
            assert_eq!(n(&json, "acked"), 3001, "{json}");
        }
        assert!(json["msgs_per_s"].as_f64().unwrap() > 0.0, "{json}");
        assert!(n(&json, "p50_us") <= n(&json, "p99_us"), "{json}");
        assert!(n(&json, "p99_us") <= n(&json, "max_us"), "{json}");
    }
}

/// Paced at --rate with extra wildcard subscriptions that match nothing, over MQTT 5.0.
#[tokio::test(flavor = "multi_thread")]
async fn pubsub_rate_extra_subs_and_v5() {
    let (_broker, addr) = ternd().await;
    let port = addr.port().to_string();
    let json = bench(&[
        "bench",
        "pubsub",
        "-p",
        &port,
        "-V",
        "5",
        "--quiet",
        "--publishers",
        "2",
        "--subscribers",
        "1",
        "--qos",
        "1",
        "--count",
        "1000",
        "--rate",
        "5000",
        "--extra-subs",
        "500",
        "--inflight",
        "8",
    ])
    .await;
    assert_eq!(n(&json, "received"), 1000, "{json}");
    assert_eq!(n(&json, "lost"), 0, "{json}");
    assert_eq!(n(&json, "extra_subs"), 500, "{json}");
}

/// A publisher topic the filter does not match expects nothing from it.
#[tokio::test(flavor = "multi_thread")]
async fn expected_counts_only_matching_topics() {
    let (_broker, addr) = ternd().await;
    let port = addr.port().to_string();
    let json = bench(&[
        "bench",
        "pubsub",
        "-p",
        &port,
        "--quiet",
        "--publishers",
        "2",
        "--subscribers",
        "2",
        "--qos",
        "1",
        "--count",
        "200",
        "--topic",
        "m/%i",
        "--sub-topic",
        "m/0",
    ])
    .await;
    assert_eq!(n(&json, "sent"), 200, "{json}");
    assert_eq!(n(&json, "expected"), 200, "{json}");
    assert_eq!(n(&json, "received"), 200, "{json}");
}

/// `tern bench conn` opens, holds and closes the connections.
#[tokio::test(flavor = "multi_thread")]
async fn conn_opens_every_connection() {
    let (broker, addr) = ternd().await;
    let port = addr.port().to_string();
    let json = bench(&[
        "bench",
        "conn",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "311",
        "--quiet",
        "--count",
        "150",
        "--hold",
        "0.2",
        "--concurrency",
        "16",
    ])
    .await;
    assert_eq!(n(&json, "connected"), 150, "{json}");
    assert_eq!(n(&json, "failed"), 0, "{json}");
    assert!(json["connect_rate"].as_f64().unwrap() > 0.0, "{json}");
    assert!(broker.stats().connections >= 150);
    // Ramped.
    let json = bench(&[
        "bench", "conn", "-p", &port, "--quiet", "--count", "20", "--hold", "0", "--ramp", "200",
    ])
    .await;
    assert_eq!(n(&json, "connected"), 20, "{json}");
}

/// A broker that is not there: status 1, no panic.
#[tokio::test(flavor = "multi_thread")]
async fn bench_without_broker_fails() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    for mode in ["pubsub", "conn"] {
        let out = run(tern([
            "bench", mode, "-p", &port, "--quiet", "--count", "5",
        ]))
        .await;
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    }
}
