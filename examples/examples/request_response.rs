//! MQTT 5.0 request/response: a responder answers requests on `service/time` through the
//! Response Topic and Correlation Data of each request; a requester waits for the answers.
//!
//! ```text
//! cargo run -p tern-examples --example request_response [mqtt://host:1883]
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_client::{Client, OutgoingMessage, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut _broker = None;
    let url = match std::env::args().nth(1) {
        Some(url) => url,
        None => {
            let config = tern_broker::Config::with_listeners(["127.0.0.1:0".parse()?]);
            let broker = tern_broker::Broker::new(config).start().await?;
            let url = format!("mqtt://{}", broker.local_addrs()[0]);
            _broker = Some(broker);
            url
        }
    };

    // The responder.
    let responder = Client::builder(&url)?
        .client_id("time-service")
        .connect()
        .await?;
    let mut requests = responder
        .subscribe("service/time", QoS::AtLeastOnce)
        .await?;
    let service = responder.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            // `reply` targets the Response Topic and copies the Correlation Data.
            if let Some(reply) = request.reply(format!("{} s since the epoch", now.as_secs())) {
                let reply = reply.user_property("served-by", "time-service");
                if let Err(e) = service.publish_with(reply).await {
                    eprintln!("reply failed: {e}");
                }
            }
        }
    });

    // The requester: one response topic, fresh correlation data per request.
    let client = Client::builder(&url)?
        .client_id("time-client")
        .connect()
        .await?;
    let mut requester = client.requester("replies/time-client").await?;
    for _ in 0..3 {
        let request =
            OutgoingMessage::new("service/time", "what time is it?").qos(QoS::AtLeastOnce);
        let response = requester.request(request, Duration::from_secs(5)).await?;
        println!(
            "{:?} (correlation {:?})",
            response.payload(),
            response.correlation_data()
        );
    }
    client.disconnect().await;
    responder.disconnect().await;
    Ok(())
}
