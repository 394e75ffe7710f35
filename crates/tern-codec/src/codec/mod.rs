//! Encoding and decoding of every control packet: the bodies per packet in the submodules, the
//! fixed header, the dispatch and the public encode API here.
//!
//! Encoding is in two passes over the packet and never allocates: [`Body::measure`] validates
//! and computes every length, then the buffer is reserved once and [`Body::write`] writes
//! with `BufMut`, which cannot fail any more.

mod ack;
mod connack;
mod connect;
mod publish;

pub(crate) use publish::decode_frame as decode_publish_frame;
pub use publish::{EncodedPublish, PreparedPublish};
mod simple;
mod subscribe;

use bytes::{Bytes, BytesMut};

use crate::{
    error::{DecodeError, EncodeError},
    frame::{FixedHeader, Framing, MAX_REMAINING_LENGTH, framing},
    packet::{
        Ack, Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType, Publish, SubAck,
        Subscribe, UnsubAck, Unsubscribe,
    },
    reason::ReasonCode,
    version::ProtocolVersion,
    wire::{self, Out, Reader, Spare},
};

/// The lengths computed by [`Body::measure`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Measure {
    /// The Remaining Length.
    remaining: usize,
    /// The length of the (first) property block without its Property Length.
    props: usize,
    /// The length of the will property block without its Property Length (CONNECT).
    will_props: usize,
}

/// A packet body that can be encoded.
pub(crate) trait Body {
    /// The first byte of the fixed header: type and flags.
    fn first_byte(&self) -> u8;
    /// Validates the packet for `version` and computes its lengths.
    fn measure(&self, version: ProtocolVersion) -> Result<Measure, EncodeError>;
    /// Writes the body (after the fixed header); `m` comes from `measure`.
    fn write(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out);

    /// Whether the packet is written in many short pieces (strings, filters): then they are
    /// copied into the buffer's reserved room, one bounds check each (see `write_part`).
    const MANY_PIECES: bool = false;

    /// The bytes at the end of the packet that [`write_packet`](Body::write_packet) leaves
    /// out, appended by the caller with one copy: the payload of a PUBLISH.
    #[inline]
    fn tail(&self) -> &[u8] {
        &[]
    }

    /// Writes the whole packet but its [`tail`](Body::tail), fixed header included, into
    /// `dst`, which is exactly that long. Packets on the hot path override this to assemble
    /// their header fields on the stack.
    #[inline]
    fn write_packet(&self, version: ProtocolVersion, m: &Measure, dst: &mut impl Out) {
        let (header, len) = fixed_header(self.first_byte(), m.remaining);
        wire::put_small(dst, &header, len);
        self.write(version, m, dst);
    }
}

/// The fixed header of a packet on the stack: the first byte and the Remaining Length, 2 to
/// 5 bytes, followed by room for two more bytes (PUBLISH puts its topic length there).
#[inline]
fn fixed_header(first_byte: u8, remaining: usize) -> ([u8; 7], usize) {
    let mut header = [0u8; 7];
    header[0] = first_byte;
    let len = wire::var_int_at(&mut header, 1, remaining);
    (header, len)
}

/// The full length of a packet with this Remaining Length.
fn total_len(remaining: usize) -> Result<usize, EncodeError> {
    if remaining > MAX_REMAINING_LENGTH as usize {
        return Err(EncodeError::PacketTooLarge(remaining.saturating_add(5)));
    }
    Ok(1 + wire::var_int_len(remaining) + remaining)
}

fn encoded_len_of<B: Body>(body: &B, version: ProtocolVersion) -> Result<usize, EncodeError> {
    total_len(body.measure(version)?.remaining)
}

#[inline]
fn encode_body<B: Body>(
    body: &B,
    version: ProtocolVersion,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let m = body.measure(version)?;
    let total = total_len(m.remaining)?;
    write_reserved(body, version, &m, total, dst);
    Ok(())
}

/// Writes the packet into `dst`, reserved once for it.
#[inline]
fn write_reserved<B: Body>(
    body: &B,
    version: ProtocolVersion,
    m: &Measure,
    total: usize,
    dst: &mut BytesMut,
) {
    write_part(body, version, m, total, dst, true);
}

