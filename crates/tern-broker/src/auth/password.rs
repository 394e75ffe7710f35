//! Password files in mosquitto's format: one `username:hash` per line.
//!
//! Read: `$7$<iterations>$<base64 salt>$<base64 hash>` (PBKDF2 with HMAC-SHA512, 64-byte
//! hash; mosquitto 2's default), `$6$<base64 salt>$<base64 SHA-512(password || salt)>`
//! (mosquitto 1.x) and `$argon2id$...` PHC strings (written by `ternd passwd`). Written:
//! argon2id. Lines starting with `#` and blank lines are skipped. Every comparison of a
//! derived hash is constant-time.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::AuthFileError;

/// The most PBKDF2 iterations accepted from a `$7$` line (a line asking more is refused as
/// malformed rather than let one CONNECT cost minutes).
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// A stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHashKind {
    /// `$6$`: SHA-512 of the password then the salt.
    Sha512 {
        /// The salt.
        salt: Vec<u8>,
        /// The 64-byte digest.
        hash: Vec<u8>,
    },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        /// Iterations.
        iterations: u32,
        /// The salt.
        salt: Vec<u8>,
        /// The derived key (64 bytes in mosquitto's files).
        hash: Vec<u8>,
    },
    /// A PHC string `$argon2id$v=19$m=...,t=...,p=...$salt$hash` (also argon2i / argon2d).
    Argon2(String),
}

impl fmt::Debug for PasswordHashKind {
    // The hash is not secret like the password, but it has no place in logs either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PasswordHashKind::Sha512 { .. } => "$6$…",
            PasswordHashKind::Pbkdf2Sha512 { .. } => "$7$…",
            PasswordHashKind::Argon2(_) => "$argon2…",
        })
    }
}

impl PasswordHashKind {
    /// Parses the hash part of a line. `None` when it is in none of the known formats.
    pub fn parse(text: &str) -> Option<PasswordHashKind> {
        let b64 = |s: &str| STANDARD.decode(s).ok();
        if let Some(rest) = text.strip_prefix("$6$") {
            let (salt, hash) = rest.split_once('$')?;
            let hash = b64(hash)?;
            if hash.len() != 64 {
                return None;
            }
            return Some(PasswordHashKind::Sha512 {
                salt: b64(salt)?,
                hash,
            });
        }
        if let Some(rest) = text.strip_prefix("$7$") {
            let mut parts = rest.split('$');
            let iterations: u32 = parts.next()?.parse().ok()?;
            let salt = b64(parts.next()?)?;
            let hash = b64(parts.next()?)?;
            if parts.next().is_some()
                || iterations == 0
                || iterations > MAX_PBKDF2_ITERATIONS
                || hash.is_empty()
                || hash.len() > 64
            {
                return None;
            }
            return Some(PasswordHashKind::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            });
        }
        if text.starts_with("$argon2") {
            PasswordHash::new(text).ok()?.hash?;
            return Some(PasswordHashKind::Argon2(text.to_owned()));
        }
        None
    }

    /// A new argon2id hash of `password` with a random salt (argon2's default parameters).
    pub fn argon2id(password: &[u8]) -> PasswordHashKind {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
        let hash = Argon2::default()
            .hash_password(password, &salt)
            .expect("argon2 default parameters hash any password");
        PasswordHashKind::Argon2(hash.to_string())
    }

    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHashKind::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                bool::from(digest.finalize().as_slice().ct_eq(hash))
            }
            PasswordHashKind::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut derived = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut derived);
                bool::from(derived.ct_eq(hash))
            }
            // argon2's verifier compares in constant time.
            PasswordHashKind::Argon2(text) => PasswordHash::new(text)
                .is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok()),
        }
    }

    /// The text written after `username:`.
    pub fn to_line(&self) -> String {
        match self {
            PasswordHashKind::Sha512 { salt, hash } => {
                format!("$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
            PasswordHashKind::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => format!(
                "$7${iterations}${}${}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            ),
            PasswordHashKind::Argon2(text) => text.clone(),
        }
    }
}

/// A password file, read in full. Usernames are unique (a later line replaces an earlier one,
/// as mosquitto reads it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PasswordFile {
    /// In file order, for writing back.
    entries: Vec<(String, PasswordHashKind)>,
    index: HashMap<String, usize>,
}

impl PasswordFile {
    /// Parses the text of a password file.
    ///
    /// # Errors
    ///
    /// [`AuthFileError::Syntax`] naming the first bad line (never its content: it holds a hash).
    pub fn parse(text: &str) -> Result<PasswordFile, AuthFileError> {
        let mut file = PasswordFile::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| AuthFileError::syntax(number + 1, reason);
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| bad("expected username:hash"))?;
            if user.is_empty() {
                return Err(bad("empty username"));
            }
            let hash = PasswordHashKind::parse(hash.trim())
                .ok_or_else(|| bad("the hash is not $6$, $7$ or $argon2id$ (run `ternd passwd -U` on a plain-text file)"))?;
            file.set(user, hash);
        }
        Ok(file)
    }

    /// Reads and parses a password file.
    ///
    /// # Errors
    ///
    /// [`AuthFileError::Io`] or [`AuthFileError::Syntax`], naming the file.
    pub fn read(path: &Path) -> Result<PasswordFile, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthFileError::io(path, e))?;
        PasswordFile::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Whether `username` exists and `password` is its password. An unknown user costs a
    /// hash computation of the same kind (against the file's first entry, its result
    /// ignored), so that timing does not tell which usernames exist.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.index.get(username) {
            Some(&i) => self.entries[i].1.verify(password),
            None => {
                let decoy = self.entries.first().map_or(&*DUMMY, |(_, hash)| hash);
                let _ = std::hint::black_box(decoy.verify(password));
                false
            }
        }
    }

    /// Adds or replaces a user.
    pub fn set(&mut self, username: &str, hash: PasswordHashKind) {
        match self.index.get(username) {
            Some(&i) => self.entries[i].1 = hash,
            None => {
                self.index.insert(username.to_owned(), self.entries.len());
                self.entries.push((username.to_owned(), hash));
            }
        }
    }

    /// Removes a user; returns whether it existed.
    pub fn remove(&mut self, username: &str) -> bool {
        let Some(i) = self.index.remove(username) else {
            return false;
        };
        self.entries.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        true
    }

    /// Whether the file has this user.
    pub fn contains(&self, username: &str) -> bool {
        self.index.contains_key(username)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no user.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file's text, one `username:hash` line per user.
    pub fn to_text(&self) -> String {
        self.entries
            .iter()
            .map(|(user, hash)| format!("{user}:{}\n", hash.to_line()))
            .collect()
    }
}

