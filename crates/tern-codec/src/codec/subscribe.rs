//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (3.8 to 3.11).

use alloc::vec::Vec;

use super::{Body, Decoded, Measure, check_reason, read_packet_id, read_reason};
use crate::{
    error::{DecodeError, EncodeError},
    packet::{
        AckProperties, Packet, PacketType, RetainHandling, SubAck, Subscribe, SubscribeProperties,
        Subscription, SubscriptionOptions, Subscriptions, UnsubAck, Unsubscribe,
        UnsubscribeProperties,
    },
    property::{self, Ctx},
    qos::QoS,
    reason::ReasonCode,
    string::MqttString,
    version::ProtocolVersion,
    wire::{self, Out, Reader},
};

const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;
/// Reserved bits of the subscription options: 6-7 in 5.0, 2-7 in 3.x.
const RESERVED_V5: u8 = 0xC0;
const RESERVED_V3: u8 = 0xFC;

/// Reads a topic filter: any non-empty string (its syntax is `tern-topic`'s job).
fn read_filter(r: &mut Reader) -> Result<MqttString, DecodeError> {
    let filter = r.string()?;
    if filter.is_empty() {
        return Err(DecodeError::EmptyTopicFilter); // [MQTT-4.7.3-1]
    }
    Ok(filter)
}

fn decode_options(version: ProtocolVersion, byte: u8) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if version.is_v5() {
        RESERVED_V5
    } else {
        RESERVED_V3
    };
    if byte & reserved != 0 {
        return Err(DecodeError::SubscriptionOptionsReserved); // [MQTT-3.8.3-5]
    }
    let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let retain_handling = match (byte >> RETAIN_HANDLING_SHIFT) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::InvalidRetainHandling), // [MQTT-3.8.3-6]
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & NO_LOCAL != 0,
        retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
        retain_handling,
    })
}

fn encode_options(o: &SubscriptionOptions) -> u8 {
    let mut byte = o.qos.as_u8() | (o.retain_handling as u8) << RETAIN_HANDLING_SHIFT;
    if o.no_local {
        byte |= NO_LOCAL;
    }
    if o.retain_as_published {
        byte |= RETAIN_AS_PUBLISHED;
    }
    byte
}

/// An upper bound of the number of subscriptions in a SUBSCRIBE payload: each is a two-byte
/// length, the filter and an options byte, so the length prefixes can be walked without
/// reading the filters. Bounded by what the bytes can hold (a filter entry takes at least
/// three bytes), so a peer cannot make the vector larger than its packet.
fn count_entries(payload: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while let Some(len) = payload.get(at..at + 2) {
        at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]])) + 1;
        count += 1;
    }
    count
}

/// Decodes a SUBSCRIBE body into the decoder's return value (see [`Decoded`]).
#[inline]
pub(super) fn decode_subscribe(version: ProtocolVersion, r: &mut Reader) -> Decoded {
    let packet_id = read_packet_id(r)?;
    let mut properties = SubscribeProperties::default();
    if version.is_v5() {
        property::read(r, Ctx::Packet(PacketType::Subscribe), &mut properties)?;
    }
    let mut subscriptions = Subscriptions::with_capacity(count_entries(r.unread()));
    while !r.is_empty() {
        let filter = read_filter(r)?;
        let options = decode_options(version, r.u8()?)?;
        subscriptions.push(Subscription { filter, options });
    }
    if subscriptions.is_empty() {
        return Err(DecodeError::EmptySubscribe); // [MQTT-3.8.3-2]
    }
    r.release();
    Ok(Some(Packet::Subscribe(Subscribe {
        packet_id,
        properties,
        subscriptions,
    })))
}

/// Reads the reason codes of a SUBACK or UNSUBACK payload: at least one.
fn read_reasons(
    r: &mut Reader,
    packet: PacketType,
    version: ProtocolVersion,
) -> Result<Vec<ReasonCode>, DecodeError> {
    if r.is_empty() {
        // One reason code per topic filter, and a request has at least one.
        return Err(DecodeError::Truncated);
    }
    let mut codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = if version.is_v5() {
            read_reason(r, packet)?
        } else {
            // 3.x SUBACK return codes (3.1.1 3.9.3): 0x00, 0x01, 0x02, and 0x80 since 3.1.1.
            let byte = r.u8()?;
            match ReasonCode::from_u8(byte) {
                Some(code) if v3_suback_allows(version, code) => code,
                _ => return Err(DecodeError::InvalidReasonCode { packet, code: byte }),
            }
        };
        codes.push(code);
    }
    Ok(codes)
}

