//! Where connections come from: the [`Listener`] trait over any byte stream, and its TCP
//! implementation. The TLS and WebSocket listeners of the configuration run their handshakes
//! in each connection's task (see the `transport` module); a custom `Listener` may hand over
//! any stream it made.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::transport::Transport;

/// A source of client connections.
pub trait Listener: Send + 'static {
    /// The byte stream of one connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection and returns it with the peer's address.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// The address this listener is bound to.
    ///
    /// # Errors
    ///
    /// The socket's address cannot be read.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The transport its connections use, as [`BrokerHandle::clients`](crate::BrokerHandle::clients)
    /// shows it.
    fn transport(&self) -> Transport {
        Transport::Other
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // MQTT packets are small and latency matters more than segment count.
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }

    fn transport(&self) -> Transport {
        Transport::Tcp
    }
}
