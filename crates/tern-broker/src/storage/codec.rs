//! The record encoding: small, explicit, little-endian. A PUBLISH is stored as the MQTT 5.0
//! PUBLISH packet `tern-codec` encodes (every property kept), prefixed by its length.
//!
//! ```text
//! message  = publish origin:opt_str received_at_ms:u64
//! publish  = flags:u8 (bit 0: no packet identifier) len:u32 packet:[u8; len]
//! delivery = message qos:u8 ids:u32-count (u32)* options:u8
//! session  = version:u8 expiry:u32 next_packet_id:u16 delivered:u64
//!            disconnected_at_ms:opt_u64 subscriptions outgoing awaiting_pubrel
//!            will:(0 | 1 delay:u32 publish) username:opt_str
//! ```
//!
//! Decoding checks every length against what is left and rejects trailing bytes: a damaged
//! record is an error, never a panic.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tern_codec::{
    Decoder, MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion, Publish, QoS, RetainHandling,
    SubscriptionOptions,
};
use tern_proto::{DeliveryOptions, OutgoingPhase, OutgoingPublish, SessionState};

use super::{
    StorageError, StoredDelivery, StoredMessage, StoredSession, StoredSubscription, StoredWill,
};

fn corrupt(what: &str) -> StorageError {
    StorageError::new(format!("corrupt record: {what}"))
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn to_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        if self.buf.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, StorageError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, StorageError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, StorageError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], StorageError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn str(&mut self) -> Result<String, StorageError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| corrupt("string"))
    }
    fn opt_str(&mut self) -> Result<Option<String>, StorageError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(corrupt("option")),
        }
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, StorageError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.u64().map(Some),
            _ => Err(corrupt("option")),
        }
    }
    fn count(&mut self, min_item: usize) -> Result<usize, StorageError> {
        let n = self.u32()? as usize;
        // Each item takes at least `min_item` bytes: a huge count in a short record is
        // refused before anything is allocated for it.
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(corrupt("count"));
        }
        Ok(n)
    }
    fn end(&self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes"))
        }
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, u32::try_from(b.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(b);
}
fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_bytes(out, s.as_bytes());
        }
    }
}
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_publish(out: &mut Vec<u8>, publish: &Publish) -> Result<(), StorageError> {
    let mut publish = publish.clone();
    let no_id = publish.packet_id.is_none() && publish.qos != QoS::AtMostOnce;
    if no_id {
        // A QoS 1/2 PUBLISH needs an identifier on the wire; it is not part of the record.
        publish.packet_id = PacketId::new(1);
    }
    if publish.qos == QoS::AtMostOnce {
        publish.packet_id = None;
    }
    publish.properties.topic_alias = None;
    let mut wire = BytesMut::new();
    Packet::Publish(publish)
        .encode(ProtocolVersion::V5, &mut wire)
        .map_err(|e| StorageError::new(format!("cannot encode a message: {e}")))?;
    out.push(u8::from(no_id));
    put_bytes(out, &wire);
    Ok(())
}

fn get_publish(r: &mut Reader<'_>) -> Result<Publish, StorageError> {
    let flags = r.u8()?;
    let mut wire = BytesMut::from(r.bytes()?);
    let mut decoder = Decoder::with_version(ProtocolVersion::V5, MAX_PACKET_SIZE);
    let packet = decoder
        .decode(&mut wire)
        .map_err(|e| StorageError::new(format!("corrupt record: message: {e}")))?;
    let Some(Packet::Publish(mut publish)) = packet else {
        return Err(corrupt("message"));
    };
    if !wire.is_empty() {
        return Err(corrupt("message trailing bytes"));
    }
    if flags & 1 != 0 {
        publish.packet_id = None;
    }
    Ok(publish)
}

fn put_message(out: &mut Vec<u8>, message: &StoredMessage) -> Result<(), StorageError> {
    put_publish(out, &message.publish)?;
    put_opt_str(out, message.origin.as_deref());
    put_u64(out, to_millis(message.received_at));
    Ok(())
}

fn get_message(r: &mut Reader<'_>) -> Result<StoredMessage, StorageError> {
    let publish = get_publish(r)?;
    let origin = r.opt_str()?;
    let received_at = from_millis(r.u64()?);
    Ok(StoredMessage {
        publish,
        origin,
        received_at,
    })
}

fn qos(byte: u8) -> Result<QoS, StorageError> {
    QoS::from_u8(byte).ok_or_else(|| corrupt("qos"))
}

/// A retained message record.
pub(crate) fn encode_message(message: &StoredMessage) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(64 + message.publish.payload.len());
    put_message(&mut out, message)?;
    Ok(out)
}