fn v3_suback_allows(version: ProtocolVersion, code: ReasonCode) -> bool {
    code.is_v3_suback()
        && !(version == ProtocolVersion::V3_1 && code == ReasonCode::UnspecifiedError)
}

pub(super) fn decode_suback(
    version: ProtocolVersion,
    r: &mut Reader,
) -> Result<SubAck, DecodeError> {
    let packet_id = read_packet_id(r)?;
    let mut properties = AckProperties::default();
    if version.is_v5() {
        property::read(r, Ctx::Packet(PacketType::SubAck), &mut properties)?;
    }
    let reason_codes = read_reasons(r, PacketType::SubAck, version)?;
    Ok(SubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

pub(super) fn decode_unsubscribe(
    version: ProtocolVersion,
    r: &mut Reader,
) -> Result<Unsubscribe, DecodeError> {
    let packet_id = read_packet_id(r)?;
    let mut properties = UnsubscribeProperties::default();
    if version.is_v5() {
        property::read(r, Ctx::Packet(PacketType::Unsubscribe), &mut properties)?;
    }
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(read_filter(r)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptyUnsubscribe); // [MQTT-3.10.3-2]
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

pub(super) fn decode_unsuback(
    version: ProtocolVersion,
    r: &mut Reader,
) -> Result<UnsubAck, DecodeError> {
    let packet_id = read_packet_id(r)?;
    let mut properties = AckProperties::default();
    if !version.is_v5() {
        // 3.x UNSUBACK has no payload: Remaining Length 2.
        r.finish()?;
        return Ok(UnsubAck {
            packet_id,
            properties,
            reason_codes: Vec::new(),
        });
    }
    property::read(r, Ctx::Packet(PacketType::UnsubAck), &mut properties)?;
    let reason_codes = read_reasons(r, PacketType::UnsubAck, version)?;
    Ok(UnsubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

fn check_filter(filter: &MqttString) -> Result<usize, EncodeError> {
    if filter.is_empty() {
        return Err(EncodeError::InvalidValue("topic filter (empty)"));
    }
    Ok(wire::string_len(filter))
}

impl Body for Subscribe {
    const MANY_PIECES: bool = true;

    fn first_byte(&self) -> u8 {
        (PacketType::Subscribe as u8) << 4 | 0b0010
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        // One look at where the list lives (in place or on the heap).
        let subscriptions: &[Subscription] = &self.subscriptions;
        if subscriptions.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        let mut m = Measure::default();
        let mut len = 2usize;
        if version.is_v5() {
            m.props = match only_subscription_identifier(&self.properties) {
                // The usual 5.0 SUBSCRIBE property, measured without the general walk.
                Some(id) => {
                    let id = property::Val::VarInt(id.get());
                    1 + property::value_len(property::SUBSCRIPTION_IDENTIFIER, &id)?
                }
                None => property::measure(&self.properties)?,
            };
            len += property::block_len(m.props);
        } else {
            property::check_v3(&self.properties, version)?;
        }
        for s in subscriptions {
            if !version.is_v5() {
                let o = &s.options;
                let field = if o.no_local {
                    "no_local"
                } else if o.retain_as_published {
                    "retain_as_published"
                } else if o.retain_handling != RetainHandling::SendAtSubscribe {
                    "retain_handling"
                } else {
                    ""
                };
                if !field.is_empty() {
                    return Err(EncodeError::V5Only { field, version });
                }
            }
            len = len.saturating_add(check_filter(&s.filter)? + 1);
        }
        m.remaining = len;
        Ok(m)
    }

    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        self.write_after(version, m, [0; HEAD], 0, dst);
    }

    #[inline]
    fn write_packet(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        let (fixed, len) = super::fixed_header(self.first_byte(), m.remaining);
        let mut head = [0u8; HEAD];
        // All seven bytes, a constant-size copy; those after `len` are overwritten.
        head[..fixed.len()].copy_from_slice(&fixed);
        self.write_after(version, m, head, len, dst);
    }
}

/// The Subscription Identifier when it is the only property of a SUBSCRIBE, the usual 5.0
/// case: measured and written without the walk over every property.
#[inline]
fn only_subscription_identifier(p: &SubscribeProperties) -> Option<core::num::NonZeroU32> {
    p.subscription_identifier
        .filter(|_| p.user_properties.is_empty())
}

/// The head of a SUBSCRIBE assembled on the stack: up to 5 bytes of fixed header, 2 of packet
/// id, 1 of Property Length, [`SHORT_PROPS`] of properties and 2 of the first filter's length.
const HEAD: usize = 24;

/// Properties up to this length (a Subscription Identifier is at most 5 bytes) are written
/// with the fields before them, in one piece.
const SHORT_PROPS: usize = 8;

impl Subscribe {
    /// Writes the packet after the first `n` bytes of `head` (the fixed header, or nothing).
    #[inline]
    fn write_after(
        &self,
        version: ProtocolVersion,
        m: &Measure,
        mut head: [u8; HEAD],
        mut n: usize,
        dst: &mut impl Out,
    ) {
        // `measure` refused an empty list. Filter lengths were checked when the strings were
        // made.
        let (first, rest) = self
            .subscriptions
            .split_first()
            .expect("measure refused an empty list");
        // The packet id, the Property Length, short properties (a Subscription Identifier)
        // and the first filter's length in one piece with what is already in `head`.
        head[n..n + 2].copy_from_slice(&self.packet_id.get().to_be_bytes());
        n += 2;
        if version.is_v5() {
            n = wire::var_int_at(&mut head, n, m.props);
            if let Some(id) = only_subscription_identifier(&self.properties) {
                head[n] = property::SUBSCRIPTION_IDENTIFIER;
                n = wire::var_int_at(&mut head, n + 1, id.get() as usize);
            } else if m.props <= SHORT_PROPS {
                let mut out: &mut [u8] = &mut head[n..n + m.props];
                property::write_props(&self.properties, &mut out);
                n += m.props;
            } else {
                dst.append(&head[..n]);
                n = 0;
                property::write_props(&self.properties, dst);
            }
        }
        head[n..n + 2].copy_from_slice(&(first.filter.len() as u16).to_be_bytes());
        n += 2;
        if n <= 16 {
            wire::put_small(dst, &head, n);
        } else {
            dst.append(&head[..n]);
        }
        dst.append(first.filter.as_str().as_bytes());
        // In 3.x only the QoS exists: `measure` refused the 5.0 options there. One loop per
        // case, so that no filter tests the version.
        if version.is_v5() {
            write_filters(first, rest, dst, encode_options);
        } else {
            write_filters(first, rest, dst, |o| o.qos.as_u8());
        }
    }
}

/// Writes the options of `first` (whose filter is written) and the other subscriptions.
/// Between two filters, the options byte of the one and the length of the next go in one
/// three-byte piece: two writes per subscription instead of three.
#[inline(always)]
fn write_filters(
    first: &Subscription,
    rest: &[Subscription],
    dst: &mut impl Out,
    encode: impl Fn(&SubscriptionOptions) -> u8,
) {
    let mut options = encode(&first.options);
    for s in rest {
        let [hi, lo] = (s.filter.len() as u16).to_be_bytes();
        dst.append(&[options, hi, lo]);
        dst.append(s.filter.as_str().as_bytes());
        options = encode(&s.options);
    }
    dst.append(&[options]);
}

/// Validates the reason codes of a SUBACK or UNSUBACK for `version`.
fn check_reasons(
    packet: PacketType,
    codes: &[ReasonCode],
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    if codes.is_empty() {
        return Err(EncodeError::InvalidValue("reason_codes (empty)"));
    }
    for &code in codes {
        if version.is_v5() {
            check_reason(packet, code, version)?;
        } else if !v3_suback_allows(version, code) {
            return Err(EncodeError::ReasonCodeNotAllowed {
                packet,
                code,
                version,
            });
        }
    }
    Ok(())
}

impl Body for SubAck {
    fn first_byte(&self) -> u8 {
        (PacketType::SubAck as u8) << 4
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        check_reasons(PacketType::SubAck, &self.reason_codes, version)?;
        let mut m = Measure::default();
        let mut len = 2usize;
        if version.is_v5() {
            m.props = property::measure(&self.properties)?;
            len += property::block_len(m.props);
        } else {
            property::check_v3(&self.properties, version)?;
        }
        m.remaining = len.saturating_add(self.reason_codes.len());
        Ok(m)
    }

    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            property::write(&self.properties, m.props, dst);
        }
        for code in &self.reason_codes {
            dst.put_u8(code.as_u8());
        }
    }
}

impl Body for Unsubscribe {
    const MANY_PIECES: bool = true;

    fn first_byte(&self) -> u8 {
        (PacketType::Unsubscribe as u8) << 4 | 0b0010
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        let mut m = Measure::default();
        let mut len = 2usize;
        if version.is_v5() {
            m.props = property::measure(&self.properties)?;
            len += property::block_len(m.props);
        } else {
            property::check_v3(&self.properties, version)?;
        }
        for filter in &self.filters {
            len = len.saturating_add(check_filter(filter)?);
        }
        m.remaining = len;
        Ok(m)
    }

    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            property::write(&self.properties, m.props, dst);
        }
        for filter in &self.filters {
            wire::put_string(dst, filter);
        }
    }
}

