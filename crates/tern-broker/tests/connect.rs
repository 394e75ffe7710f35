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

/// A broker that waits `seconds` for CONNECT.
async fn broker_with_connect_timeout(seconds: u64) -> tern_broker::BrokerHandle {
    let mut config = config();
    config.limits.connect_timeout = seconds;
    broker_with(config).await
}

/// Reads until the broker closes the connection; returns everything it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("closed in time");
    received
}

#[tokio::test]
async fn socket_without_connect_is_closed_after_the_connect_timeout() {
    let broker = broker_with_connect_timeout(1).await;
    let addr = broker.local_addrs()[0];
    let opened = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Nothing is sent. A server SHOULD close a connection that sends no CONNECT within a
    // reasonable time (MQTT 5.0 section 3.1.4, first step), here the connect timeout; nothing
    // is written to it (no CONNACK without CONNECT).
    assert!(read_until_closed(&mut stream).await.is_empty());
    assert!(opened.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(broker.stats().clients_connected, 0);
}

#[tokio::test]
async fn connect_trickled_one_byte_a_second_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = broker_with_connect_timeout(2).await;
    let addr = broker.local_addrs()[0];
    let mut bytes = bytes::BytesMut::new();
    Packet::from(connect(ProtocolVersion::V3_1_1, "slowloris", true))
        .encode(ProtocolVersion::V3_1_1, &mut bytes)
        .unwrap();
    let opened = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // One byte a second: every byte arrives well within any idle limit, but the CONNECT as a
    // whole does not arrive within the connect timeout, which partial bytes do not reset.
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut sent = 0;
    let mut buf = [0u8; 64];
    tokio::time::timeout(TIMEOUT, async {
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    assert!(sent < bytes.len(), "the whole CONNECT went through");
                    if stream.write_all(&bytes[sent..=sent]).await.is_err() {
                        return;
                    }
                    sent += 1;
                }
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => panic!("unexpected {n} bytes from the broker"),
                },
            }
        }
    })
    .await
    .expect("cut off in time");
    assert!(sent < bytes.len());
    assert!(opened.elapsed() >= std::time::Duration::from_millis(1900));
}

#[tokio::test]
async fn mqtt_3_1_3_1_1_and_5_0_on_one_port() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    // The protocol name and level of each CONNECT select the version (3.1: `MQIsdp` level 3;
    // 3.1.1: `MQTT` level 4 [MQTT-3.1.2-1]; 5.0: `MQTT` level 5); every CONNACK is in the
    // client's own format (the test clients decode with their version only).
    let mut clients = Vec::new();
    for (version, id) in [
        (ProtocolVersion::V3_1, "v31"),
        (ProtocolVersion::V3_1_1, "v311"),
        (ProtocolVersion::V5, "v5"),
    ] {
        let mut client = Client::connected(addr, version, id, true).await;
        client
            .subscribe(1, "versions/#", opts(tern_codec::QoS::AtLeastOnce))
            .await;
        clients.push(client);
    }
    // Each publishes once at QoS 1; every client receives all three, in its own format, and
    // the acknowledgement of its own.
    for (i, client) in clients.iter_mut().enumerate() {
        let id = 10 + i as u16;
        let payload = ["from 3.1", "from 3.1.1", "from 5.0"][i];
        client
            .send(Packet::Publish(publish(
                "versions/x",
                payload,
                tern_codec::QoS::AtLeastOnce,
                Some(id),
            )))
            .await;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut payloads = Vec::new();
        let mut acked = false;
        while payloads.len() < 3 || !acked {
            match client.recv().await {
                Packet::Publish(p) => {
                    payloads.push(String::from_utf8(p.payload.to_vec()).unwrap());
                    client
                        .send(Packet::PubAck(tern_codec::Ack::new(p.packet_id.unwrap())))
                        .await;
                }
                Packet::PubAck(a) => {
                    assert_eq!(a.packet_id, pid(10 + i as u16));
                    acked = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        payloads.sort();
        assert_eq!(payloads, ["from 3.1", "from 3.1.1", "from 5.0"]);
        assert!(client.ping().await.is_empty());
    }
}

#[tokio::test]
async fn unsupported_protocol_level_is_refused() {
    use tokio::io::AsyncWriteExt;
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    // CONNECT with protocol name `MQTT` and `level`, Clean Start, keep alive 0, no
    // properties, client identifier "x".
    let raw_connect = |level: u8| {
        vec![
            0x10, 0x0e, 0x00, 0x04, b'M', b'Q', b'T', b'T', level, 0x02, 0x00, 0x00, 0x00, 0x00,
            0x01, b'x',
        ]
    };
    // [MQTT-3.1.2-2]: CONNACK "unsupported protocol version", then the connection is
    // closed. A newer level (6) is answered in the newest format the broker knows, 5.0:
    // reason code 0x84 and an empty property length...
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&raw_connect(6)).await.unwrap();
    assert_eq!(
        read_until_closed(&mut stream).await,
        [0x20, 0x03, 0x00, 0x84, 0x00]
    );
    // ...an older one (2) in the 3.1.1 format: return code 1.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&raw_connect(2)).await.unwrap();
    assert_eq!(
        read_until_closed(&mut stream).await,
        [0x20, 0x02, 0x00, 0x01]
    );
    assert_eq!(broker.stats().sessions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_after_one_and_a_half_keep_alives() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut c = connect(ProtocolVersion::V3_1_1, "ka-silent", true);
    c.keep_alive = 1;
    let (mut silent, _) = Client::connect_with(addr, c).await;
    let mut c = connect(ProtocolVersion::V3_1_1, "ka-pinging", true);
    c.keep_alive = 1;
    let (mut pinging, _) = Client::connect_with(addr, c).await;
    let since = std::time::Instant::now();
    // A client that sends a packet within each keep alive stays connected meanwhile.
    let pinger = tokio::spawn(async move {
        while since.elapsed() < std::time::Duration::from_secs(3) {
            assert!(pinging.ping().await.is_empty());
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        }
        pinging
    });
    // [MQTT-3.1.2-24]: nothing heard for 1.5 times the keep alive: the server closes the
    // connection (3.1.1 has no DISCONNECT from the server).
    silent.expect_closed().await;
    assert!(since.elapsed() >= std::time::Duration::from_millis(1400));
    let pinging = pinger.await.unwrap();
    pinging.disconnect().await;
    assert!(broker.shutdown().await);
}
