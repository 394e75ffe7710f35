//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as an MQTT 5.0 enhanced authentication method
//! (section 4.12), built on RustCrypto's `hmac`, `sha2` and `pbkdf2`.
//!
//! The exchange over MQTT: CONNECT carries Authentication Method `SCRAM-SHA-256` and the
//! client-first message as Authentication Data; the broker answers AUTH 0x18 with the
//! server-first message; the client answers AUTH 0x18 with the client-final message (its
//! proof); the broker accepts with CONNACK 0x00 carrying the server-final message (`v=`, the
//! server's signature, for the client to verify), or refuses with CONNACK 0x87 Not authorized
//! [MQTT-4.12.0-4]. Channel binding is not offered (`n,,`).
//!
//! The broker stores no password: per user a salt, the iteration count, StoredKey and
//! ServerKey. [`ScramClient`] is the client's half, for tests and for applications that
//! plug it into their client's enhanced-authentication hook.
//!
//! ```
//! use std::sync::Arc;
//! use tern_broker::auth::{ScramClient, ScramSha256};
//! use tern_broker::{Broker, Config};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::with_listeners(["127.0.0.1:0".parse()?]);
//! let scram = ScramSha256::new().with_user("alice", "pencil");
//! let broker = Broker::new(config).with_auth_method(Arc::new(scram)).start().await?;
//!
//! // A client sends `client.client_first()` in CONNECT (Authentication Method
//! // "SCRAM-SHA-256"), answers the broker's AUTH with `client.client_final(..)` and checks
//! // CONNACK's Authentication Data with `client.verify_server_final(..)`.
//! let client = ScramClient::new("alice", "pencil");
//! assert!(client.client_first().starts_with(b"n,,n=alice,r="));
//! assert!(broker.shutdown().await);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthExchange, AuthMethod, AuthStep, ConnectInfo};

/// The Authentication Method name.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// The iteration count of credentials made by [`ScramSha256::add_user`] (RFC 7677's minimum).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The longest SCRAM message accepted (a client-first or client-final message is far
/// shorter; longer data is refused before it is parsed).
const MAX_MESSAGE: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    out
}

fn nonce() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

/// What the broker keeps of one user's password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// Derives the credentials of `password` with this salt and iteration count (at least 1).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let iterations = iterations.max(1);
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

/// The server's side of SCRAM-SHA-256: an [`AuthMethod`] for
/// [`Broker::with_auth_method`](crate::Broker::with_auth_method).
#[derive(Clone, Debug, Default)]
pub struct ScramSha256 {
    /// Shared by every exchange started from it.
    users: Arc<HashMap<String, ScramCredentials>>,
}

impl ScramSha256 {
    /// A method without users (every exchange fails until some are added).
    pub fn new() -> Self {
        ScramSha256::default()
    }

    /// Adds (or replaces) a user with a random salt and [`DEFAULT_ITERATIONS`].
    pub fn add_user(&mut self, username: &str, password: &str) {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        self.add_credentials(
            username,
            ScramCredentials::derive(password.as_bytes(), &salt, DEFAULT_ITERATIONS),
        );
    }

    /// Adds (or replaces) a user with credentials derived elsewhere.
    pub fn add_credentials(&mut self, username: &str, credentials: ScramCredentials) {
        Arc::make_mut(&mut self.users).insert(username.to_owned(), credentials);
    }

    /// [`add_user`](Self::add_user), by value.
    pub fn with_user(mut self, username: &str, password: &str) -> Self {
        self.add_user(username, password);
        self
    }
}

impl AuthMethod for ScramSha256 {
    fn name(&self) -> &str {
        SCRAM_SHA_256
    }

    fn start(&self, _info: &ConnectInfo<'_>) -> Box<dyn AuthExchange> {
        Box::new(ServerExchange {
            users: self.users.clone(),
            state: ServerState::Start,
            nonce: nonce(),
        })
    }
}

