//! Authentication and authorisation over real loopback sockets: password files written by
//! the real `mosquitto_passwd` (and by `ternd passwd`), anonymous rules, ACL files, and
//! SCRAM-SHA-256 enhanced authentication with tern-client.

mod interop;
mod pki;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use interop::{Peer, require};
use support::*;
use tern_broker::auth::{ScramClient, ScramSha256};
use tern_broker::config::ListenerConfig;
use tern_broker::{Broker, BrokerHandle, Config};
use tern_codec::{Auth, Packet, ProtocolVersion, QoS, ReasonCode};

fn ternd_passwd(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_ternd"))
        .arg("passwd")
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "ternd passwd {args:?}: {status:?}");
}

fn mosquitto_passwd(args: &[&str]) {
    let status = Command::new("mosquitto_passwd")
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "mosquitto_passwd {args:?}: {status:?}");
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A broker with these `[auth]` files on an ephemeral port.
async fn auth_broker(password_file: Option<PathBuf>, acl_file: Option<PathBuf>) -> BrokerHandle {
    let mut config = config();
    config.sys_interval = 0;
    config.auth.password_file = password_file;
    config.auth.acl_file = acl_file;
    broker_with(config).await
}

/// CONNECT with credentials.
fn login(
    version: ProtocolVersion,
    client_id: &str,
    user: Option<&str>,
    password: Option<&'static str>,
) -> tern_codec::Connect {
    let mut c = connect(version, client_id, true);
    c.username = user.map(s);
    c.password = password.map(|p| Bytes::from_static(p.as_bytes()));
    c
}

async fn connack_code(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    user: Option<&str>,
    password: Option<&'static str>,
) -> ReasonCode {
    let (_client, connack) = Client::connect_with(addr, login(version, "c", user, password)).await;
    connack.reason_code
}

#[tokio::test(flavor = "multi_thread")]
async fn password_file_from_mosquitto_passwd_is_accepted() {
    if !require(Peer::MosquittoPasswd) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let f = path_str(&file);
    // mosquitto 2's default ($7$, PBKDF2-SHA512), its older format ($6$, SHA-512), and one
    // line written by `ternd passwd` (argon2id) in the same file.
    mosquitto_passwd(&["-c", "-b", f, "alice", "wonderland"]);
    mosquitto_passwd(&["-H", "sha512", "-b", f, "bob", "builder"]);
    ternd_passwd(&["-b", f, "carol", "c4r0l"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("alice:$7$"), "{text}");
    assert!(text.contains("bob:$6$"), "{text}");
    assert!(text.contains("carol:$argon2id$"), "{text}");

    let broker = auth_broker(Some(file.clone()), None).await;
    let addr = broker.local_addrs()[0];
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        for (user, password) in [
            ("alice", "wonderland"),
            ("bob", "builder"),
            ("carol", "c4r0l"),
        ] {
            let code = connack_code(addr, version, Some(user), Some(password)).await;
            assert_eq!(code, ReasonCode::Success, "{user} {version:?}");
        }
        // A wrong password, an unknown user, a user without password: CONNACK 0x86 (5.0,
        // section 3.2.2.2) / return code 4 (3.1.1, section 3.2.2.3).
        for (user, password) in [
            ("alice", Some("builder")),
            ("mallory", Some("x")),
            ("bob", None),
        ] {
            let code = connack_code(addr, version, Some(user), password).await;
            assert_eq!(
                code,
                ReasonCode::BadUserNameOrPassword,
                "{user} {version:?}"
            );
        }
        // No username with a password file: anonymous is off by default; 0x87 / return
        // code 5 Not authorized.
        let code = connack_code(addr, version, None, None).await;
        assert_eq!(code, ReasonCode::NotAuthorized, "{version:?}");
    }
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn ternd_passwd_adds_changes_deletes_and_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let f = path_str(&file);
    ternd_passwd(&["-c", "-b", f, "alice", "one"]);
    ternd_passwd(&["-b", f, "bob", "two"]);
    ternd_passwd(&["-b", f, "alice", "three"]);
    ternd_passwd(&["-D", f, "bob"]);
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "dave:d4ve\n").unwrap();
    ternd_passwd(&["-U", path_str(&plain)]);
    assert!(!std::fs::read_to_string(&plain).unwrap().contains("d4ve"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("three") && text.lines().count() == 1,
        "{text}"
    );

    let broker = auth_broker(Some(file), None).await;
    let addr = broker.local_addrs()[0];
    let v5 = ProtocolVersion::V5;
    assert_eq!(
        connack_code(addr, v5, Some("alice"), Some("three")).await,
        ReasonCode::Success
    );
    assert_eq!(
        connack_code(addr, v5, Some("alice"), Some("one")).await,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        connack_code(addr, v5, Some("bob"), Some("two")).await,
        ReasonCode::BadUserNameOrPassword
    );
    // 3.1.1: return code 4 (section 3.2.2.3).
    assert_eq!(
        connack_code(addr, ProtocolVersion::V3_1_1, Some("alice"), Some("one")).await,
        ReasonCode::BadUserNameOrPassword
    );
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_anonymous_per_listener() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    ternd_passwd(&["-c", "-b", path_str(&file), "alice", "a"]);
    let mut config = Config::default();
    config.sys_interval = 0;
    config.auth.password_file = Some(file);
    let mut open = ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    open.allow_anonymous = Some(true);
    config.listeners = vec![ListenerConfig::new("127.0.0.1:0".parse().unwrap()), open];
    let broker = broker_with(config).await;
    let [closed, open] = broker.local_addrs() else {
        panic!()
    };
    let v5 = ProtocolVersion::V5;
    assert_eq!(
        connack_code(*closed, v5, None, None).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        connack_code(*open, v5, None, None).await,
        ReasonCode::Success
    );
    // A username still needs its password on the open listener.
    assert_eq!(
        connack_code(*open, v5, Some("alice"), Some("b")).await,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        connack_code(*open, v5, Some("alice"), Some("a")).await,
        ReasonCode::Success
    );
    assert!(broker.shutdown().await);

    // Without a password file anonymous clients are allowed unless said otherwise.
    let mut config = config_on_loopback();
    config.auth.allow_anonymous = Some(false);
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    assert_eq!(
        connack_code(addr, v5, None, None).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        connack_code(addr, v5, Some("anyone"), None).await,
        ReasonCode::Success
    );
    assert!(broker.shutdown().await);
}

