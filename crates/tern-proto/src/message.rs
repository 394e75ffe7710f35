//! An application message as the broker core routes it, and its packet encoded once for all
//! the deliveries that send it unchanged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tern_codec::{
    EncodedPublish, MqttString, PacketId, ProtocolVersion, Publish, PublishFlags, QoS,
};

/// An application message routed to sessions, as the broker core holds it.
///
/// A message going to more than one session can be [shared](Message::share_encoding): its
/// PUBLISH is then validated and encoded once per protocol family (3.x, 5.0), and every
/// delivery that sends it as published copies those bytes with its own flags and packet
/// identifier.
#[derive(Clone, Debug)]
pub struct Message {
    /// The PUBLISH as the publisher sent it (topic resolved, its own QoS and RETAIN), shared
    /// by every delivery that sends it unchanged (see [`OutgoingPublish`](crate::OutgoingPublish)).
    pub publish: Arc<Publish>,
    /// The publishing client's identifier, for No Local; `None` for messages of the broker.
    pub origin: Option<MqttString>,
    /// When the broker received it: Message Expiry counts from here [MQTT-3.3.2-6].
    pub received_at: Instant,
    encoding: SharedEncoding,
}

impl Message {
    /// A message received at `received_at`, from `origin` (`None`: the broker's own).
    pub fn new(
        publish: impl Into<Arc<Publish>>,
        origin: Option<MqttString>,
        received_at: Instant,
    ) -> Self {
        Message {
            publish: publish.into(),
            origin,
            received_at,
            encoding: SharedEncoding::default(),
        }
    }

    /// Asks the deliveries of this message to encode its PUBLISH once and copy the bytes:
    /// worth it when it goes to more than one session (a router calls it once it found more
    /// than one), not for a single one (the bytes would be written twice).
    pub fn share_encoding(&self) {
        self.encoding.shared.store(true, Ordering::Relaxed);
    }

    /// The PUBLISH encoded once for `version` with its own QoS layout (a packet identifier
    /// exactly when its QoS is above 0), if the message is shared and encodes for that
    /// version as it is (a 3.x client cannot get 5.0 properties, for one).
    pub(crate) fn encoded(&self, version: ProtocolVersion) -> Option<&EncodedPublish> {
        if !self.encoding.shared.load(Ordering::Relaxed) {
            return None;
        }
        let slot = if version.is_v5() {
            &self.encoding.v5
        } else {
            &self.encoding.v3
        };
        slot.get_or_init(|| {
            let p = &self.publish;
            let flags = PublishFlags {
                dup: false,
                qos: p.qos,
                retain: p.retain,
                // A placeholder: each delivery writes its own.
                packet_id: (p.qos != QoS::AtMostOnce).then_some(PacketId::MAX),
            };
            EncodedPublish::new(p, flags, version).ok()
        })
        .as_ref()
    }
}

/// Equal when publish, origin and receive time are: the encoding is a cache.
impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.publish == other.publish
            && self.origin == other.origin
            && self.received_at == other.received_at
    }
}

impl Eq for Message {}

/// The cache behind [`Message::share_encoding`]: one encoding per protocol family (3.1 and
/// 3.1.1 encode a PUBLISH alike), `None` where the message does not encode as it is.
#[derive(Debug, Default)]
struct SharedEncoding {
    shared: AtomicBool,
    v3: OnceLock<Option<EncodedPublish>>,
    v5: OnceLock<Option<EncodedPublish>>,
}

impl Clone for SharedEncoding {
    fn clone(&self) -> Self {
        SharedEncoding {
            shared: AtomicBool::new(self.shared.load(Ordering::Relaxed)),
            v3: self.v3.clone(),
            v5: self.v5.clone(),
        }
    }
}