/// Writes the packet into `dst`, or only its part before the tail (`with_tail` false): one
/// reservation, the pieces before the tail, then the tail (a PUBLISH payload) in one copy.
///
/// How the pieces are written was measured with callgrind on the bench packets (`cargo xtask
/// codec-ir`): a packet of many pieces (CONNECT, SUBSCRIBE) is copied piece by piece into the
/// reserved room ([`Spare`]), which saves the capacity check and length update of each
/// `BytesMut` call (and, against the zero-filled slice written in place before, a `memset`):
/// CONNECT 16 B −4 % (3.1.1) and −10 % (5.0 at 1 KiB), SUBSCRIBE 1 KiB −5 %, 64 KiB −22 %.
/// A PUBLISH, four pieces, is 5 % faster with `BytesMut`'s own `extend_from_slice`.
#[inline]
fn write_part<B: Body>(
    body: &B,
    version: ProtocolVersion,
    m: &Measure,
    total: usize,
    dst: &mut BytesMut,
    with_tail: bool,
) {
    let tail = body.tail();
    let len = if with_tail { total } else { total - tail.len() };
    dst.reserve(len);
    let start = dst.len();
    if !B::MANY_PIECES {
        body.write_packet(version, m, dst);
        if with_tail {
            dst.extend_from_slice(tail);
        }
        debug_assert_eq!(
            dst.len() - start,
            len,
            "encoded length of {:#04X}",
            body.first_byte()
        );
        return;
    }
    let mut out = Spare::new(&mut dst.spare_capacity_mut()[..len]);
    body.write_packet(version, m, &mut out);
    if with_tail {
        out.append(tail);
    }
    // A `measure` that disagrees with its `write` is a bug: stop before exposing a byte that
    // was not written.
    assert_eq!(
        out.written(),
        len,
        "encoded length of {:#04X}",
        body.first_byte()
    );
    // SAFETY: `Spare` initialises every byte it advances over (`Spare::written`), and it has
    // advanced over exactly the first `len` bytes of the spare capacity, which `reserve` made
    // at least `len` long: `dst[..start + len]` is initialised and within the capacity, all
    // that `BytesMut::set_len` requires. Needed for the gains above: the safe ways to write
    // into the buffer are the two measured against it.
    #[allow(unsafe_code)]
    unsafe {
        dst.set_len(start + len);
    }
}

/// Reads a non-zero Packet Identifier [MQTT-2.2.1-3].
fn read_packet_id(r: &mut Reader) -> Result<PacketId, DecodeError> {
    PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)
}

/// Reads a reason code byte that MQTT 5.0 allows in `packet`.
fn read_reason(r: &mut Reader, packet: PacketType) -> Result<ReasonCode, DecodeError> {
    let code = r.u8()?;
    match ReasonCode::from_u8(code) {
        Some(reason) if reason.is_allowed_in(packet) => Ok(reason),
        _ => Err(DecodeError::InvalidReasonCode { packet, code }),
    }
}

/// Fails unless MQTT 5.0 allows `code` in `packet`.
fn check_reason(
    packet: PacketType,
    code: ReasonCode,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    if code.is_allowed_in(packet) {
        Ok(())
    } else {
        Err(EncodeError::ReasonCodeNotAllowed {
            packet,
            code,
            version,
        })
    }
}

/// What decoding a frame gives: exactly the return type of [`Decoder::decode`]
/// (`Ok(Some(packet))` on success; `None` is never returned from here).
///
/// The large packets (CONNECT, PUBLISH, SUBSCRIBE) are decoded by functions that return this
/// type and build their packet in it, and every caller up to `Decoder::decode` returns their
/// result as is: the 232-byte `Packet` is then written once, in the caller's return slot,
/// instead of being moved from one wrapper to the next.
///
/// [`Decoder::decode`]: crate::Decoder::decode
pub(crate) type Decoded = Result<Option<Packet>, DecodeError>;

/// Wraps a small packet's decoder result into a [`Decoded`], releasing the reader's input
/// on success (see [`Reader::into_inner`]).
#[inline]
fn wrap<T>(result: Result<T, DecodeError>, r: &mut Reader, packet: fn(T) -> Packet) -> Decoded {
    let p = result?;
    r.release();
    Ok(Some(packet(p)))
}