fn config_on_loopback() -> Config {
    let mut config = config();
    config.sys_interval = 0;
    config
}

const ACL: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite home/alice/#
topic deny home/alice/secret
topic write public/#

user bob
topic read home/#
topic read public/#

pattern readwrite devices/%c/#
pattern read inbox/%u
";

/// A broker with the ACL above and users alice and bob (passwords `a` and `b`), anonymous
/// clients allowed.
async fn acl_broker() -> (BrokerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    ternd_passwd(&["-c", "-b", path_str(&pw), "alice", "a"]);
    ternd_passwd(&["-b", path_str(&pw), "bob", "b"]);
    let acl = dir.path().join("acl");
    std::fs::write(&acl, ACL).unwrap();
    let mut config = config_on_loopback();
    config.auth.password_file = Some(pw);
    config.auth.acl_file = Some(acl);
    config.auth.allow_anonymous = Some(true);
    (broker_with(config).await, dir)
}

async fn as_user(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    user: Option<(&str, &'static str)>,
) -> Client {
    let (client, connack) = Client::connect_with(
        addr,
        login(version, client_id, user.map(|u| u.0), user.map(|u| u.1)),
    )
    .await;
    assert_eq!(connack.reason_code, ReasonCode::Success, "{connack:?}");
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_subscribe_refusals_carry_0x87_or_0x80() {
    let (broker, _dir) = acl_broker().await;
    let addr = broker.local_addrs()[0];
    for (version, denied) in [
        // A refused filter: 0x87 Not authorized in 5.0 (section 3.9.3) ...
        (ProtocolVersion::V5, ReasonCode::NotAuthorized),
        // ... 0x80 Failure in 3.1.1 (section 3.9.3).
        (ProtocolVersion::V3_1_1, ReasonCode::UnspecifiedError),
    ] {
        let mut bob = as_user(addr, version, "bob-1", Some(("bob", "b"))).await;
        let suback = bob
            .subscribe_with(
                1,
                &[
                    ("home/#", opts(QoS::AtLeastOnce)),
                    ("#", opts(QoS::AtLeastOnce)),
                    ("home/+/kitchen", opts(QoS::AtMostOnce)),
                    ("devices/bob-1/#", opts(QoS::AtMostOnce)),
                    ("devices/other/#", opts(QoS::AtMostOnce)),
                    ("inbox/bob", opts(QoS::AtMostOnce)),
                    ("$SYS/#", opts(QoS::AtMostOnce)),
                ],
                None,
            )
            .await;
        // One reason code per filter, in order [MQTT-3.9.3-1].
        assert_eq!(
            suback.reason_codes,
            [
                ReasonCode::GrantedQoS1,
                denied,
                ReasonCode::Success,
                ReasonCode::Success,
                denied,
                ReasonCode::Success,
                denied,
            ],
            "{version:?}"
        );
        bob.disconnect().await;
        // Anonymous: only what the lines before any `user` grant.
        let mut anon = as_user(addr, version, "anon-1", None).await;
        let suback = anon
            .subscribe_with(
                1,
                &[
                    ("public/#", opts(QoS::AtMostOnce)),
                    ("home/#", opts(QoS::AtMostOnce)),
                ],
                None,
            )
            .await;
        assert_eq!(
            suback.reason_codes,
            [ReasonCode::Success, denied],
            "{version:?}"
        );
        anon.disconnect().await;
    }
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_publish_refusals_are_never_delivered() {
    let (broker, _dir) = acl_broker().await;
    let addr = broker.local_addrs()[0];
    let mut bob = as_user(addr, ProtocolVersion::V5, "bob-1", Some(("bob", "b"))).await;
    let suback = bob.subscribe(1, "home/#", opts(QoS::AtLeastOnce)).await;
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS1]);

    // 5.0: PUBACK 0x87 for a topic alice may not write; 0x00/0x10 for one she may.
    let mut alice = as_user(addr, ProtocolVersion::V5, "alice-1", Some(("alice", "a"))).await;
    let denied = alice
        .publish_qos1(1, "home/bob/kitchen", "not alice's", true)
        .await;
    assert_eq!(denied.reason_code, ReasonCode::NotAuthorized);
    // Nor retained.
    assert_eq!(broker.stats().retained, 0);
    let denied = alice
        .publish_qos1(2, "home/alice/secret", "deny wins", false)
        .await;
    assert_eq!(denied.reason_code, ReasonCode::NotAuthorized);
    // PUBREC 0x87 for QoS 2.
    alice
        .send(Packet::Publish(publish(
            "home/bob/x",
            "q2",
            QoS::ExactlyOnce,
            Some(3),
        )))
        .await;
    match alice.recv().await {
        Packet::PubRec(ack) => assert_eq!(ack.reason_code, ReasonCode::NotAuthorized),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    // QoS 0: dropped without a word; the connection stays.
    alice
        .send(Packet::Publish(publish(
            "home/bob/y",
            "q0",
            QoS::AtMostOnce,
            None,
        )))
        .await;
    let ok = alice
        .publish_qos1(4, "home/alice/kitchen", "allowed", false)
        .await;
    assert_eq!(ok.reason_code, ReasonCode::Success);
    // The first message bob gets is the allowed one: none of the refused ones was routed.
    let got = bob.expect_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("home/alice/kitchen", &b"allowed"[..])
    );

    // 3.1.1: a positive acknowledgement and a silent drop [MQTT-3.3.5-2].
    let mut alice3 = as_user(
        addr,
        ProtocolVersion::V3_1_1,
        "alice-3",
        Some(("alice", "a")),
    )
    .await;
    let ack = alice3
        .publish_qos1(1, "home/bob/kitchen", "dropped", false)
        .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let ack = alice3
        .publish_qos1(2, "home/alice/hall", "through", false)
        .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let got = bob.expect_publish().await;
    assert_eq!(got.topic.as_str(), "home/alice/hall");
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_read_is_checked_on_delivery_and_on_retained_messages() {
    let (broker, _dir) = acl_broker().await;
    let addr = broker.local_addrs()[0];
    // Retained messages on a topic bob may read and on one he may not (the broker's own
    // publish is not checked; the delivery is).
    for (topic, payload) in [("home/alice/secret", "hidden"), ("home/alice/door", "open")] {
        broker
            .publish(tern_codec::Publish {
                topic: s(topic),
                payload: payload.into(),
                retain: true,
                ..tern_codec::Publish::default()
            })
            .unwrap();
    }
    // Alice may subscribe to her whole tree, but the denied topic inside it is not delivered
    // to her, retained or live.
    let mut alice = as_user(addr, ProtocolVersion::V5, "alice-1", Some(("alice", "a"))).await;
    let suback = alice
        .subscribe(1, "home/alice/#", opts(QoS::AtMostOnce))
        .await;
    assert_eq!(suback.reason_codes, [ReasonCode::Success]);
    let got = alice.expect_publish().await;
    assert_eq!(got.topic.as_str(), "home/alice/door");
    assert!(got.retain);
    // Bob reads all of home/#, the secret included.
    let mut bob = as_user(addr, ProtocolVersion::V5, "bob-1", Some(("bob", "b"))).await;
    bob.subscribe(1, "home/#", opts(QoS::AtMostOnce)).await;
    let mut retained: Vec<String> = Vec::new();
    for _ in 0..2 {
        retained.push(bob.expect_publish().await.topic.to_string());
    }
    retained.sort();
    assert_eq!(retained, ["home/alice/door", "home/alice/secret"]);
    // Live: the broker publishes on both; alice gets only the readable one.
    for topic in ["home/alice/secret", "home/alice/window"] {
        broker
            .publish(tern_codec::Publish {
                topic: s(topic),
                payload: "live".into(),
                ..tern_codec::Publish::default()
            })
            .unwrap();
    }
    assert_eq!(
        alice.expect_publish().await.topic.as_str(),
        "home/alice/window"
    );
    assert_eq!(
        bob.expect_publish().await.topic.as_str(),
        "home/alice/secret"
    );
    assert_eq!(
        bob.expect_publish().await.topic.as_str(),
        "home/alice/window"
    );
    // Patterns: each client its own devices/%c/#.
    let mut dev = as_user(addr, ProtocolVersion::V5, "dev-7", None).await;
    assert_eq!(
        dev.subscribe(1, "devices/dev-7/#", opts(QoS::AtMostOnce))
            .await
            .reason_codes,
        [ReasonCode::Success]
    );
    let ack = dev
        .publish_qos1(2, "devices/dev-8/cmd", "other's", false)
        .await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    let ack = dev.publish_qos1(3, "devices/dev-7/cmd", "own", false).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(
        dev.expect_publish().await.topic.as_str(),
        "devices/dev-7/cmd"
    );
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_will_on_a_topic_not_writable_is_never_published() {
    let (broker, _dir) = acl_broker().await;
    let addr = broker.local_addrs()[0];
    let mut bob = as_user(addr, ProtocolVersion::V5, "bob-1", Some(("bob", "b"))).await;
    bob.subscribe(1, "home/#", opts(QoS::AtMostOnce)).await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        // As mosquitto does: the CONNECT is accepted, the Will is checked when it is due.
        let mut c = login(version, "alice-w", Some("alice"), Some("a"));
        c.will = Some(will("home/bob/will", "not hers"));
        let (client, connack) = Client::connect_with(addr, c).await;
        assert_eq!(connack.reason_code, ReasonCode::Success, "{version:?}");
        // Gone uncleanly: the Will is due [MQTT-3.1.2-8], but alice may not write there.
        client.drop_connection();
        wait_for_stats(&broker, "the will's client to be gone", |s| {
            s.clients_connected == 1
        })
        .await;
    }
    // A writable Will is published; it is the first message bob gets.
    let mut c = login(ProtocolVersion::V5, "alice-w", Some("alice"), Some("a"));
    c.will = Some(will("home/alice/will", "hers"));
    let (client, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    client.drop_connection();
    let got = bob.expect_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("home/alice/will", &b"hers"[..])
    );
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_will_is_checked_when_it_is_due() {
    let (broker, _dir) = acl_broker().await;
    let addr = broker.local_addrs()[0];
    let mut bob = as_user(addr, ProtocolVersion::V5, "bob-1", Some(("bob", "b"))).await;
    bob.subscribe(1, "home/#", opts(QoS::AtMostOnce)).await;
    // Wills published by the offline session's keeper, after a Will Delay of 1 second
    // (section 3.1.3.2.2): the denied one first, then the allowed one.
    for (client_id, topic) in [
        ("alice-d1", "home/bob/late"),
        ("alice-d2", "home/alice/late"),
    ] {
        let mut c = login(ProtocolVersion::V5, client_id, Some("alice"), Some("a"));
        c.properties.session_expiry_interval = Some(60);
        let mut w = will(topic, "late");
        w.properties.will_delay_interval = Some(1);
        c.will = Some(w);
        let (client, connack) = Client::connect_with(addr, c).await;
        assert_eq!(connack.reason_code, ReasonCode::Success);
        client.drop_connection();
        wait_for_stats(&broker, "the will's client to be gone", |s| {
            s.clients_connected == 1
        })
        .await;
    }
    assert_eq!(bob.expect_publish().await.topic.as_str(), "home/alice/late");
    assert!(broker.shutdown().await);
}

/// The client half of SCRAM-SHA-256 as a tern-client enhanced authentication hook.
struct Scram {
    user: &'static str,
    password: &'static str,
    client: Option<ScramClient>,
}

impl tern_client::AuthHandler for Scram {
    fn initial_data(&mut self) -> Option<Bytes> {
        let client = ScramClient::new(self.user, self.password);
        let first = client.client_first();
        self.client = Some(client);
        Some(Bytes::from(first))
    }

    fn step(&mut self, auth: &Auth) -> Result<Option<Bytes>, String> {
        let client = self.client.as_mut().ok_or("no exchange")?;
        let data = auth
            .properties
            .authentication_data
            .as_deref()
            .unwrap_or_default();
        client
            .client_final(data)
            .map(|d| Some(Bytes::from(d)))
            .map_err(|e| e.to_string())
    }

    fn success(&mut self, data: Option<&Bytes>) -> Result<(), String> {
        let client = self.client.as_ref().ok_or("no exchange")?;
        client
            .verify_server_final(data.map_or(&[][..], |d| &d[..]))
            .map_err(|e| e.to_string())
    }
}

async fn scram_broker() -> BrokerHandle {
    // Enhanced authentication in place of passwords; no anonymous clients.
    let mut config = config_on_loopback();
    config.auth.allow_anonymous = Some(false);
    Broker::new(config)
        .with_auth_method(Arc::new(ScramSha256::new().with_user("alice", "pencil")))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn scram_sha_256_over_a_socket_with_tern_client() {
    let broker = scram_broker().await;
    let url = format!("mqtt://{}", broker.local_addrs()[0]);
    let client = tokio::time::timeout(
        TIMEOUT,
        tern_client::Client::builder(&url)
            .unwrap()
            .client_id("scram-1")
            .authentication(
                "SCRAM-SHA-256",
                Scram {
                    user: "alice",
                    password: "pencil",
                    client: None,
                },
            )
            .reconnect(tern_client::ReconnectOptions::disabled())
            .connect(),
    )
    .await
    .expect("in time")
    .expect("SCRAM accepted, server signature verified");
    assert_eq!(
        broker
            .clients()
            .iter()
            .find(|c| c.client_id == "scram-1")
            .and_then(|c| c.username.clone()),
        Some("alice".to_owned())
    );
    // Re-authentication (section 4.12.1) runs the exchange again on the open connection.
    tokio::time::timeout(TIMEOUT, client.reauthenticate())
        .await
        .expect("in time")
        .unwrap();
    let ack = tokio::time::timeout(TIMEOUT, client.publish("a/b", QoS::AtLeastOnce, "after"))
        .await
        .expect("in time");
    assert!(ack.is_ok(), "{ack:?}");
    client.disconnect().await;

    // A wrong password: the proof does not verify, CONNACK 0x87 [MQTT-4.12.0-4].
    let err = tokio::time::timeout(
        TIMEOUT,
        tern_client::Client::builder(&url)
            .unwrap()
            .authentication(
                "SCRAM-SHA-256",
                Scram {
                    user: "alice",
                    password: "pen",
                    client: None,
                },
            )
            .reconnect(tern_client::ReconnectOptions::disabled())
            .connect(),
    )
    .await
    .expect("in time")
    .unwrap_err();
    let reason = err.reason().expect("a refusal");
    assert_eq!(
        reason.refused(),
        Some(ReasonCode::NotAuthorized),
        "{reason:?}"
    );
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn scram_on_the_wire_and_unknown_methods() {
    let broker = scram_broker().await;
    let addr = broker.local_addrs()[0];
    // The raw exchange: CONNECT (client-first), AUTH 0x18 (server-first) [MQTT-4.12.0-2],
    // AUTH 0x18 (client-final) [MQTT-4.12.0-3], CONNACK 0x00 with the server-final message
    // and the Authentication Method of CONNECT [MQTT-4.12.0-5].
    let mut scram = ScramClient::new("alice", "pencil");
    let mut c = connect(ProtocolVersion::V5, "raw", true);
    c.properties.authentication_method = Some(s("SCRAM-SHA-256"));
    c.properties.authentication_data = Some(Bytes::from(scram.client_first()));
    let mut client = Client::open(addr, ProtocolVersion::V5).await;
    client.send(Packet::from(c.clone())).await;
    let Packet::Auth(challenge) = client.recv().await else {
        panic!("expected AUTH")
    };
    assert_eq!(challenge.reason_code, ReasonCode::ContinueAuthentication);
    assert_eq!(
        challenge
            .properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str()),
        Some("SCRAM-SHA-256")
    );
    let last = scram
        .client_final(challenge.properties.authentication_data.as_deref().unwrap())
        .unwrap();
    let mut answer = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: Default::default(),
    };
    answer.properties.authentication_method = Some(s("SCRAM-SHA-256"));
    answer.properties.authentication_data = Some(Bytes::from(last));
    client.send(Packet::Auth(answer.clone())).await;
    let connack = client.connack().await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        connack
            .properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str()),
        Some("SCRAM-SHA-256")
    );
    scram
        .verify_server_final(connack.properties.authentication_data.as_deref().unwrap())
        .unwrap();
    // Re-authentication (section 4.12.1): AUTH 0x19 with a new client-first message, the
    // challenge, then a proof that does not verify: DISCONNECT 0x87 [MQTT-4.12.1-2].
    let again = ScramClient::with_nonce("alice", "pencil", "reauth-nonce-1");
    let mut reauth = Auth {
        reason_code: ReasonCode::ReAuthenticate,
        properties: Default::default(),
    };
    reauth.properties.authentication_method = Some(s("SCRAM-SHA-256"));
    reauth.properties.authentication_data = Some(Bytes::from(again.client_first()));
    client.send(Packet::Auth(reauth)).await;
    let Packet::Auth(challenge) = client.recv().await else {
        panic!("expected AUTH")
    };
    assert_eq!(challenge.reason_code, ReasonCode::ContinueAuthentication);
    // The same nonce with the wrong password: a well-formed proof that does not verify.
    let mut forged = ScramClient::with_nonce("alice", "not pencil", "reauth-nonce-1");
    let wrong = forged
        .client_final(challenge.properties.authentication_data.as_deref().unwrap())
        .unwrap();
    let mut answer_wrong = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: Default::default(),
    };
    answer_wrong.properties.authentication_method = Some(s("SCRAM-SHA-256"));
    answer_wrong.properties.authentication_data = Some(Bytes::from(wrong));
    client.send(Packet::Auth(answer_wrong)).await;
    assert_eq!(
        client.expect_disconnect().await.reason_code,
        ReasonCode::NotAuthorized
    );
    client.expect_closed().await;

    // Garbage as client-final: CONNACK 0x87 and a close [MQTT-4.12.0-4].
    let mut client = Client::open(addr, ProtocolVersion::V5).await;
    let scram = ScramClient::new("alice", "pencil");
    c.properties.authentication_data = Some(Bytes::from(scram.client_first()));
    client.send(Packet::from(c.clone())).await;
    assert!(matches!(client.recv().await, Packet::Auth(_)));
    answer.properties.authentication_data = Some(Bytes::from_static(b"c=biws,r=x,p=AAAA"));
    client.send(Packet::Auth(answer)).await;
    assert_eq!(
        client.connack().await.reason_code,
        ReasonCode::NotAuthorized
    );
    client.expect_closed().await;

    // A method the broker does not offer: 0x8C Bad authentication method [MQTT-4.12.0-1].
    c.properties.authentication_method = Some(s("KERBEROS"));
    let (_client, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::BadAuthenticationMethod);
    assert!(broker.shutdown().await);
}

