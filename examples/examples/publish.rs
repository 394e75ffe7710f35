//! Publishes a few messages at each QoS and prints each acknowledgement.
//!
//! ```text
//! cargo run -p tern-examples --example publish [mqtt://host:1883]
//! ```
//!
//! Without a URL it starts an in-process `ternd` on a free port.

use std::time::Duration;

use tern_client::{Client, OutgoingMessage, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _broker) = broker_url().await?;
    let client = Client::builder(&url)?
        .client_id("tern-example-publish")
        .keep_alive(Duration::from_secs(30))
        .connect()
        .await?;

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        // Resolves when the message is done at its QoS: written, PUBACK or PUBCOMP.
        let ack = client
            .publish("tern/example/publish", qos, format!("hello at {qos:?}"))
            .await?;
        println!("{qos:?}: {}", ack.reason_code);
    }

    // With every option and MQTT 5.0 property.
    let message = OutgoingMessage::new("tern/example/status", "online")
        .qos(QoS::AtLeastOnce)
        .retain(true)
        .content_type("text/plain")
        .user_property("example", "publish")
        .message_expiry(Duration::from_secs(3600));
    let ack = client.publish_with(message).await?;
    println!("retained status: {}", ack.reason_code);

    // Pipelining: queue many, then wait for all acknowledgements.
    let mut tokens = Vec::new();
    for i in 0..100 {
        let message =
            OutgoingMessage::new("tern/example/burst", i.to_string()).qos(QoS::AtLeastOnce);
        tokens.push(client.enqueue(message).await?);
    }
    for token in tokens {
        token.await?;
    }
    println!("100 messages acknowledged");

    client.disconnect().await;
    Ok(())
}

/// The URL from the command line, or an in-process broker's.
async fn broker_url()
-> Result<(String, Option<tern_broker::BrokerHandle>), Box<dyn std::error::Error>> {
    if let Some(url) = std::env::args().nth(1) {
        return Ok((url, None));
    }
    let config = tern_broker::Config::with_listeners(["127.0.0.1:0".parse()?]);
    let broker = tern_broker::Broker::new(config).start().await?;
    let url = format!("mqtt://{}", broker.local_addrs()[0]);
    println!("started ternd at {url}");
    Ok((url, Some(broker)))
}
