//! MQTT 5.0 properties (section 2.2.2): identifiers, one reader loop shared by every packet,
//! and one canonical writer.
//!
//! Each property struct of the model implements [`Sink`] (how a decoded property is stored)
//! and [`Props`] (which properties it holds, in increasing identifier order, user properties in
//! their order). The checks that do not depend on the packet live here once: unknown
//! identifiers, identifiers not allowed in the packet, duplicates, value ranges, Authentication
//! Data without Method and wildcards in a Response Topic.

use bytes::Bytes;
use core::num::{NonZeroU16, NonZeroU32};

use crate::{
    error::{DecodeError, EncodeError},
    frame::MAX_REMAINING_LENGTH,
    packet::{
        AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
        PacketType, PayloadFormat, PublishProperties, SubscribeProperties, UnsubscribeProperties,
        WillProperties,
    },
    qos::QoS,
    string::MqttString,
    wire::{self, Out, Reader},
};

/// Payload Format Indicator (byte).
pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
/// Message Expiry Interval (four-byte integer).
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
/// Content Type (string).
pub(crate) const CONTENT_TYPE: u8 = 0x03;
/// Response Topic (string).
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
/// Correlation Data (binary).
pub(crate) const CORRELATION_DATA: u8 = 0x09;
/// Subscription Identifier (variable byte integer).
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
/// Session Expiry Interval (four-byte integer).
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
/// Assigned Client Identifier (string).
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
/// Server Keep Alive (two-byte integer).
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
/// Authentication Method (string).
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
/// Authentication Data (binary).
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
/// Request Problem Information (byte).
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
/// Will Delay Interval (four-byte integer).
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
/// Request Response Information (byte).
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
/// Response Information (string).
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
/// Server Reference (string).
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
/// Reason String (string).
pub(crate) const REASON_STRING: u8 = 0x1F;
/// Receive Maximum (two-byte integer).
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
/// Topic Alias Maximum (two-byte integer).
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
/// Topic Alias (two-byte integer).
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
/// Maximum QoS (byte).
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
/// Retain Available (byte).
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
/// User Property (string pair).
pub(crate) const USER_PROPERTY: u8 = 0x26;
/// Maximum Packet Size (four-byte integer).
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
/// Wildcard Subscription Available (byte).
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
/// Subscription Identifier Available (byte).
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
/// Shared Subscription Available (byte).
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The wire type of a property value (2.2.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Byte,
    U16,
    U32,
    VarInt,
    Str,
    Bin,
    Pair,
}

/// Where properties appear: a packet, or the will properties of a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctx {
    /// The properties of this packet type.
    Packet(PacketType),
    /// The Will Properties in the CONNECT payload.
    Will,
}

impl Ctx {
    const fn bit(self) -> u16 {
        match self {
            Ctx::Will => 1,
            Ctx::Packet(t) => 1 << (t as u8),
        }
    }

    const fn packet(self) -> PacketType {
        match self {
            Ctx::Will => PacketType::Connect,
            Ctx::Packet(t) => t,
        }
    }
}

const WILL: u16 = 1;
const CONNECT: u16 = 1 << 1;
const CONNACK: u16 = 1 << 2;
const PUBLISH: u16 = 1 << 3;
const PUBACK: u16 = 1 << 4;
const PUBREC: u16 = 1 << 5;
const PUBREL: u16 = 1 << 6;
const PUBCOMP: u16 = 1 << 7;
const SUBSCRIBE: u16 = 1 << 8;
const SUBACK: u16 = 1 << 9;
const UNSUBSCRIBE: u16 = 1 << 10;
const UNSUBACK: u16 = 1 << 11;
const DISCONNECT: u16 = 1 << 14;
const AUTH: u16 = 1 << 15;
const ALL: u16 = WILL
    | CONNECT
    | CONNACK
    | PUBLISH
    | PUBACK
    | PUBREC
    | PUBREL
    | PUBCOMP
    | SUBSCRIBE
    | SUBACK
    | UNSUBSCRIBE
    | UNSUBACK
    | DISCONNECT
    | AUTH;
const ACKS: u16 = CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK;