/// `mosquitto_pub` / `mosquitto_sub` with debug output against `broker`, as `user`.
fn mosquitto_client(
    bin: &str,
    broker: &interop::TestBroker,
    version: &str,
    user: &str,
    password: &str,
) -> Command {
    let mut c = Command::new("stdbuf");
    c.args(["-oL", bin, "-h", "127.0.0.1", "-p", &broker.port_arg()]);
    c.args(["-V", version, "-d", "-u", user, "-P", password]);
    c
}

#[test]
fn mosquitto_clients_with_a_mosquitto_password_file_and_acl() {
    if !require(Peer::Mosquitto) || !require(Peer::MosquittoPasswd) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    mosquitto_passwd(&["-c", "-b", path_str(&pw), "alice", "wonderland"]);
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite sensors/#\ntopic read secret/#\n",
    )
    .unwrap();
    let mut config = Config::with_listeners(["127.0.0.1:0".parse().unwrap()]);
    config.sys_interval = 0;
    config.auth.password_file = Some(pw);
    config.auth.acl_file = Some(acl);
    let broker = interop::TestBroker::with_config(config);
    for version in ["mqttv311", "mqttv5"] {
        let mut sub = interop::Child::spawn(
            "mosquitto_sub",
            mosquitto_client("mosquitto_sub", &broker, version, "alice", "wonderland").args([
                "-t",
                "sensors/#",
                "-t",
                "secret/#",
                "-q",
                "1",
                "-C",
                "1",
                "-F",
                "MSG|%t|%p",
            ]),
        );
        sub.wait_for_line("received SUBACK");
        // secret/# is readable but not writable: her own publish there is refused (3.1.1:
        // acknowledged and dropped [MQTT-3.3.5-2]; 5.0: PUBACK 0x87) and never delivered.
        let refused = interop::Child::spawn(
            "mosquitto_pub",
            mosquitto_client("mosquitto_pub", &broker, version, "alice", "wonderland").args([
                "-q",
                "1",
                "-t",
                "secret/plan",
                "-m",
                "leak",
            ]),
        )
        .wait();
        assert!(
            refused.stdout.iter().any(|l| l.contains("received PUBACK")),
            "{version}: {:?}",
            refused.stdout
        );
        interop::Child::spawn(
            "mosquitto_pub",
            mosquitto_client("mosquitto_pub", &broker, version, "alice", "wonderland").args([
                "-q",
                "1",
                "-t",
                "sensors/t1",
                "-m",
                "21.5",
            ]),
        )
        .success();
        let out = sub.success();
        let got: Vec<_> = out.iter().filter(|l| l.starts_with("MSG|")).collect();
        assert_eq!(got, ["MSG|sensors/t1|21.5"], "{version}: {out:?}");

        // A wrong password: refused, and the client says why.
        let wrong = interop::Child::spawn(
            "mosquitto_pub",
            mosquitto_client("mosquitto_pub", &broker, version, "alice", "alice").args([
                "-t",
                "sensors/t1",
                "-m",
                "x",
            ]),
        )
        .wait();
        assert!(!wrong.status.success(), "{version}");
        let said = format!("{}\n{}", wrong.stdout.join("\n"), wrong.stderr).to_lowercase();
        assert!(
            said.contains("bad user name or password"),
            "{version}: {said}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_session_reads_with_its_new_users_rights() {
    let (broker, _dir) = acl_broker().await;
    let addr = broker.local_addrs()[0];
    let mut c = login(ProtocolVersion::V5, "shared-id", Some("bob"), Some("b"));
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    let (mut bob, connack) = Client::connect_with(addr, c.clone()).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        bob.subscribe(1, "home/#", opts(QoS::AtMostOnce))
            .await
            .reason_codes,
        [ReasonCode::Success]
    );
    bob.disconnect().await;
    // Alice takes the session (and its home/# subscription) over: deliveries are checked
    // against her rights, not bob's.
    c.username = Some(s("alice"));
    c.password = Some(Bytes::from_static(b"a"));
    let (mut alice, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert!(connack.session_present);
    for topic in ["home/bob/diary", "home/alice/diary"] {
        broker
            .publish(tern_codec::Publish {
                topic: s(topic),
                payload: "x".into(),
                ..tern_codec::Publish::default()
            })
            .unwrap();
    }
    assert_eq!(
        alice.expect_publish().await.topic.as_str(),
        "home/alice/diary"
    );
    assert!(broker.shutdown().await);
}

/// An application's authenticator that holds the user `slow` until released, and an
/// authorizer that keeps everyone out of `private/#`.
#[derive(Debug)]
struct Gate {
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl tern_broker::Authenticator for Gate {
    fn authenticate(&self, client: &tern_broker::auth::ConnectInfo<'_>) -> tern_broker::Decision {
        if client.username == Some("slow") {
            self.entered.lock().unwrap().send(()).unwrap();
            let _ = self.release.lock().unwrap().recv();
        }
        if client.password == Some(&b"ok"[..]) {
            tern_broker::Decision::Allow
        } else {
            tern_broker::Decision::BadCredentials
        }
    }
}

#[derive(Debug)]
struct NoPrivate;

impl tern_broker::Authorizer for NoPrivate {
    fn allows(&self, _: &tern_broker::Identity, _: tern_broker::Access, topic: &str) -> bool {
        !topic.starts_with("private/")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn application_hooks_and_the_bound_on_concurrent_checks() {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let mut config = config_on_loopback();
    config.auth.max_concurrent_checks = 1;
    // How long a CONNECT may wait for a check slot.
    config.limits.connect_timeout = 1;
    let broker = Broker::new(config)
        .with_authenticator(Arc::new(Gate {
            entered: std::sync::Mutex::new(entered_tx),
            release: std::sync::Mutex::new(release_rx),
        }))
        .with_authorizer(Arc::new(NoPrivate))
        .start()
        .await
        .unwrap();
    let addr = broker.local_addrs()[0];
    let slow = tokio::spawn(async move {
        Client::connect_with(
            addr,
            login(ProtocolVersion::V5, "slow", Some("slow"), Some("ok")),
        )
        .await
    });
    let entered = tokio::task::spawn_blocking(move || entered_rx.recv_timeout(TIMEOUT));
    tokio::time::timeout(TIMEOUT, entered)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The only slot is taken: the next CONNECT waits its connect timeout, then 0x89.
    assert_eq!(
        connack_code(addr, ProtocolVersion::V5, Some("fast"), Some("ok")).await,
        ReasonCode::ServerBusy
    );
    // 3.1.1: return code 3 Server unavailable.
    assert_eq!(
        connack_code(addr, ProtocolVersion::V3_1_1, Some("fast"), Some("ok")).await,
        ReasonCode::ServerUnavailable
    );
    release_tx.send(()).unwrap();
    let (mut slow, connack) = tokio::time::timeout(TIMEOUT, slow).await.unwrap().unwrap();
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        connack_code(addr, ProtocolVersion::V5, Some("fast"), Some("no")).await,
        ReasonCode::BadUserNameOrPassword
    );
    let suback = slow
        .subscribe_with(
            1,
            &[
                ("public/#", opts(QoS::AtMostOnce)),
                ("private/#", opts(QoS::AtMostOnce)),
            ],
            None,
        )
        .await;
    assert_eq!(
        suback.reason_codes,
        [ReasonCode::Success, ReasonCode::NotAuthorized]
    );
    let ack = slow.publish_qos1(2, "private/x", "no", false).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_identity_needs_no_password_and_meets_the_acl() {
    let pki = pki::Pki::new();
    let pw = pki.path("passwd");
    ternd_passwd(&["-c", "-b", path_str(&pw), "alice", "a"]);
    let acl = pki.path("acl");
    std::fs::write(
        &acl,
        format!("user {}\ntopic readwrite certs/#\n", pki::CLIENT_CN),
    )
    .unwrap();
    let text = format!(
        "sys_interval = 0\n[auth]\npassword_file = {:?}\nacl_file = {:?}\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n{}",
        pw,
        acl,
        pki.mtls_table("use_identity_as_username = true\n")
    );
    let broker = Broker::new(Config::from_toml_str(&text).unwrap())
        .start()
        .await
        .unwrap();
    let url = format!("mqtts://localhost:{}", broker.local_addrs()[0].port());
    // Authenticated by its certificate: CONNECT's username and password are not checked.
    let client = tokio::time::timeout(
        TIMEOUT,
        tern_client::Client::builder(&url)
            .unwrap()
            .client_id("by-cert")
            .credentials("claimed-name", "not a password")
            .ca_pem(pki.ca_pem.clone())
            .client_cert_files(&pki.client.cert_file, &pki.client.key_file)
            .reconnect(tern_client::ReconnectOptions::disabled())
            .connect(),
    )
    .await
    .expect("in time")
    .expect("accepted by certificate");
    // The ACL applies to the certificate's CN.
    let ok = tokio::time::timeout(TIMEOUT, client.publish("certs/a", QoS::AtLeastOnce, "x"))
        .await
        .unwrap();
    assert!(ok.is_ok(), "{ok:?}");
    let denied = tokio::time::timeout(TIMEOUT, client.publish("other/a", QoS::AtLeastOnce, "x"))
        .await
        .unwrap();
    assert!(
        matches!(
            denied,
            Err(tern_client::Error::Refused(ReasonCode::NotAuthorized))
        ),
        "{denied:?}"
    );
    client.disconnect().await;
    assert!(broker.shutdown().await);
}
