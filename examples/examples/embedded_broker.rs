//! An MQTT broker embedded in an application: started on an ephemeral loopback port, a
//! client subscribed over TCP (raw `tern-codec` packets), a message published in-process, and
//! a graceful shutdown.
//!
//! `cargo run -p tern-examples --example embedded_broker`

use bytes::BytesMut;
use tern_broker::{Broker, Config};
use tern_codec::{
    Connect, ConnectProperties, Decoder, MAX_PACKET_SIZE, MqttString, Packet, ProtocolVersion,
    Publish, QoS, Subscribe, Subscription, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = Broker::new(Config::with_listeners(["127.0.0.1:0".parse()?]))
        .start()
        .await?;
    let addr = broker.local_addrs()[0];
    println!("broker listening on {addr}");

    // A client: CONNECT, then SUBSCRIBE to `sensors/#`.
    let version = ProtocolVersion::V5;
    let mut stream = TcpStream::connect(addr).await?;
    let mut out = BytesMut::new();
    Packet::from(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        client_id: MqttString::from_static("example-client"),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    })
    .encode(version, &mut out)?;
    Packet::Subscribe(Subscribe {
        packet_id: 1.try_into()?,
        properties: Default::default(),
        subscriptions: tern_codec::smallvec::smallvec![Subscription {
            filter: MqttString::from_static("sensors/#"),
            options: SubscriptionOptions {
                qos: QoS::AtMostOnce,
                ..Default::default()
            },
        }],
    })
    .encode(version, &mut out)?;
    stream.write_all(&out).await?;

    let mut decoder = Decoder::with_version(version, MAX_PACKET_SIZE);
    let mut buf = BytesMut::new();
    loop {
        let packet = match decoder.decode(&mut buf)? {
            Some(packet) => packet,
            None => {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err("broker closed the connection".into());
                }
                continue;
            }
        };
        match packet {
            Packet::ConnAck(connack) => println!("connected: {}", connack.reason_code),
            Packet::SubAck(_) => {
                // Subscribed: publish from inside the application.
                let delivered = broker.publish(Publish {
                    topic: MqttString::from_static("sensors/kitchen"),
                    payload: "21.5".into(),
                    ..Publish::default()
                })?;
                println!("published in-process to {delivered} session(s)");
            }
            Packet::Publish(publish) => {
                println!(
                    "client received {} = {}",
                    publish.topic,
                    String::from_utf8_lossy(&publish.payload)
                );
                break;
            }
            other => println!("client received {other:?}"),
        }
    }

    let clean = broker.shutdown().await;
    println!("broker stopped (all connections closed in time: {clean})");
    Ok(())
}
