//! PUBLISH (3.3).

use bytes::{Buf, Bytes, BytesMut};

use super::{Body, Decoded, Measure};
use crate::{
    error::{DecodeError, EncodeError},
    packet::{Packet, PacketId, PacketType, Publish, PublishFlags, PublishProperties},
    property::{self, Ctx},
    qos::QoS,
    string::MqttString,
    version::ProtocolVersion,
    wire::{self, Out, Reader},
};

const RETAIN: u8 = 0b0001;
const QOS_SHIFT: u8 = 1;
const DUP: u8 = 0b1000;

/// Decodes a PUBLISH from its whole `frame`, whose body starts at `start` (after the fixed
/// header whose flags are `flags`), into the decoder's return value (see [`Decoded`]).
///
/// The frame is read in place rather than through a [`Reader`]: the topic is a slice of it
/// and the payload is the frame itself once advanced past the header, so a decoded PUBLISH
/// costs one reference-count update (the topic) beyond the frame's own. On an error the
/// untouched frame is handed to `on_error` (the connection decoder puts it back into its
/// buffer) before the error is returned.
///
/// The framing has checked the flags: no QoS 3 [MQTT-3.3.1-4], no DUP at QoS 0
/// [MQTT-3.3.1-2].
#[inline]
pub(crate) fn decode_frame(
    version: ProtocolVersion,
    flags: u8,
    start: usize,
    mut frame: Bytes,
    on_error: impl FnOnce(Bytes),
) -> Decoded {
    macro_rules! fail {
        ($e:expr) => {{
            on_error(frame);
            return Err($e);
        }};
    }
    let qos = match (flags >> QOS_SHIFT) & 0b11 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    debug_assert!(
        (flags >> QOS_SHIFT) & 0b11 != 3 && !(flags & DUP != 0 && qos == QoS::AtMostOnce),
        "flags the framing refuses"
    );
    // The topic: UTF-8, U+0000 and wildcards [MQTT-3.3.2-2] in one pass.
    let Some(&[hi, lo]) = frame.get(start..start + 2) else {
        fail!(DecodeError::Truncated)
    };
    let topic_at = start + 2;
    let topic_end = topic_at + usize::from(u16::from_be_bytes([hi, lo]));
    if topic_end > frame.len() {
        fail!(DecodeError::Truncated)
    }
    // `Bytes::slice` is a generic call; the same in-line steps cost half its instructions.
    let mut topic = frame.clone();
    topic.truncate(topic_end);
    topic.advance(topic_at);
    let topic = match MqttString::topic_from_bytes(topic) {
        Ok(topic) => topic,
        Err(e) => fail!(e),
    };
    let mut pos = topic_end;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        let Some(&[hi, lo]) = frame.get(pos..pos + 2) else {
            fail!(DecodeError::Truncated)
        };
        pos += 2;
        match PacketId::new(u16::from_be_bytes([hi, lo])) {
            Some(id) => Some(id),
            None => fail!(DecodeError::ZeroPacketId), // [MQTT-2.2.1-3]
        }
    };
    let has_properties = version.is_v5() && frame.get(pos) != Some(&0);
    let dup = flags & DUP != 0;
    let retain = flags & RETAIN != 0;
    if has_properties {
        // A property block that is not empty (or a truncated packet): read with a reader
        // over the frame, which it hands back.
        let mut r = Reader::starting_at(frame, pos);
        let mut properties = PublishProperties::default();
        let read = property::read(&mut r, Ctx::Packet(PacketType::Publish), &mut properties);
        let read_to = r.position();
        frame = r.into_inner();
        if let Err(e) = read {
            fail!(e)
        }
        if topic.is_empty() && properties.topic_alias.is_none() {
            fail!(DecodeError::EmptyTopicName) // [MQTT-4.7.3-1], [MQTT-3.3.2-1]
        }
        frame.advance(read_to);
        return Ok(Some(Packet::Publish(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload: frame,
        })));
    }
    // No properties: 3.x, or a 5.0 Property Length of 0 (the common case), with the
    // defaults written straight into the returned packet instead of moved into it.
    if version.is_v5() {
        pos += 1;
    }
    if topic.is_empty() {
        fail!(DecodeError::EmptyTopicName) // [MQTT-4.7.3-1], [MQTT-3.3.2-1]
    }
    frame.advance(pos);
    Ok(Some(Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties: PublishProperties::default(),
        payload: frame,
    })))
}

impl Body for Publish {
    #[inline]
    fn first_byte(&self) -> u8 {
        self.as_sent(self.flags()).first_byte()
    }

