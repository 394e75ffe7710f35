//! Authentication and authorisation: who may connect, and what a client may publish and
//! read.
//!
//! Three hooks, installed on [`Broker`](crate::Broker):
//!
//! - an [`Authenticator`] decides on each CONNECT from its username and password
//!   ([`Broker::with_authenticator`](crate::Broker::with_authenticator));
//! - an [`Authorizer`] decides on each PUBLISH, SUBSCRIBE, Will and delivery
//!   ([`Broker::with_authorizer`](crate::Broker::with_authorizer));
//! - [`AuthMethod`]s run MQTT 5.0 enhanced authentication (AUTH packets, section 4.12)
//!   ([`Broker::with_auth_method`](crate::Broker::with_auth_method)); [`ScramSha256`] is the
//!   built-in one.
//!
//! [`FileAuth`] is the implementation of the first two that the `[auth]` configuration
//! table sets up: a mosquitto password file ([`PasswordFile`]) and a mosquitto ACL file
//! ([`AclFile`]), reloaded together by [`BrokerHandle::reload_auth`](crate::BrokerHandle)
//! (`ternd` does it on SIGHUP).
//!
//! What the client is told:
//!
//! | refusal | MQTT 5.0 | MQTT 3.1.1 |
//! | --- | --- | --- |
//! | anonymous client, anonymous not allowed | CONNACK 0x87 | return code 5 |
//! | unknown user or wrong password | CONNACK 0x86 | return code 4 |
//! | enhanced authentication failed | CONNACK 0x87 | - |
//! | unknown authentication method | CONNACK 0x8C | - |
//! | no password check slot within the connect timeout | CONNACK 0x89 | return code 3 |
//! | SUBSCRIBE filter not readable | SUBACK 0x87 | SUBACK 0x80 |
//! | PUBLISH topic not writable | PUBACK/PUBREC 0x87 (QoS 0: dropped) | acknowledged as usual, dropped [MQTT-3.3.5-2] |
//!
//! A Will whose topic the client may not write is not published (checked when it is due,
//! against the ACL in force then); the CONNECT that carried it is accepted, as mosquitto
//! does.
//!
//! A client that passed enhanced authentication is authenticated: the anonymous rule and the
//! [`Authenticator`] do not apply to it, and the username its method established is the one
//! the [`Authorizer`] sees. A client identified by its certificate (`use_identity_as_username`)
//! needs no password either. The broker's own messages ([`BrokerHandle::publish`](crate::BrokerHandle::publish),
//! `$SYS`) are not checked for write; their deliveries are checked for read like any other.
//!
//! A refused client is logged at `info` with its client identifier, username and address,
//! never its password.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use serde::Deserialize;
use tern_codec::ProtocolVersion;

pub mod acl;
pub mod password;
pub mod scram;

pub use acl::AclFile;
pub use password::{PasswordFile, PasswordHashKind};
pub use scram::{ScramClient, ScramError, ScramSha256};

/// The `[auth]` table of the configuration. See [the keys](crate::config#authentication).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// A mosquitto password file; with one, a client with a username must give its password.
    pub password_file: Option<PathBuf>,
    /// A mosquitto ACL file; with one, whatever it does not grant is denied.
    pub acl_file: Option<PathBuf>,
    /// Whether clients without a username may connect (per listener:
    /// [`ListenerConfig::allow_anonymous`](crate::config::ListenerConfig)). Default: true,
    /// false when a password file is configured.
    pub allow_anonymous: Option<bool>,
    /// Password checks (of the [`Authenticator`]) run at once, each on a blocking thread: an
    /// argon2id check takes tens of milliseconds and 19 MiB. A CONNECT beyond it waits, at
    /// most `limits.connect_timeout`, then gets CONNACK 0x89 Server busy (3.1.1: return
    /// code 3). At least 1.
    pub max_concurrent_checks: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            password_file: None,
            acl_file: None,
            allow_anonymous: None,
            max_concurrent_checks: 4,
        }
    }
}

impl AuthConfig {
    /// Whether anonymous clients are allowed where the listener does not say.
    pub fn anonymous_default(&self) -> bool {
        self.allow_anonymous.unwrap_or(self.password_file.is_none())
    }

