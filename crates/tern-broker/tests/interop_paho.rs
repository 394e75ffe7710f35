//! Interop with Python paho-mqtt 2.x: each test runs a script of `tests/interop/paho_*.py`
//! against a broker of its own and asserts that it exits 0. The scripts check the behaviour
//! and cite the normative statements; a failure shows their output.

mod interop;

use std::process::Command;

use interop::{Peer, TestBroker, require, run_script};

/// Runs `tests/interop/<script>` with the broker's port and then `args`.
fn paho(script: &str, args: &[&str]) {
    if !require(Peer::Paho) {
        return;
    }
    let broker = TestBroker::start();
    let port = broker.port_arg();
    let mut all = vec![port.as_str()];
    all.extend_from_slice(args);
    let mut python = Command::new("python3");
    // No `__pycache__` for `paho_common` in the source tree.
    python.env("PYTHONDONTWRITEBYTECODE", "1");
    run_script(python, script, &all);
}

/// QoS 2 publish → QoS 2 subscription: delivered once, at QoS 2
/// ([MQTT-3.8.4-6] in 3.1.1, [MQTT-3.8.4-8] in 5.0).
#[test]
fn qos2_round_trip_v311() {
    paho("paho_qos2.py", &["311"]);
}

/// As [`qos2_round_trip_v311`], over MQTT 5.0.
#[test]
fn qos2_round_trip_v5() {
    paho("paho_qos2.py", &["5"]);
}

/// A retained message reaches a later subscriber with RETAIN 1; an empty retained message
/// deletes it ([MQTT-3.3.1-5], [MQTT-3.3.1-6], [MQTT-3.3.1-10], [MQTT-3.3.1-11]).
#[test]
fn retained_v311() {
    paho("paho_retained.py", &["311"]);
}

/// As [`retained_v311`], over MQTT 5.0 ([MQTT-3.3.1-5], [MQTT-3.3.1-6], [MQTT-3.3.1-7],
/// [MQTT-3.3.1-9]).
#[test]
fn retained_v5() {
    paho("paho_retained.py", &["5"]);
}

/// CleanSession 0: a QoS 1 message published while the client is away is delivered when it
/// reconnects, with Session Present 1 ([MQTT-3.1.2-4], [MQTT-3.1.2-5], [MQTT-3.2.2-2]).
#[test]
fn session_resume_v311() {
    paho("paho_session.py", &["311"]);
}

/// Clean Start 0 with a Session Expiry Interval: as [`session_resume_v311`]
/// ([MQTT-3.1.2-5], [MQTT-3.2.2-3]).
#[test]
fn session_resume_v5() {
    paho("paho_session.py", &["5"]);
}

/// The Will of a connection closed without DISCONNECT comes after its Will Delay Interval,
/// not before ([MQTT-3.1.2-8]).
#[test]
fn will_delay_v5() {
    paho("paho_will_delay.py", &[]);
}

/// Two members of `$share/g/...`: each message reaches exactly one, both get some (4.8.2).
#[test]
fn shared_subscription_v5() {
    paho("paho_shared.py", &[]);
}

/// User Properties are forwarded unaltered and in order ([MQTT-3.3.2-17], [MQTT-3.3.2-18]).
#[test]
fn user_properties_v5() {
    paho("paho_user_properties.py", &[]);
}

/// Two overlapping subscriptions with identifiers: one copy carrying both
/// ([MQTT-3.3.4-3], [MQTT-3.3.4-4]).
#[test]
fn subscription_identifiers_v5() {
    paho("paho_subscription_ids.py", &[]);
}
