//! MQTT 5.0 request/response (section 4.10): a request carries a Response Topic and
//! Correlation Data; the responder publishes its answer to that topic with the same data
//! ([`Message::reply`](crate::Message::reply) builds it).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use tern_codec::QoS;

use crate::client::Client;
use crate::error::Error;
use crate::message::{Message, OutgoingMessage};
use crate::subscription::Subscription;

/// Sends requests and waits for their responses on one response topic, from
/// [`Client::requester`]. Requests are answered one at a time (`&mut self`); use one
/// requester per concurrent caller, each with its own response topic.
pub struct Requester {
    client: Client,
    responses: Subscription,
    response_topic: String,
    prefix: u64,
    next: u64,
}

impl fmt::Debug for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requester")
            .field("response_topic", &self.response_topic)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Subscribes to `response_topic` (a topic name, no wildcards) for the responses of
    /// [`Requester::request`].
    ///
    /// # Errors
    /// MQTT 3.1.1 ([`Error::NotSupported`]), an invalid topic, a refused subscription.
    pub async fn requester(&self, response_topic: &str) -> Result<Requester, Error> {
        if !self.protocol().is_v5() {
            return Err(Error::NotSupported("request/response needs MQTT 5.0"));
        }
        tern_topic::validate_topic_name(response_topic)?;
        let responses = self.subscribe(response_topic, QoS::AtLeastOnce).await?;
        Ok(Requester {
            client: self.clone(),
            responses,
            response_topic: response_topic.to_owned(),
            prefix: rand::random(),
            next: 0,
        })
    }
}

impl Requester {
    /// The topic responses come back on.
    pub fn response_topic(&self) -> &str {
        &self.response_topic
    }

    /// Publishes `request` with this requester's Response Topic and fresh Correlation Data,
    /// then waits up to `timeout` for the response carrying the same Correlation Data
    /// (responses to earlier, timed-out requests are skipped).
    ///
    /// # Errors
    /// As [`Client::publish`], or [`Error::Timeout`].
    pub async fn request(
        &mut self,
        request: OutgoingMessage,
        timeout: Duration,
    ) -> Result<Message, Error> {
        let correlation = Bytes::from(format!("{:016x}-{}", self.prefix, self.next));
        self.next += 1;
        let request = request
            .response_topic(self.response_topic.clone())
            .correlation_data(correlation.clone());
        let responses = &mut self.responses;
        let wait = async {
            self.client.publish_with(request).await?;
            while let Some(message) = responses.recv().await {
                if message.correlation_data() == Some(&correlation) {
                    return Ok(message);
                }
            }
            Err(Error::Closed)
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout)?
    }
}