    /// Loads the configured files (`None` when there is none).
    ///
    /// # Errors
    ///
    /// [`AuthFileError`] naming the file and line.
    pub fn load(&self) -> Result<Option<FileAuth>, AuthFileError> {
        if self.password_file.is_none() && self.acl_file.is_none() {
            return Ok(None);
        }
        FileAuth::load(self.password_file.as_deref(), self.acl_file.as_deref()).map(Some)
    }
}

/// A CONNECT as the authentication hooks see it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ConnectInfo<'a> {
    /// The client identifier (as sent; empty when the broker assigns one).
    pub client_id: &'a str,
    /// The username: CONNECT's, or the client certificate's subject CN on a listener with
    /// `use_identity_as_username`.
    pub username: Option<&'a str>,
    /// The password of CONNECT.
    pub password: Option<&'a [u8]>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address of the listener that accepted it.
    pub listener: Option<SocketAddr>,
    /// The protocol version.
    pub protocol: ProtocolVersion,
    /// The subject CN of a verified client certificate.
    pub tls_identity: Option<&'a str>,
}

impl fmt::Display for ConnectInfo<'_> {
    /// For the logs: never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client_id={} username={} peer={}",
            self.client_id,
            self.username.unwrap_or("-"),
            self.peer
        )
    }
}

#[cfg(test)]
impl ConnectInfo<'static> {
    pub(crate) fn test(client_id: &'static str) -> Self {
        ConnectInfo {
            client_id,
            username: None,
            password: None,
            peer: "127.0.0.1:1".parse().expect("valid"),
            listener: None,
            protocol: ProtocolVersion::V5,
            tls_identity: None,
        }
    }
}

/// An [`Authenticator`]'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// The client may connect.
    Allow,
    /// The username or password is not accepted: CONNACK 0x86 (3.1.1: return code 4).
    BadCredentials,
    /// The client may not connect: CONNACK 0x87 (3.1.1: return code 5).
    NotAuthorized,
}

/// Decides on each CONNECT (after the broker's anonymous rule; not called for a client that
/// passed enhanced authentication).
pub trait Authenticator: Send + Sync + fmt::Debug {
    /// Whether this client may connect.
    fn authenticate(&self, client: &ConnectInfo<'_>) -> Decision;
}

/// Who a connected client is, for the [`Authorizer`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Identity {
    /// Its client identifier (the assigned one, if the broker assigned it).
    pub client_id: String,
    /// Its authenticated username, if any.
    pub username: Option<String>,
}

impl Identity {
    /// An identity.
    pub fn new(client_id: impl Into<String>, username: Option<String>) -> Self {
        Identity {
            client_id: client_id.into(),
            username,
        }
    }
}

/// What a client asks to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Access {
    /// Receive a message published on this topic name.
    Read,
    /// Publish on this topic name (a PUBLISH or the Will).
    Write,
    /// Subscribe to this topic filter (of a shared subscription: the filter after the share
    /// name). Deliveries are checked with [`Access::Read`] too.
    Subscribe,
}

/// Decides on each PUBLISH, SUBSCRIBE, Will (when it is published) and delivery.
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// Whether `client` may do `access` on `topic`.
    fn allows(&self, client: &Identity, access: Access, topic: &str) -> bool;
}

/// One step of an enhanced authentication exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthStep {
    /// Send AUTH 0x18 Continue authentication with this Authentication Data and wait for the
    /// client's answer.
    Continue(Bytes),
    /// Authenticated: CONNACK 0x00 (or AUTH 0x00 after a re-authentication) with this
    /// Authentication Data. `username` is the identity the authorisation uses (in place of
    /// CONNECT's username).
    Success {
        /// The authenticated username.
        username: Option<String>,
        /// The final Authentication Data, if any.
        data: Option<Bytes>,
    },
    /// Refused: CONNACK 0x87 Not authorized [MQTT-4.12.0-4] (after a re-authentication:
    /// DISCONNECT 0x87).
    Failure,
}

/// An MQTT 5.0 enhanced authentication method (section 4.12), chosen by the Authentication
/// Method of CONNECT.
pub trait AuthMethod: Send + Sync + fmt::Debug {
    /// The Authentication Method name, e.g. `SCRAM-SHA-256`.
    fn name(&self) -> &str;

