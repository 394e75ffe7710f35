//! Transports: TCP, TLS (rustls), WebSocket and WebSocket over TLS, all as one boxed byte
//! stream for the driver. The WebSocket byte-stream adapter is `tern-ws`'s, shared with the
//! broker.

use std::io;

use tern_ws::WsStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::error::BuildError;

/// The URL scheme: which transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Mqtt,
    Mqtts,
    Ws,
    Wss,
}

/// Where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) scheme: Scheme,
    /// Host name or IP address, without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The WebSocket path, starting with `/`.
    pub(crate) path: String,
}

/// Parses `scheme://[user[:password]@]host[:port][/path]`.
pub(crate) fn parse_url(
    url: &str,
) -> Result<(Endpoint, Option<String>, Option<String>), BuildError> {
    let invalid = |reason| BuildError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let (scheme, rest) = url.split_once("://").ok_or(invalid("missing `://`"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => Scheme::Mqtt,
        "mqtts" | "ssl" | "tls" => Scheme::Mqtts,
        "ws" => Scheme::Ws,
        "wss" => Scheme::Wss,
        other => return Err(BuildError::UnsupportedScheme(other.to_owned())),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let path = match tail.split(['?', '#']).next() {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ => "/mqtt".to_owned(),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (u, p) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let u = percent_decode(u).ok_or(invalid("bad percent-encoding in the user name"))?;
            let p = p
                .map(|p| percent_decode(p).ok_or(invalid("bad percent-encoding in the password")))
                .transpose()?;
            (Some(u), p)
        }
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or(invalid("unclosed `[` in the host"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(invalid("junk after `]`"))?),
        };
        (host, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| invalid("bad port"))?,
        None => match scheme {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        },
    };
    Ok((
        Endpoint {
            scheme,
            host: host.to_owned(),
            port,
            path,
        },
        user,
        password,
    ))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A byte stream the driver can read and write.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The transport of one connection.
pub(crate) type BoxedIo = Box<dyn Io>;

/// Establishes the transport: TCP, then TLS and/or the WebSocket handshake.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> io::Result<BoxedIo> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    tcp.set_nodelay(true)?;
    Ok(match endpoint.scheme {
        Scheme::Mqtt => Box::new(tcp),
        Scheme::Mqtts => Box::new(tls_handshake(endpoint, tls, tcp).await?),
        Scheme::Ws => Box::new(ws_handshake(endpoint, tcp).await?),
        Scheme::Wss => {
            let tls = tls_handshake(endpoint, tls, tcp).await?;
            Box::new(ws_handshake(endpoint, tls).await?)
        }
    })
}

async fn tls_handshake(
    endpoint: &Endpoint,
    tls: Option<&tokio_rustls::TlsConnector>,
    tcp: TcpStream,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector =
        tls.ok_or_else(|| io::Error::other("TLS scheme without a TLS configuration"))?;
    let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    connector.connect(name, tcp).await
}

async fn ws_handshake<S>(endpoint: &Endpoint, stream: S) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let scheme = if endpoint.scheme == Scheme::Wss {
        "wss"
    } else {
        "ws"
    };
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    let url = format!("{scheme}://{host}:{}{}", endpoint.port, endpoint.path);
    let mut request = url
        .into_client_request()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // MQTT over WebSocket uses the subprotocol `mqtt` [MQTT-6.0.0-3].
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(tern_ws::SUBPROTOCOL),
    );
    let (ws, _response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(io::Error::other)?;
    Ok(WsStream::new(ws))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> (Endpoint, Option<String>, Option<String>) {
        parse_url(url).unwrap()
    }

    #[test]
    fn schemes_and_default_ports() {
        assert_eq!(parse("mqtt://broker").0.port, 1883);
        assert_eq!(parse("mqtts://broker").0.port, 8883);
        assert_eq!(parse("ws://broker").0.port, 80);
        let (e, _, _) = parse("wss://broker.example:8443/ws");
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port, e.path.as_str()),
            (Scheme::Wss, "broker.example", 8443, "/ws")
        );
        assert_eq!(parse("ws://b").0.path, "/mqtt");
        assert!(matches!(
            parse_url("http://b"),
            Err(BuildError::UnsupportedScheme(s)) if s == "http"
        ));
    }

    #[test]
    fn credentials_and_ipv6() {
        let (e, u, p) = parse("mqtt://us%40er:p%3Ass@[::1]:1884");
        assert_eq!(e.host, "::1");
        assert_eq!(e.port, 1884);
        assert_eq!(u.as_deref(), Some("us@er"));
        assert_eq!(p.as_deref(), Some("p:ss"));
        assert!(parse_url("mqtt://:1883").is_err());
        assert!(parse_url("mqtt://h:notaport").is_err());
        assert!(parse_url("broker:1883").is_err());
    }
}
