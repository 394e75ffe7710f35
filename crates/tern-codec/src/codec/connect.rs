//! CONNECT (3.1).

use alloc::boxed::Box;

use super::{Body, Decoded, Measure};
use crate::{
    error::{DecodeError, EncodeError},
    packet::{Connect, ConnectProperties, Packet, PacketType, Will, WillProperties},
    property::{self, Ctx},
    qos::QoS,
    version::ProtocolVersion,
    wire::{self, Out, Reader},
};

const RESERVED: u8 = 0x01;
const CLEAN_START: u8 = 0x02;
const WILL_FLAG: u8 = 0x04;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

/// Reads the protocol name and level (3.1.2.1, 3.1.2.2).
fn read_protocol(r: &mut Reader) -> Result<ProtocolVersion, DecodeError> {
    // Compared in place: the name is not kept, so no slice of the input is made for it.
    let (name_len, mqisdp) = match r.unread() {
        [0, 4, b'M', b'Q', b'T', b'T', ..] => (4, false),
        [0, 6, b'M', b'Q', b'I', b's', b'd', b'p', ..] => (6, true),
        _ => {
            // A truncated or different name; `binary` tells the two apart.
            r.binary()?;
            return Err(DecodeError::InvalidProtocolName);
        }
    };
    r.skip(2 + name_len);
    let level = r.u8()?;
    let version =
        ProtocolVersion::from_level(level).ok_or(DecodeError::UnsupportedProtocolLevel(level))?;
    // `MQIsdp` goes with level 3 only, `MQTT` with 4 and 5 (`ProtocolVersion::protocol_name`).
    if mqisdp != (version == ProtocolVersion::V3_1) {
        return Err(DecodeError::InvalidProtocolName);
    }
    Ok(version)
}

/// Decodes a CONNECT body into the decoder's return value (see [`Decoded`]); once it is
/// known to be valid, its version goes to `version` (the connection's, for what follows).
#[inline]
pub(super) fn decode(r: &mut Reader, version: &mut Option<ProtocolVersion>) -> Decoded {
    let protocol = read_protocol(r)?;
    let flags = r.u8()?;
    if flags & RESERVED != 0 {
        return Err(DecodeError::ConnectReservedFlag); // [MQTT-3.1.2-3]
    }
    let will_flag = flags & WILL_FLAG != 0;
    let will_qos = (flags >> WILL_QOS_SHIFT) & 0b11;
    let will_retain = flags & WILL_RETAIN != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::InvalidWillFlags); // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidWillFlags)?; // [MQTT-3.1.2-14]
    let has_username = flags & USERNAME != 0;
    let has_password = flags & PASSWORD != 0;
    if has_password && !has_username && !protocol.is_v5() {
        return Err(DecodeError::PasswordWithoutUsername); // [MQTT-3.1.2-22]
    }
    let keep_alive = r.u16()?;
    let mut properties = ConnectProperties::default();
    if protocol.is_v5() {
        property::read(r, Ctx::Packet(PacketType::Connect), &mut properties)?;
    }
    let client_id = r.string()?;
    let will = if will_flag {
        let mut will_properties = WillProperties::default();
        if protocol.is_v5() {
            property::read(r, Ctx::Will, &mut will_properties)?;
        }
        // A Will Topic is a topic name: UTF-8, U+0000 and wildcards in one pass, and not
        // empty (4.7).
        let topic = r.topic()?;
        if topic.is_empty() {
            return Err(DecodeError::EmptyTopicName);
        }
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties: will_properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    r.end()?;
    *version = Some(protocol);
    Ok(Some(Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: flags & CLEAN_START != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    }))))
}

impl Body for Connect {
    const MANY_PIECES: bool = true;

    fn first_byte(&self) -> u8 {
        (PacketType::Connect as u8) << 4
    }

    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError> {
        if version != self.protocol {
            return Err(EncodeError::InvalidValue(
                "Connect::protocol (differs from the version encoded for)",
            ));
        }
        let mut m = Measure::default();
        // Protocol name, level, flags, keep alive.
        let mut len = 2 + version.protocol_name().len() + 1 + 1 + 2;
        if version.is_v5() {
            m.props = property::measure(&self.properties)?;
            len += property::block_len(m.props);
        } else {
            property::check_v3(&self.properties, version)?;
            if self.password.is_some() && self.username.is_none() {
                return Err(EncodeError::InvalidValue(
                    "password without username (MQTT 3.x)",
                ));
            }
        }
        len += wire::string_len(&self.client_id);
        if let Some(will) = &self.will {
            if will.topic.is_empty() || wire::has_wildcard(&will.topic) {
                return Err(EncodeError::InvalidValue("will topic (empty or wildcard)"));
            }
            if version.is_v5() {
                m.will_props = property::measure(&will.properties)?;
                len += property::block_len(m.will_props);
            } else {
                property::check_v3(&will.properties, version)?;
            }
            len += wire::string_len(&will.topic);
            len += wire::check_binary("will payload", &will.payload)?;
        }
        if let Some(username) = &self.username {
            len += wire::string_len(username);
        }
        if let Some(password) = &self.password {
            len += wire::check_binary("password", password)?;
        }
        m.remaining = len;
        Ok(m)
    }

    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        let (head, n) = self.variable_header(version, m, [0; 24], 0);
        wire::put_small(dst, &head, n);
        self.write_rest(version, m, dst);
    }

    #[inline]
    fn write_packet(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        // Fixed header, protocol name and level, flags, keep alive and Property Length: at
        // most 5 + 8 + 1 + 1 + 2 + 4 = 21 bytes, written in one piece.
        let mut head = [0u8; 24];
        head[0] = self.first_byte();
        let n = wire::var_int_at(&mut head, 1, m.remaining);
        let (head, n) = self.variable_header(version, m, head, n);
        wire::put_small(dst, &head, n);
        self.write_rest(version, m, dst);
    }
}

impl Connect {
    /// Appends the variable header up to the Property Length (included) to `head[..n]`.
    #[inline]
    fn variable_header(
        &self,
        version: ProtocolVersion,
        m: &Measure,
        mut head: [u8; 24],
        mut n: usize,
    ) -> ([u8; 24], usize) {
        let name = version.protocol_name().as_bytes();
        head[n..n + 2].copy_from_slice(&(name.len() as u16).to_be_bytes());
        n += 2;
        head[n..n + name.len()].copy_from_slice(name);
        n += name.len();
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL_FLAG | (will.qos.as_u8() << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        head[n] = version.level();
        head[n + 1] = flags;
        head[n + 2..n + 4].copy_from_slice(&self.keep_alive.to_be_bytes());
        n += 4;
        if version.is_v5() {
            n = wire::var_int_at(&mut head, n, m.props);
        }
        (head, n)
    }

    /// The properties and the payload.
    #[inline]
    fn write_rest(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        if version.is_v5() {
            property::write_props(&self.properties, dst);
        }
        wire::put_string(dst, &self.client_id);
        if let Some(will) = &self.will {
            if version.is_v5() {
                property::write(&will.properties, m.will_props, dst);
            }
            wire::put_string(dst, &will.topic);
            wire::put_binary(dst, &will.payload);
        }
        if let Some(username) = &self.username {
            wire::put_string(dst, username);
        }
        if let Some(password) = &self.password {
            wire::put_binary(dst, password);
        }
    }
}
