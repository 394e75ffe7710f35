//! Interop with mosquitto's command-line clients, `mosquitto_pub` and `mosquitto_sub`
//! (mosquitto-clients 2.x), over MQTT 3.1.1 (`-V mqttv311`) and 5.0 (`-V mqttv5`).
//!
//! Every subscriber runs with `-d` and is waited for until it prints `received SUBACK` before
//! anything is published; it prints each message as one `MSG|…` line (`-F`), and `-C n` makes
//! it exit after `n` messages.

mod interop;
mod pki;

use std::process::Command;

use interop::{Child, Peer, TestBroker, require};
use pki::{CLIENT_CN, Pki};
use tern_broker::{Config, Transport};

/// A protocol version, as `-V` names it.
#[derive(Clone, Copy, Debug)]
enum Version {
    V311,
    V5,
}

impl Version {
    fn flag(self) -> &'static str {
        match self {
            Version::V311 => "mqttv311",
            Version::V5 => "mqttv5",
        }
    }
}

/// How subscribers print a message: topic, QoS, retain flag, payload.
const FORMAT: &str = "MSG|%t|%q|%r|%p";

/// A mosquitto client (`mosquitto_pub` or `mosquitto_sub`) with debug output, connected to
/// `broker` with `version`. Its standard output is line buffered (`stdbuf -oL`): into a pipe,
/// stdio would hold the lines back until it exits.
fn client(bin: &str, broker: &TestBroker, version: Version) -> Command {
    let mut c = Command::new("stdbuf");
    c.args(["-oL", bin]);
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port_arg(),
        "-V",
        version.flag(),
        "-d",
    ]);
    c
}

/// A `mosquitto_sub` with these arguments, returned once its subscription is acknowledged.
fn subscriber(broker: &TestBroker, version: Version, name: &str, args: &[&str]) -> Child {
    let mut sub = Child::spawn(name, client("mosquitto_sub", broker, version).args(args));
    sub.wait_for_line("received SUBACK");
    sub
}

/// Runs `mosquitto_pub` with these arguments to its successful end; returns its output.
fn publish(broker: &TestBroker, version: Version, args: &[&str]) -> Vec<String> {
    Child::spawn(
        "mosquitto_pub",
        client("mosquitto_pub", broker, version).args(args),
    )
    .success()
}

/// The messages a subscriber printed with [`FORMAT`], without the `MSG|` prefix.
fn messages(stdout: &[String]) -> Vec<&str> {
    stdout
        .iter()
        .filter_map(|line| line.strip_prefix("MSG|"))
        .collect()
}

fn qos_0_1_2_delivery(version: Version) {
    if !require(Peer::Mosquitto) {
        return;
    }
    let broker = TestBroker::start();
    let sub = subscriber(
        &broker,
        version,
        "mosquitto_sub -q 2",
        &["-q", "2", "-t", "interop/qos/+", "-C", "3", "-F", FORMAT],
    );
    for qos in ["0", "1", "2"] {
        let out = publish(
            &broker,
            version,
            &[
                "-q",
                qos,
                "-t",
                &format!("interop/qos/{qos}"),
                "-m",
                &format!("at qos {qos}"),
            ],
        );
        // [MQTT-3.3.4-1]: the broker answers each PUBLISH as its QoS requires.
        let ack = match qos {
            "1" => Some("received PUBACK"),
            "2" => Some("received PUBCOMP"),
            _ => None,
        };
        if let Some(ack) = ack {
            assert!(
                out.iter().any(|l| l.contains(ack)),
                "mosquitto_pub -q {qos}: no {ack:?} in\n{}",
                out.join("\n")
            );
        }
    }
    let out = sub.success();
    // Each message exactly once, in order, at the publish QoS: the minimum of it and the
    // granted QoS 2 ([MQTT-3.8.4-6] in 3.1.1, [MQTT-3.8.4-8] in 5.0).
    assert_eq!(
        messages(&out),
        [
            "interop/qos/0|0|0|at qos 0",
            "interop/qos/1|1|0|at qos 1",
            "interop/qos/2|2|0|at qos 2",
        ],
        "mosquitto_sub output:\n{}",
        out.join("\n")
    );
}

#[test]
fn qos_0_1_2_delivery_v311() {
    qos_0_1_2_delivery(Version::V311);
}

#[test]
fn qos_0_1_2_delivery_v5() {
    qos_0_1_2_delivery(Version::V5);
}

