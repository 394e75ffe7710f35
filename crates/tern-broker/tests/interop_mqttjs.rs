//! Interop with MQTT.js 5 (node, the `mqtt` npm package): each test runs a script of
//! `tests/interop/mqttjs_*.js` against a broker of its own and asserts that it exits 0. The
//! scripts check the behaviour and cite the normative statements; a failure shows their
//! output.

mod interop;

use interop::{Peer, TestBroker, node, require, run_script};

/// Runs `tests/interop/<script>` with the broker's port and the protocol version (4 or 5).
fn mqttjs(script: &str, version: &str) {
    if !require(Peer::MqttJs) {
        return;
    }
    let broker = TestBroker::start();
    run_script(node(), script, &[&broker.port_arg(), version]);
}

/// Connect, subscribe at QoS 2, publish at QoS 1 and 2: each comes back once at its QoS
/// ([MQTT-3.8.4-6]).
#[test]
fn round_trip_v311() {
    mqttjs("mqttjs_roundtrip.js", "4");
}

/// As [`round_trip_v311`], over MQTT 5.0 ([MQTT-3.8.4-8]).
#[test]
fn round_trip_v5() {
    mqttjs("mqttjs_roundtrip.js", "5");
}

/// A retained message reaches a later subscriber; an empty one deletes it ([MQTT-3.3.1-5],
/// [MQTT-3.3.1-6], [MQTT-3.3.1-10], [MQTT-3.3.1-11]).
#[test]
fn retained_v311() {
    mqttjs("mqttjs_retained.js", "4");
}

/// As [`retained_v311`], over MQTT 5.0 ([MQTT-3.3.1-5], [MQTT-3.3.1-6], [MQTT-3.3.1-7],
/// [MQTT-3.3.1-9]).
#[test]
fn retained_v5() {
    mqttjs("mqttjs_retained.js", "5");
}
