//! CONNECT: acceptance, client identifiers and takeover.

mod support;

use support::*;
use tern_codec::{Packet, ProtocolVersion, ReasonCode};

#[tokio::test]
async fn v5_and_v311_clients_connect() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    // [MQTT-3.2.0-1]: the first packet from the server is CONNACK.
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let (client, connack) = Client::connect_with(addr, connect(version, "c1", true)).await;
        assert_eq!(connack.reason_code, ReasonCode::Success);
        assert!(!connack.session_present);
        client.disconnect().await;
    }
    assert!(broker.shutdown().await);
}

#[tokio::test]
async fn v5_empty_client_id_gets_an_assigned_one() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    // [MQTT-3.1.3-6], [MQTT-3.1.3-7]: a unique identifier is assigned and returned as the
    // Assigned Client Identifier [MQTT-3.2.2-16].
    let (a, first) = Client::connect_with(addr, connect(ProtocolVersion::V5, "", true)).await;
    let (b, second) = Client::connect_with(addr, connect(ProtocolVersion::V5, "", true)).await;
    assert_eq!(first.reason_code, ReasonCode::Success);
    let first_id = first
        .properties
        .assigned_client_identifier
        .expect("assigned");
    let second_id = second
        .properties
        .assigned_client_identifier
        .expect("assigned");
    assert!(!first_id.is_empty());
    assert_ne!(first_id, second_id);
    a.disconnect().await;
    b.disconnect().await;
}

#[tokio::test]
async fn v311_empty_client_id_rules() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    // [MQTT-3.1.3-6]/[MQTT-3.1.3-7] (3.1.1): a zero-byte ClientId with CleanSession 1 is
    // accepted.
    let (client, connack) =
        Client::connect_with(addr, connect(ProtocolVersion::V3_1_1, "", true)).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    client.disconnect().await;
    // [MQTT-3.1.3-8] (3.1.1): with CleanSession 0 it is refused with return code 0x02 and
    // the connection closed.
    let (mut client, connack) =
        Client::connect_with(addr, connect(ProtocolVersion::V3_1_1, "", false)).await;
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    client.expect_closed().await;
}

#[tokio::test]
async fn second_connection_takes_the_session_over() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut first = Client::connected(addr, ProtocolVersion::V5, "dup", false).await;
    let second = Client::connected(addr, ProtocolVersion::V5, "dup", false).await;
    // [MQTT-3.1.4-3]: the existing client gets DISCONNECT 0x8E and its connection is closed.
    let disconnect = first.expect_disconnect().await;
    assert_eq!(disconnect.reason_code, ReasonCode::SessionTakenOver);
    first.expect_closed().await;
    second.disconnect().await;

    // 3.1.1 has no DISCONNECT from the server: the old connection is just closed.
    let mut old = Client::connected(addr, ProtocolVersion::V3_1_1, "dup311", true).await;
    let new = Client::connected(addr, ProtocolVersion::V3_1_1, "dup311", true).await;
    old.expect_closed().await;
    new.disconnect().await;
}

#[tokio::test]
async fn malformed_packet_closes_only_that_connection() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut good = Client::connected(addr, ProtocolVersion::V5, "good", true).await;
    let mut bad = Client::connected(addr, ProtocolVersion::V5, "bad", true).await;
    // A SUBSCRIBE with reserved flag bits 0000 instead of 0010 is malformed [MQTT-3.8.1-1].
    bad.send_raw(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'a'])
        .await;
    // [MQTT-4.13.1-1]: DISCONNECT with a reason code, then the connection is closed.
    match bad.recv_or_closed().await {
        Some(Packet::Disconnect(d)) => {
            assert!(d.reason_code.is_error(), "{d:?}");
            bad.expect_closed().await;
        }
        None => {}
        Some(other) => panic!("unexpected {other:?}"),
    }
    // The other connection is unaffected.
    assert!(good.ping().await.is_empty());
    good.disconnect().await;
}
