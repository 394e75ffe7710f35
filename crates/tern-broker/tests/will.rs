//! Will messages.

mod support;

use support::*;
use tern_codec::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn with_will(
    version: ProtocolVersion,
    client_id: &str,
    topic: &str,
    delay: Option<u32>,
    expiry: u32,
) -> Connect {
    let mut c = connect(version, client_id, true);
    let mut w = will(topic, "gone");
    w.properties.will_delay_interval = delay;
    c.will = Some(w);
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

async fn watcher(addr: std::net::SocketAddr) -> Client {
    let mut w = Client::connected(addr, V5, "watcher", true).await;
    w.subscribe(1, "wills/#", opts(QoS::AtMostOnce)).await;
    w
}

#[tokio::test]
async fn normal_disconnect_discards_the_will() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut watcher = watcher(addr).await;
    for (version, id) in [(V5, "polite5"), (ProtocolVersion::V3_1_1, "polite311")] {
        let (client, _) =
            Client::connect_with(addr, with_will(version, id, "wills/polite", None, 0)).await;
        // [MQTT-3.14.4-3] (5.0) / [MQTT-3.1.2-10] (3.1.1): DISCONNECT 0x00 discards the Will.
        client.disconnect().await;
    }
    assert!(watcher.ping().await.is_empty());
}

#[tokio::test]
async fn unclean_end_publishes_the_will() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut watcher = watcher(addr).await;
    for (version, id) in [(V5, "crash5"), (ProtocolVersion::V3_1_1, "crash311")] {
        let (client, _) =
            Client::connect_with(addr, with_will(version, id, "wills/crash", None, 0)).await;
        // [MQTT-3.1.2-8]: the connection closed without DISCONNECT: the Will is published.
        client.drop_connection();
        let p = watcher.expect_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("wills/crash", &b"gone"[..])
        );
    }
    // 5.0: DISCONNECT 0x04 asks for the Will (section 3.14.2.1).
    let (client, _) =
        Client::connect_with(addr, with_will(V5, "asks", "wills/asked", None, 0)).await;
    client
        .disconnect_with(Disconnect {
            reason_code: ReasonCode::DisconnectWithWillMessage,
            ..Disconnect::default()
        })
        .await;
    assert_eq!(watcher.expect_publish().await.topic.as_str(), "wills/asked");
}

#[tokio::test]
async fn protocol_error_publishes_the_will() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut watcher = watcher(addr).await;
    let (mut client, _) =
        Client::connect_with(addr, with_will(V5, "broken", "wills/broken", None, 0)).await;
    // A second CONNECT is a Protocol Error [MQTT-3.1.0-2]: the connection closes uncleanly.
    client.send(Packet::from(connect(V5, "broken", true))).await;
    assert_eq!(
        client.expect_disconnect().await.reason_code,
        ReasonCode::ProtocolError
    );
    assert_eq!(
        watcher.expect_publish().await.topic.as_str(),
        "wills/broken"
    );
}

#[tokio::test]
async fn will_delay_and_reconnect_within_it() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut watcher = watcher(addr).await;
    // Client A: Will Delay 1 s, reconnects at once: [MQTT-3.1.3-9] its Will is not sent.
    let (a, _) = Client::connect_with(addr, with_will(V5, "a", "wills/a", Some(1), 300)).await;
    a.drop_connection();
    let mut again = connect(V5, "a", false);
    again.properties.session_expiry_interval = Some(300);
    let (a, connack) = Client::connect_with(addr, again).await;
    assert!(connack.session_present);
    // Client B: Will Delay 2 s, stays away: its Will comes after the delay [MQTT-3.1.2-8].
    let (b, _) = Client::connect_with(addr, with_will(V5, "b", "wills/b", Some(2), 300)).await;
    let dropped_at = std::time::Instant::now();
    b.drop_connection();
    // The first Will to arrive is B's, after its delay; A's (due at 1 s) never came.
    let p = watcher.expect_publish().await;
    assert_eq!(p.topic.as_str(), "wills/b");
    assert!(dropped_at.elapsed() >= std::time::Duration::from_millis(1900));
    a.disconnect().await;
}

#[tokio::test]
async fn session_end_publishes_a_delayed_will_early() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut watcher = watcher(addr).await;
    // Will Delay 100 s but Session Expiry 1 s: the Will is published when the session ends
    // (section 3.1.3.2.2: the smaller of the two).
    let (c, _) =
        Client::connect_with(addr, with_will(V5, "brief", "wills/brief", Some(100), 1)).await;
    c.drop_connection();
    assert_eq!(watcher.expect_publish().await.topic.as_str(), "wills/brief");
}