fn retained_message_then_deleted(version: Version) {
    if !require(Peer::Mosquitto) {
        return;
    }
    let broker = TestBroker::start();
    let topic = "interop/retained";
    publish(
        &broker,
        version,
        &["-q", "1", "-r", "-t", topic, "-m", "kept"],
    );

    // [MQTT-3.3.1-5]: stored; [MQTT-3.3.1-6] (3.1.1) / [MQTT-3.3.1-9] (5.0): a new
    // subscription gets it, with RETAIN 1.
    let late = subscriber(
        &broker,
        version,
        "late mosquitto_sub",
        &["-q", "1", "-t", topic, "-C", "1", "-F", FORMAT],
    );
    let out = late.success();
    assert_eq!(
        messages(&out),
        ["interop/retained|1|1|kept"],
        "late mosquitto_sub output:\n{}",
        out.join("\n")
    );

    // [MQTT-3.3.1-10], [MQTT-3.3.1-11] (3.1.1) / [MQTT-3.3.1-6], [MQTT-3.3.1-7] (5.0): a
    // retained message with an empty payload deletes it, and is not stored itself.
    publish(&broker, version, &["-q", "1", "-r", "-n", "-t", topic]);
    let later = subscriber(
        &broker,
        version,
        "later mosquitto_sub",
        &["-q", "1", "-t", topic, "-C", "1", "-F", FORMAT],
    );
    // A retained message would have come with the subscription, before this live one.
    publish(&broker, version, &["-q", "1", "-t", topic, "-m", "live"]);
    let out = later.success();
    assert_eq!(
        messages(&out),
        ["interop/retained|1|0|live"],
        "later mosquitto_sub output:\n{}",
        out.join("\n")
    );
}

#[test]
fn retained_message_then_deleted_v311() {
    retained_message_then_deleted(Version::V311);
}

#[test]
fn retained_message_then_deleted_v5() {
    retained_message_then_deleted(Version::V5);
}

fn will_of_a_killed_client(version: Version) {
    if !require(Peer::Mosquitto) {
        return;
    }
    let broker = TestBroker::start();
    let watcher = subscriber(
        &broker,
        version,
        "watching mosquitto_sub",
        &["-q", "1", "-t", "interop/will", "-C", "1", "-F", FORMAT],
    );
    let doomed = subscriber(
        &broker,
        version,
        "mosquitto_sub --will-topic",
        &[
            "-t",
            "interop/unused",
            "--will-topic",
            "interop/will",
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
        ],
    );
    // [MQTT-3.1.2-8]: the connection ends without DISCONNECT, so the Will is published.
    doomed.kill();
    let out = watcher.success();
    assert_eq!(
        messages(&out),
        ["interop/will|1|0|gone"],
        "watching mosquitto_sub output:\n{}",
        out.join("\n")
    );
}

#[test]
fn will_of_a_killed_client_v311() {
    will_of_a_killed_client(Version::V311);
}

#[test]
fn will_of_a_killed_client_v5() {
    will_of_a_killed_client(Version::V5);
}

fn retained_will_of_a_killed_client(version: Version) {
    if !require(Peer::Mosquitto) {
        return;
    }
    let broker = TestBroker::start();
    let watcher = subscriber(
        &broker,
        version,
        "watching mosquitto_sub",
        &["-q", "1", "-t", "interop/will", "-C", "1", "-F", FORMAT],
    );
    let doomed = subscriber(
        &broker,
        version,
        "mosquitto_sub --will-retain",
        &[
            "-t",
            "interop/unused",
            "--will-topic",
            "interop/will",
            "--will-payload",
            "gone for good",
            "--will-qos",
            "1",
            "--will-retain",
        ],
    );
    doomed.kill();
    let out = watcher.success();
    // An established subscription gets it with RETAIN 0 ([MQTT-3.3.1-9] in 3.1.1; Retain As
    // Published 0, [MQTT-3.3.1-12], in 5.0).
    assert_eq!(
        messages(&out),
        ["interop/will|1|0|gone for good"],
        "watching mosquitto_sub output:\n{}",
        out.join("\n")
    );
    // [MQTT-3.1.2-17] (3.1.1) / [MQTT-3.1.2-15] (5.0): Will Retain 1, so it was published as a
    // retained message: a later subscription gets it, with RETAIN 1.
    let late = subscriber(
        &broker,
        version,
        "late mosquitto_sub",
        &["-q", "1", "-t", "interop/will", "-C", "1", "-F", FORMAT],
    );
    let out = late.success();
    assert_eq!(
        messages(&out),
        ["interop/will|1|1|gone for good"],
        "late mosquitto_sub output:\n{}",
        out.join("\n")
    );
}

