//! CONNACK (3.2).

use super::{Body, Measure, check_reason, read_reason};
use crate::{
    error::{DecodeError, EncodeError},
    packet::{ConnAck, ConnAckProperties, PacketType},
    property::{self, Ctx},
    reason::ReasonCode,
    version::ProtocolVersion,
    wire::{Out, Reader},
};

const SESSION_PRESENT: u8 = 0x01;

pub(super) fn decode(version: ProtocolVersion, r: &mut Reader) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    // MQTT 3.1 has no Session Present flag: the whole byte is reserved.
    let reserved = if version == ProtocolVersion::V3_1 {
        0xFF
    } else {
        !SESSION_PRESENT
    };
    if flags & reserved != 0 {
        return Err(DecodeError::ConnAckReservedFlags); // [MQTT-3.2.2-1]
    }
    let session_present = flags & SESSION_PRESENT != 0;
    let mut properties = ConnAckProperties::default();
    let reason_code = if version.is_v5() {
        let reason = read_reason(r, PacketType::ConnAck)?;
        property::read(r, Ctx::Packet(PacketType::ConnAck), &mut properties)?;
        reason
    } else {
        let code = r.u8()?;
        ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code,
        })?
    };
    if session_present && reason_code != ReasonCode::Success {
        return Err(DecodeError::SessionPresentOnError); // [MQTT-3.2.2-6]
    }
    r.finish()?;
    Ok(ConnAck {
        session_present,
        reason_code,
        properties,
    })
}

impl Body for ConnAck {
    fn first_byte(&self) -> u8 {
        (PacketType::ConnAck as u8) << 4
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        if self.session_present && self.reason_code != ReasonCode::Success {
            return Err(EncodeError::InvalidValue(
                "session_present on a refused connection",
            ));
        }
        let mut m = Measure::default();
        if version.is_v5() {
            check_reason(PacketType::ConnAck, self.reason_code, version)?;
            m.props = property::measure(&self.properties)?;
            m.remaining = 2 + property::block_len(m.props);
        } else {
            if self.reason_code.to_v3_connack().is_none() {
                return Err(EncodeError::ReasonCodeNotAllowed {
                    packet: PacketType::ConnAck,
                    code: self.reason_code,
                    version,
                });
            }
            if self.session_present && version == ProtocolVersion::V3_1 {
                return Err(EncodeError::InvalidValue(
                    "session_present (MQTT 3.1 has none)",
                ));
            }
            property::check_v3(&self.properties, version)?;
            m.remaining = 2;
        }
        Ok(m)
    }

    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        dst.put_u8(u8::from(self.session_present));
        if version.is_v5() {
            dst.put_u8(self.reason_code.as_u8());
            property::write(&self.properties, m.props, dst);
        } else {
            // Checked in `measure`.
            dst.put_u8(self.reason_code.to_v3_connack().unwrap_or(0));
        }
    }
}