    #[inline]
    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        self.as_sent(self.flags()).measure(version)
    }

    #[inline]
    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        self.as_sent(self.flags()).write(version, m, dst);
    }

    #[inline]
    fn tail(&self) -> &[u8] {
        &self.payload
    }

    #[inline]
    fn write_packet(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        self.as_sent(self.flags()).write_packet(version, m, dst);
    }
}

/// A PUBLISH validated and measured for one sending, from [`Publish::prepare`].
pub struct PreparedPublish<'a> {
    sent: AsSent<'a>,
    version: ProtocolVersion,
    m: Measure,
    total: usize,
}

impl PreparedPublish<'_> {
    /// The exact length of the packet, fixed header included.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Always false: a packet has at least its fixed header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the packet at the end of `dst` (one reservation): the same bytes as
    /// [`Publish::encode_with`] with the flags it was prepared with.
    pub fn encode(&self, dst: &mut BytesMut) {
        super::write_part(&self.sent, self.version, &self.m, self.total, dst, true);
    }
}

impl core::fmt::Debug for PreparedPublish<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PreparedPublish")
            .field("flags", &self.sent.flags)
            .field("version", &self.version)
            .field("len", &self.total)
            .finish()
    }
}

/// A PUBLISH encoded once and written any number of times, each with the DUP, QoS, RETAIN
/// and packet identifier of its sending: a broker fanning a message out to many subscribers
/// copies these bytes for each instead of validating, measuring and encoding the message
/// again. Whether the packet has a packet identifier (QoS 0, or QoS 1 and 2) is fixed when
/// it is encoded; the rest of the packet is the same for every sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPublish {
    bytes: Bytes,
    /// Where the packet identifier starts; `None` for the QoS 0 layout.
    packet_id_at: Option<usize>,
}

impl EncodedPublish {
    /// Encodes `publish` with `flags` for `version`, validated like
    /// [`encode_with`](Publish::encode_with). The packet identifier of `flags` only says
    /// that there is one: each [`write`](Self::write) brings its own.
    pub fn new(
        publish: &Publish,
        flags: PublishFlags,
        version: ProtocolVersion,
    ) -> Result<Self, EncodeError> {
        let mut dst = BytesMut::new();
        publish.encode_with(flags, version, &mut dst)?;
        // After the first byte, the Remaining Length (1 to 4 bytes, the last below 0x80),
        // then the topic (its two-byte length and its bytes), then the packet identifier.
        let packet_id_at = flags.packet_id.map(|_| {
            let length_bytes = dst[1..].iter().take_while(|&&b| b & 0x80 != 0).count() + 1;
            1 + length_bytes + 2 + publish.topic.len()
        });
        Ok(EncodedPublish {
            bytes: dst.freeze(),
            packet_id_at,
        })
    }

    /// The exact length of the packet, fixed header included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a packet has at least its fixed header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether it was encoded with a packet identifier (for QoS 1 and 2).
    pub fn has_packet_id(&self) -> bool {
        self.packet_id_at.is_some()
    }

    /// Writes the packet with `flags` at the end of `dst`: the same bytes as
    /// [`Publish::encode_with`] with those flags. Errors (nothing written): a packet
    /// identifier whose presence does not match the QoS or the layout it was encoded with
    /// [MQTT-2.2.1-2], DUP at QoS 0 [MQTT-3.3.1-2].
    pub fn write(&self, flags: PublishFlags, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if flags.packet_id.is_some() != (flags.qos != QoS::AtMostOnce)
            || flags.packet_id.is_some() != self.packet_id_at.is_some()
        {
            return Err(EncodeError::PacketIdMismatch);
        }
        if flags.dup && flags.qos == QoS::AtMostOnce {
            return Err(EncodeError::DupOnQoS0);
        }
        let start = dst.len();
        dst.extend_from_slice(&self.bytes);
        dst[start] = first_byte(flags);
        if let (Some(at), Some(id)) = (self.packet_id_at, flags.packet_id) {
            dst[start + at..start + at + 2].copy_from_slice(&id.get().to_be_bytes());
        }
        Ok(())
    }
}

/// The fixed header's first byte of a PUBLISH sent with `flags`.
#[inline]
fn first_byte(f: PublishFlags) -> u8 {
    let mut first = (PacketType::Publish as u8) << 4 | f.qos.as_u8() << QOS_SHIFT;
    if f.dup {
        first |= DUP;
    }
    if f.retain {
        first |= RETAIN;
    }
    first
}

/// A PUBLISH with the fixed-header fields of one sending (see [`PublishFlags`]): what is
/// encoded. `Publish` encodes itself through it with its own fields.
#[derive(Clone, Copy)]
struct AsSent<'a> {
    publish: &'a Publish,
    flags: PublishFlags,
}

