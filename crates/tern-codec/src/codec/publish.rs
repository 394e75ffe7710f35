//! PUBLISH (3.3).

use bytes::{BufMut, BytesMut};

use super::{Body, Measure, read_packet_id};
use crate::{
    error::{DecodeError, EncodeError},
    packet::{PacketType, Publish, PublishProperties},
    property::{self, Ctx},
    qos::QoS,
    version::ProtocolVersion,
    wire::{self, Reader},
};

const RETAIN: u8 = 0b0001;
const QOS_SHIFT: u8 = 1;
const DUP: u8 = 0b1000;

pub(super) fn decode(
    version: ProtocolVersion,
    flags: u8,
    mut r: Reader,
) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> QOS_SHIFT) & 0b11).ok_or(DecodeError::InvalidQoS)?; // [MQTT-3.3.1-4]
    let dup = flags & DUP != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupOnQoS0); // [MQTT-3.3.1-2]
    }
    let topic = r.string()?;
    if wire::has_wildcard(&topic) {
        return Err(DecodeError::WildcardInTopicName); // [MQTT-3.3.2-2]
    }
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(read_packet_id(&mut r)?)
    };
    let mut properties = PublishProperties::default();
    if version.is_v5() {
        property::read(&mut r, Ctx::Packet(PacketType::Publish), &mut properties)?;
    }
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicName); // [MQTT-4.7.3-1], [MQTT-3.3.2-1]
    }
    let payload = r.rest();
    Ok(Publish {
        dup,
        qos,
        retain: flags & RETAIN != 0,
        topic,
        packet_id,
        properties,
        payload,
    })
}

impl Body for Publish {
    fn first_byte(&self) -> u8 {
        let mut first = (PacketType::Publish as u8) << 4 | self.qos.as_u8() << QOS_SHIFT;
        if self.dup {
            first |= DUP;
        }
        if self.retain {
            first |= RETAIN;
        }
        first
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        if self.packet_id.is_some() != (self.qos != QoS::AtMostOnce) {
            return Err(EncodeError::PacketIdMismatch);
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::DupOnQoS0);
        }
        if wire::has_wildcard(&self.topic) {
            return Err(EncodeError::InvalidValue(
                "topic (wildcards in a topic name)",
            ));
        }
        let mut m = Measure::default();
        let mut len = wire::string_len(&self.topic);
        if self.packet_id.is_some() {
            len += 2;
        }
        if version.is_v5() {
            if self.topic.is_empty() && self.properties.topic_alias.is_none() {
                return Err(EncodeError::InvalidValue(
                    "topic (empty without a topic alias)",
                ));
            }
            m.props = property::measure(&self.properties)?;
            len += property::block_len(m.props);
        } else {
            if self.topic.is_empty() {
                return Err(EncodeError::InvalidValue("topic (empty)"));
            }
            property::check_v3(&self.properties, version)?;
        }
        m.remaining = len.saturating_add(self.payload.len());
        Ok(m)
    }

    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut BytesMut) {
        wire::put_string(dst, &self.topic);
        if let Some(id) = self.packet_id {
            dst.put_u16(id.get());
        }
        if version.is_v5() {
            property::write(&self.properties, m.props, dst);
        }
        dst.put_slice(&self.payload);
    }
}
