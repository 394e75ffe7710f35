//! Message streams: one [`Subscription`] per `subscribe`, and the catch-all [`Messages`].
//!
//! Each stream is a bounded channel from the driver. When one is full the driver keeps the
//! message (see [`ClientBuilder::inbound_limit`](crate::ClientBuilder::inbound_limit)) and
//! keeps reading the socket, so acknowledgements of the application's own publishes still
//! arrive: a handler may publish and await the acknowledgement without deadlocking.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tern_codec::{QoS, ReasonCode};
use tokio::sync::{mpsc, oneshot};

use crate::client::{Command, SubscribeReply};
use crate::error::Error;
use crate::message::Message;

/// The messages of one subscription, from [`Client::subscribe`](crate::Client::subscribe):
/// a [`Stream`] of [`Message`], also readable with [`recv`](Subscription::recv). Dropping it
/// unsubscribes (when no other stream uses the same filter).
pub struct Subscription {
    rx: mpsc::Receiver<Message>,
    stream: u64,
    filter: String,
    reason_code: ReasonCode,
    ctrl: mpsc::UnboundedSender<Command>,
    active: bool,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.filter)
            .field("reason_code", &self.reason_code)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        reply: SubscribeReply,
        filter: String,
        ctrl: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Subscription {
            rx: reply.rx,
            stream: reply.stream,
            filter,
            reason_code: reply.reason_code,
            ctrl,
            active: true,
        }
    }

    /// The topic filter.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The QoS the broker granted in SUBACK (it may be lower than asked) [MQTT-3.9.3-2].
    pub fn granted_qos(&self) -> QoS {
        match self.reason_code {
            ReasonCode::GrantedQoS2 => QoS::ExactlyOnce,
            ReasonCode::GrantedQoS1 => QoS::AtLeastOnce,
            _ => QoS::AtMostOnce,
        }
    }

    /// The SUBACK reason code (the granted QoS).
    pub fn reason_code(&self) -> ReasonCode {
        self.reason_code
    }

    /// The next message; `None` once the client stopped (or a restore of this subscription
    /// after a reconnection was refused).
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// Unsubscribes and resolves after UNSUBACK (at once when another stream still uses the
    /// filter, or while offline: the UNSUBSCRIBE is then sent after reconnecting if the broker
    /// kept the session).
    ///
    /// # Errors
    /// An error reason code in UNSUBACK (MQTT 5.0), [`Error::Closed`].
    pub async fn unsubscribe(mut self) -> Result<(), Error> {
        self.active = false;
        let (reply, rx) = oneshot::channel();
        self.ctrl
            .send(Command::Unsubscribe {
                stream: self.stream,
                reply: Some(reply),
            })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.active {
            // The driver may have stopped already; then there is nothing to unsubscribe.
            let _ = self.ctrl.send(Command::Unsubscribe {
                stream: self.stream,
                reply: None,
            });
        }
    }
}

/// Every message the client receives, from [`Client::messages`](crate::Client::messages).
pub struct Messages {
    rx: mpsc::Receiver<Message>,
}

impl fmt::Debug for Messages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Messages").finish_non_exhaustive()
    }
}

impl Messages {
    pub(crate) fn new(rx: mpsc::Receiver<Message>) -> Self {
        Messages { rx }
    }

    /// The next message; `None` once the client stopped.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

impl Stream for Messages {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.rx.poll_recv(cx)
    }
}
