//! Property tests over the deterministic simulation: seeded client/server pairs over a pipe
//! that splits writes, delays chunks and breaks at chosen steps. Failures shrink to a minimal
//! seed, message list and set of break points.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use tern_codec::{
    MqttString, ProtocolVersion, Publish, QoS, ReasonCode, Subscription, SubscriptionOptions,
};
use tern_proto::{AckMode, ConnectionError, DeliverOutcome};
use tern_test_support::{Sim, SimConfig, numbered, seq_of};

const TOPICS: [&str; 3] = ["a/1", "b/2", "c/3"];

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// Messages numbered in order, each on one of three topics with its QoS.
fn messages(max: usize) -> impl Strategy<Value = Vec<Publish>> {
    prop::collection::vec((0..TOPICS.len(), qos()), 1..max).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (t, q))| numbered(TOPICS[t], q, i as u32))
            .collect()
    })
}

fn breaks() -> impl Strategy<Value = BTreeSet<u64>> {
    prop::collection::btree_set(1u64..300, 0..6)
}

/// Checks the delivery guarantees of `sent` against what the receiver surfaced:
/// QoS 1 at least once, QoS 2 exactly once [MQTT-4.3.2], [MQTT-4.3.3], QoS 0 at most once,
/// and per-topic order of first deliveries for QoS >= 1 [MQTT-4.6.0-1].
fn check_delivery(sent: &[Publish], received: &[Publish]) -> Result<(), TestCaseError> {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for r in received {
        let seq =
            seq_of(r).ok_or_else(|| TestCaseError::fail("payload is not a sequence number"))?;
        *counts.entry(seq).or_default() += 1;
    }
    for (i, s) in sent.iter().enumerate() {
        let n = counts.get(&(i as u32)).copied().unwrap_or(0);
        match s.qos {
            QoS::AtMostOnce => prop_assert!(n <= 1, "QoS 0 message {i} delivered {n} times"),
            QoS::AtLeastOnce => prop_assert!(n >= 1, "QoS 1 message {i} never delivered"),
            QoS::ExactlyOnce => prop_assert_eq!(n, 1, "QoS 2 message {} delivered {} times", i, n),
        }
    }
    for topic in TOPICS {
        let mut seen = BTreeSet::new();
        let firsts: Vec<u32> = received
            .iter()
            .filter(|r| r.topic == topic && r.qos != QoS::AtMostOnce)
            .filter_map(seq_of)
            .filter(|s| seen.insert(*s))
            .collect();
        prop_assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "order broken on {topic}: {firsts:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Client to server: QoS 1 at least once, QoS 2 exactly once, across any number of
    /// reconnects; no packet identifier reused while in flight [MQTT-2.2.1-3].
    #[test]
    fn client_to_server_delivery_across_reconnects(
        seed in any::<u64>(),
        version in version(),
        msgs in messages(40),
        break_at in breaks(),
        manual in any::<bool>(),
    ) {
        client_to_server_case(seed, version, msgs, break_at, manual)?;
    }
}

fn client_to_server_case(
    seed: u64,
    version: ProtocolVersion,
    msgs: Vec<Publish>,
    break_at: BTreeSet<u64>,
    manual: bool,
) -> Result<(), TestCaseError> {
    {
        let mut config = SimConfig::new(seed, version);
        config.break_at = break_at;
        if manual {
            config.server.ack_mode = AckMode::Manual;
        }
        let mut sim = Sim::new(config);
        prop_assert!(
            sim.publish_all(msgs.clone(), 20_000),
            "not all messages acknowledged: steps {} connects {} client {:?} server {:?} outgoing {:?} violations {:?}",
            sim.steps(),
            sim.connects,
            sim.client_disconnects,
            sim.server_disconnects,
            sim.client
                .state()
                .outgoing
                .iter()
                .map(|o| o.packet_id)
                .collect::<Vec<_>>(),
            sim.violations
        );
        // Let the last acknowledgements and releases settle.
        sim.run_until(2_000, |s| s.server.state().awaiting_pubrel.is_empty());
        prop_assert!(
            sim.reused_ids.is_empty(),
            "reused ids: {:?}",
            sim.reused_ids
        );
        prop_assert!(
            sim.violations.is_empty(),
            "violations: {:?}",
            sim.violations
        );
        check_delivery(&msgs, &sim.server_received)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Server to client: the same guarantees for messages the broker delivers, queued while
    /// the link is down and resent with DUP on resume [MQTT-4.4.0-1].
    #[test]
    fn server_to_client_delivery_across_reconnects(
        seed in any::<u64>(),
        version in version(),
        msgs in messages(40),
        break_at in breaks(),
        manual in any::<bool>(),
    ) {
        let mut config = SimConfig::new(seed, version);
        config.break_at = break_at;
        config.server.max_inflight = 5;
        if manual {
            config.client.ack_mode = AckMode::Manual;
        }
        let mut sim = Sim::new(config);
        prop_assert!(sim.run_until(1_000, |s| s.server.is_connected()));
        let mut expected = Vec::new();
        for m in msgs {
            match sim.deliver(m.clone(), QoS::ExactlyOnce) {
                DeliverOutcome::Sent(_) | DeliverOutcome::Queued => expected.push(m),
                // QoS 0 while the link is down is dropped; it is not expected.
                DeliverOutcome::Dropped(_) => prop_assert_eq!(m.qos, QoS::AtMostOnce),
            }
            sim.step();
        }
        let done = sim.run_until(20_000, |s| {
            s.server.is_connected() && s.server.state().outgoing.is_empty() && s.server.state().queued.is_empty()
        });
        prop_assert!(done, "not all messages delivered");
        sim.run_until(2_000, |s| s.client.state().awaiting_pubrel.is_empty());
        prop_assert!(sim.violations.is_empty(), "violations: {:?}", sim.violations);
        // Messages are numbered by their index in the original list; compare by number.
        let received: Vec<Publish> = sim.client_received.clone();
        let mut by_seq = Vec::new();
        for m in &expected {
            by_seq.push((seq_of(m).unwrap_or(u32::MAX), m.qos));
        }
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for r in &received {
            *counts.entry(seq_of(r).unwrap_or(u32::MAX)).or_default() += 1;
        }
        for (seq, q) in by_seq {
            let n = counts.get(&seq).copied().unwrap_or(0);
            match q {
                QoS::AtMostOnce => prop_assert!(n <= 1),
                QoS::AtLeastOnce => prop_assert!(n >= 1, "QoS 1 message {} lost", seq),
                QoS::ExactlyOnce => prop_assert_eq!(n, 1, "QoS 2 message {} delivered {} times", seq, n),
            }
        }
    }

    /// The Receive Maximum is never exceeded in either direction [MQTT-3.3.4-7],
    /// [MQTT-3.3.4-9]: the receiver would disconnect with 0x93, and the sender's window stays
    /// within it.
    #[test]
    fn receive_maximum_never_exceeded(
        seed in any::<u64>(),
        server_max in 1u16..5,
        client_max in 1u16..5,
        msgs in messages(30),
    ) {
        let mut config = SimConfig::new(seed, ProtocolVersion::V5);
        config.server.receive_maximum = server_max;
        config.server.ack_mode = AckMode::Manual;
        config.client.ack_mode = AckMode::Manual;
        config.client.connect.properties.receive_maximum = std::num::NonZeroU16::new(client_max);
        config.max_ack_delay = Duration::from_millis(300);
        let mut sim = Sim::new(config);
        prop_assert!(sim.publish_all(msgs.clone(), 20_000));
        prop_assert!(sim.max_client_inflight <= usize::from(server_max));
        for m in &msgs {
            sim.deliver(m.clone(), QoS::ExactlyOnce);
        }
        let done = sim.run_until(20_000, |s| s.server.state().outgoing.is_empty() && s.server.state().queued.is_empty());
        prop_assert!(done);
        prop_assert!(sim.max_server_inflight <= usize::from(client_max));
        prop_assert!(sim.client_disconnects.is_empty(), "{:?}", sim.client_disconnects);
        prop_assert!(sim.server_disconnects.is_empty(), "{:?}", sim.server_disconnects);
        prop_assert!(sim.violations.is_empty(), "violations: {:?}", sim.violations);
    }

    /// A silent client is closed by the server after 1.5 times the keep alive
    /// [MQTT-3.1.2-22] (3.1.1: [MQTT-3.1.2-24]), and not before the client could have been
    /// silent for that long.
    #[test]
    fn keepalive_closes_a_silent_client(
        seed in any::<u64>(),
        version in version(),
        keep_alive in 1u16..120,
        quiet_ms in 0u64..5_000,
    ) {
        let mut config = SimConfig::new(seed, version);
        config.client.connect.keep_alive = keep_alive;
        let mut sim = Sim::new(config);
        prop_assert!(sim.run_until(1_000, |s| s.server.is_connected() && s.client.is_connected()));
        sim.run_until(10_000, |s| s.elapsed() >= Duration::from_millis(quiet_ms));
        let muted_at = sim.elapsed();
        sim.mute_client = true;
        prop_assert!(sim.run_until(100_000, |s| !s.server_disconnects.is_empty()));
        let (at, reason) = sim.server_disconnects[0].clone();
        prop_assert_eq!(reason, ConnectionError::KeepAliveTimeout);
        let closed_after = at - sim.now() + sim.elapsed();
        let k = Duration::from_secs(keep_alive.into());
        // The server last heard the client at most one keep alive (plus pipe delay) before
        // the mute, and at most at the mute.
        // Bytes written before the mute may still arrive, up to the pipe delay (20 ms) later.
        prop_assert!(closed_after <= muted_at + k * 3 / 2 + Duration::from_millis(21));
        prop_assert!(closed_after + Duration::from_millis(100) >= muted_at + k / 2);
    }
}

/// A SUBSCRIBE (`true`) or UNSUBSCRIBE (`false`) with this many filters, each followed by a
/// publish of this QoS.
fn requests() -> impl Strategy<Value = Vec<(bool, usize, QoS)>> {
    prop::collection::vec((any::<bool>(), 1usize..4, qos()), 1..20)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK in 3.1.1 and 5.0, interleaved with QoS 1/2
    /// publishes over the splitting, delaying pipe: each request is answered exactly once with
    /// its own identifier [MQTT-2.2.1-6], one reason code per filter in order [MQTT-3.8.4-6],
    /// [MQTT-3.9.3-1] (UNSUBACK: [MQTT-3.11.3-1] in 5.0, none in 3.1.1), and no identifier is
    /// shared with a message in flight [MQTT-2.2.1-3].
    #[test]
    fn subscribe_round_trips_in_v311_and_v5(
        seed in any::<u64>(),
        v5 in any::<bool>(),
        reqs in requests(),
    ) {
        let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V3_1_1 };
        let mut sim = Sim::new(SimConfig::new(seed, version));
        prop_assert!(sim.run_until(1_000, |s| s.client.is_connected() && s.server.is_connected()));
        let mut expected_subs = Vec::new();
        let mut expected_unsubs = Vec::new();
        for (i, &(subscribe, n, q)) in reqs.iter().enumerate() {
            let filters: Vec<&'static str> = TOPICS.iter().copied().cycle().take(n).collect();
            if subscribe {
                let subs = filters
                    .iter()
                    .enumerate()
                    .map(|(k, f)| Subscription {
                        filter: MqttString::from_static(f),
                        options: SubscriptionOptions {
                            qos: [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][k % 3],
                            ..SubscriptionOptions::default()
                        },
                    })
                    .collect::<Vec<_>>();
                let codes: Vec<ReasonCode> = subs
                    .iter()
                    .map(|s| match s.options.qos {
                        QoS::AtMostOnce => ReasonCode::Success,
                        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                    })
                    .collect();
                let pid = sim.client_subscribe(subs);
                prop_assert!(pid.is_ok(), "{:?}", pid);
                expected_subs.push((pid.unwrap_or(tern_codec::PacketId::MIN), codes));
            } else {
                let pid = sim.client_unsubscribe(
                    filters.into_iter().map(MqttString::from_static).collect(),
                );
                prop_assert!(pid.is_ok(), "{:?}", pid);
                let codes = if v5 { vec![ReasonCode::Success; n] } else { Vec::new() };
                expected_unsubs.push((pid.unwrap_or(tern_codec::PacketId::MIN), codes));
            }
            if q != QoS::AtMostOnce && sim.client.can_publish() {
                let r = sim.client_publish(&numbered("a/1", q, i as u32));
                prop_assert!(r.is_ok(), "{:?}", r);
            }
            sim.step();
        }
        let n_subs = expected_subs.len();
        let n_unsubs = expected_unsubs.len();
        let done = sim.run_until(10_000, |s| {
            s.client_subacks.len() >= n_subs
                && s.client_unsubacks.len() >= n_unsubs
                && s.client.state().outgoing.is_empty()
        });
        prop_assert!(done, "not all requests answered");
        let subacks: Vec<_> = sim
            .client_subacks
            .iter()
            .map(|a| (a.packet_id, a.reason_codes.clone()))
            .collect();
        let unsubacks: Vec<_> = sim
            .client_unsubacks
            .iter()
            .map(|a| (a.packet_id, a.reason_codes.clone()))
            .collect();
        prop_assert_eq!(subacks, expected_subs);
        prop_assert_eq!(unsubacks, expected_unsubs);
        prop_assert!(sim.reused_ids.is_empty(), "reused ids: {:?}", sim.reused_ids);
        prop_assert!(sim.violations.is_empty(), "violations: {:?}", sim.violations);
        prop_assert!(sim.client_disconnects.is_empty(), "{:?}", sim.client_disconnects);
    }
}
