//! MQTT over WebSocket as a tokio byte stream: [`WsStream`] turns a
//! [`tokio_tungstenite::WebSocketStream`] into an [`AsyncRead`] + [`AsyncWrite`], so that the
//! same MQTT connection code runs over TCP, TLS, WebSocket and WebSocket over TLS.
//!
//! MQTT over WebSocket (MQTT 5.0 section 6, 3.1.1 section 6) carries the MQTT byte stream in
//! binary data frames: a packet may span frames and a frame may hold several packets
//! [MQTT-6.0.0-2], so frame boundaries mean nothing to the reader. Any other data frame
//! closes the connection [MQTT-6.0.0-1]. Pings are answered by tungstenite itself.
//!
//! `tern-client` and `tern-broker` share this one adapter.
//!
//! # Writing
//!
//! Each `poll_write` becomes one binary message, queued in tungstenite's write buffer: call
//! `flush` (as any buffered writer needs) to put it on the wire. `poll_write` waits while
//! tungstenite's buffer is over its size, so a peer that does not read holds the writer back.
//!
//! # Example
//!
//! ```no_run
//! use tern_ws::WsStream;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn run(tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! let ws = tokio_tungstenite::accept_async(tcp).await?;
//! let mut stream = WsStream::new(ws);
//! let mut fixed_header = [0u8; 2];
//! stream.read_exact(&mut fixed_header).await?; // may come from any number of frames
//! stream.write_all(&[0x20, 0x02, 0x00, 0x00]).await?; // one binary frame
//! stream.flush().await?;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The WebSocket subprotocol of MQTT [MQTT-6.0.0-3], [MQTT-6.0.0-4].
pub const SUBPROTOCOL: &str = "mqtt";

/// A WebSocket carrying MQTT in binary frames, seen as a byte stream.
#[derive(Debug)]
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    pending: Bytes,
}

impl<S> WsStream<S> {
    /// Wraps an established WebSocket (after the opening handshake).
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsStream {
            ws,
            pending: Bytes::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// The underlying stream (e.g. to look at a TLS session).
    pub fn get_ref(&self) -> &S {
        self.ws.get_ref()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                // [MQTT-6.0.0-2]: the bytes of a frame, wherever packets begin and end.
                Some(Ok(Message::Binary(data))) => self.pending = data,
                // Pings are answered by tungstenite (the pong goes with the next read, write
                // or flush); pongs and raw frames carry no MQTT bytes.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    // [MQTT-6.0.0-1]: a data frame that is not binary closes the connection.
                    // The close frame is queued here and sent by the next flush or shutdown.
                    let close = CloseFrame {
                        code: CloseCode::Unsupported,
                        reason: "MQTT needs binary frames".into(),
                    };
                    let _ = Pin::new(&mut self.ws).start_send(Message::Close(Some(close)));
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "MQTT over WebSocket received a text frame [MQTT-6.0.0-1]",
                    )));
                }
                // The peer's close (tungstenite queues the answer) or the end of the stream.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io::Error::other)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    /// Sends a close frame (unless one was sent already) and flushes it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A server-side adapter and a raw client WebSocket over an in-memory pipe.
    async fn pair() -> (
        WsStream<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (WsStream::new(server), client)
    }

    #[tokio::test]
    async fn bytes_ignore_frame_boundaries() {
        // [MQTT-6.0.0-2]: one packet over three frames, then two packets in one frame.
        let (mut server, mut client) = pair().await;
        for part in [&[0x30u8][..], &[0x03, 0x00], &[0x01, b'a']] {
            client
                .send(Message::Binary(Bytes::copy_from_slice(part)))
                .await
                .unwrap();
        }
        client
            .send(Message::Ping(Bytes::from_static(b"p")))
            .await
            .unwrap();
        client
            .send(Message::Binary(Bytes::from_static(&[
                0xc0, 0x00, 0xc0, 0x00,
            ])))
            .await
            .unwrap();
        let mut got = [0u8; 9];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x30, 0x03, 0x00, 0x01, b'a', 0xc0, 0x00, 0xc0, 0x00]);

        // Writes are binary frames; the pong to the ping went out first.
        server.write_all(&[0xd0, 0x00]).await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Pong(Bytes::from_static(b"p"))
        );
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Binary(Bytes::from_static(&[0xd0, 0x00]))
        );
    }

    #[tokio::test]
    async fn text_frame_is_an_error_and_closes() {
        // [MQTT-6.0.0-1]
        let (mut server, mut client) = pair().await;
        client.send(Message::text("hello")).await.unwrap();
        let err = server.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        server.shutdown().await.unwrap();
        match client.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Unsupported),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn close_frame_is_end_of_stream() {
        let (mut server, mut client) = pair().await;
        client.close(None).await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
        server.shutdown().await.unwrap();
        // The client sees the close answered and the stream end.
        assert!(matches!(
            client.next().await,
            Some(Ok(Message::Close(_))) | None
        ));
    }
}