    /// A new exchange for this CONNECT (or re-authentication); its first
    /// [`step`](AuthExchange::step) gets CONNECT's Authentication Data.
    fn start(&self, client: &ConnectInfo<'_>) -> Box<dyn AuthExchange>;
}

/// One enhanced authentication exchange in progress.
pub trait AuthExchange: Send {
    /// The client sent this Authentication Data (CONNECT's, then each AUTH's).
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep;
}

/// A password or ACL file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFileError {
    /// It cannot be read (or written).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{}line {line}: {reason}", file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Syntax {
        /// The file, once known.
        file: Option<String>,
        /// 1-based line.
        line: usize,
        /// What is wrong (never the line's text: it may hold a hash or a password).
        reason: String,
    },
}

impl AuthFileError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        AuthFileError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn syntax(line: usize, reason: &str) -> Self {
        AuthFileError::Syntax {
            file: None,
            line,
            reason: reason.to_owned(),
        }
    }

    pub(crate) fn in_file(self, path: &Path) -> Self {
        match self {
            AuthFileError::Syntax { line, reason, .. } => AuthFileError::Syntax {
                file: Some(path.display().to_string()),
                line,
                reason,
            },
            other => other,
        }
    }
}

#[derive(Debug, Default)]
struct Loaded {
    passwords: Option<PasswordFile>,
    acl: Option<AclFile>,
}

/// A password file and an ACL file (either optional), reloadable as one: the
/// [`Authenticator`] and [`Authorizer`] of the `[auth]` configuration.
#[derive(Debug)]
pub struct FileAuth {
    password_file: Option<PathBuf>,
    acl_file: Option<PathBuf>,
    current: RwLock<Arc<Loaded>>,
}

impl FileAuth {
    /// Reads the files.
    ///
    /// # Errors
    ///
    /// [`AuthFileError`] naming the file (and line) that cannot be used.
    pub fn load(
        password_file: Option<&Path>,
        acl_file: Option<&Path>,
    ) -> Result<Self, AuthFileError> {
        let auth = FileAuth {
            password_file: password_file.map(Path::to_path_buf),
            acl_file: acl_file.map(Path::to_path_buf),
            current: RwLock::new(Arc::default()),
        };
        auth.reload()?;
        Ok(auth)
    }

    /// Reads both files again and, only if both are valid, uses them from now on: a bad file
    /// leaves the ones in use in place. Connected clients stay connected; their next
    /// PUBLISH, SUBSCRIBE and delivery are checked against the new ACL.
    ///
    /// # Errors
    ///
    /// [`AuthFileError`] naming the file (and line) that cannot be used.
    pub fn reload(&self) -> Result<(), AuthFileError> {
        let passwords = self
            .password_file
            .as_deref()
            .map(PasswordFile::read)
            .transpose()?;
        let acl = self.acl_file.as_deref().map(AclFile::read).transpose()?;
        *self.current.write() = Arc::new(Loaded { passwords, acl });
        Ok(())
    }

    /// Number of users in the password file and whether an ACL is in force, for the logs.
    pub fn summary(&self) -> (usize, bool) {
        let current = self.current.read();
        (
            current.passwords.as_ref().map_or(0, PasswordFile::len),
            current.acl.is_some(),
        )
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current.read().clone()
    }
}

impl Authenticator for FileAuth {
    fn authenticate(&self, client: &ConnectInfo<'_>) -> Decision {
        let loaded = self.loaded();
        match (&loaded.passwords, client.username) {
            (Some(file), Some(user)) => {
                if file.verify(user, client.password.unwrap_or_default()) {
                    Decision::Allow
                } else {
                    Decision::BadCredentials
                }
            }
            // Anonymous clients got past the broker's allow_anonymous rule.
            _ => Decision::Allow,
        }
    }
}

impl Authorizer for FileAuth {
    fn allows(&self, client: &Identity, access: Access, topic: &str) -> bool {
        self.loaded()
            .acl
            .as_ref()
            .is_none_or(|acl| acl.allows(client, access, topic))
    }
}

/// What the broker installed: shared by every connection.
#[derive(Debug)]
pub(crate) struct AuthState {
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    pub(crate) authorizer: Option<Arc<dyn Authorizer>>,
    pub(crate) methods: Vec<Arc<dyn AuthMethod>>,
    /// The `[auth]` files, for [`BrokerHandle::reload_auth`](crate::BrokerHandle).
    pub(crate) files: Option<Arc<FileAuth>>,
    /// Whether anonymous clients may connect where the listener does not say.
    pub(crate) allow_anonymous: bool,
    /// Bounds the password checks running at once (`auth.max_concurrent_checks`).
    pub(crate) checks: Arc<tokio::sync::Semaphore>,
}

