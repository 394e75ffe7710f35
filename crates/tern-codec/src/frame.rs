//! Framing: the fixed header and incremental decoding from a byte buffer.

use bytes::{Buf, BytesMut};

use crate::{
    codec,
    error::DecodeError,
    packet::{Ack, AckKind, Packet, PacketId, PacketType},
    reason::ReasonCode,
    version::ProtocolVersion,
    wire::{self, Reader, VarInt},
};

/// The largest Remaining Length the Variable Byte Integer can carry (268,435,455).
pub const MAX_REMAINING_LENGTH: u32 = 268_435_455;

/// The largest packet MQTT can carry: the Remaining Length maximum plus a five-byte fixed
/// header. Use it as `max_packet_size` for "no limit".
pub const MAX_PACKET_SIZE: u32 = MAX_REMAINING_LENGTH + 5;

/// The fixed header of a control packet (section 2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedHeader {
    /// The packet type.
    pub packet_type: PacketType,
    /// The four flag bits.
    pub flags: u8,
    /// The Remaining Length: the bytes after the fixed header.
    pub remaining_length: u32,
    /// The fixed header's own length, 2 to 5 bytes.
    pub header_len: u8,
}

impl FixedHeader {
    /// The packet's total length, fixed header included.
    pub const fn packet_len(&self) -> usize {
        self.header_len as usize + self.remaining_length as usize
    }
}

/// What the start of a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Not a whole packet yet: at least `needed` more bytes must arrive. Exact once the fixed
    /// header is complete; a lower bound (1) while it is not.
    Incomplete {
        /// Bytes still missing.
        needed: usize,
    },
    /// A whole packet with this header is in the buffer.
    Complete(FixedHeader),
}

/// Reads the fixed header at the start of `buf` and says whether a whole packet is there.
///
/// The maximum packet size is enforced here, from the header alone, before any of the body is
/// buffered or parsed: a packet announced larger than `max_packet_size` is
/// [`DecodeError::PacketTooLarge`] even when only its first bytes have arrived.
///
/// The checks that need only the first byte come first, so a bad packet is refused as soon as
/// its first byte arrives: packet type 0 ([`DecodeError::InvalidPacketType`]), reserved flag
/// bits ([`DecodeError::InvalidHeaderFlags`], [MQTT-2.1.3-1]), QoS 3 in a PUBLISH
/// ([`DecodeError::InvalidQoS`], [MQTT-3.3.1-4]) and DUP on a QoS 0 PUBLISH
/// ([`DecodeError::DupOnQoS0`], [MQTT-3.3.1-2]). The Remaining Length must be a well-formed
/// Variable Byte Integer ([`DecodeError::MalformedVarInt`], [MQTT-1.5.5-1]). Whether the
/// packet type fits the protocol version (AUTH before 5.0) is for the caller to check.
pub fn framing(buf: &[u8], max_packet_size: u32) -> Result<Framing, DecodeError> {
    framing_with(buf, max_packet_size, |_| Ok(()))
}

/// [`framing`], with `check_type` applied to the packet type as soon as the first byte is
/// read (before its flags are checked), so the connection's [`Decoder`] reads the first byte
/// once.
#[inline]
fn framing_with(
    buf: &[u8],
    max_packet_size: u32,
    check_type: impl FnOnce(PacketType) -> Result<(), DecodeError>,
) -> Result<Framing, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(Framing::Incomplete { needed: 1 });
    };
    let Some(packet_type) = PacketType::from_u8(first >> 4) else {
        return Err(DecodeError::InvalidPacketType(first >> 4));
    };
    check_type(packet_type)?;
    let flags = check_flags(packet_type, first & 0x0F)?;
    match wire::read_var_int(rest)? {
        VarInt::Incomplete => Ok(Framing::Incomplete { needed: 1 }),
        VarInt::Complete(remaining_length, len) => {
            // `len` is 1 to 4, so the header is 2 to 5 bytes.
            let header_len = 1 + len as u8;
            let header = FixedHeader {
                packet_type,
                flags,
                remaining_length,
                header_len,
            };
            let size = u64::from(remaining_length) + u64::from(header_len);
            if size > u64::from(max_packet_size) {
                return Err(DecodeError::PacketTooLarge {
                    size,
                    max: max_packet_size,
                });
            }
            let packet_len = header.packet_len();
            if buf.len() < packet_len {
                Ok(Framing::Incomplete {
                    needed: packet_len - buf.len(),
                })
            } else {
                Ok(Framing::Complete(header))
            }
        }
    }
}