enum ServerState {
    Start,
    /// The server-first message was sent.
    Challenged {
        username: String,
        credentials: Option<ScramCredentials>,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// One SCRAM exchange on the server.
struct ServerExchange {
    users: Arc<HashMap<String, ScramCredentials>>,
    state: ServerState,
    nonce: String,
}

impl ServerExchange {
    fn first(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(data).ok()?;
        // gs2-header: no channel binding, no authzid.
        let bare = text.strip_prefix("n,,")?;
        let mut fields = bare.split(',');
        let username = decode_saslname(fields.next()?.strip_prefix("n=")?)?;
        let client_nonce = fields.next()?.strip_prefix("r=")?;
        if client_nonce.is_empty()
            || !client_nonce
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b',')
        {
            return None;
        }
        let credentials = self.users.get(&username).cloned();
        // An unknown user gets a plausible challenge and fails at the proof.
        let (salt, iterations) = credentials.as_ref().map_or_else(
            || {
                let digest = Sha256::digest(username.as_bytes());
                (digest[..16].to_vec(), DEFAULT_ITERATIONS)
            },
            |c| (c.salt.clone(), c.iterations),
        );
        let nonce = format!("{client_nonce}{}", self.nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(&salt));
        let answer = server_first.clone().into_bytes();
        self.state = ServerState::Challenged {
            username,
            credentials,
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
        };
        Some(answer)
    }
}

impl AuthExchange for ServerExchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        let data = data.unwrap_or_default();
        if data.len() > MAX_MESSAGE {
            self.state = ServerState::Done;
            return AuthStep::Failure;
        }
        match std::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::Start => match self.first(data) {
                Some(challenge) => AuthStep::Continue(Bytes::from(challenge)),
                None => AuthStep::Failure,
            },
            ServerState::Challenged {
                username,
                credentials,
                client_first_bare,
                server_first,
                nonce,
            } => {
                let Some(credentials) = credentials else {
                    return AuthStep::Failure;
                };
                match verify_client_final(
                    &credentials,
                    &client_first_bare,
                    &server_first,
                    &nonce,
                    data,
                ) {
                    Some(server_final) => AuthStep::Success {
                        username: Some(username),
                        data: Some(Bytes::from(server_final)),
                    },
                    None => AuthStep::Failure,
                }
            }
            ServerState::Done => AuthStep::Failure,
        }
    }
}

/// Checks the client-final message; returns the server-final message.
fn verify_client_final(
    credentials: &ScramCredentials,
    client_first_bare: &str,
    server_first: &str,
    nonce: &str,
    data: &[u8],
) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data).ok()?;
    let (without_proof, proof) = text.rsplit_once(",p=")?;
    let mut fields = without_proof.split(',');
    // "biws" is base64("n,,"): the gs2-header of client-first, without channel binding.
    if fields.next()? != "c=biws" || fields.next()?.strip_prefix("r=")? != nonce {
        return None;
    }
    let proof = STANDARD.decode(proof).ok()?;
    if proof.len() != 32 {
        return None;
    }
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(&credentials.stored_key, auth_message.as_bytes());
    let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
    let stored: [u8; 32] = Sha256::digest(&client_key).into();
    if !bool::from(stored.ct_eq(&credentials.stored_key)) {
        return None;
    }
    let server_signature = hmac(&credentials.server_key, auth_message.as_bytes());
    Some(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
}

/// `=2C` is `,` and `=3D` is `=` in a saslname; any other `=` is malformed.
fn decode_saslname(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3)? {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Why the client's half of SCRAM gave up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// The server's message is not what SCRAM allows at this point.
    #[error("malformed SCRAM message from the server")]
    Malformed,
    /// The server's nonce does not extend the client's.
    #[error("the server's nonce does not start with the client's")]
    Nonce,
    /// The server's signature does not verify: it does not know the password.
    #[error("the server's signature does not verify")]
    ServerSignature,
    /// The server reported an error (`e=...`).
    #[error("the server refused: {0}")]
    Server(String),
}

/// The client's half of SCRAM-SHA-256: the client-first message, the client-final message
/// for the server's challenge, and the check of the server's signature.
#[derive(Clone)]
pub struct ScramClient {
    username: String,
    password: String,
    nonce: String,
    client_first_bare: String,
    server_signature: Option<[u8; 32]>,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A client for this user, with a random nonce.
    pub fn new(username: &str, password: &str) -> Self {
        Self::with_nonce(username, password, &nonce())
    }

    /// A client with a given nonce (printable ASCII without `,`), for test vectors.
    pub fn with_nonce(username: &str, password: &str, nonce: &str) -> Self {
        ScramClient {
            username: username.to_owned(),
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            client_first_bare: format!("n={},r={nonce}", encode_saslname(username)),
            server_signature: None,
        }
    }