#[test]
fn retained_will_of_a_killed_client_v311() {
    retained_will_of_a_killed_client(Version::V311);
}

#[test]
fn retained_will_of_a_killed_client_v5() {
    retained_will_of_a_killed_client(Version::V5);
}

#[test]
fn user_properties_v5() {
    if !require(Peer::Mosquitto) {
        return;
    }
    let broker = TestBroker::start();
    let sub = subscriber(
        &broker,
        Version::V5,
        "mosquitto_sub -F %P",
        &[
            "-q",
            "1",
            "-t",
            "interop/props",
            "-C",
            "1",
            "-F",
            "MSG|%P|%p",
        ],
    );
    let verbose = subscriber(
        &broker,
        Version::V5,
        "mosquitto_sub -v",
        &["-q", "1", "-t", "interop/props", "-C", "1", "-v"],
    );
    publish(
        &broker,
        Version::V5,
        &[
            "-q",
            "1",
            "-t",
            "interop/props",
            "-m",
            "with properties",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "user-property",
            "a",
            "b",
            "-D",
            "publish",
            "user-property",
            "k",
            "w",
        ],
    );
    let out = sub.success();
    // [MQTT-3.3.2-17]: every User Property, unaltered, duplicate keys included;
    // [MQTT-3.3.2-18]: in their order.
    assert_eq!(
        messages(&out),
        ["k:v a:b k:w|with properties"],
        "mosquitto_sub output:\n{}",
        out.join("\n")
    );
    let out = verbose.success();
    assert!(
        out.iter().any(|l| l == "interop/props with properties"),
        "mosquitto_sub -v output:\n{}",
        out.join("\n")
    );
}

/// A 3.1.1 and a 5.0 client exchange messages both ways; the 3.1.1 subscriber gets the payload
/// of a 5.0 publish without its properties, which 3.1.1 cannot carry.
#[test]
fn mixed_versions() {
    if !require(Peer::Mosquitto) {
        return;
    }
    let broker = TestBroker::start();
    let old = subscriber(
        &broker,
        Version::V311,
        "mosquitto_sub -V mqttv311",
        &["-q", "2", "-t", "interop/mixed/+", "-C", "2", "-F", FORMAT],
    );
    let new = subscriber(
        &broker,
        Version::V5,
        "mosquitto_sub -V mqttv5",
        &[
            "-q",
            "2",
            "-t",
            "interop/mixed/+",
            "-C",
            "2",
            "-F",
            "MSG|%t|%q|%P|%p",
        ],
    );
    publish(
        &broker,
        Version::V5,
        &[
            "-q",
            "2",
            "-t",
            "interop/mixed/from5",
            "-m",
            "hello from 5",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
        ],
    );
    publish(
        &broker,
        Version::V311,
        &[
            "-q",
            "1",
            "-t",
            "interop/mixed/from311",
            "-m",
            "hello from 3.1.1",
        ],
    );
    let out = old.success();
    assert_eq!(
        messages(&out),
        [
            "interop/mixed/from5|2|0|hello from 5",
            "interop/mixed/from311|1|0|hello from 3.1.1",
        ],
        "mosquitto_sub -V mqttv311 output:\n{}",
        out.join("\n")
    );
    let out = new.success();
    assert_eq!(
        messages(&out),
        [
            "interop/mixed/from5|2|k:v|hello from 5",
            "interop/mixed/from311|1||hello from 3.1.1",
        ],
        "mosquitto_sub -V mqttv5 output:\n{}",
        out.join("\n")
    );
}

/// A broker whose only listener is MQTT over TLS with the test PKI's server certificate;
/// `extra` lines go into `[listener.tls]`.
fn tls_broker(pki: &Pki, extra: &str) -> TestBroker {
    let text = format!(
        "sys_interval = 0\n[[listener]]\nbind = \"127.0.0.1:0\"\n{}",
        pki.tls_table(extra)
    );
    TestBroker::with_config(Config::from_toml_str(&text).unwrap())
}