/// The fixed-header flags of PUBREL, SUBSCRIBE and UNSUBSCRIBE (2.1.3).
const FLAGS_0010: u8 = 0b0010;

/// Checks the flags of a fixed header's first byte for its packet type (2.1.3).
#[inline]
fn check_flags(packet_type: PacketType, flags: u8) -> Result<u8, DecodeError> {
    match packet_type {
        PacketType::Publish => {
            if (flags >> 1) & 0b11 == 3 {
                return Err(DecodeError::InvalidQoS);
            }
            if flags & 0b1110 == 0b1000 {
                return Err(DecodeError::DupOnQoS0);
            }
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            if flags != FLAGS_0010 {
                return Err(DecodeError::InvalidHeaderFlags { packet_type, flags });
            }
        }
        _ => {
            if flags != 0 {
                return Err(DecodeError::InvalidHeaderFlags { packet_type, flags });
            }
        }
    }
    Ok(flags)
}

/// An incremental packet decoder for one direction of one connection.
///
/// A server-side decoder starts without a version: the first packet must be CONNECT
/// [MQTT-3.1.0-1], and its protocol level sets the version for the rest of the connection.
/// A client-side decoder is made [`with_version`](Decoder::with_version).
#[derive(Clone, Debug)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
    needed: usize,
}

impl Decoder {
    /// A decoder that expects CONNECT first and takes its version from it.
    pub fn new(max_packet_size: u32) -> Self {
        Decoder {
            version: None,
            max_packet_size,
            needed: 0,
        }
    }

    /// A decoder for a connection whose version is known.
    pub fn with_version(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Decoder {
            version: Some(version),
            max_packet_size,
            needed: 0,
        }
    }

