//! One raw MQTT connection: a TCP stream, a tern-codec decoder, a reused read buffer and a
//! reused write buffer.

use std::num::NonZeroU16;
use std::time::Duration;

use bytes::BytesMut;
use tern_codec::{
    Ack, Connect, ConnectProperties, Decoder, MAX_PACKET_SIZE, MqttString, Packet, PacketType,
    ProtocolVersion, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read buffer capacity reserved before each read.
const READ_CHUNK: usize = 64 * 1024;

/// A connected, accepted MQTT connection.
pub(crate) struct Wire {
    stream: TcpStream,
    decoder: Decoder,
    /// Bytes read and not decoded yet.
    pub(crate) rbuf: BytesMut,
    /// Packets encoded and not written yet.
    pub(crate) wbuf: BytesMut,
    pub(crate) version: ProtocolVersion,
    /// The broker's Receive Maximum (65,535 when it sets none).
    pub(crate) receive_maximum: u16,
}

/// A bench error: what failed and why.
pub(crate) type Result<T> = std::result::Result<T, String>;

impl Wire {
    /// Opens TCP to `addr`, sends CONNECT and waits for a successful CONNACK, within `timeout`.
    pub(crate) async fn connect(
        addr: &str,
        version: ProtocolVersion,
        client_id: &str,
        keep_alive: u16,
        timeout: Duration,
    ) -> Result<Wire> {
        tokio::time::timeout(
            timeout,
            Self::connect_inner(addr, version, client_id, keep_alive),
        )
        .await
        .map_err(|_| format!("{client_id}: no CONNACK within {timeout:?}"))?
    }

    async fn connect_inner(
        addr: &str,
        version: ProtocolVersion,
        client_id: &str,
        keep_alive: u16,
    ) -> Result<Wire> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{client_id}: connecting to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut wire = Wire {
            stream,
            decoder: Decoder::with_version(version, MAX_PACKET_SIZE),
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            version,
            receive_maximum: u16::MAX,
        };
        let connect = Connect {
            protocol: version,
            clean_start: true,
            keep_alive,
            client_id: MqttString::try_from(client_id.to_owned()).map_err(|e| e.to_string())?,
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        };
        connect
            .encode(version, &mut wire.wbuf)
            .map_err(|e| e.to_string())?;
        wire.flush().await?;
        match wire.next_packet().await? {
            Some(Packet::ConnAck(ack)) if ack.reason_code == ReasonCode::Success => {
                if let Some(max) = ack.properties.receive_maximum {
                    wire.receive_maximum = max.get();
                }
                Ok(wire)
            }
            Some(Packet::ConnAck(ack)) => Err(format!(
                "{client_id}: connection refused: {}",
                ack.reason_code
            )),
            Some(other) => Err(format!(
                "{client_id}: {:?} before CONNACK",
                other.packet_type()
            )),
            None => Err(format!("{client_id}: closed before CONNACK")),
        }
    }

    /// Writes the write buffer out (one `write_all`) and empties it.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream
                .write_all(&self.wbuf)
                .await
                .map_err(|e| format!("write: {e}"))?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads more bytes into the read buffer; `Ok(false)` at end of stream. Cancel-safe.
    pub(crate) async fn fill(&mut self) -> Result<bool> {
        self.rbuf.reserve(READ_CHUNK);
        let n = self
            .stream
            .read_buf(&mut self.rbuf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(n > 0)
    }

    /// The next whole packet already read, if any.
    pub(crate) fn decoded(&mut self) -> Result<Option<Packet>> {
        self.decoder
            .decode(&mut self.rbuf)
            .map_err(|e| format!("decode: {e}"))
    }

    /// The next packet, reading as needed; `None` at end of stream.
    pub(crate) async fn next_packet(&mut self) -> Result<Option<Packet>> {
        loop {
            if let Some(packet) = self.decoded()? {
                return Ok(Some(packet));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Appends an acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) to the write buffer.
    pub(crate) fn push_ack(&mut self, kind: PacketType, packet_id: NonZeroU16) {
        let ack = Ack {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: Default::default(),
        };
        // An Ack with Success and no properties always encodes.
        let _ = ack.encode(kind, self.version, &mut self.wbuf);
    }

    /// Appends PINGREQ.
    pub(crate) fn push_ping(&mut self) {
        let _ = Packet::PingReq.encode(self.version, &mut self.wbuf);
    }

    /// Appends DISCONNECT.
    pub(crate) fn push_disconnect(&mut self) {
        let _ = Packet::Disconnect(Default::default()).encode(self.version, &mut self.wbuf);
    }

    /// Subscribes to `filters` (at most `per_packet` per SUBSCRIBE, `window` SUBSCRIBEs
    /// unacknowledged at once) and waits for every SUBACK; a refused filter is an error.
    pub(crate) async fn subscribe(
        &mut self,
        filters: impl Iterator<Item = String>,
        qos: QoS,
        per_packet: usize,
        window: usize,
    ) -> Result<()> {
        let mut filters = filters.peekable();
        let mut next_id: u16 = 1;
        let mut outstanding = 0usize;
        loop {
            while outstanding < window && filters.peek().is_some() {
                let subscriptions = filters
                    .by_ref()
                    .take(per_packet.max(1))
                    .map(|f| {
                        Ok(Subscription {
                            filter: MqttString::try_from(f).map_err(|e| e.to_string())?,
                            options: SubscriptionOptions {
                                qos,
                                ..SubscriptionOptions::default()
                            },
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let packet_id = NonZeroU16::new(next_id).unwrap_or(NonZeroU16::MIN);
                next_id = next_id.checked_add(1).unwrap_or(1);
                Subscribe {
                    packet_id,
                    properties: Default::default(),
                    subscriptions: subscriptions.into(),
                }
                .encode(self.version, &mut self.wbuf)
                .map_err(|e| e.to_string())?;
                outstanding += 1;
            }
            self.flush().await?;
            if outstanding == 0 {
                return Ok(());
            }
            match self.next_packet().await? {
                Some(Packet::SubAck(ack)) => {
                    if let Some(code) = ack.reason_codes.iter().find(|c| c.as_u8() >= 0x80) {
                        return Err(format!("subscription refused: {code}"));
                    }
                    outstanding -= 1;
                }
                Some(_) => {}
                None => return Err("closed while subscribing".into()),
            }
        }
    }
}