pub(crate) fn decode_message(buf: &[u8]) -> Result<StoredMessage, StorageError> {
    let mut r = Reader { buf };
    let message = get_message(&mut r)?;
    r.end()?;
    Ok(message)
}

/// A logged delivery record.
#[cfg(test)]
pub(crate) fn encode_delivery(delivery: &StoredDelivery) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(80 + delivery.message.publish.payload.len());
    put_delivery(&mut out, delivery)?;
    Ok(out)
}

/// Appends a logged delivery record to `out` (the writer reuses one buffer).
pub(crate) fn put_delivery(
    out: &mut Vec<u8>,
    delivery: &StoredDelivery,
) -> Result<(), StorageError> {
    put_message(out, &delivery.message)?;
    out.push(delivery.qos as u8);
    put_u32(out, len_u32(delivery.subscription_ids.len()));
    for id in &delivery.subscription_ids {
        put_u32(out, id.get());
    }
    let o = delivery.options;
    out.push(
        u8::from(o.no_local)
            | u8::from(o.retain_as_published) << 1
            | u8::from(o.retained_replay) << 2,
    );
    Ok(())
}

pub(crate) fn decode_delivery(buf: &[u8]) -> Result<StoredDelivery, StorageError> {
    let mut r = Reader { buf };
    let message = get_message(&mut r)?;
    let qos = qos(r.u8()?)?;
    let n = r.count(4)?;
    let mut subscription_ids = Vec::with_capacity(n);
    for _ in 0..n {
        subscription_ids.push(NonZeroU32::new(r.u32()?).ok_or_else(|| corrupt("identifier"))?);
    }
    let flags = r.u8()?;
    r.end()?;
    Ok(StoredDelivery {
        message,
        qos,
        subscription_ids,
        options: DeliveryOptions {
            no_local: flags & 1 != 0,
            retain_as_published: flags & 2 != 0,
            retained_replay: flags & 4 != 0,
        },
    })
}

fn options_byte(o: SubscriptionOptions) -> u8 {
    o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

fn options_from(byte: u8) -> Result<SubscriptionOptions, StorageError> {
    let retain_handling = match byte >> 4 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(corrupt("retain handling")),
    };
    Ok(SubscriptionOptions {
        qos: qos(byte & 3)?,
        no_local: byte & 4 != 0,
        retain_as_published: byte & 8 != 0,
        retain_handling,
    })
}

/// A session snapshot record (the state's queue is not part of it).
pub(crate) fn encode_session(session: &StoredSession) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(64);
    let state = &session.state;
    out.push(session.version.level());
    put_u32(&mut out, state.session_expiry_interval);
    out.extend_from_slice(&state.next_packet_id.to_le_bytes());
    put_u64(&mut out, session.delivered);
    match session.disconnected_at {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            put_u64(&mut out, to_millis(t));
        }
    }
    put_u32(&mut out, len_u32(session.subscriptions.len()));
    for s in &session.subscriptions {
        put_bytes(&mut out, s.filter.as_bytes());
        out.push(options_byte(s.options));
        put_u32(&mut out, s.identifier.map_or(0, NonZeroU32::get));
    }
    put_u32(&mut out, len_u32(state.outgoing.len()));
    for o in &state.outgoing {
        out.extend_from_slice(&o.packet_id.get().to_le_bytes());
        out.push(match o.phase {
            OutgoingPhase::AwaitPubAck => 0,
            OutgoingPhase::AwaitPubRec => 1,
            OutgoingPhase::AwaitPubComp => 2,
        });
        // As sent (the delivery's QoS, RETAIN and identifier): the format stays the same.
        put_publish(&mut out, &o.to_publish())?;
    }
    put_u32(&mut out, len_u32(state.awaiting_pubrel.len()));
    for id in &state.awaiting_pubrel {
        out.extend_from_slice(&id.get().to_le_bytes());
    }
    match &session.will {
        None => out.push(0),
        Some(will) => {
            out.push(1);
            put_u32(&mut out, will.delay);
            put_publish(&mut out, &will.publish)?;
        }
    }
    put_opt_str(&mut out, session.username.as_deref());
    Ok(out)
}