    /// The version in force, once known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Sets the version (a client learns nothing new from CONNACK, but a proxy may).
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = Some(version);
    }

    /// The maximum packet size enforced on input.
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Changes the maximum packet size enforced on input.
    pub fn set_max_packet_size(&mut self, max_packet_size: u32) {
        self.max_packet_size = max_packet_size;
    }

    /// After `decode` returned `Ok(None)`: how many more bytes the next packet needs
    /// (a lower bound while its fixed header is incomplete).
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// Decodes the next packet from the front of `buf`, splitting its bytes off.
    ///
    /// `Ok(None)` means more bytes are needed (see [`needed`](Decoder::needed)); the buffer is
    /// then reserved for the rest of the packet. Payloads and binary fields of the packet are
    /// zero-copy slices of `buf`'s storage. After an error the connection must be closed: the
    /// buffer is left as it was.
    ///
    /// A decoder without a version accepts only CONNECT ([`DecodeError::ExpectedConnect`],
    /// [MQTT-3.1.0-1]) and takes the version from it; with a version, CONNECT is
    /// [`DecodeError::UnexpectedPacket`] [MQTT-3.1.0-2] and AUTH before 5.0 is
    /// [`DecodeError::InvalidPacketType`]. Both are detected from the first byte.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let version = self.version;
        let header = match framing_with(buf, self.max_packet_size, |t| check_type(version, t))? {
            Framing::Incomplete { needed } => {
                self.needed = needed;
                buf.reserve(needed);
                return Ok(None);
            }
            Framing::Complete(header) => header,
        };
        self.needed = 0;
        // The reader owns the frame (one reference-count update for the split) and reads the
        // body from after the fixed header; a PUBLISH payload takes the frame over.
        let frame = buf.split_to(header.packet_len()).freeze();
        if header.packet_type == PacketType::Publish {
            // The most frequent packet, read from its frame in place (the framing refused a
            // PUBLISH before CONNECT, so the version is known).
            if let Some(version) = self.version {
                return codec::decode_publish_frame(
                    version,
                    header.flags,
                    usize::from(header.header_len),
                    frame,
                    |frame| restore(buf, frame),
                );
            }
        }
        let r = Reader::starting_at(frame, usize::from(header.header_len));
        // `decode_body` builds the packet right in this function's return slot because its
        // call is the tail expression; binding the result to a local and looking at it (even
        // `is_err()`) costs a move of the 232-byte `Packet`. Whether the frame must be put
        // back is read from the reader instead, which every successful decode empties, by a
        // guard that runs after the result is written; CONNECT sets the version itself.
        let mut guard = PutBackOnError { buf, r };
        codec::decode_body(&header, &mut self.version, &mut guard.r)
    }

    /// Decodes the next packet if it is a PUBACK, PUBREC, PUBREL or PUBCOMP in a short form
    /// (packet identifier, and in 5.0 perhaps a reason code, no properties), the most
    /// frequent packets of a QoS 1/2 flow: read from `buf` in place and taken off it, without
    /// splitting a frame off the shared buffer (a reference-count update and its undo, for
    /// bytes the packet does not keep), and returned as its kind and body rather than a
    /// [`Packet`], which is four times the size. Returns `None`, with `buf` untouched, for
    /// anything else, errors and partial packets included: then [`decode`](Decoder::decode)
    /// reads it, and both decode every input the same way. A connection's read loop calls
    /// this first.
    #[inline]
    pub fn decode_ack(&mut self, buf: &mut BytesMut) -> Option<(AckKind, Ack)> {
        let version = self.version?;
        let (first, len) = match **buf {
            [first, len, ..] if (4..=7).contains(&(first >> 4)) && (2..=3).contains(&len) => {
                (first, usize::from(len))
            }
            _ => return None,
        };
        let kind = AckKind::of(PacketType::from_u8(first >> 4)?)?;
        let flags = if kind == AckKind::PubRel { 0b0010 } else { 0 };
        if first & 0x0F != flags || 2 + len > self.max_packet_size as usize {
            return None;
        }
        let (id, reason) = match *buf.get(2..2 + len)? {
            [hi, lo] => (u16::from_be_bytes([hi, lo]), None),
            [hi, lo, code] if version.is_v5() => (u16::from_be_bytes([hi, lo]), Some(code)),
            _ => return None,
        };
        let mut ack = Ack::new(PacketId::new(id)?);
        if let Some(code) = reason {
            ack.reason_code = ReasonCode::from_u8(code)
                .filter(|reason| reason.is_allowed_in(kind.packet_type()))?;
        }
        self.needed = 0;
        buf.advance(2 + len);
        Some((kind, ack))
    }

    /// Whether a packet of this type may come next.
    #[cfg(test)]
    fn check_type(&self, packet_type: u8) -> Result<(), DecodeError> {
        let Some(packet_type) = PacketType::from_u8(packet_type) else {
            return Err(DecodeError::InvalidPacketType(packet_type));
        };
        check_type(self.version, packet_type)
    }
}

/// Puts the frame back into the buffer when dropped, unless the decode succeeded (see
/// [`Reader::into_inner`]).
struct PutBackOnError<'a> {
    buf: &'a mut BytesMut,
    r: Reader,
}

impl Drop for PutBackOnError<'_> {
    #[inline]
    fn drop(&mut self) {
        let frame = core::mem::replace(&mut self.r, Reader::new(bytes::Bytes::new())).into_inner();
        if !frame.is_empty() {
            restore(self.buf, frame);
        }
    }
}