    /// The client-first message (CONNECT's Authentication Data).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message answering the server-first message.
    ///
    /// # Errors
    ///
    /// [`ScramError`] if the challenge is malformed or its nonce is not the client's.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed)?;
        let mut fields = text.split(',');
        let mut field = |prefix: &str| {
            fields
                .next()
                .and_then(|f| f.strip_prefix(prefix))
                .ok_or(ScramError::Malformed)
        };
        let nonce = field("r=")?;
        let salt = STANDARD
            .decode(field("s=")?)
            .map_err(|_| ScramError::Malformed)?;
        let iterations: u32 = field("i=")?.parse().map_err(|_| ScramError::Malformed)?;
        if iterations == 0 || iterations > super::password::MAX_PBKDF2_ITERATIONS {
            return Err(ScramError::Malformed);
        }
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let salted = salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.server_signature = Some(hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server-final message (CONNACK's Authentication Data).
    ///
    /// # Errors
    ///
    /// [`ScramError`] if it is malformed, an error, or a signature that does not verify.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed)?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(ScramError::Server(error.to_owned()));
        }
        let signature = text
            .strip_prefix("v=")
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or(ScramError::Malformed)?;
        let expected = self.server_signature.ok_or(ScramError::Malformed)?;
        if bool::from(expected.as_slice().ct_eq(&signature)) {
            Ok(())
        } else {
            Err(ScramError::ServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3: user "user", password "pencil".
    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    #[test]
    fn rfc7677_client() {
        let mut client = ScramClient::with_nonce("user", "pencil", CLIENT_NONCE);
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let last = client.client_final(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(last).unwrap(), CLIENT_FINAL);
        client.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
        assert_eq!(
            client.verify_server_final(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::ServerSignature)
        );
    }

    #[test]
    fn rfc7677_server() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credentials = ScramCredentials::derive(b"pencil", &salt, 4096);
        let mut exchange = ServerExchange {
            users: Arc::new(HashMap::from([("user".to_owned(), credentials)])),
            state: ServerState::Start,
            nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_owned(),
        };
        let AuthStep::Continue(first) = exchange.step(Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
        else {
            panic!("no challenge")
        };
        assert_eq!(&first[..], SERVER_FIRST.as_bytes());
        match exchange.step(Some(CLIENT_FINAL.as_bytes())) {
            AuthStep::Success { username, data } => {
                assert_eq!(username.as_deref(), Some("user"));
                assert_eq!(data.as_deref(), Some(SERVER_FINAL.as_bytes()));
            }
            _ => panic!("refused"),
        }
    }

    #[test]
    fn wrong_password_and_garbage_fail() {
        let method = ScramSha256::new().with_user("alice", "right");
        let info = ConnectInfo::test("c");
        let mut client = ScramClient::new("alice", "wrong");
        let mut exchange = method.start(&info);
        let AuthStep::Continue(first) = exchange.step(Some(&client.client_first())) else {
            panic!("no challenge")
        };
        let last = client.client_final(&first).unwrap();
        assert!(matches!(exchange.step(Some(&last)), AuthStep::Failure));

        // The right password, through the public halves.
        let mut client = ScramClient::new("alice", "right");
        let mut exchange = method.start(&info);
        let AuthStep::Continue(first) = exchange.step(Some(&client.client_first())) else {
            panic!("no challenge")
        };
        let last = client.client_final(&first).unwrap();
        let AuthStep::Success { data, .. } = exchange.step(Some(&last)) else {
            panic!("refused")
        };
        client.verify_server_final(&data.unwrap()).unwrap();

        for garbage in [
            &b""[..],
            b"n,,",
            b"y,,n=alice,r=abc",
            b"n,,n=al=ice,r=abc",
            b"n,,n=alice",
            b"n,,n=alice,r=",
            &[0xff, 0xfe],
        ] {
            let mut exchange = method.start(&info);
            assert!(
                matches!(exchange.step(Some(garbage)), AuthStep::Failure),
                "{garbage:?}"
            );
        }
        // Unknown user: challenged, then refused.
        let mut client = ScramClient::new("mallory", "x");
        let mut exchange = method.start(&info);
        let AuthStep::Continue(first) = exchange.step(Some(&client.client_first())) else {
            panic!("no challenge")
        };
        let last = client.client_final(&first).unwrap();
        assert!(matches!(exchange.step(Some(&last)), AuthStep::Failure));
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(decode_saslname("a=2"), None);
    }
}
