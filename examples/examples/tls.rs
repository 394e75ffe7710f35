//! Connects over TLS (`mqtts://`) or WebSocket over TLS (`wss://`), optionally with a private
//! CA and a client certificate, then publishes and receives one message.
//!
//! ```text
//! cargo run -p tern-examples --example tls -- mqtts://broker.example:8883
//! cargo run -p tern-examples --example tls -- mqtts://localhost:8883 ca.pem [client.pem client.key]
//! ```
//!
//! Without a CA file the Mozilla roots of `webpki-roots` are trusted. A mosquitto listener
//! for the second form:
//!
//! ```text
//! listener 8883
//! cafile ca.pem
//! certfile server.pem
//! keyfile server.key
//! require_certificate true
//! ```

use tern_client::{Client, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first() else {
        eprintln!("usage: tls mqtts://host:port [ca.pem [client.pem client.key]]");
        std::process::exit(2);
    };
    let mut builder = Client::builder(url)?.client_id("tern-example-tls");
    if let Some(ca) = args.get(1) {
        builder = builder.ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (args.get(2), args.get(3)) {
        builder = builder.client_cert_files(cert, key);
    }
    let client = builder.connect().await?;
    let mut sub = client
        .subscribe("tern/example/tls", QoS::AtLeastOnce)
        .await?;
    client
        .publish("tern/example/tls", QoS::AtLeastOnce, "over TLS")
        .await?;
    if let Some(message) = sub.recv().await {
        println!("{}: {:?}", message.topic(), message.payload());
    }
    client.disconnect().await;
    Ok(())
}
