//! DISCONNECT (3.14) and AUTH (3.15): a reason code and properties, both omissible.

use super::{Body, Measure, check_reason, read_reason};
use crate::{
    error::{DecodeError, EncodeError},
    packet::{Auth, Disconnect, PacketType},
    property::{self, Ctx, Props},
    reason::ReasonCode,
    version::ProtocolVersion,
    wire::{Out, Reader},
};

pub(super) fn decode_disconnect(
    version: ProtocolVersion,
    r: &mut Reader,
) -> Result<Disconnect, DecodeError> {
    let mut disconnect = Disconnect::default();
    // 3.x: Remaining Length 0. 5.0: 0 means Normal disconnection, 1 a reason code without
    // properties (3.14.2.1, 3.14.2.2.1).
    if version.is_v5() && !r.is_empty() {
        disconnect.reason_code = read_reason(r, PacketType::Disconnect)?;
        if !r.is_empty() {
            property::read(
                r,
                Ctx::Packet(PacketType::Disconnect),
                &mut disconnect.properties,
            )?;
        }
    }
    r.finish()?;
    Ok(disconnect)
}

pub(super) fn decode_auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut auth = Auth::default();
    // Remaining Length 0 means Success without properties (3.15.2.1); otherwise the reason
    // code and the Property Length are both present.
    if !r.is_empty() {
        auth.reason_code = read_reason(r, PacketType::Auth)?;
        property::read(r, Ctx::Packet(PacketType::Auth), &mut auth.properties)?;
    }
    r.finish()?;
    Ok(auth)
}

impl Body for Disconnect {
    fn first_byte(&self) -> u8 {
        (PacketType::Disconnect as u8) << 4
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        let mut m = Measure::default();
        if version.is_v5() {
            check_reason(PacketType::Disconnect, self.reason_code, version)?;
            if self.properties.first().is_some() {
                m.props = property::measure(&self.properties)?;
                m.remaining = 1 + property::block_len(m.props);
            } else if self.reason_code != ReasonCode::Success {
                m.remaining = 1;
            }
        } else {
            if self.reason_code != ReasonCode::Success {
                return Err(EncodeError::ReasonCodeNotAllowed {
                    packet: PacketType::Disconnect,
                    code: self.reason_code,
                    version,
                });
            }
            property::check_v3(&self.properties, version)?;
        }
        Ok(m)
    }

    fn write(&self, _: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        if m.remaining > 0 {
            dst.put_u8(self.reason_code.as_u8());
        }
        if m.remaining > 1 {
            property::write(&self.properties, m.props, dst);
        }
    }
}

impl Body for Auth {
    fn first_byte(&self) -> u8 {
        (PacketType::Auth as u8) << 4
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::PacketNotInVersion {
                packet_type: PacketType::Auth,
                version,
            });
        }
        check_reason(PacketType::Auth, self.reason_code, version)?;
        let mut m = Measure::default();
        if self.reason_code != ReasonCode::Success || self.properties.first().is_some() {
            m.props = property::measure(&self.properties)?;
            m.remaining = 1 + property::block_len(m.props);
        }
        Ok(m)
    }

    fn write(&self, _: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        if m.remaining > 0 {
            dst.put_u8(self.reason_code.as_u8());
            property::write(&self.properties, m.props, dst);
        }
    }
}