/// Verified against for an unknown user when the file is empty (a `$7$` hash of nothing in
/// particular, with mosquitto's default iterations).
static DUMMY: std::sync::LazyLock<PasswordHashKind> =
    std::sync::LazyLock::new(|| PasswordHashKind::Pbkdf2Sha512 {
        iterations: 101,
        salt: vec![0; 12],
        hash: vec![0; 64],
    });

/// Upgrades a plain-text password file (`username:password` lines, as `mosquitto_passwd -U`
/// takes them) to argon2id hashes. Lines whose value already parses as a hash are kept.
///
/// # Errors
///
/// [`AuthFileError::Syntax`] for a line without `:`.
pub fn upgrade_plaintext(text: &str) -> Result<PasswordFile, AuthFileError> {
    let mut file = PasswordFile::default();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, value) = line
            .split_once(':')
            .ok_or_else(|| AuthFileError::syntax(number + 1, "expected username:password"))?;
        let hash = PasswordHashKind::parse(value)
            .unwrap_or_else(|| PasswordHashKind::argon2id(value.as_bytes()));
        file.set(user, hash);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha512_line_verifies() {
        // $6$: base64(salt) $ base64(SHA-512(password || salt)), built here from the definition.
        let salt = b"0123456789ab";
        let mut digest = Sha512::new();
        digest.update(b"secret");
        digest.update(salt);
        let line = format!(
            "$6${}${}",
            STANDARD.encode(salt),
            STANDARD.encode(digest.finalize())
        );
        let hash = PasswordHashKind::parse(&line).unwrap();
        assert!(hash.verify(b"secret"));
        assert!(!hash.verify(b"secreT"));
        assert_eq!(hash.to_line(), line);
    }

    #[test]
    fn pbkdf2_line_verifies() {
        let salt = b"saltsaltsalt";
        let mut derived = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(b"pw", salt, 101, &mut derived);
        let line = format!(
            "$7$101${}${}",
            STANDARD.encode(salt),
            STANDARD.encode(derived)
        );
        let hash = PasswordHashKind::parse(&line).unwrap();
        assert!(hash.verify(b"pw"));
        assert!(!hash.verify(b"pW"));
        assert_eq!(hash.to_line(), line);
    }

    #[test]
    fn argon2id_round_trip() {
        let hash = PasswordHashKind::argon2id(b"hunter2");
        let line = hash.to_line();
        assert!(line.starts_with("$argon2id$"), "{line}");
        let parsed = PasswordHashKind::parse(&line).unwrap();
        assert!(parsed.verify(b"hunter2"));
        assert!(!parsed.verify(b"hunter3"));
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for text in [
            "alice",
            ":$6$abc$def",
            "alice:plain",
            "alice:$7$x$abc$def",
            "alice:$7$0$AAAA$AAAA",
            "alice:$7$99999999999$AAAA$AAAA",
            "alice:$6$AAAA$AAAA",
            "alice:$6$!!$!!",
            "alice:$argon2id$nonsense",
        ] {
            let err = PasswordFile::parse(text).unwrap_err();
            assert!(
                matches!(err, AuthFileError::Syntax { line: 1, .. }),
                "{text}: {err}"
            );
            assert!(!err.to_string().contains("alice"), "{err}");
        }
    }

    #[test]
    fn file_edits_keep_order() {
        let mut file = PasswordFile::parse("# users\n\nbob:$7$101$AAAA$AAAA\n").unwrap();
        file.set("alice", PasswordHashKind::argon2id(b"a"));
        file.set("carol", PasswordHashKind::argon2id(b"c"));
        assert!(file.remove("alice"));
        assert!(!file.remove("alice"));
        let text = file.to_text();
        let users: Vec<_> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(users, ["bob", "carol"]);
        let again = PasswordFile::parse(&text).unwrap();
        assert!(again.verify("carol", b"c"));
        assert!(!again.verify("carol", b"a"));
        assert!(!again.verify("nobody", b"c"));
    }

    #[test]
    fn plaintext_upgrade() {
        let file = upgrade_plaintext("alice:wonder\nbob:builder\n").unwrap();
        assert!(file.verify("alice", b"wonder"));
        assert!(file.verify("bob", b"builder"));
        assert!(!file.to_text().contains("wonder"));
    }
}