/// The table of 2.2.2.2: the value type of each identifier, the packets that may carry it and
/// its name for error messages.
const fn spec(id: u8) -> Option<(Kind, u16, &'static str)> {
    Some(match id {
        PAYLOAD_FORMAT_INDICATOR => (Kind::Byte, PUBLISH | WILL, "payload_format_indicator"),
        MESSAGE_EXPIRY_INTERVAL => (Kind::U32, PUBLISH | WILL, "message_expiry_interval"),
        CONTENT_TYPE => (Kind::Str, PUBLISH | WILL, "content_type"),
        RESPONSE_TOPIC => (Kind::Str, PUBLISH | WILL, "response_topic"),
        CORRELATION_DATA => (Kind::Bin, PUBLISH | WILL, "correlation_data"),
        SUBSCRIPTION_IDENTIFIER => (Kind::VarInt, PUBLISH | SUBSCRIBE, "subscription_identifier"),
        SESSION_EXPIRY_INTERVAL => (
            Kind::U32,
            CONNECT | CONNACK | DISCONNECT,
            "session_expiry_interval",
        ),
        ASSIGNED_CLIENT_IDENTIFIER => (Kind::Str, CONNACK, "assigned_client_identifier"),
        SERVER_KEEP_ALIVE => (Kind::U16, CONNACK, "server_keep_alive"),
        AUTHENTICATION_METHOD => (Kind::Str, CONNECT | CONNACK | AUTH, "authentication_method"),
        AUTHENTICATION_DATA => (Kind::Bin, CONNECT | CONNACK | AUTH, "authentication_data"),
        REQUEST_PROBLEM_INFORMATION => (Kind::Byte, CONNECT, "request_problem_information"),
        WILL_DELAY_INTERVAL => (Kind::U32, WILL, "will_delay_interval"),
        REQUEST_RESPONSE_INFORMATION => (Kind::Byte, CONNECT, "request_response_information"),
        RESPONSE_INFORMATION => (Kind::Str, CONNACK, "response_information"),
        SERVER_REFERENCE => (Kind::Str, CONNACK | DISCONNECT, "server_reference"),
        REASON_STRING => (Kind::Str, ACKS | DISCONNECT | AUTH, "reason_string"),
        RECEIVE_MAXIMUM => (Kind::U16, CONNECT | CONNACK, "receive_maximum"),
        TOPIC_ALIAS_MAXIMUM => (Kind::U16, CONNECT | CONNACK, "topic_alias_maximum"),
        TOPIC_ALIAS => (Kind::U16, PUBLISH, "topic_alias"),
        MAXIMUM_QOS => (Kind::Byte, CONNACK, "maximum_qos"),
        RETAIN_AVAILABLE => (Kind::Byte, CONNACK, "retain_available"),
        USER_PROPERTY => (Kind::Pair, ALL, "user_properties"),
        MAXIMUM_PACKET_SIZE => (Kind::U32, CONNECT | CONNACK, "maximum_packet_size"),
        WILDCARD_SUBSCRIPTION_AVAILABLE => (Kind::Byte, CONNACK, "wildcard_subscription_available"),
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            (Kind::Byte, CONNACK, "subscription_identifiers_available")
        }
        SHARED_SUBSCRIPTION_AVAILABLE => (Kind::Byte, CONNACK, "shared_subscription_available"),
        _ => return None,
    })
}

/// The field name of a property, for encode errors.
fn name(id: u8) -> &'static str {
    match spec(id) {
        Some((_, _, name)) => name,
        None => "property",
    }
}

/// A decoded property value, checked for its range.
#[derive(Debug)]
pub(crate) enum Value {
    /// A byte.
    Byte(u8),
    /// A two-byte integer.
    U16(u16),
    /// A four-byte integer.
    U32(u32),
    /// A variable byte integer.
    VarInt(u32),
    /// A UTF-8 string.
    Str(MqttString),
    /// Binary data.
    Bin(Bytes),
    /// A UTF-8 string pair.
    Pair(MqttString, MqttString),
}

