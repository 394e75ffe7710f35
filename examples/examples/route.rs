//! Decode a byte stream arriving in small chunks with `tern-codec`, and route its PUBLISH
//! packets to the subscriptions of a `tern-topic` tree: the two lower layers of a broker.
//!
//! Run with `cargo run -p tern-examples --example route`.

use std::num::NonZeroU16;

use bytes::BytesMut;
use tern_codec::{
    Connect, ConnectProperties, Decoder, MqttString, Packet, ProtocolVersion, Publish, QoS,
    Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
};
use tern_topic::{Match, SubscriptionFilter, SubscriptionTree};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // What a client sends: CONNECT, SUBSCRIBE home/+/light, then two PUBLISH packets.
    let version = ProtocolVersion::V5;
    let mut wire = BytesMut::new();
    let packets = [
        Packet::from(Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 60,
            client_id: MqttString::from_static("lamp-panel"),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }),
        Packet::Subscribe(Subscribe {
            packet_id: NonZeroU16::MIN,
            properties: SubscribeProperties::default(),
            subscriptions: tern_codec::smallvec::smallvec![Subscription {
                filter: MqttString::from_static("home/+/light"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            }],
        }),
        publish("home/kitchen/light", "on"),
        publish("home/kitchen/oven", "200C"),
    ];
    for packet in &packets {
        packet.encode(version, &mut wire)?;
    }
    println!(
        "client wrote {} bytes in {} packets",
        wire.len(),
        packets.len()
    );

    // The server side: bytes arrive 7 at a time; the decoder says when a packet is whole.
    let mut decoder = Decoder::new(64 * 1024);
    let mut subscriptions = SubscriptionTree::new();
    let mut buf = BytesMut::new();
    for chunk in wire.chunks(7) {
        buf.extend_from_slice(chunk);
        while let Some(packet) = decoder.decode(&mut buf)? {
            match packet {
                Packet::Connect(c) => println!("CONNECT from {} ({})", c.client_id, c.protocol),
                Packet::Subscribe(s) => {
                    for sub in &s.subscriptions {
                        let filter = SubscriptionFilter::new(&sub.filter)?;
                        subscriptions.insert(&filter, "lamp-panel", sub.options.qos);
                        println!("SUBSCRIBE {} at {:?}", sub.filter, sub.options.qos);
                    }
                }
                Packet::Publish(p) => {
                    let mut reached = 0;
                    subscriptions.for_each_match(&p.topic, |m| {
                        if let Match::Subscription { key, value } = m {
                            reached += 1;
                            println!("PUBLISH {} -> {key} at {:?}", p.topic, (*value).min(p.qos));
                        }
                    });
                    if reached == 0 {
                        println!("PUBLISH {} -> no subscriber", p.topic);
                    }
                }
                other => println!("{:?}", other.packet_type()),
            }
        }
    }
    Ok(())
}

fn publish(topic: &'static str, payload: &'static str) -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from_static(topic),
        packet_id: NonZeroU16::new(2),
        payload: payload.into(),
        ..Publish::default()
    })
}
