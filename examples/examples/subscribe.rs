//! Subscribes to a filter and prints messages; answers `ping` with `pong` from inside the
//! handler (publishing from a handler never deadlocks), and watches the connection's life.
//!
//! ```text
//! cargo run -p tern-examples --example subscribe [mqtt://host:1883 [filter]]
//! ```
//!
//! Without a URL it starts an in-process `ternd` and publishes a few messages itself.

use std::time::Duration;

use tern_client::{Client, ConnectionEvent, QoS, ReconnectOptions, SubscribeOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let given = args.next();
    let filter = args.next().unwrap_or_else(|| "tern/example/#".to_owned());
    let mut _broker = None;
    let url = match given {
        Some(url) => url,
        None => {
            let config = tern_broker::Config::with_listeners(["127.0.0.1:0".parse()?]);
            let broker = tern_broker::Broker::new(config).start().await?;
            let url = format!("mqtt://{}", broker.local_addrs()[0]);
            _broker = Some(broker);
            url
        }
    };

    let client = Client::builder(&url)?
        .client_id("tern-example-subscribe")
        .clean_start(false)
        .session_expiry(Duration::from_secs(300))
        .reconnect(ReconnectOptions::exponential(
            Duration::from_millis(250),
            Duration::from_secs(10),
        ))
        .connect()
        .await?;

    let mut events = client.connection_events();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                ConnectionEvent::Connected {
                    session_present, ..
                } => {
                    println!("connected (session present: {session_present})");
                }
                ConnectionEvent::Disconnected { reason } => println!("disconnected: {reason}"),
                ConnectionEvent::Reconnecting { delay, attempt } => {
                    println!("reconnecting in {delay:?} (attempt {attempt})");
                }
                _ => {}
            }
        }
    });

    let mut messages = client
        .subscribe(
            &filter,
            SubscribeOptions::new(QoS::AtLeastOnce).no_local(false),
        )
        .await?;
    println!(
        "subscribed to {filter}, granted {:?}",
        messages.granted_qos()
    );

    if _broker.is_some() {
        for payload in ["hello", "ping", "bye"] {
            client
                .publish("tern/example/chat", QoS::AtLeastOnce, payload)
                .await?;
        }
    }

    while let Some(message) = messages.recv().await {
        println!(
            "{} [{:?}]: {:?}",
            message.topic(),
            message.qos(),
            message.payload()
        );
        if message.payload() == "ping" {
            // Publish and await the acknowledgement from inside the handler.
            client
                .publish("tern/example/pong", QoS::AtLeastOnce, "pong")
                .await?;
        }
        if message.payload() == "bye" && _broker.is_some() {
            break;
        }
    }
    client.disconnect().await;
    Ok(())
}