impl Value {
    fn bool(self, id: u8) -> Result<bool, DecodeError> {
        match self {
            Value::Byte(0) => Ok(false),
            Value::Byte(1) => Ok(true),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }

    fn u16(self, id: u8) -> Result<u16, DecodeError> {
        match self {
            Value::U16(v) => Ok(v),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }

    fn nz16(self, id: u8) -> Result<NonZeroU16, DecodeError> {
        NonZeroU16::new(self.u16(id)?).ok_or(DecodeError::InvalidPropertyValue(id))
    }

    fn u32(self, id: u8) -> Result<u32, DecodeError> {
        match self {
            Value::U32(v) | Value::VarInt(v) => Ok(v),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }

    fn nz32(self, id: u8) -> Result<NonZeroU32, DecodeError> {
        NonZeroU32::new(self.u32(id)?).ok_or(DecodeError::InvalidPropertyValue(id))
    }

    fn string(self, id: u8) -> Result<MqttString, DecodeError> {
        match self {
            Value::Str(s) => Ok(s),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }

    fn binary(self, id: u8) -> Result<Bytes, DecodeError> {
        match self {
            Value::Bin(b) => Ok(b),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }

    fn pair(self, id: u8) -> Result<(MqttString, MqttString), DecodeError> {
        match self {
            Value::Pair(k, v) => Ok((k, v)),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }

    fn payload_format(self, id: u8) -> Result<PayloadFormat, DecodeError> {
        Ok(if self.bool(id)? {
            PayloadFormat::Utf8
        } else {
            PayloadFormat::Unspecified
        })
    }

    /// Maximum QoS: only 0 or 1 may be sent (3.2.2.3.4).
    fn maximum_qos(self, id: u8) -> Result<QoS, DecodeError> {
        Ok(if self.bool(id)? {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        })
    }
}

/// A property struct that decoded properties are stored into.
pub(crate) trait Sink {
    /// Stores one property that the table allows in `ctx` and that is not a duplicate.
    fn apply(&mut self, id: u8, value: Value, ctx: Ctx) -> Result<(), DecodeError>;
}

fn not_allowed(id: u8, ctx: Ctx) -> DecodeError {
    DecodeError::PropertyNotAllowed {
        property: id,
        packet: ctx.packet(),
    }
}

/// Reads a Property Length and the properties it covers into `sink`.
pub(crate) fn read<S: Sink>(r: &mut Reader, ctx: Ctx, sink: &mut S) -> Result<(), DecodeError> {
    let len = r.var_int()?;
    if len == 0 {
        return Ok(());
    }
    // The properties end exactly at the declared length: a value running past it is
    // truncated, even if the packet has more bytes.
    r.within(len as usize, |p| read_block(p, ctx, sink))
}

/// Reads properties into `sink` until the end of `p` (one property block).
fn read_block<S: Sink>(p: &mut Reader, ctx: Ctx, sink: &mut S) -> Result<(), DecodeError> {
    let mut seen: u64 = 0;
    while !p.is_empty() {
        // The identifier is a Variable Byte Integer, but every defined one is a single byte
        // below 0x80; a first byte with the continuation bit is an unknown identifier.
        let id = p.u8()?;
        let Some((kind, allowed, _)) = spec(id) else {
            return Err(DecodeError::UnknownProperty(id));
        };
        if allowed & ctx.bit() == 0 {
            return Err(not_allowed(id, ctx));
        }
        let repeatable = id == USER_PROPERTY
            || (id == SUBSCRIPTION_IDENTIFIER && ctx == Ctx::Packet(PacketType::Publish));
        let bit = 1u64 << id;
        if seen & bit != 0 && !repeatable {
            return Err(DecodeError::DuplicateProperty(id));
        }
        seen |= bit;
        let value = match kind {
            Kind::Byte => Value::Byte(p.u8()?),
            Kind::U16 => Value::U16(p.u16()?),
            Kind::U32 => Value::U32(p.u32()?),
            Kind::VarInt => Value::VarInt(p.var_int()?),
            Kind::Str => {
                let s = p.string()?;
                if id == RESPONSE_TOPIC && wire::has_wildcard(&s) {
                    return Err(DecodeError::WildcardInResponseTopic);
                }
                Value::Str(s)
            }
            Kind::Bin => Value::Bin(p.binary()?),
            Kind::Pair => {
                let (k, v) = p.string_pair()?;
                Value::Pair(k, v)
            }
        };
        sink.apply(id, value, ctx)?;
    }
    if seen & (1 << AUTHENTICATION_DATA) != 0 && seen & (1 << AUTHENTICATION_METHOD) == 0 {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(())
}

/// A property value borrowed from a model struct, for encoding.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(&'a MqttString),
    Bin(&'a [u8]),
    Pair(&'a MqttString, &'a MqttString),
}

/// A property struct that can be encoded: it visits its properties in canonical order
/// (increasing identifier, user properties in their order).
pub(crate) trait Props {
    /// Calls `f` with each property present.
    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>));

    /// Whether the block is known to be empty from a few compares, for the blocks that
    /// usually are; `false` where a type does not say, and the walk over its properties
    /// decides (it would otherwise be made twice).
    #[inline]
    fn known_empty(&self) -> bool {
        false
    }

    /// The first property present, for `V5Only` errors in 3.x.
    fn first(&self) -> Option<u8> {
        let mut first = None;
        self.visit(&mut |id, _| {
            if first.is_none() {
                first = Some(id);
            }
        });
        first
    }
}

/// Fails with [`EncodeError::V5Only`] when `props` holds any property.
pub(crate) fn check_v3<P: Props>(
    props: &P,
    version: crate::version::ProtocolVersion,
) -> Result<(), EncodeError> {
    if props.known_empty() {
        return Ok(());
    }
    match props.first() {
        Some(id) => Err(EncodeError::V5Only {
            field: name(id),
            version,
        }),
        None => Ok(()),
    }
}

#[inline]
pub(crate) fn value_len(id: u8, v: &Val<'_>) -> Result<usize, EncodeError> {
    Ok(match *v {
        Val::Byte(b) => {
            if id == MAXIMUM_QOS && b > 1 {
                // Only 0 or 1 may be sent; absent means 2 (3.2.2.3.4).
                return Err(EncodeError::InvalidValue(
                    "maximum_qos (only 0 or 1 may be sent)",
                ));
            }
            1
        }
        Val::U16(_) => 2,
        Val::U32(_) => 4,
        Val::VarInt(x) => {
            if x > MAX_REMAINING_LENGTH {
                return Err(EncodeError::InvalidValue("subscription_identifier"));
            }
            wire::var_int_len(x as usize)
        }
        Val::Str(s) => {
            if id == RESPONSE_TOPIC && wire::has_wildcard(s) {
                return Err(EncodeError::InvalidValue("response_topic (wildcards)"));
            }
            wire::string_len(s)
        }
        Val::Bin(b) => wire::check_binary(name(id), b)?,
        Val::Pair(k, v) => wire::string_len(k) + wire::string_len(v),
    })
}

/// Validates `props` and returns the length of their encoding without the Property Length.
pub(crate) fn measure<P: Props>(props: &P) -> Result<usize, EncodeError> {
    if props.known_empty() {
        return Ok(0);
    }
    let mut len = 0usize;
    let mut seen = 0u64;
    let mut err = None;
    props.visit(&mut |id, v| match value_len(id, &v) {
        // 1 byte of identifier; saturating so a huge list of shared strings cannot wrap.
        Ok(n) => {
            len = len.saturating_add(1 + n);
            seen |= 1u64 << id;
        }
        Err(e) => {
            err.get_or_insert(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if len > MAX_REMAINING_LENGTH as usize {
        // Keeps every later sum of lengths far from overflow.
        return Err(EncodeError::PacketTooLarge(len));
    }
    if seen & (1 << AUTHENTICATION_DATA) != 0 && seen & (1 << AUTHENTICATION_METHOD) == 0 {
        return Err(EncodeError::InvalidValue(
            "authentication_data without authentication_method",
        ));
    }
    Ok(len)
}

/// The length of a property block: the Property Length then `len` bytes.
pub(crate) const fn block_len(len: usize) -> usize {
    wire::var_int_len(len) + len
}

/// Writes the Property Length `len` (from [`measure`]) and the properties.
pub(crate) fn write<P: Props>(props: &P, len: usize, dst: &mut impl Out) {
    wire::put_var_int(dst, len);
    if len > 0 {
        write_props(props, dst);
    }
}

/// Writes the properties without their Property Length.
///
/// Each property's identifier and its fixed-size value (or the length of its string or binary
/// value) are assembled on the stack and appended in one piece: `BufMut::put_u8` and friends
/// are a call each for `BytesMut` in generic code.
pub(crate) fn write_props<P: Props>(props: &P, dst: &mut impl Out) {
    props.visit(&mut |id, v| {
        let mut head = [0u8; 5];
        head[0] = id;
        let n = match v {
            Val::Byte(b) => {
                head[1] = b;
                2
            }
            Val::U16(x) => {
                head[1..3].copy_from_slice(&x.to_be_bytes());
                3
            }
            Val::U32(x) => {
                head[1..5].copy_from_slice(&x.to_be_bytes());
                5
            }
            Val::VarInt(x) => wire::var_int_at(&mut head, 1, x as usize),
            Val::Str(s) => return put_with_id(dst, id, s.as_str().as_bytes()),
            Val::Bin(b) => return put_with_id(dst, id, b),
            Val::Pair(k, v) => {
                put_with_id(dst, id, k.as_str().as_bytes());
                return wire::put_string(dst, v);
            }
        };
        wire::put_small(dst, &head, n);
    });
}

/// Writes an identifier and a string or binary value: identifier and length in one piece.
#[inline]
fn put_with_id(dst: &mut impl Out, id: u8, b: &[u8]) {
    // Checked by the caller (strings by construction, binary fields by `check_binary`).
    let [hi, lo] = (b.len() as u16).to_be_bytes();
    dst.append(&[id, hi, lo]);
    dst.append(b);
}

// Small helpers for the `visit` implementations.

#[inline]
fn user<'a>(f: &mut impl FnMut(u8, Val<'a>), props: &'a [(MqttString, MqttString)]) {
    for (k, v) in props {
        f(USER_PROPERTY, Val::Pair(k, v));
    }
}

fn opt_str<'a>(f: &mut impl FnMut(u8, Val<'a>), id: u8, s: &'a Option<MqttString>) {
    if let Some(s) = s {
        f(id, Val::Str(s));
    }
}

fn opt_bin<'a>(f: &mut impl FnMut(u8, Val<'a>), id: u8, b: &'a Option<Bytes>) {
    if let Some(b) = b {
        f(id, Val::Bin(b));
    }
}

fn opt_u32<'a>(f: &mut impl FnMut(u8, Val<'a>), id: u8, x: Option<u32>) {
    if let Some(x) = x {
        f(id, Val::U32(x));
    }
}

fn opt_u16<'a>(f: &mut impl FnMut(u8, Val<'a>), id: u8, x: Option<u16>) {
    if let Some(x) = x {
        f(id, Val::U16(x));
    }
}