/// Puts a frame that failed to decode back at the front of `buf`, so the buffer is as it was.
/// The reader still holds all of it, as no decoder gives the frame away before its last
/// check. Errors end the connection, so the copy is of no concern.
#[cold]
fn restore(buf: &mut BytesMut, frame: bytes::Bytes) {
    let mut restored = BytesMut::with_capacity(frame.len() + buf.len());
    restored.extend_from_slice(&frame);
    restored.extend_from_slice(buf);
    *buf = restored;
}

/// Whether a packet of this type may come next on a connection whose version is `version`
/// (`None` before CONNECT).
#[inline]
fn check_type(
    version: Option<ProtocolVersion>,
    packet_type: PacketType,
) -> Result<(), DecodeError> {
    match (version, packet_type) {
        (None, PacketType::Connect) => Ok(()),
        (None, other) => Err(DecodeError::ExpectedConnect(other)),
        (Some(version), PacketType::Connect) => Err(DecodeError::UnexpectedPacket {
            packet_type,
            version,
        }),
        (Some(version), other) => check_type_in_version(version, other),
    }
}

/// Refuses a packet type that `version` does not have: 15 is reserved before MQTT 5.0 and AUTH
/// after it [MQTT-2.1.2]. Both the connection [`Decoder`] and `Packet::decode` apply it from
/// the first byte.
pub(crate) fn check_type_in_version(
    version: ProtocolVersion,
    packet_type: PacketType,
) -> Result<(), DecodeError> {
    if packet_type == PacketType::Auth && !version.is_v5() {
        return Err(DecodeError::InvalidPacketType(PacketType::Auth as u8));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `decode_ack` then `decode` (as a read loop calls them) decodes every 2- and 3-byte
    /// acknowledgement body exactly as the general decoder does (`Packet::decode` always takes the general path):
    /// the same packet, or the same error with the buffer left as it was. Zero identifiers
    /// [MQTT-2.2.1-3], reason codes not allowed in the packet (5.0 section 3.4.2.1) and 3.x
    /// reason codes (trailing bytes) included.
    #[test]
    fn short_acks_decode_as_the_general_decoder_does() {
        let mut in_place = 0;
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for (packet_type, first) in [(4u8, 0x40u8), (5, 0x50), (6, 0x62), (7, 0x70)] {
                let mut bodies: alloc::vec::Vec<alloc::vec::Vec<u8>> = alloc::vec::Vec::new();
                for id in [0u16, 1, 0x00FF, 0x0100, 0xFFFF] {
                    bodies.push(id.to_be_bytes().to_vec());
                    for code in 0..=255u8 {
                        let mut b = id.to_be_bytes().to_vec();
                        b.push(code);
                        bodies.push(b);
                    }
                }
                for body in bodies {
                    let mut bytes = alloc::vec![first, body.len() as u8];
                    bytes.extend_from_slice(&body);
                    let general = Packet::decode(version, &bytes, MAX_PACKET_SIZE)
                        .map(|p| p.map(|(packet, _)| packet));
                    let mut decoder = Decoder::new(MAX_PACKET_SIZE);
                    decoder.version = Some(version);
                    let mut buf = BytesMut::from(&bytes[..]);
                    let got = match decoder.decode_ack(&mut buf) {
                        Some((kind, ack)) => {
                            in_place += 1;
                            Ok(Some(kind.packet(ack)))
                        }
                        None => {
                            assert_eq!(&buf[..], &bytes[..], "decode_ack left the buffer");
                            decoder.decode(&mut buf)
                        }
                    };
                    assert_eq!(got, general, "type {packet_type}, {version:?}, {body:?}");
                    let left = if got.is_ok() { &[][..] } else { &bytes[..] };
                    assert_eq!(&buf[..], left, "buffer after {body:?}");
                }
            }
        }
        // Four ids of five are not zero; 3.1.1 takes only the 2-byte form, 5.0 also the
        // reason codes each packet allows.
        assert!(in_place > 4 * 4 * 2, "{in_place} decoded in place");
    }

    #[test]
    fn first_byte_checks_need_only_one_byte() {
        // [MQTT-2.1.3-1]: fixed-header flags, refused before the Remaining Length arrives.
        assert_eq!(
            framing(&[0x61], MAX_PACKET_SIZE),
            Err(DecodeError::InvalidHeaderFlags {
                packet_type: PacketType::PubRel,
                flags: 1
            })
        );
        assert_eq!(
            framing(&[0x82], MAX_PACKET_SIZE),
            Ok(Framing::Incomplete { needed: 1 })
        );
        assert_eq!(
            framing(&[0xA2], MAX_PACKET_SIZE),
            Ok(Framing::Incomplete { needed: 1 })
        );
        // [MQTT-3.3.1-4], [MQTT-3.3.1-2]
        assert_eq!(
            framing(&[0x37], MAX_PACKET_SIZE),
            Err(DecodeError::InvalidQoS)
        );
        assert_eq!(
            framing(&[0x39], MAX_PACKET_SIZE),
            Err(DecodeError::DupOnQoS0)
        );
        assert_eq!(
            framing(&[0x3B], MAX_PACKET_SIZE),
            Ok(Framing::Incomplete { needed: 1 })
        );
        // [MQTT-2.1.2]: type 0.
        assert_eq!(
            framing(&[0x00], MAX_PACKET_SIZE),
            Err(DecodeError::InvalidPacketType(0))
        );
        // AUTH is left to the caller, which knows the version.
        assert!(matches!(
            framing(&[0xF0, 0x00], MAX_PACKET_SIZE),
            Ok(Framing::Complete(_))
        ));
    }

    #[test]
    fn header_lengths() {
        let header = |bytes: &[u8]| match framing(bytes, MAX_PACKET_SIZE) {
            Ok(Framing::Incomplete { needed }) => (0, needed),
            Ok(Framing::Complete(h)) => (h.header_len, h.packet_len()),
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(header(&[0xD0, 0x00]), (2, 2));
        assert_eq!(header(&[0x30, 0x7F]), (0, 127));
        assert_eq!(header(&[0x30, 0xFF, 0x7F]), (0, 16_383));
        assert_eq!(header(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]), (0, 268_435_455));
    }

    #[test]
    fn size_limit_counts_the_fixed_header() {
        // [MQTT-3.1.2-24]: the whole packet, header included, against the limit.
        assert_eq!(
            framing(&[0xC0, 0x00], 2),
            Ok(Framing::Complete(FixedHeader {
                packet_type: PacketType::PingReq,
                flags: 0,
                remaining_length: 0,
                header_len: 2,
            }))
        );
        assert_eq!(
            framing(&[0x40, 0x02], 3),
            Err(DecodeError::PacketTooLarge { size: 4, max: 3 })
        );
    }

    #[test]
    fn decoder_state_machine() {
        // [MQTT-3.1.0-1], [MQTT-3.1.0-2]
        let server = Decoder::new(MAX_PACKET_SIZE);
        assert_eq!(server.check_type(1), Ok(()));
        assert_eq!(
            server.check_type(15),
            Err(DecodeError::ExpectedConnect(PacketType::Auth))
        );
        let v3 = Decoder::with_version(ProtocolVersion::V3_1_1, MAX_PACKET_SIZE);
        assert_eq!(v3.check_type(15), Err(DecodeError::InvalidPacketType(15)));
        assert_eq!(v3.check_type(14), Ok(()));
        let v5 = Decoder::with_version(ProtocolVersion::V5, MAX_PACKET_SIZE);
        assert_eq!(v5.check_type(15), Ok(()));
        assert_eq!(
            v5.check_type(1),
            Err(DecodeError::UnexpectedPacket {
                packet_type: PacketType::Connect,
                version: ProtocolVersion::V5
            })
        );
    }
}
