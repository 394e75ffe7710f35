//! CONNECT (3.1).

use bytes::{BufMut, Bytes, BytesMut};

use super::{Body, Measure};
use crate::{
    error::{DecodeError, EncodeError},
    packet::{Connect, ConnectProperties, PacketType, Will, WillProperties},
    property::{self, Ctx},
    qos::QoS,
    version::ProtocolVersion,
    wire::{self, Reader},
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
    let name = r.binary()?;
    if &name[..] != b"MQTT" && &name[..] != b"MQIsdp" {
        return Err(DecodeError::InvalidProtocolName);
    }
    let level = r.u8()?;
    let version =
        ProtocolVersion::from_level(level).ok_or(DecodeError::UnsupportedProtocolLevel(level))?;
    // `MQIsdp` goes with level 3 only, `MQTT` with 4 and 5.
    if &name[..] != version.protocol_name().as_bytes() {
        return Err(DecodeError::InvalidProtocolName);
    }
    Ok(version)
}

/// Checks a Will Topic: a topic name, so neither empty nor with wildcards (4.7).
fn check_will_topic(topic: &str) -> Result<(), DecodeError> {
    if topic.is_empty() {
        Err(DecodeError::EmptyTopicName)
    } else if wire::has_wildcard(topic) {
        Err(DecodeError::WildcardInTopicName)
    } else {
        Ok(())
    }
}

pub(super) fn decode(body: Bytes) -> Result<Connect, DecodeError> {
    let mut r = Reader::new(body);
    let protocol = read_protocol(&mut r)?;
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
        property::read(&mut r, Ctx::Packet(PacketType::Connect), &mut properties)?;
    }
    let client_id = r.string()?;
    let will = if will_flag {
        let mut will_properties = WillProperties::default();
        if protocol.is_v5() {
            property::read(&mut r, Ctx::Will, &mut will_properties)?;
        }
        let topic = r.string()?;
        check_will_topic(&topic)?;
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
    r.finish()?;
    Ok(Connect {
        protocol,
        clean_start: flags & CLEAN_START != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

impl Body for Connect {
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

    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut BytesMut) {
        let name = version.protocol_name().as_bytes();
        wire::put_binary(dst, name);
        dst.put_u8(version.level());
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
        dst.put_u8(flags);
        dst.put_u16(self.keep_alive);
        if version.is_v5() {
            property::write(&self.properties, m.props, dst);
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