fn opt_bool<'a>(f: &mut impl FnMut(u8, Val<'a>), id: u8, x: Option<bool>) {
    if let Some(x) = x {
        f(id, Val::Byte(u8::from(x)));
    }
}

fn opt_format<'a>(f: &mut impl FnMut(u8, Val<'a>), x: Option<PayloadFormat>) {
    if let Some(x) = x {
        f(PAYLOAD_FORMAT_INDICATOR, Val::Byte(x as u8));
    }
}

impl Sink for ConnectProperties {
    #[inline]
    fn apply(&mut self, id: u8, v: Value, ctx: Ctx) -> Result<(), DecodeError> {
        match id {
            SESSION_EXPIRY_INTERVAL => self.session_expiry_interval = Some(v.u32(id)?),
            AUTHENTICATION_METHOD => self.authentication_method = Some(v.string(id)?),
            AUTHENTICATION_DATA => self.authentication_data = Some(v.binary(id)?),
            REQUEST_PROBLEM_INFORMATION => self.request_problem_information = Some(v.bool(id)?),
            REQUEST_RESPONSE_INFORMATION => self.request_response_information = Some(v.bool(id)?),
            RECEIVE_MAXIMUM => self.receive_maximum = Some(v.nz16(id)?),
            TOPIC_ALIAS_MAXIMUM => self.topic_alias_maximum = Some(v.u16(id)?),
            USER_PROPERTY => self.user_properties.push(v.pair(id)?),
            MAXIMUM_PACKET_SIZE => self.maximum_packet_size = Some(v.nz32(id)?),
            _ => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl Props for ConnectProperties {
    #[inline]
    fn known_empty(&self) -> bool {
        let p = self;
        p.session_expiry_interval.is_none()
            && p.receive_maximum.is_none()
            && p.maximum_packet_size.is_none()
            && p.topic_alias_maximum.is_none()
            && p.request_response_information.is_none()
            && p.request_problem_information.is_none()
            && p.user_properties.is_empty()
            && p.authentication_method.is_none()
            && p.authentication_data.is_none()
    }

    #[inline]
    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>)) {
        opt_u32(f, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        opt_str(f, AUTHENTICATION_METHOD, &self.authentication_method);
        opt_bin(f, AUTHENTICATION_DATA, &self.authentication_data);
        opt_bool(
            f,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        opt_bool(
            f,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        opt_u16(
            f,
            RECEIVE_MAXIMUM,
            self.receive_maximum.map(NonZeroU16::get),
        );
        opt_u16(f, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        user(f, &self.user_properties);
        opt_u32(
            f,
            MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
    }
}

impl Sink for WillProperties {
    fn apply(&mut self, id: u8, v: Value, ctx: Ctx) -> Result<(), DecodeError> {
        match id {
            PAYLOAD_FORMAT_INDICATOR => self.payload_format_indicator = Some(v.payload_format(id)?),
            MESSAGE_EXPIRY_INTERVAL => self.message_expiry_interval = Some(v.u32(id)?),
            CONTENT_TYPE => self.content_type = Some(v.string(id)?),
            RESPONSE_TOPIC => self.response_topic = Some(v.string(id)?),
            CORRELATION_DATA => self.correlation_data = Some(v.binary(id)?),
            WILL_DELAY_INTERVAL => self.will_delay_interval = Some(v.u32(id)?),
            USER_PROPERTY => self.user_properties.push(v.pair(id)?),
            _ => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl Props for WillProperties {
    #[inline]
    fn known_empty(&self) -> bool {
        let p = self;
        p.will_delay_interval.is_none()
            && p.payload_format_indicator.is_none()
            && p.message_expiry_interval.is_none()
            && p.content_type.is_none()
            && p.response_topic.is_none()
            && p.correlation_data.is_none()
            && p.user_properties.is_empty()
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>)) {
        opt_format(f, self.payload_format_indicator);
        opt_u32(f, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        opt_str(f, CONTENT_TYPE, &self.content_type);
        opt_str(f, RESPONSE_TOPIC, &self.response_topic);
        opt_bin(f, CORRELATION_DATA, &self.correlation_data);
        opt_u32(f, WILL_DELAY_INTERVAL, self.will_delay_interval);
        user(f, &self.user_properties);
    }
}

impl Sink for ConnAckProperties {
    fn apply(&mut self, id: u8, v: Value, ctx: Ctx) -> Result<(), DecodeError> {
        match id {
            SESSION_EXPIRY_INTERVAL => self.session_expiry_interval = Some(v.u32(id)?),
            ASSIGNED_CLIENT_IDENTIFIER => self.assigned_client_identifier = Some(v.string(id)?),
            SERVER_KEEP_ALIVE => self.server_keep_alive = Some(v.u16(id)?),
            AUTHENTICATION_METHOD => self.authentication_method = Some(v.string(id)?),
            AUTHENTICATION_DATA => self.authentication_data = Some(v.binary(id)?),
            RESPONSE_INFORMATION => self.response_information = Some(v.string(id)?),
            SERVER_REFERENCE => self.server_reference = Some(v.string(id)?),
            REASON_STRING => self.reason_string = Some(v.string(id)?),
            RECEIVE_MAXIMUM => self.receive_maximum = Some(v.nz16(id)?),
            TOPIC_ALIAS_MAXIMUM => self.topic_alias_maximum = Some(v.u16(id)?),
            MAXIMUM_QOS => self.maximum_qos = Some(v.maximum_qos(id)?),
            RETAIN_AVAILABLE => self.retain_available = Some(v.bool(id)?),
            USER_PROPERTY => self.user_properties.push(v.pair(id)?),
            MAXIMUM_PACKET_SIZE => self.maximum_packet_size = Some(v.nz32(id)?),
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                self.wildcard_subscription_available = Some(v.bool(id)?)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                self.subscription_identifiers_available = Some(v.bool(id)?)
            }
            SHARED_SUBSCRIPTION_AVAILABLE => self.shared_subscription_available = Some(v.bool(id)?),
            _ => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl Props for ConnAckProperties {
    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>)) {
        opt_u32(f, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        opt_str(
            f,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        opt_u16(f, SERVER_KEEP_ALIVE, self.server_keep_alive);
        opt_str(f, AUTHENTICATION_METHOD, &self.authentication_method);
        opt_bin(f, AUTHENTICATION_DATA, &self.authentication_data);
        opt_str(f, RESPONSE_INFORMATION, &self.response_information);
        opt_str(f, SERVER_REFERENCE, &self.server_reference);
        opt_str(f, REASON_STRING, &self.reason_string);
        opt_u16(
            f,
            RECEIVE_MAXIMUM,
            self.receive_maximum.map(NonZeroU16::get),
        );
        opt_u16(f, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        if let Some(q) = self.maximum_qos {
            f(MAXIMUM_QOS, Val::Byte(q.as_u8()));
        }
        opt_bool(f, RETAIN_AVAILABLE, self.retain_available);
        user(f, &self.user_properties);
        opt_u32(
            f,
            MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        opt_bool(
            f,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        opt_bool(
            f,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        opt_bool(
            f,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
    }
}

impl Sink for PublishProperties {
    fn apply(&mut self, id: u8, v: Value, ctx: Ctx) -> Result<(), DecodeError> {
        match id {
            PAYLOAD_FORMAT_INDICATOR => self.payload_format_indicator = Some(v.payload_format(id)?),
            MESSAGE_EXPIRY_INTERVAL => self.message_expiry_interval = Some(v.u32(id)?),
            CONTENT_TYPE => self.content_type = Some(v.string(id)?),
            RESPONSE_TOPIC => self.response_topic = Some(v.string(id)?),
            CORRELATION_DATA => self.correlation_data = Some(v.binary(id)?),
            SUBSCRIPTION_IDENTIFIER => self.subscription_identifiers.push(v.nz32(id)?),
            TOPIC_ALIAS => self.topic_alias = Some(v.nz16(id)?),
            USER_PROPERTY => self.user_properties.push(v.pair(id)?),
            _ => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl Props for PublishProperties {
    #[inline]
    fn known_empty(&self) -> bool {
        PublishProperties::is_empty(self)
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>)) {
        opt_format(f, self.payload_format_indicator);
        opt_u32(f, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        opt_str(f, CONTENT_TYPE, &self.content_type);
        opt_str(f, RESPONSE_TOPIC, &self.response_topic);
        opt_bin(f, CORRELATION_DATA, &self.correlation_data);
        for id in &self.subscription_identifiers {
            f(SUBSCRIPTION_IDENTIFIER, Val::VarInt(id.get()));
        }
        opt_u16(f, TOPIC_ALIAS, self.topic_alias.map(NonZeroU16::get));
        user(f, &self.user_properties);
    }
}

impl Sink for AckProperties {
    fn apply(&mut self, id: u8, v: Value, ctx: Ctx) -> Result<(), DecodeError> {
        match id {
            REASON_STRING => self.reason_string = Some(v.string(id)?),
            USER_PROPERTY => self.user_properties.push(v.pair(id)?),
            _ => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl Props for AckProperties {
    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>)) {
        opt_str(f, REASON_STRING, &self.reason_string);
        user(f, &self.user_properties);
    }
}

impl Sink for SubscribeProperties {
    fn apply(&mut self, id: u8, v: Value, ctx: Ctx) -> Result<(), DecodeError> {
        match id {
            SUBSCRIPTION_IDENTIFIER => self.subscription_identifier = Some(v.nz32(id)?),
            USER_PROPERTY => self.user_properties.push(v.pair(id)?),
            _ => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl Props for SubscribeProperties {
    #[inline]
    fn known_empty(&self) -> bool {
        self.subscription_identifier.is_none() && self.user_properties.is_empty()
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>)) {
        if let Some(id) = self.subscription_identifier {
            f(SUBSCRIPTION_IDENTIFIER, Val::VarInt(id.get()));
        }
        user(f, &self.user_properties);
    }
}

impl Sink for UnsubscribeProperties {
    fn apply(&mut self, id: u8, v: Value, ctx: Ctx) -> Result<(), DecodeError> {
        match id {
            USER_PROPERTY => self.user_properties.push(v.pair(id)?),
            _ => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl Props for UnsubscribeProperties {
    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>)) {
        user(f, &self.user_properties);
    }
}

impl Sink for DisconnectProperties {
    fn apply(&mut self, id: u8, v: Value, ctx: Ctx) -> Result<(), DecodeError> {
        match id {
            SESSION_EXPIRY_INTERVAL => self.session_expiry_interval = Some(v.u32(id)?),
            SERVER_REFERENCE => self.server_reference = Some(v.string(id)?),
            REASON_STRING => self.reason_string = Some(v.string(id)?),
            USER_PROPERTY => self.user_properties.push(v.pair(id)?),
            _ => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl Props for DisconnectProperties {
    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>)) {
        opt_u32(f, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        opt_str(f, SERVER_REFERENCE, &self.server_reference);
        opt_str(f, REASON_STRING, &self.reason_string);
        user(f, &self.user_properties);
    }
}

impl Sink for AuthProperties {
    fn apply(&mut self, id: u8, v: Value, ctx: Ctx) -> Result<(), DecodeError> {
        match id {
            AUTHENTICATION_METHOD => self.authentication_method = Some(v.string(id)?),
            AUTHENTICATION_DATA => self.authentication_data = Some(v.binary(id)?),
            REASON_STRING => self.reason_string = Some(v.string(id)?),
            USER_PROPERTY => self.user_properties.push(v.pair(id)?),
            _ => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl Props for AuthProperties {
    fn visit<'a>(&'a self, f: &mut impl FnMut(u8, Val<'a>)) {
        opt_str(f, AUTHENTICATION_METHOD, &self.authentication_method);
        opt_bin(f, AUTHENTICATION_DATA, &self.authentication_data);
        opt_str(f, REASON_STRING, &self.reason_string);
        user(f, &self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const PUBLISH_CTX: Ctx = Ctx::Packet(PacketType::Publish);

    fn decode<S: Sink + Default>(bytes: &'static [u8], ctx: Ctx) -> Result<S, DecodeError> {
        let mut r = Reader::new(Bytes::from_static(bytes));
        let mut s = S::default();
        read(&mut r, ctx, &mut s)?;
        r.finish()?;
        Ok(s)
    }

    fn encode<P: Props>(p: &P) -> Result<Vec<u8>, EncodeError> {
        let len = measure(p)?;
        let mut v = Vec::new();
        write(p, len, &mut v);
        assert_eq!(v.len(), block_len(len));
        Ok(v)
    }

    #[test]
    fn every_identifier_of_2_2_2_2_is_known() {
        let ids = [
            0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19,
            0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
        ];
        for id in 0..=u8::MAX {
            assert_eq!(spec(id).is_some(), ids.contains(&id), "0x{id:02X}");
        }
    }

    #[test]
    fn publish_properties_round_trip_in_canonical_order() {
        // Payload format, expiry, content type, response topic, correlation data, two
        // subscription identifiers (may repeat in PUBLISH), topic alias, user properties.
        const BYTES: &[u8] = &[
            0x2C, // property length 44
            0x01, 0x01, // payload format: UTF-8
            0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry 60
            0x03, 0x00, 0x01, b't', // content type "t"
            0x08, 0x00, 0x03, b'a', b'/', b'b', // response topic "a/b"
            0x09, 0x00, 0x02, 0xCA, 0xFE, // correlation data
            0x0B, 0x01, // subscription identifier 1
            0x0B, 0x80, 0x01, // subscription identifier 128
            0x23, 0x00, 0x05, // topic alias 5
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'w', // user property k=w
        ];
        let p: PublishProperties = decode(BYTES, PUBLISH_CTX).unwrap();
        assert_eq!(p.subscription_identifiers.len(), 2);
        assert_eq!(p.user_properties.len(), 2);
        assert_eq!(p.payload_format_indicator, Some(PayloadFormat::Utf8));
        assert_eq!(encode(&p).unwrap(), BYTES);
    }

    #[test]
    fn reader_rejects_bad_properties() {
        let ack = Ctx::Packet(PacketType::PubAck);
        // Unknown identifier 0x05.
        assert_eq!(
            decode::<AckProperties>(&[0x02, 0x05, 0x00], ack),
            Err(DecodeError::UnknownProperty(0x05))
        );
        // Topic Alias in a PUBACK.
        assert_eq!(
            decode::<AckProperties>(&[0x03, 0x23, 0x00, 0x01], ack),
            Err(DecodeError::PropertyNotAllowed {
                property: 0x23,
                packet: PacketType::PubAck
            })
        );
        // [MQTT-3.4.2-2]-style duplicates: two Reason Strings.
        assert_eq!(
            decode::<AckProperties>(&[0x08, 0x1F, 0x00, 0x01, b'a', 0x1F, 0x00, 0x01, b'b'], ack),
            Err(DecodeError::DuplicateProperty(0x1F))
        );
        // Subscription Identifier may not repeat in SUBSCRIBE.
        assert_eq!(
            decode::<SubscribeProperties>(
                &[0x04, 0x0B, 0x01, 0x0B, 0x02],
                Ctx::Packet(PacketType::Subscribe)
            ),
            Err(DecodeError::DuplicateProperty(0x0B))
        );
        // Subscription Identifier 0.
        assert_eq!(
            decode::<PublishProperties>(&[0x02, 0x0B, 0x00], PUBLISH_CTX),
            Err(DecodeError::InvalidPropertyValue(0x0B))
        );
        // Topic Alias 0.
        assert_eq!(
            decode::<PublishProperties>(&[0x03, 0x23, 0x00, 0x00], PUBLISH_CTX),
            Err(DecodeError::InvalidPropertyValue(0x23))
        );
        // Payload format 2.
        assert_eq!(
            decode::<PublishProperties>(&[0x02, 0x01, 0x02], PUBLISH_CTX),
            Err(DecodeError::InvalidPropertyValue(0x01))
        );
        // Wildcard in response topic [MQTT-3.3.2-14].
        assert_eq!(
            decode::<PublishProperties>(&[0x04, 0x08, 0x00, 0x01, b'#'], PUBLISH_CTX),
            Err(DecodeError::WildcardInResponseTopic)
        );
        // A value running past the property length.
        assert_eq!(
            decode::<PublishProperties>(&[0x02, 0x23, 0x00, 0x05], PUBLISH_CTX),
            Err(DecodeError::Truncated)
        );
        // A property length past the packet.
        assert_eq!(
            decode::<PublishProperties>(&[0x05, 0x23, 0x00, 0x05], PUBLISH_CTX),
            Err(DecodeError::Truncated)
        );
        // Authentication Data without Method.
        assert_eq!(
            decode::<AuthProperties>(&[0x03, 0x16, 0x00, 0x00], Ctx::Packet(PacketType::Auth)),
            Err(DecodeError::AuthDataWithoutMethod)
        );
        // Will Delay Interval is only a will property.
        assert_eq!(
            decode::<ConnectProperties>(
                &[0x05, 0x18, 0x00, 0x00, 0x00, 0x01],
                Ctx::Packet(PacketType::Connect)
            ),
            Err(DecodeError::PropertyNotAllowed {
                property: 0x18,
                packet: PacketType::Connect
            })
        );
    }

    #[test]
    fn connack_value_ranges() {
        let ctx = Ctx::Packet(PacketType::ConnAck);
        for (bytes, id) in [
            (&[0x03, 0x21, 0x00, 0x00][..], 0x21), // receive maximum 0
            (&[0x05, 0x27, 0x00, 0x00, 0x00, 0x00][..], 0x27), // maximum packet size 0
            (&[0x02, 0x24, 0x02][..], 0x24),       // maximum QoS 2
            (&[0x02, 0x25, 0x02][..], 0x25),       // retain available 2
            (&[0x02, 0x28, 0xFF][..], 0x28),       // wildcard available 255
            (&[0x02, 0x29, 0x02][..], 0x29),       // sub ids available 2
            (&[0x02, 0x2A, 0x02][..], 0x2A),       // shared available 2
        ] {
            let mut r = Reader::new(Bytes::copy_from_slice(bytes));
            let mut s = ConnAckProperties::default();
            assert_eq!(
                read(&mut r, ctx, &mut s),
                Err(DecodeError::InvalidPropertyValue(id))
            );
        }
    }

    #[test]
    fn encoder_checks_values() {
        let p = ConnAckProperties {
            maximum_qos: Some(QoS::ExactlyOnce),
            ..Default::default()
        };
        assert!(matches!(encode(&p), Err(EncodeError::InvalidValue(_))));
        let p = SubscribeProperties {
            subscription_identifier: NonZeroU32::new(MAX_REMAINING_LENGTH + 1),
            ..Default::default()
        };
        assert!(matches!(encode(&p), Err(EncodeError::InvalidValue(_))));
        let p = AuthProperties {
            authentication_data: Some(Bytes::from_static(b"x")),
            ..Default::default()
        };
        assert!(matches!(encode(&p), Err(EncodeError::InvalidValue(_))));
        let p = PublishProperties {
            correlation_data: Some(Bytes::from(alloc::vec![0u8; 70_000])),
            ..Default::default()
        };
        assert_eq!(
            encode(&p),
            Err(EncodeError::BinaryTooLong {
                field: "correlation_data",
                len: 70_000
            })
        );
        assert_eq!(
            check_v3(&p, crate::version::ProtocolVersion::V3_1_1),
            Err(EncodeError::V5Only {
                field: "correlation_data",
                version: crate::version::ProtocolVersion::V3_1_1
            })
        );
    }
}