/// A mosquitto client over TLS to `localhost` (the name in the server's certificate),
/// trusting the test CA (`--cafile`), with `extra` arguments (a client certificate).
fn tls_client(bin: &str, broker: &TestBroker, pki: &Pki, version: Version) -> Command {
    let mut c = Command::new("stdbuf");
    c.args(["-oL", bin, "-h", "localhost", "-p", &broker.port_arg()]);
    c.args(["-V", version.flag(), "-d", "--cafile"]);
    c.arg(&pki.ca_file);
    c
}

fn tls_with_cafile(version: Version) {
    if !require(Peer::Mosquitto) {
        return;
    }
    let pki = Pki::new();
    let broker = tls_broker(&pki, "");
    let mut sub = Child::spawn(
        "mosquitto_sub --cafile",
        tls_client("mosquitto_sub", &broker, &pki, version).args([
            "-q",
            "2",
            "-t",
            "interop/tls/+",
            "-C",
            "3",
            "-F",
            FORMAT,
        ]),
    );
    sub.wait_for_line("received SUBACK");
    for qos in ["0", "1", "2"] {
        Child::spawn(
            "mosquitto_pub --cafile",
            tls_client("mosquitto_pub", &broker, &pki, version).args([
                "-q",
                qos,
                "-t",
                &format!("interop/tls/{qos}"),
                "-m",
                &format!("sealed at qos {qos}"),
            ]),
        )
        .success();
    }
    let out = sub.success();
    // [MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0), as over TCP.
    assert_eq!(
        messages(&out),
        [
            "interop/tls/0|0|0|sealed at qos 0",
            "interop/tls/1|1|0|sealed at qos 1",
            "interop/tls/2|2|0|sealed at qos 2",
        ],
        "mosquitto_sub output:\n{}",
        out.join("\n")
    );
}

#[test]
fn tls_with_cafile_v311() {
    tls_with_cafile(Version::V311);
}

#[test]
fn tls_with_cafile_v5() {
    tls_with_cafile(Version::V5);
}

/// Mutual TLS with `use_identity_as_username`: mosquitto_sub's certificate names it, whatever
/// `-u` says; mosquitto_pub without a certificate, or with another CA's, is refused.
#[test]
fn mutual_tls_with_client_certificates() {
    if !require(Peer::Mosquitto) {
        return;
    }
    let pki = Pki::new();
    let broker = tls_broker(
        &pki,
        &format!(
            "cafile = {:?}\nrequire_certificate = true\nuse_identity_as_username = true\n",
            pki.ca_file
        ),
    );
    let mut sub = Child::spawn(
        "mosquitto_sub --cert",
        tls_client("mosquitto_sub", &broker, &pki, Version::V5)
            .args(["-u", "claimed", "-i", "cert-sub", "--cert"])
            .arg(&pki.client.cert_file)
            .arg("--key")
            .arg(&pki.client.key_file)
            .args(["-q", "1", "-t", "interop/mtls", "-C", "1", "-F", FORMAT]),
    );
    sub.wait_for_line("received SUBACK");
    let clients = broker.handle().clients();
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(clients[0].client_id, "cert-sub");
    assert_eq!(clients[0].transport, Transport::Tls);
    assert_eq!(clients[0].username.as_deref(), Some(CLIENT_CN));

    for (what, cert) in [
        ("no certificate", None),
        ("another CA's certificate", Some(&pki.stranger)),
    ] {
        let mut publish = tls_client("mosquitto_pub", &broker, &pki, Version::V5);
        if let Some(id) = cert {
            publish
                .arg("--cert")
                .arg(&id.cert_file)
                .arg("--key")
                .arg(&id.key_file);
        }
        publish.args(["-q", "1", "-t", "interop/mtls", "-m", "intruder"]);
        let exit = Child::spawn(&format!("mosquitto_pub with {what}"), &mut publish).wait();
        assert!(
            !exit.status.success(),
            "mosquitto_pub with {what} got through:\n{}\n{}",
            exit.stdout.join("\n"),
            exit.stderr
        );
    }
    Child::spawn(
        "mosquitto_pub --cert",
        tls_client("mosquitto_pub", &broker, &pki, Version::V5)
            .arg("--cert")
            .arg(&pki.client.cert_file)
            .arg("--key")
            .arg(&pki.client.key_file)
            .args(["-q", "1", "-t", "interop/mtls", "-m", "trusted"]),
    )
    .success();
    let out = sub.success();
    // Only the trusted publisher's message arrived.
    assert_eq!(
        messages(&out),
        ["interop/mtls|1|0|trusted"],
        "mosquitto_sub output:\n{}",
        out.join("\n")
    );
}