pub(crate) fn decode_session(buf: &[u8]) -> Result<StoredSession, StorageError> {
    let mut r = Reader { buf };
    let version = ProtocolVersion::from_level(r.u8()?).ok_or_else(|| corrupt("version"))?;
    let mut state = SessionState::new();
    state.session_expiry_interval = r.u32()?;
    state.next_packet_id = r.u16()?;
    let delivered = r.u64()?;
    let disconnected_at = r.opt_u64()?.map(from_millis);
    let n = r.count(9)?;
    let mut subscriptions = Vec::with_capacity(n);
    for _ in 0..n {
        let filter = r.str()?;
        let options = options_from(r.u8()?)?;
        let identifier = NonZeroU32::new(r.u32()?);
        subscriptions.push(StoredSubscription {
            filter,
            options,
            identifier,
        });
    }
    let n = r.count(8)?;
    for _ in 0..n {
        let packet_id = PacketId::new(r.u16()?).ok_or_else(|| corrupt("packet identifier"))?;
        let phase = match r.u8()? {
            0 => OutgoingPhase::AwaitPubAck,
            1 => OutgoingPhase::AwaitPubRec,
            2 => OutgoingPhase::AwaitPubComp,
            _ => return Err(corrupt("phase")),
        };
        let mut publish = get_publish(&mut r)?;
        publish.packet_id = Some(packet_id);
        state.outgoing.push_back(OutgoingPublish {
            packet_id,
            phase,
            retain: publish.retain,
            publish: Arc::new(publish),
        });
    }
    let n = r.count(2)?;
    for _ in 0..n {
        state
            .awaiting_pubrel
            .push_back(PacketId::new(r.u16()?).ok_or_else(|| corrupt("packet identifier"))?);
    }
    let will = match r.u8()? {
        0 => None,
        1 => {
            let delay = r.u32()?;
            Some(StoredWill {
                publish: get_publish(&mut r)?,
                delay,
            })
        }
        _ => return Err(corrupt("will")),
    };
    let username = r.opt_str()?;
    r.end()?;
    Ok(StoredSession {
        version,
        state,
        subscriptions,
        delivered,
        disconnected_at,
        will,
        username,
    })
}

#[cfg(test)]
mod tests {
    use tern_codec::{MqttString, PublishProperties};

    use super::*;

    fn message() -> StoredMessage {
        StoredMessage {
            publish: Publish {
                topic: MqttString::from_static("a/b"),
                payload: "hello".into(),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: PublishProperties {
                    message_expiry_interval: Some(60),
                    content_type: Some(MqttString::from_static("text/plain")),
                    ..PublishProperties::default()
                },
                ..Publish::default()
            },
            origin: Some("pub".to_owned()),
            received_at: from_millis(1_700_000_000_123),
        }
    }

    #[test]
    fn records_round_trip() {
        let m = message();
        assert_eq!(decode_message(&encode_message(&m).unwrap()).unwrap(), m);
        let d = StoredDelivery {
            message: m.clone(),
            qos: QoS::AtLeastOnce,
            subscription_ids: vec![NonZeroU32::new(7).unwrap()],
            options: DeliveryOptions {
                no_local: true,
                retain_as_published: false,
                retained_replay: true,
            },
        };
        assert_eq!(decode_delivery(&encode_delivery(&d).unwrap()).unwrap(), d);
        let mut state = SessionState::new();
        state.session_expiry_interval = 300;
        state.next_packet_id = 9;
        let id = PacketId::new(4).unwrap();
        let mut publish = Publish::clone(&m.publish);
        (publish.qos, publish.packet_id) = (QoS::ExactlyOnce, Some(id));
        state.outgoing.push_back(OutgoingPublish {
            packet_id: id,
            phase: OutgoingPhase::AwaitPubComp,
            retain: publish.retain,
            publish: Arc::new(publish),
        });
        state.awaiting_pubrel.push_back(PacketId::new(3).unwrap());
        let s = StoredSession {
            version: ProtocolVersion::V3_1_1,
            state,
            subscriptions: vec![StoredSubscription {
                filter: "$share/g/a/#".to_owned(),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
                identifier: NonZeroU32::new(12),
            }],
            delivered: 41,
            disconnected_at: Some(from_millis(5_000)),
            will: Some(StoredWill {
                publish: m.publish.clone(),
                delay: 30,
            }),
            username: Some("alice".to_owned()),
        };
        assert_eq!(decode_session(&encode_session(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn damaged_records_are_errors() {
        let bytes = encode_delivery(&StoredDelivery {
            message: message(),
            qos: QoS::AtLeastOnce,
            subscription_ids: Vec::new(),
            options: DeliveryOptions::default(),
        })
        .unwrap();
        for len in 0..bytes.len() {
            assert!(decode_delivery(&bytes[..len]).is_err(), "prefix {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_delivery(&longer).is_err());
        // A count far beyond the record is refused without allocating for it.
        let mut huge = encode_session(&StoredSession {
            version: ProtocolVersion::V5,
            state: SessionState::new(),
            subscriptions: Vec::new(),
            delivered: 0,
            disconnected_at: None,
            will: None,
            username: None,
        })
        .unwrap();
        let at = 1 + 4 + 2 + 8 + 1;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_session(&huge).is_err());
    }
}
