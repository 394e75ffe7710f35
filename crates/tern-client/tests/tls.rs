//! TLS against an in-process `ternd` behind a rustls acceptor that requires a client
//! certificate (certificates made with rcgen), so TLS is tested without mosquitto too.

mod support;

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use support::*;
use tern_client::{Client, DisconnectReason, QoS};
use tokio::net::TcpListener;

/// A ternd that serves TLS connections on a loopback port; returns the port.
async fn tls_ternd(pki: &Pki) -> (tern_broker::BrokerHandle, u16) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(pki.server_cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let broker = tern_broker::Broker::new(tern_broker::Config::default())
        .start_without_listeners()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = broker.clone();
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let handle = handle.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    handle.serve_connection(tls, peer);
                }
            });
        }
    });
    (broker, port)
}

#[tokio::test]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    let pki = Pki::new();
    let (_broker, port) = tls_ternd(&pki).await;
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("mqtts://{host}:{port}");
        let c = within(
            "TLS connect",
            Client::builder(&url)
                .unwrap()
                .ca_pem(pki.ca.clone())
                .client_cert_pem(pki.client_cert.clone(), pki.client_key.clone())
                .connect(),
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        let mut sub = c.subscribe("tls/t", QoS::ExactlyOnce).await.unwrap();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            c.publish("tls/t", qos, "sealed").await.unwrap();
            assert_eq!(next(&mut sub).await.qos(), qos);
        }
        c.disconnect().await;
    }
}

#[tokio::test]
async fn tls_certificate_files_and_refusals() {
    let pki = Pki::new();
    let (_broker, port) = tls_ternd(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("client.pem"),
        dir.path().join("client.key"),
    );
    std::fs::write(&ca, &pki.ca).unwrap();
    std::fs::write(&cert, &pki.client_cert).unwrap();
    std::fs::write(&key, &pki.client_key).unwrap();
    let url = format!("mqtts://localhost:{port}");
    within(
        "TLS connect with files",
        Client::builder(&url)
            .unwrap()
            .ca_file(&ca)
            .client_cert_files(&cert, &key)
            .connect(),
    )
    .await
    .unwrap();

    // The webpki roots do not know the private CA: the client refuses the server.
    let err = within(
        "TLS connect",
        Client::builder(&url)
            .unwrap()
            .client_cert_files(&cert, &key)
            .connect(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.reason(), Some(DisconnectReason::Transport(_))));

    // A missing CA file is a build error, before anything runs.
    let missing = Client::builder(&url)
        .unwrap()
        .ca_file(dir.path().join("missing.pem"))
        .build();
    assert!(matches!(missing, Err(tern_client::BuildError::Io { .. })));
}
