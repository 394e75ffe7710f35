//! Framing: the fixed header and incremental decoding from a byte buffer.

use bytes::BytesMut;

use crate::{
    error::DecodeError,
    packet::{Packet, PacketType},
    version::ProtocolVersion,
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
pub fn framing(buf: &[u8], max_packet_size: u32) -> Result<Framing, DecodeError> {
    let _ = (buf, max_packet_size);
    todo!("tern-codec: framing")
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
        Decoder { version: None, max_packet_size, needed: 0 }
    }

    /// A decoder for a connection whose version is known.
    pub fn with_version(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Decoder { version: Some(version), max_packet_size, needed: 0 }
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
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let _ = buf;
        todo!("tern-codec: decode")
    }
}