impl Body for AsSent<'_> {
    #[inline]
    fn first_byte(&self) -> u8 {
        first_byte(self.flags)
    }

    #[inline]
    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        let (p, f) = (self.publish, self.flags);
        if f.packet_id.is_some() != (f.qos != QoS::AtMostOnce) {
            return Err(EncodeError::PacketIdMismatch);
        }
        if f.dup && f.qos == QoS::AtMostOnce {
            return Err(EncodeError::DupOnQoS0);
        }
        if wire::has_wildcard(&p.topic) {
            return Err(EncodeError::InvalidValue(
                "topic (wildcards in a topic name)",
            ));
        }
        let mut m = Measure::default();
        let mut len = wire::string_len(&p.topic);
        if f.packet_id.is_some() {
            len += 2;
        }
        if version.is_v5() {
            if p.topic.is_empty() && p.properties.topic_alias.is_none() {
                return Err(EncodeError::InvalidValue(
                    "topic (empty without a topic alias)",
                ));
            }
            m.props = property::measure(&p.properties)?;
            len += property::block_len(m.props);
        } else {
            if p.topic.is_empty() {
                return Err(EncodeError::InvalidValue("topic (empty)"));
            }
            property::check_v3(&p.properties, version)?;
        }
        m.remaining = len.saturating_add(p.payload.len());
        Ok(m)
    }

    /// The body without the payload (the [`tail`](Body::tail)).
    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        wire::put_string(dst, &self.publish.topic);
        self.write_after_topic(version, m, dst);
    }

    #[inline]
    fn tail(&self) -> &[u8] {
        &self.publish.payload
    }

    #[inline]
    fn write_packet(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        self.write_header(version, m, dst);
    }
}

impl AsSent<'_> {
    /// Everything but the payload: the fixed header and the topic length in one piece, the
    /// topic, then the packet id and the Property Length in one piece, then the properties.
    #[inline]
    fn write_header(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        let topic = &self.publish.topic;
        let (mut head, mut n) = super::fixed_header(self.first_byte(), m.remaining);
        // The topic's length was checked when the string was made.
        head[n..n + 2].copy_from_slice(&(topic.len() as u16).to_be_bytes());
        n += 2;
        wire::put_small(dst, &head, n);
        dst.append(topic.as_str().as_bytes());
        self.write_after_topic(version, m, dst);
    }

    /// The packet id, the Property Length and the properties.
    #[inline]
    fn write_after_topic(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        let mut mid = [0u8; 6];
        let mut n = 0;
        if let Some(id) = self.flags.packet_id {
            mid[..2].copy_from_slice(&id.get().to_be_bytes());
            n = 2;
        }
        if version.is_v5() {
            n = wire::var_int_at(&mut mid, n, m.props);
        }
        wire::put_small(dst, &mid, n);
        if version.is_v5() && m.props > 0 {
            property::write_props(&self.publish.properties, dst);
        }
    }
}