impl Body for UnsubAck {
    fn first_byte(&self) -> u8 {
        (PacketType::UnsubAck as u8) << 4
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        let mut m = Measure {
            remaining: 2,
            ..Measure::default()
        };
        if version.is_v5() {
            check_reasons(PacketType::UnsubAck, &self.reason_codes, version)?;
            m.props = property::measure(&self.properties)?;
            m.remaining =
                (2 + property::block_len(m.props)).saturating_add(self.reason_codes.len());
        } else {
            if !self.reason_codes.is_empty() {
                return Err(EncodeError::V5Only {
                    field: "reason_codes",
                    version,
                });
            }
            property::check_v3(&self.properties, version)?;
        }
        Ok(m)
    }

    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            property::write(&self.properties, m.props, dst);
            for code in &self.reason_codes {
                dst.put_u8(code.as_u8());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        frame::{Decoder, MAX_PACKET_SIZE},
        packet::{Packet, SubscribeProperties, Subscription, SubscriptionOptions},
        string::MqttString,
    };
    use alloc::format;
    use bytes::BytesMut;
    use core::num::{NonZeroU16, NonZeroU32};

    /// The head assembled on the stack (fixed header, packet id, short properties, first
    /// filter length) and the long-property path agree with the decoder at every write path:
    /// appended pieces (short and long packets) and the zero-filled slice (64 B to 4 KiB).
    #[test]
    fn every_head_and_property_shape_round_trips() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for filters in [1, 2, 3, 40, 200] {
                for props in 0..4 {
                    if props > 0 && !version.is_v5() {
                        continue;
                    }
                    let mut properties = SubscribeProperties::default();
                    if props >= 1 {
                        // 2, 3 and 4 bytes of Variable Byte Integer: 3 to 5 bytes of block.
                        properties.subscription_identifier =
                            NonZeroU32::new([1, 200, 20_000, 268_435_455][props]);
                    }
                    if props >= 3 {
                        // Longer than the stack head's share.
                        properties.user_properties.push((
                            MqttString::from_static("k"),
                            MqttString::from_static("value"),
                        ));
                    }
                    let subscribe = Subscribe {
                        packet_id: NonZeroU16::new(0x1234).unwrap(),
                        properties,
                        subscriptions: (0..filters)
                            .map(|i| Subscription {
                                filter: MqttString::try_from(format!("a/{i}/#")).unwrap(),
                                options: SubscriptionOptions::default(),
                            })
                            .collect(),
                    };
                    let mut buf = BytesMut::new();
                    subscribe.encode(version, &mut buf).unwrap();
                    assert_eq!(buf.len(), subscribe.encoded_len(version).unwrap());
                    let mut decoder = Decoder::with_version(version, MAX_PACKET_SIZE);
                    assert_eq!(
                        decoder.decode(&mut buf),
                        Ok(Some(Packet::Subscribe(subscribe))),
                        "{version:?}, {filters} filters, properties {props}"
                    );
                    assert!(buf.is_empty());
                }
            }
        }
    }
}