/// Decodes the body of a packet whose fixed header is `header` from `r`, which is positioned
/// after the fixed header and holds exactly the packet.
///
/// Every decode releases `r`'s input on success (it ends with `Reader::end` or `release`;
/// a PUBLISH takes the input over at once), so that the caller can tell from `r` alone,
/// without looking at the result, whether the frame must be put back.
///
/// CONNECT carries its own version and, once decoded, stores it in `version`; every other
/// packet is decoded for `version`, and without a version only CONNECT is accepted. Never
/// `Ok(None)`.
#[inline]
pub(crate) fn decode_body(
    header: &FixedHeader,
    version: &mut Option<ProtocolVersion>,
    r: &mut Reader,
) -> Decoded {
    let packet_type = header.packet_type;
    if packet_type == PacketType::Connect {
        return connect::decode(r, version);
    }
    let Some(version) = *version else {
        return Err(DecodeError::ExpectedConnect(packet_type));
    };
    match packet_type {
        PacketType::Publish => {
            // The connection decoder reads a PUBLISH before it makes a reader; here the
            // reader gives its frame over, and an error drops it (the caller's input is a
            // copy).
            let start = r.position();
            let frame = core::mem::replace(r, Reader::new(Bytes::new())).into_inner();
            publish::decode_frame(version, header.flags, start, frame, drop)
        }
        PacketType::Subscribe => subscribe::decode_subscribe(version, r),
        PacketType::Connect => Err(DecodeError::UnexpectedPacket {
            packet_type,
            version,
        }),
        PacketType::ConnAck => wrap(connack::decode(version, r), r, Packet::from),
        PacketType::PubAck => wrap(ack::decode(packet_type, version, r), r, Packet::PubAck),
        PacketType::PubRec => wrap(ack::decode(packet_type, version, r), r, Packet::PubRec),
        PacketType::PubRel => wrap(ack::decode(packet_type, version, r), r, Packet::PubRel),
        PacketType::PubComp => wrap(ack::decode(packet_type, version, r), r, Packet::PubComp),
        PacketType::SubAck => wrap(subscribe::decode_suback(version, r), r, Packet::SubAck),
        PacketType::Unsubscribe => wrap(
            subscribe::decode_unsubscribe(version, r),
            r,
            Packet::Unsubscribe,
        ),
        PacketType::UnsubAck => wrap(subscribe::decode_unsuback(version, r), r, Packet::UnsubAck),
        PacketType::PingReq => r.end().map(|()| Some(Packet::PingReq)),
        PacketType::PingResp => r.end().map(|()| Some(Packet::PingResp)),
        PacketType::Disconnect => {
            wrap(simple::decode_disconnect(version, r), r, Packet::Disconnect)
        }
        PacketType::Auth => {
            if !version.is_v5() {
                return Err(DecodeError::InvalidPacketType(PacketType::Auth as u8));
            }
            wrap(simple::decode_auth(r), r, Packet::Auth)
        }
    }
}

/// PINGREQ and PINGRESP: a fixed header with Remaining Length 0.
struct Ping(u8);

impl Body for Ping {
    fn first_byte(&self) -> u8 {
        self.0
    }
    fn measure(&self, _: ProtocolVersion) -> Result<Measure, EncodeError> {
        Ok(Measure::default())
    }
    fn write(&self, _: ProtocolVersion, _: &Measure, _: &mut impl Out) {}
}

/// An [`Ack`] with the packet type it is sent as.
struct AckAs<'a>(PacketType, &'a Ack);

/// Dispatches on a packet to its [`Body`].
macro_rules! with_body {
    ($packet:expr, |$b:ident| $e:expr) => {
        match $packet {
            Packet::Connect(c) => {
                let $b = &**c;
                $e
            }
            Packet::ConnAck(c) => {
                let $b = &**c;
                $e
            }
            Packet::Publish($b) => $e,
            Packet::PubAck(a) => {
                let $b = &AckAs(PacketType::PubAck, a);
                $e
            }
            Packet::PubRec(a) => {
                let $b = &AckAs(PacketType::PubRec, a);
                $e
            }
            Packet::PubRel(a) => {
                let $b = &AckAs(PacketType::PubRel, a);
                $e
            }
            Packet::PubComp(a) => {
                let $b = &AckAs(PacketType::PubComp, a);
                $e
            }
            Packet::Subscribe($b) => $e,
            Packet::SubAck($b) => $e,
            Packet::Unsubscribe($b) => $e,
            Packet::UnsubAck($b) => $e,
            Packet::PingReq => {
                let $b = &Ping((PacketType::PingReq as u8) << 4);
                $e
            }
            Packet::PingResp => {
                let $b = &Ping((PacketType::PingResp as u8) << 4);
                $e
            }
            Packet::Disconnect($b) => $e,
            Packet::Auth($b) => $e,
        }
    };
}

