//! Interop with MQTT.js 5 (node, the `mqtt` npm package): each test runs a script of
//! `tests/interop/mqttjs_*.js` against a broker of its own and asserts that it exits 0. The
//! scripts check the behaviour and cite the normative statements; a failure shows their
//! output.

mod interop;

use interop::{Peer, TestBroker, node, require, run_script};
use tern_broker::Config;

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

/// [`round_trip_v311`] over WebSocket, as a browser's client connects: MQTT.js offers the
/// subprotocol `mqtt` [MQTT-6.0.0-3] and sends its packets in binary frames [MQTT-6.0.0-1].
#[test]
fn round_trip_over_websocket_v311() {
    mqttjs_ws("mqttjs_roundtrip.js", "4");
}

/// As [`round_trip_over_websocket_v311`], over MQTT 5.0.
#[test]
fn round_trip_over_websocket_v5() {
    mqttjs_ws("mqttjs_roundtrip.js", "5");
}

/// As [`retained_v5`], over WebSocket.
#[test]
fn retained_over_websocket_v5() {
    mqttjs_ws("mqttjs_retained.js", "5");
}

/// Runs `tests/interop/<script>` against a broker whose only listener is MQTT over WebSocket
/// on `/mqtt`.
fn mqttjs_ws(script: &str, version: &str) {
    if !require(Peer::MqttJs) {
        return;
    }
    let config = Config::from_toml_str(
        "sys_interval = 0\n[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\n",
    )
    .unwrap();
    let broker = TestBroker::with_config(config);
    run_script(node(), script, &[&broker.port_arg(), version, "ws"]);
}
