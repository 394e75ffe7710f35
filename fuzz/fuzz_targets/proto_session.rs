//! Feeds arbitrary (time step, input) sequences to a client and a server session of
//! `tern-proto` and checks that neither panics and both keep their invariants.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_codec::{MqttString, ProtocolVersion, Publish, QoS, ReasonCode};
use tern_proto::{
    Accept, AckMode, ClientConfig, ClientSession, DeliveryOptions, Event, Message, ServerConfig,
    ServerSession,
};

#[derive(Arbitrary, Debug)]
enum Input {
    /// Raw bytes from the peer.
    Bytes(Vec<u8>),
    /// Time passes, then timers run.
    Advance(u16),
    /// The application publishes (client) or the broker delivers (server).
    Publish {
        qos: u8,
        topic: u8,
        payload: Vec<u8>,
    },
    /// The application acknowledges a packet identifier.
    Ack(u16),
    /// The transport closes.
    Close,
}

#[derive(Arbitrary, Debug)]
struct Case {
    version: u8,
    manual: bool,
    inputs: Vec<Input>,
}

fn version(v: u8) -> ProtocolVersion {
    match v % 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    }
}

fn message(qos: u8, topic: u8, payload: Vec<u8>) -> Publish {
    let topics = ["a", "a/b", "c/d/e"];
    Publish {
        qos: QoS::from_u8(qos % 3).unwrap_or_default(),
        topic: MqttString::from_static(topics[usize::from(topic) % topics.len()]),
        payload: payload.into(),
        ..Publish::default()
    }
}

fuzz_target!(|case: Case| {
    let base = Instant::now();
    let mut now = base;
    let v = version(case.version);
    let ack_mode = if case.manual {
        AckMode::Manual
    } else {
        AckMode::Auto
    };

    // The client side, connected to the fuzzer playing the server.
    let mut config = ClientConfig::new(v, MqttString::from_static("fuzz"));
    config.ack_mode = ack_mode;
    config.connect.keep_alive = 5;
    let mut client = ClientSession::new(config);
    let _ = client.connect(now);
    // The server side, with the fuzzer playing the client; the broker accepts any CONNECT.
    let mut server = ServerSession::new(ServerConfig {
        ack_mode,
        topic_alias_maximum: 4,
        ..ServerConfig::default()
    });
    server.start(now);

    let mut out = BytesMut::new();
    for input in case.inputs {
        match input {
            Input::Bytes(bytes) => {
                client.handle_input(now, &mut BytesMut::from(&bytes[..]));
                server.handle_input(now, &mut BytesMut::from(&bytes[..]));
            }
            Input::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms) * 10);
                client.handle_timeout(now);
                server.handle_timeout(now);
            }
            Input::Publish {
                qos,
                topic,
                payload,
            } => {
                let p = message(qos, topic, payload);
                let _ = client.publish(now, &p);
                let m = Message::new(p, None, now);
                let _ = server.deliver(now, &m, QoS::ExactlyOnce, &[], DeliveryOptions::default());
            }
            Input::Ack(id) => {
                if let Some(id) = std::num::NonZeroU16::new(id) {
                    let _ = client.ack(now, id, ReasonCode::Success);
                    let _ = server.ack(now, id, ReasonCode::Success);
                }
            }
            Input::Close => {
                client.handle_transport_closed(now);
                server.handle_transport_closed(now);
            }
        }
        // Drain, answering what the broker must answer.
        client.poll_transmit(&mut out);
        server.poll_transmit(&mut out);
        out.clear();
        let mut disconnects = 0;
        while let Some(e) = client.poll_event() {
            if matches!(e, Event::Disconnected(_)) {
                disconnects += 1;
            }
        }
        assert!(disconnects <= 1, "client reported a disconnect twice");
        disconnects = 0;
        while let Some(e) = server.poll_event() {
            match e {
                Event::ConnectRequest(c) => {
                    let mut accept = Accept::default();
                    if c.client_id.is_empty() {
                        accept.properties.assigned_client_identifier =
                            Some(MqttString::from_static("assigned"));
                    }
                    let _ = server.accept(now, accept);
                }
                Event::Subscribe(s) => {
                    let codes = vec![ReasonCode::Success; s.subscriptions.len()];
                    let _ = server.suback(now, s.packet_id, codes, Default::default());
                }
                Event::Unsubscribe(u) => {
                    let codes = vec![ReasonCode::Success; u.filters.len()];
                    let _ = server.unsuback(now, u.packet_id, codes, Default::default());
                }
                Event::Disconnected(_) => disconnects += 1,
                _ => {}
            }
        }
        assert!(disconnects <= 1, "server reported a disconnect twice");
        server.poll_transmit(&mut out);
        out.clear();
        assert_eq!(client.invariant_violation(), None);
        assert_eq!(server.invariant_violation(), None);
        if let Some(t) = client
            .poll_timeout()
            .into_iter()
            .chain(server.poll_timeout())
            .min()
        {
            assert!(t >= base);
        }
    }
});
