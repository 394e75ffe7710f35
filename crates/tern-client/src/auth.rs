//! The MQTT 5.0 enhanced authentication hook (section 4.12).

use bytes::Bytes;
use tern_codec::Auth;

/// The client's side of an enhanced authentication method (SCRAM, Kerberos, a token
/// exchange, …), set with [`ClientBuilder::authentication`](crate::ClientBuilder).
///
/// The driver calls [`initial_data`](AuthHandler::initial_data) for the Authentication Data
/// of each CONNECT (and of a re-authentication), then [`step`](AuthHandler::step) for each
/// AUTH packet the broker sends with Continue authentication (0x18), answering with the
/// data it returns [MQTT-4.12.0-3]. The Authentication Method of CONNECT is added to every
/// AUTH the client sends [MQTT-4.12.0-5]. An error ends the connection, and the client stops
/// rather than retry (the reason is [`DisconnectReason::Auth`](crate::DisconnectReason)).
pub trait AuthHandler: Send {
    /// The Authentication Data of CONNECT (or of AUTH Re-authenticate); `None` sends none.
    fn initial_data(&mut self) -> Option<Bytes>;

    /// The broker sent AUTH: return the Authentication Data to answer with.
    ///
    /// # Errors
    /// A message that ends the connection: the broker's challenge is not acceptable.
    fn step(&mut self, auth: &Auth) -> Result<Option<Bytes>, String>;

    /// The broker accepted the authentication (CONNACK Success, or AUTH Success after a
    /// re-authentication), with its final data if any. Default: nothing to check.
    ///
    /// # Errors
    /// A message that ends the connection (e.g. the server's proof does not verify).
    fn success(&mut self, data: Option<&Bytes>) -> Result<(), String> {
        let _ = data;
        Ok(())
    }
}
