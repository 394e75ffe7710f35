//! The cloneable [`Client`] handle, the commands it sends the driver, and the
//! connection-events stream.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use tern_codec::{ConnAck, MqttString, ProtocolVersion, Publish, QoS, ReasonCode};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::driver::{Driver, FirstConnect};
use crate::error::{DisconnectReason, Error};
use crate::message::{Message, OutgoingMessage, PublishAck};
use crate::options::{ClientBuilder, OverflowPolicy, Settings, SubscribeOptions};
use crate::subscription::{Messages, Subscription};

/// What the handles ask of the driver, besides publishing.
pub(crate) enum Command {
    Subscribe {
        filter: MqttString,
        options: SubscribeOptions,
        reply: oneshot::Sender<Result<SubscribeReply, Error>>,
    },
    /// A subscription stream was dropped (`reply: None`) or unsubscribed explicitly.
    Unsubscribe {
        stream: u64,
        reply: Option<oneshot::Sender<Result<(), Error>>>,
    },
    CatchAll {
        tx: mpsc::Sender<Message>,
    },
    Ack {
        seq: u64,
        reason: ReasonCode,
    },
    Reauthenticate {
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Disconnect {
        reply: oneshot::Sender<()>,
    },
}

/// The driver's answer to a subscribe: the stream, once SUBACK granted it.
pub(crate) struct SubscribeReply {
    pub(crate) stream: u64,
    pub(crate) rx: mpsc::Receiver<Message>,
    pub(crate) reason_code: ReasonCode,
}

/// A message on its way to the driver through the offline queue.
pub(crate) struct PublishCommand {
    pub(crate) publish: Publish,
    pub(crate) reply: oneshot::Sender<Result<PublishAck, Error>>,
}

/// An event of the connection's life, from [`Client::connection_events`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// CONNACK accepted a connection.
    Connected {
        /// Whether the broker resumed the session. When false, the client has subscribed
        /// again to every live subscription and re-published the messages that were in
        /// flight [MQTT-3.2.2-5].
        session_present: bool,
        /// The CONNACK, with the broker's limits and properties (assigned client identifier,
        /// response information, …).
        connack: Arc<ConnAck>,
    },
    /// A connection ended, or an attempt failed.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// The client waits `delay` before connection attempt number `attempt` (1 after each
    /// successful connection).
    Reconnecting {
        /// The backoff delay, jitter included.
        delay: Duration,
        /// The attempt's number since the last successful connection.
        attempt: u32,
    },
}

/// A handle to one MQTT client: cheap to clone, usable from any task. The connection is owned
/// by a driver task spawned by [`ClientBuilder::build`] or [`ClientBuilder::connect`], which
/// stops when [`disconnect`](Client::disconnect) is called, when reconnecting gives up, or
/// when every handle, subscription and manually acknowledged message is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    ctrl: mpsc::UnboundedSender<Command>,
    publish: mpsc::Sender<PublishCommand>,
    events: broadcast::WeakSender<ConnectionEvent>,
    overflow: OverflowPolicy,
    subscription_buffer: usize,
    version: ProtocolVersion,
    client_id: MqttString,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.shared.client_id)
            .field("version", &self.shared.version)
            .field("closed", &self.shared.ctrl.is_closed())
            .finish()
    }
}