impl Packet {
    /// The exact length of the packet encoded for `version`, fixed header included.
    ///
    /// Fails like [`encode`](Packet::encode) when the packet cannot be encoded.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        with_body!(self, |b| encoded_len_of(b, version))
    }

    /// Encodes the packet for `version` at the end of `dst`.
    ///
    /// The packet is validated first, then `dst` is reserved once for the exact length and
    /// written without intermediate allocation. On error nothing is written. Fields that only
    /// MQTT 5.0 has are an error for 3.x, never dropped: [`EncodeError::V5Only`],
    /// [`EncodeError::ReasonCodeNotAllowed`], [`EncodeError::PacketNotInVersion`].
    pub fn encode(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        with_body!(self, |b| encode_body(b, version, dst))
    }

    /// Decodes one packet from the front of a byte slice, for callers without a `BytesMut`.
    ///
    /// Returns `Ok(None)` when `bytes` does not hold a whole packet yet, or the packet and the
    /// number of bytes it took. Only that one frame is copied (into a [`Bytes`] the packet's
    /// payload and strings are slices of); the rest of `bytes` is not looked at.
    ///
    /// `version` is the version of the connection; a CONNECT is decoded according to its own
    /// protocol level, and AUTH before 5.0 is [`DecodeError::InvalidPacketType`]. Unlike
    /// [`Decoder`](crate::Decoder), no connection state is kept: CONNECT is accepted at any
    /// time. The maximum packet size is checked from the fixed header as in
    /// [`framing`].
    pub fn decode(
        version: ProtocolVersion,
        bytes: &[u8],
        max_packet_size: u32,
    ) -> Result<Option<(Packet, usize)>, DecodeError> {
        if let Some(packet_type) = bytes.first().and_then(|b| PacketType::from_u8(b >> 4)) {
            crate::frame::check_type_in_version(version, packet_type)?;
        }
        let header = match framing(bytes, max_packet_size)? {
            Framing::Incomplete { .. } => return Ok(None),
            Framing::Complete(header) => header,
        };
        let len = header.packet_len();
        let frame = bytes
            .get(usize::from(header.header_len)..len)
            .ok_or(DecodeError::Truncated)?;
        let mut r = Reader::new(Bytes::copy_from_slice(frame));
        match decode_body(&header, &mut Some(version), &mut r)? {
            Some(packet) => Ok(Some((packet, len))),
            None => Err(DecodeError::Truncated), // not returned by `decode_body`
        }
    }
}

/// The encode API of the packet structs, so a packet can be encoded without wrapping it in a
/// [`Packet`].
macro_rules! encode_api {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// The exact length of the packet encoded for `version`, fixed header included.
            pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
                encoded_len_of(self, version)
            }

            /// Encodes the packet for `version` at the end of `dst`: validated first, one
            /// exact reservation, nothing written on error (see [`Packet::encode`]).
            pub fn encode(
                &self,
                version: ProtocolVersion,
                dst: &mut BytesMut,
            ) -> Result<(), EncodeError> {
                encode_body(self, version, dst)
            }
        }
    )*};
}

encode_api!(
    Connect,
    ConnAck,
    Publish,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth
);