impl Publish {
    #[inline]
    fn as_sent(&self, flags: PublishFlags) -> AsSent<'_> {
        AsSent {
            publish: self,
            flags,
        }
    }

    /// The exact length of the PUBLISH encoded with `flags` instead of its own fields.
    pub fn encoded_len_with(
        &self,
        flags: PublishFlags,
        version: ProtocolVersion,
    ) -> Result<usize, EncodeError> {
        super::encoded_len_of(&self.as_sent(flags), version)
    }

    /// Encodes the PUBLISH with `flags` (DUP, QoS, RETAIN and packet identifier) instead of
    /// its own fields, at the end of `dst`: the same bytes as `encode` of a copy of the packet
    /// with those fields set, without the copy. Validated like `encode` (the flags too:
    /// a packet identifier exactly at QoS 1 and 2, no DUP at QoS 0); nothing written on error.
    pub fn encode_with(
        &self,
        flags: PublishFlags,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        super::encode_body(&self.as_sent(flags), version, dst)
    }

    /// Validates and measures the PUBLISH as sent with `flags` (see
    /// [`encode_with`](Publish::encode_with)), once: the returned [`PreparedPublish`] tells
    /// the packet's length, so that a sender can check it against the peer's Maximum Packet
    /// Size, and then writes it without validating or measuring it again.
    pub fn prepare(
        &self,
        flags: PublishFlags,
        version: ProtocolVersion,
    ) -> Result<PreparedPublish<'_>, EncodeError> {
        let sent = self.as_sent(flags);
        let m = sent.measure(version)?;
        let total = super::total_len(m.remaining)?;
        Ok(PreparedPublish {
            sent,
            version,
            m,
            total,
        })
    }

    /// Encodes everything of the packet but its payload for `version` at the end of `dst`:
    /// the fixed header (whose Remaining Length counts the payload), the topic, the packet id
    /// and the properties. Sending these bytes followed by [`payload`](Publish::payload)
    /// sends the same bytes as [`encode`](Publish::encode), without copying the payload:
    /// with a vectored write (`writev`, `write_vectored` with two `IoSlice`s) or as one
    /// `Buf` with [`Buf::chain`](bytes::Buf::chain) (`header.chain(publish.payload.clone())`,
    /// a reference-count update). A broker fanning a message out to many subscribers encodes
    /// one header per subscriber and shares the payload.
    ///
    /// Validated like `encode` (nothing written on error); `dst` is reserved once for the
    /// header, whose length is `encoded_len(version)? - payload.len()`.
    pub fn encode_header(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let m = self.measure(version)?;
        let total = super::total_len(m.remaining)?;
        super::write_part(self, version, &m, total, dst, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::string::MqttString;
    use alloc::vec::Vec;
    use bytes::Bytes;
    use core::num::{NonZeroU16, NonZeroU32};

    /// `encode_with` writes what `encode` writes for a copy with the flags set, and refuses
    /// what `encode` refuses for it.
    #[test]
    fn encode_with_is_encode_of_the_copy_with_those_flags() {
        let id = NonZeroU16::new(7);
        let mut message = Publish {
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: MqttString::from_static("a/b"),
            packet_id: NonZeroU16::new(300),
            payload: Bytes::from_static(b"payload"),
            ..Publish::default()
        };
        message.properties.message_expiry_interval = Some(9);
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut m = message.clone();
            if !version.is_v5() {
                m.properties = PublishProperties::default();
            }
            for (dup, qos, retain, packet_id) in [
                (false, QoS::AtMostOnce, false, None),
                (false, QoS::AtLeastOnce, true, id),
                (true, QoS::ExactlyOnce, false, id),
                // Refused: DUP at QoS 0 [MQTT-3.3.1-2], an identifier exactly at QoS 1 and 2.
                (true, QoS::AtMostOnce, false, None),
                (false, QoS::AtMostOnce, false, id),
                (false, QoS::AtLeastOnce, false, None),
            ] {
                let flags = PublishFlags {
                    dup,
                    qos,
                    retain,
                    packet_id,
                };
                let mut copy = m.clone();
                (copy.dup, copy.qos, copy.retain, copy.packet_id) = (dup, qos, retain, packet_id);
                let (mut expected, mut got) = (BytesMut::new(), BytesMut::new());
                let expected_result = copy.encode(version, &mut expected);
                let result = m.encode_with(flags, version, &mut got);
                assert_eq!(result, expected_result, "{flags:?}");
                assert_eq!(got, expected, "{flags:?}");
                assert_eq!(
                    m.encoded_len_with(flags, version).ok(),
                    expected_result.clone().ok().map(|()| expected.len())
                );
                assert_eq!(copy.flags(), flags);
                if let Ok(prepared) = m.prepare(flags, version) {
                    let mut written = BytesMut::new();
                    prepared.encode(&mut written);
                    assert_eq!(
                        (written, prepared.len()),
                        (expected.clone(), expected.len())
                    );
                } else {
                    assert!(expected_result.is_err());
                }
            }
        }
    }

    /// The header written by `encode_header`, followed by the payload, is the packet.
    #[test]
    fn header_and_payload_are_the_packet() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for len in [0, 1, 70, 127, 128, 16_383, 16_384, 70_000] {
                for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                    let mut p = Publish {
                        qos,
                        topic: MqttString::from_static("a/b/c"),
                        packet_id: (qos != QoS::AtMostOnce).then(|| NonZeroU16::new(9).unwrap()),
                        payload: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>()),
                        ..Publish::default()
                    };
                    if version.is_v5() && len % 2 == 0 {
                        p.properties.message_expiry_interval = Some(5);
                        p.properties.subscription_identifiers = alloc::vec![NonZeroU32::MIN];
                    }
                    let mut whole = BytesMut::new();
                    p.encode(version, &mut whole).unwrap();
                    let mut header = BytesMut::from(&b"xy"[..]);
                    p.encode_header(version, &mut header).unwrap();
                    assert_eq!(&header[..2], b"xy");
                    assert_eq!(header.len() - 2, whole.len() - p.payload.len());
                    assert_eq!([&header[2..], &p.payload[..]].concat(), &whole[..]);
                }
            }
        }
        // Validated like `encode`, nothing written on error.
        let bad = Publish {
            topic: MqttString::from_static("a/+"),
            ..Publish::default()
        };
        let mut buf = BytesMut::new();
        assert!(bad.encode_header(ProtocolVersion::V5, &mut buf).is_err());
        assert!(buf.is_empty());
    }
}