impl AuthState {
    /// Whether `client` may do `access` on `topic` (true without an authorizer).
    pub(crate) fn allows(&self, client: Option<&Identity>, access: Access, topic: &str) -> bool {
        match (&self.authorizer, client) {
            (Some(authorizer), Some(client)) => authorizer.allows(client, access, topic),
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    /// The read check of each delivery of a message on `topic`.
    pub(crate) fn readable<'a>(
        &'a self,
        topic: &'a str,
    ) -> impl Fn(&crate::router::Subscription) -> bool + 'a {
        move |subscription| {
            self.authorizer.is_none()
                || self.allows(
                    subscription.session.identity().as_deref(),
                    Access::Read,
                    topic,
                )
        }
    }

    /// The enhanced authentication method called `name`.
    pub(crate) fn method(&self, name: &str) -> Option<&Arc<dyn AuthMethod>> {
        self.methods.iter().find(|m| m.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("passwd");
        let acl = dir.path().join("acl");
        let mut file = PasswordFile::default();
        file.set("alice", PasswordHashKind::argon2id(b"a"));
        std::fs::write(&pw, file.to_text()).unwrap();
        std::fs::write(&acl, "user alice\ntopic a/#\n").unwrap();
        let auth = FileAuth::load(Some(&pw), Some(&acl)).unwrap();
        let mut info = ConnectInfo::test("c");
        info.username = Some("alice");
        info.password = Some(b"a");
        assert_eq!(auth.authenticate(&info), Decision::Allow);
        let alice = Identity::new("c", Some("alice".into()));
        assert!(auth.allows(&alice, Access::Write, "a/b"));

        // A good password file with a bad ACL: nothing changes.
        file.set("bob", PasswordHashKind::argon2id(b"b"));
        std::fs::write(&pw, file.to_text()).unwrap();
        std::fs::write(&acl, "user alice\nbroken\n").unwrap();
        let err = auth.reload().unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        info.username = Some("bob");
        info.password = Some(b"b");
        assert_eq!(auth.authenticate(&info), Decision::BadCredentials);
        assert!(auth.allows(&alice, Access::Write, "a/b"));

        // Both good: both apply.
        std::fs::write(&acl, "user alice\ntopic b/#\n").unwrap();
        auth.reload().unwrap();
        assert_eq!(auth.authenticate(&info), Decision::Allow);
        assert!(!auth.allows(&alice, Access::Write, "a/b"));
        assert!(auth.allows(&alice, Access::Write, "b/c"));
        assert_eq!(auth.summary(), (2, true));
    }

    proptest::proptest! {
        // Bad input never panics: any text as a password or ACL file, any bytes as SCRAM
        // messages.
        #[test]
        fn parsers_never_panic(text in "(?s).{0,200}", topic in "[a-z/+#$%cu]{0,20}") {
            let _ = PasswordFile::parse(&text);
            let _ = password::upgrade_plaintext(&text).map(|f| f.len());
            if let Ok(acl) = AclFile::parse(&text) {
                let client = Identity::new("c", Some("u".into()));
                for access in [Access::Read, Access::Write, Access::Subscribe] {
                    let _ = acl.allows(&client, access, &topic);
                }
            }
        }

        #[test]
        fn scram_never_panics(first in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                              last in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut method = ScramSha256::new();
            method.add_credentials("u", scram::ScramCredentials::derive(b"p", b"salt", 1));
            let mut exchange = method.start(&ConnectInfo::test("c"));
            let _ = exchange.step(Some(&first));
            let _ = exchange.step(Some(&last));
            let _ = exchange.step(None);
            let mut client = ScramClient::new("u", "p");
            let _ = client.client_final(&first);
            let _ = client.verify_server_final(&last);
        }
    }

    #[test]
    fn anonymous_default_follows_the_password_file() {
        let mut config = AuthConfig::default();
        assert!(config.anonymous_default());
        config.password_file = Some("p".into());
        assert!(!config.anonymous_default());
        config.allow_anonymous = Some(true);
        assert!(config.anonymous_default());
    }
}