impl Ack {
    fn as_packet(&self, packet_type: PacketType) -> Result<AckAs<'_>, EncodeError> {
        match packet_type {
            PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp => {
                Ok(AckAs(packet_type, self))
            }
            _ => Err(EncodeError::InvalidValue(
                "packet type of an Ack (PUBACK, PUBREC, PUBREL or PUBCOMP)",
            )),
        }
    }

    /// The exact length of the acknowledgement encoded as `packet_type` (PUBACK, PUBREC, PUBREL
    /// or PUBCOMP) for `version`, fixed header included.
    pub fn encoded_len(
        &self,
        packet_type: PacketType,
        version: ProtocolVersion,
    ) -> Result<usize, EncodeError> {
        encoded_len_of(&self.as_packet(packet_type)?, version)
    }

    /// Encodes the acknowledgement as `packet_type` (PUBACK, PUBREC, PUBREL or PUBCOMP) for
    /// `version` at the end of `dst`, in its shortest form (see [`Packet::encode`]).
    pub fn encode(
        &self,
        packet_type: PacketType,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        encode_body(&self.as_packet(packet_type)?, version, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets written into the reserved room (`Spare`: CONNECT, SUBSCRIBE, SUBACK) and
    /// through `BytesMut` (PUBLISH) are appended after what the buffer holds, which stays,
    /// whatever room it had: the same bytes as into an empty buffer.
    #[test]
    fn encode_appends_after_the_buffer_contents() {
        use crate::{MqttString, Subscription, SubscriptionOptions};
        use alloc::vec;
        let id = PacketId::new(3).unwrap();
        let packets = [
            Packet::from(Connect {
                protocol: ProtocolVersion::V5,
                clean_start: true,
                keep_alive: 30,
                client_id: MqttString::from_static("c"),
                will: None,
                username: Some(MqttString::from_static("u")),
                password: None,
                properties: Default::default(),
            }),
            Packet::Subscribe(Subscribe {
                packet_id: id,
                properties: Default::default(),
                subscriptions: smallvec::smallvec![
                    Subscription {
                        filter: MqttString::from_static("a/+"),
                        options: SubscriptionOptions::default(),
                    };
                    40
                ],
            }),
            Packet::SubAck(SubAck {
                packet_id: id,
                properties: Default::default(),
                reason_codes: vec![ReasonCode::Success; 300],
            }),
            Packet::Publish(Publish {
                topic: MqttString::from_static("t"),
                payload: Bytes::from_static(b"payload"),
                ..Publish::default()
            }),
        ];
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            // A CONNECT carries its version.
            let encode = |p: &Packet, buf: &mut BytesMut| match p {
                Packet::Connect(c) => Packet::from(Connect {
                    protocol: version,
                    ..(**c).clone()
                })
                .encode(version, buf),
                p => p.encode(version, buf),
            };
            for p in &packets {
                let mut alone = BytesMut::new();
                encode(p, &mut alone).unwrap();
                for room in [0, 5, 4096] {
                    let mut buf = BytesMut::with_capacity(room);
                    buf.extend_from_slice(b"prefix");
                    encode(p, &mut buf).unwrap();
                    assert_eq!(&buf[..6], b"prefix");
                    assert_eq!(&buf[6..], &alone[..], "{version:?} {room}");
                }
            }
        }
    }

    #[test]
    fn total_len_at_the_varint_boundaries() {
        assert_eq!(total_len(0), Ok(2));
        assert_eq!(total_len(127), Ok(129));
        assert_eq!(total_len(128), Ok(131));
        assert_eq!(
            total_len(MAX_REMAINING_LENGTH as usize),
            Ok(MAX_REMAINING_LENGTH as usize + 5)
        );
        assert!(matches!(
            total_len(MAX_REMAINING_LENGTH as usize + 1),
            Err(EncodeError::PacketTooLarge(_))
        ));
    }

    #[test]
    fn connect_version_must_match() {
        let connect = Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_start: true,
            keep_alive: 0,
            client_id: crate::MqttString::new(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        assert!(matches!(
            connect.encoded_len(ProtocolVersion::V5),
            Err(EncodeError::InvalidValue(_))
        ));
        assert_eq!(connect.encoded_len(ProtocolVersion::V3_1_1), Ok(14));
    }

    #[test]
    fn decode_body_without_version_wants_connect() {
        let header = FixedHeader {
            packet_type: PacketType::PingReq,
            flags: 0,
            remaining_length: 0,
            header_len: 2,
        };
        assert_eq!(
            decode_body(&header, &mut None, &mut Reader::new(Bytes::new())),
            Err(DecodeError::ExpectedConnect(PacketType::PingReq))
        );
        assert_eq!(
            decode_body(
                &header,
                &mut Some(ProtocolVersion::V3_1),
                &mut Reader::new(Bytes::new())
            ),
            Ok(Some(Packet::PingReq))
        );
    }
}