/// Spawns the driver of `settings`; with `wait`, also returns the receiver of the first
/// connection's outcome.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    settings: Settings,
    wait: bool,
) -> (Client, Option<FirstConnect>) {
    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
    let (pub_tx, pub_rx) = mpsc::channel(settings.queue_capacity);
    let (events_tx, _) = broadcast::channel(64);
    let (first_tx, first_rx) = if wait {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let shared = Shared {
        ctrl: ctrl_tx.clone(),
        publish: pub_tx,
        events: events_tx.downgrade(),
        overflow: settings.overflow,
        subscription_buffer: settings.subscription_buffer,
        version: settings.config.connect.protocol,
        client_id: settings.config.connect.client_id.clone(),
    };
    let driver = Driver::new(
        settings,
        ctrl_rx,
        ctrl_tx.downgrade(),
        pub_rx,
        events_tx,
        first_tx,
    );
    runtime.spawn(driver.run());
    (
        Client {
            shared: Arc::new(shared),
        },
        first_rx,
    )
}

impl Client {
    /// A builder for the broker at `url`; see [`ClientBuilder`].
    ///
    /// # Errors
    /// A URL that does not parse or has an unknown scheme.
    pub fn builder(url: &str) -> Result<ClientBuilder, crate::BuildError> {
        ClientBuilder::new(url)
    }

    /// The client identifier configured (an MQTT 5.0 broker may assign another one to an
    /// empty identifier: see the CONNACK in [`ConnectionEvent::Connected`]).
    pub fn client_id(&self) -> &str {
        self.shared.client_id.as_str()
    }

    /// The protocol version.
    pub fn protocol(&self) -> ProtocolVersion {
        self.shared.version
    }

    /// Whether the driver stopped.
    pub fn is_closed(&self) -> bool {
        self.shared.ctrl.is_closed()
    }

    /// Publishes `payload` to `topic` and resolves when the message is done at its QoS:
    /// written (QoS 0), PUBACK (QoS 1) or PUBCOMP (QoS 2). While offline the message waits in
    /// the offline queue; while the broker's Receive Maximum is reached it waits for a slot.
    ///
    /// # Errors
    /// An invalid topic, [`Error::QueueFull`] ([`OverflowPolicy::Reject`]), an error reason
    /// code from the broker ([`Error::Refused`]), [`Error::Closed`].
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        qos: QoS,
        payload: impl Into<Bytes>,
    ) -> Result<PublishAck, Error> {
        self.publish_with(OutgoingMessage::new(topic, payload).qos(qos))
            .await
    }

    /// Publishes a message with every option and property; see [`publish`](Client::publish).
    ///
    /// # Errors
    /// As [`publish`](Client::publish).
    pub async fn publish_with(&self, message: OutgoingMessage) -> Result<PublishAck, Error> {
        self.enqueue(message).await?.await
    }

    /// Puts a message into the offline queue (waiting for room with
    /// [`OverflowPolicy::Wait`]) and returns at once a token that resolves like
    /// [`publish`](Client::publish): pipelining many messages without waiting for each.
    ///
    /// # Errors
    /// An invalid message, [`Error::QueueFull`] ([`OverflowPolicy::Reject`]), [`Error::Closed`].
    pub async fn enqueue(&self, message: OutgoingMessage) -> Result<PublishToken, Error> {
        let publish = message.into_publish()?;
        let (reply, rx) = oneshot::channel();
        let command = PublishCommand { publish, reply };
        match self.shared.overflow {
            OverflowPolicy::Wait => self
                .shared
                .publish
                .send(command)
                .await
                .map_err(|_| Error::Closed)?,
            OverflowPolicy::Reject => self.try_send(command)?,
        }
        Ok(PublishToken { rx })
    }

    /// Publishes from synchronous code: queues the message without waiting and returns a
    /// token to await (or [`PublishToken::blocking_wait`]) for the acknowledgement.
    ///
    /// # Errors
    /// An invalid topic, [`Error::QueueFull`] when the offline queue is full (whatever the
    /// overflow policy), [`Error::Closed`].
    pub fn try_publish(
        &self,
        topic: impl Into<String>,
        qos: QoS,
        payload: impl Into<Bytes>,
    ) -> Result<PublishToken, Error> {
        self.try_publish_with(OutgoingMessage::new(topic, payload).qos(qos))
    }

    /// [`try_publish`](Client::try_publish) with every option and property.
    ///
    /// # Errors
    /// As [`try_publish`](Client::try_publish).
    pub fn try_publish_with(&self, message: OutgoingMessage) -> Result<PublishToken, Error> {
        let publish = message.into_publish()?;
        let (reply, rx) = oneshot::channel();
        self.try_send(PublishCommand { publish, reply })?;
        Ok(PublishToken { rx })
    }

    fn try_send(&self, command: PublishCommand) -> Result<(), Error> {
        self.shared.publish.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::QueueFull,
            mpsc::error::TrySendError::Closed(_) => Error::Closed,
        })
    }

    /// Subscribes to `filter` and resolves after SUBACK with a stream of the messages that
    /// match it; dropping the stream unsubscribes. The subscription is restored on every
    /// reconnection where the broker has no session. Messages that arrive between SUBSCRIBE
    /// and SUBACK (retained ones) are in the stream already.
    ///
    /// Several streams may share one filter: each gets every matching message, and the filter
    /// is unsubscribed when the last one goes (the broker keeps one subscription per filter,
    /// with the options of the latest subscribe).
    ///
    /// # Errors
    /// An invalid filter, a refusal in SUBACK ([`Error::Refused`]), [`Error::Closed`].
    pub async fn subscribe(
        &self,
        filter: &str,
        options: impl Into<SubscribeOptions>,
    ) -> Result<Subscription, Error> {
        let shared = tern_topic::SubscriptionFilter::new(filter)?;
        if shared.share_name().is_some() && !self.shared.version.is_v5() {
            return Err(Error::NotSupported("shared subscriptions need MQTT 5.0"));
        }
        let mut options = options.into();
        options
            .buffer
            .get_or_insert(self.shared.subscription_buffer);
        let filter_string = MqttString::try_from(filter)?;
        let (reply, rx) = oneshot::channel();
        self.shared
            .ctrl
            .send(Command::Subscribe {
                filter: filter_string,
                options,
                reply,
            })
            .map_err(|_| Error::Closed)?;
        let granted = rx.await.map_err(|_| Error::Closed)??;
        Ok(Subscription::new(
            granted,
            filter.to_owned(),
            self.shared.ctrl.clone(),
        ))
    }

    /// A stream of every message the client receives, whatever subscription it matched (in
    /// addition to the subscription streams), with the default buffer. Dropping it stops the
    /// copies.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn messages(&self) -> Result<Messages, Error> {
        let (tx, rx) = mpsc::channel(self.shared.subscription_buffer);
        self.shared
            .ctrl
            .send(Command::CatchAll { tx })
            .map_err(|_| Error::Closed)?;
        Ok(Messages::new(rx))
    }

    /// The connection's life from now on: Connected, Disconnected, Reconnecting. Slow readers
    /// miss the oldest events (the buffer holds 64); the stream ends when the client stops.
    pub fn connection_events(&self) -> ConnectionEvents {
        let rx = self.shared.events.upgrade().map(|tx| tx.subscribe());
        ConnectionEvents::new(rx)
    }

    /// MQTT 5.0 re-authentication (section 4.12.1): sends AUTH Re-authenticate with the
    /// [`AuthHandler`](crate::AuthHandler)'s initial data; the exchange then runs through the
    /// hook. Resolves once AUTH was queued.
    ///
    /// # Errors
    /// No authentication method configured, not connected, [`Error::Closed`].
    pub async fn reauthenticate(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .ctrl
            .send(Command::Reauthenticate { reply })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Sends DISCONNECT (Normal disconnection: the broker discards the Will), closes the
    /// connection and stops the driver. Messages still in the offline queue or in flight fail
    /// with [`Error::Closed`]; subscription streams end. Resolves once the driver stopped.
    pub async fn disconnect(&self) {
        let (reply, rx) = oneshot::channel();
        if self.shared.ctrl.send(Command::Disconnect { reply }).is_ok() {
            // An error means the driver stopped already.
            let _ = rx.await;
        }
    }
}

