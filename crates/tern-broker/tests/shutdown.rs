//! Graceful shutdown.

mod support;

use support::*;
use tern_codec::{ProtocolVersion, ReasonCode};

#[tokio::test]
async fn shutdown_disconnects_clients_and_stops_accepting() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut v5 = Client::connected(addr, ProtocolVersion::V5, "s5", true).await;
    let mut v311 = Client::connected(addr, ProtocolVersion::V3_1_1, "s311", true).await;
    // A connection that has not sent CONNECT has no session yet: it is woken apart from the
    // others, and closed too (the connect timeout, 10 s, is longer than the shutdown's 5 s,
    // so `shutdown` returning true means it did not wait for that).
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        broker.shutdown().await,
        "every connection ended within the timeout"
    );
    // 5.0 clients get DISCONNECT 0x8B Server shutting down; 3.1.1 clients are closed.
    assert_eq!(
        v5.expect_disconnect().await.reason_code,
        ReasonCode::ServerShuttingDown
    );
    v5.expect_closed().await;
    v311.expect_closed().await;
    let mut byte = [0u8; 1];
    let read = tokio::io::AsyncReadExt::read(&mut silent, &mut byte).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
