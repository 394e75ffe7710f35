//! PUBACK, PUBREC, PUBREL and PUBCOMP (3.4 to 3.7).

use super::{AckAs, Body, Measure, check_reason, read_packet_id, read_reason};
use crate::{
    error::{DecodeError, EncodeError},
    packet::{Ack, PacketType},
    property::{self, Ctx, Props},
    reason::ReasonCode,
    version::ProtocolVersion,
    wire::{Out, Reader},
};

pub(super) fn decode(
    packet_type: PacketType,
    version: ProtocolVersion,
    r: &mut Reader,
) -> Result<Ack, DecodeError> {
    let packet_id = read_packet_id(r)?;
    let mut ack = Ack::new(packet_id);
    // 5.0: Remaining Length 2 means Success without properties, 3 a reason code without
    // properties (3.4.2.1, 3.4.2.2.1).
    if version.is_v5() && !r.is_empty() {
        ack.reason_code = read_reason(r, packet_type)?;
        if !r.is_empty() {
            property::read(r, Ctx::Packet(packet_type), &mut ack.properties)?;
        }
    }
    r.finish()?;
    Ok(ack)
}

impl Body for AckAs<'_> {
    fn first_byte(&self) -> u8 {
        let flags = if self.0 == PacketType::PubRel {
            0b0010
        } else {
            0
        };
        (self.0 as u8) << 4 | flags
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        let AckAs(packet, ack) = *self;
        let mut m = Measure {
            remaining: 2,
            ..Measure::default()
        };
        if version.is_v5() {
            check_reason(packet, ack.reason_code, version)?;
            if ack.properties.first().is_some() {
                m.props = property::measure(&ack.properties)?;
                m.remaining = 3 + property::block_len(m.props);
            } else if ack.reason_code != ReasonCode::Success {
                m.remaining = 3;
            }
        } else {
            if ack.reason_code != ReasonCode::Success {
                return Err(EncodeError::ReasonCodeNotAllowed {
                    packet,
                    code: ack.reason_code,
                    version,
                });
            }
            property::check_v3(&ack.properties, version)?;
        }
        Ok(m)
    }

    fn write(&self, _: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        let ack = self.1;
        dst.put_u16(ack.packet_id.get());
        if m.remaining > 2 {
            dst.put_u8(ack.reason_code.as_u8());
        }
        if m.remaining > 3 {
            property::write(&ack.properties, m.props, dst);
        }
    }
}
