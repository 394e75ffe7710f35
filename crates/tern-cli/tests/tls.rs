//! `tern pub` over TLS to an in-process ternd whose listener requires a client certificate:
//! --cafile, --cert and --key, and --insecure (the chain is checked, the name is not).

mod support;

use std::path::Path;

use support::*;
use tern_broker::Config;
use tern_broker::config::{ListenerConfig, TlsConfig};
use tern_client::{Client, QoS};

/// A CA, a server certificate for `localhost` only (not `127.0.0.1`) and a client
/// certificate, written as PEM files into `dir`: (ca, server cert, server key, client cert,
/// client key).
fn pki(dir: &Path) -> [std::path::PathBuf; 5] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tern-cli test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "tern-cli");
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    let files = [
        ("ca.pem", ca.pem()),
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
        ("client.pem", client.pem()),
        ("client.key", client_key.serialize_pem()),
    ];
    files.map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_client_certificate_and_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, server_cert, server_key, client_cert, client_key] = pki(dir.path());
    let mut config = Config::with_listeners(["127.0.0.1:0".parse().unwrap()]);
    config.listeners.push(
        ListenerConfig::new("127.0.0.1:0".parse().unwrap())
            .tls(TlsConfig::new(&server_cert, &server_key).client_ca(&ca, true)),
    );
    let (broker, plain) = ternd_with(config).await;
    let tls = broker.local_addrs()[1];
    let checker = within(
        "connect",
        Client::builder(&format!("mqtt://{plain}"))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    let mut sub = checker.subscribe("tls/#", QoS::AtLeastOnce).await.unwrap();

    let (ca, cert, key) = (
        ca.to_str().unwrap(),
        client_cert.to_str().unwrap(),
        client_key.to_str().unwrap(),
    );
    let publish = |extra: &[&str]| {
        let mut cmd = tern(["pub"]);
        cmd.args(host_port(tls))
            .args(["--cafile", ca, "-t", "tls/x", "-q", "1"])
            .args(extra);
        cmd
    };
    // The certificate names `localhost`, the host is 127.0.0.1: refused by name.
    let out = run(publish(&["--cert", cert, "--key", key, "-m", "by name"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // --insecure accepts the name mismatch; the chain is still verified against --cafile.
    let out = run(publish(&[
        "--cert",
        cert,
        "--key",
        key,
        "--insecure",
        "-m",
        "insecure",
    ]))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let got = within("the TLS message", sub.recv()).await.unwrap();
    assert_eq!(got.payload(), "insecure");
    // Without a client certificate the broker refuses the handshake.
    let out = run(publish(&["--insecure", "-m", "no cert"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // A CA that did not sign the server's certificate fails even with --insecure.
    let out = run(tern([
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &tls.port().to_string(),
        "--cafile",
        cert,
        "--cert",
        cert,
        "--key",
        key,
        "--insecure",
        "-t",
        "tls/x",
        "-m",
        "wrong ca",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    checker.disconnect().await;
}