/// The pending outcome of a queued publish: a future of the [`PublishAck`].
#[derive(Debug)]
#[must_use = "the token resolves when the message is acknowledged"]
pub struct PublishToken {
    rx: oneshot::Receiver<Result<PublishAck, Error>>,
}

impl PublishToken {
    /// Blocks the thread until the message is done. Not for async code: it would block the
    /// runtime (tokio panics when called from inside one).
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub fn blocking_wait(self) -> Result<PublishAck, Error> {
        self.rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// The outcome if it is known already, or the token back.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub fn try_result(mut self) -> Result<Result<PublishAck, Error>, PublishToken> {
        match self.rx.try_recv() {
            Ok(result) => Ok(result),
            Err(oneshot::error::TryRecvError::Empty) => Err(self),
            Err(oneshot::error::TryRecvError::Closed) => Ok(Err(Error::Closed)),
        }
    }
}

impl Future for PublishToken {
    type Output = Result<PublishAck, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = ConnectionEvent> + Send>>;

/// The stream of [`ConnectionEvent`]s from [`Client::connection_events`].
pub struct ConnectionEvents {
    inner: EventStream,
}

impl fmt::Debug for ConnectionEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionEvents").finish_non_exhaustive()
    }
}

impl ConnectionEvents {
    fn new(rx: Option<broadcast::Receiver<ConnectionEvent>>) -> Self {
        let inner = futures_util::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, Some(rx))),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "connection events lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        ConnectionEvents {
            inner: Box::pin(inner),
        }
    }

    /// The next event; `None` once the client stopped.
    pub async fn recv(&mut self) -> Option<ConnectionEvent> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }
}

impl Stream for ConnectionEvents {
    type Item = ConnectionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
