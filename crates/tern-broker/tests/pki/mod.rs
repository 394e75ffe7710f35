//! Test certificates made with rcgen at run time (nothing from elsewhere): a CA, a server
//! certificate for `localhost` and 127.0.0.1, client certificates signed by the CA (with and
//! without a subject CN), and a second CA with a client certificate of its own, all written as
//! PEM files into a temporary directory for the broker's configuration.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as PEM text and files.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Everything the TLS tests need, in a temporary directory removed on drop.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA that signs the server and the accepted clients.
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub server: Identity,
    /// CN `tern-client`, signed by the CA.
    pub client: Identity,
    /// Signed by the CA, but without a subject CN.
    pub client_without_cn: Identity,
    /// CN `intruder`, signed by another CA.
    pub stranger: Identity,
    /// The other CA.
    pub other_ca_file: PathBuf,
}

/// The common name of [`Pki::client`].
pub const CLIENT_CN: &str = "tern-client";

fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert, Issuer::new(params, key))
}

fn leaf(
    dir: &std::path::Path,
    file: &str,
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    cn: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
) -> Identity {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    let identity = Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_file: dir.join(format!("{file}.pem")),
        key_file: dir.join(format!("{file}.key")),
    };
    std::fs::write(&identity.cert_file, &identity.cert_pem).unwrap();
    std::fs::write(&identity.key_file, &identity.key_pem).unwrap();
    identity
}

impl Pki {
    /// A fresh PKI in a new temporary directory.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, issuer) = ca("Tern test CA");
        let (other_cert, other_issuer) = ca("Another CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let other_ca_file = dir.path().join("other-ca.pem");
        std::fs::write(&other_ca_file, other_cert.pem()).unwrap();
        let p = dir.path();
        Pki {
            ca_pem: ca_cert.pem(),
            ca_file,
            server: leaf(
                p,
                "server",
                &issuer,
                &["localhost", "127.0.0.1"],
                Some("localhost"),
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            client: leaf(
                p,
                "client",
                &issuer,
                &[],
                Some(CLIENT_CN),
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
            client_without_cn: leaf(
                p,
                "client-no-cn",
                &issuer,
                &["device.example"],
                None,
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
            stranger: leaf(
                p,
                "stranger",
                &other_issuer,
                &[],
                Some("intruder"),
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
            other_ca_file,
            dir,
        }
    }

    /// A path in the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[listener.tls]` lines with the server's certificate and key, and `extra` lines.
    pub fn tls_table(&self, extra: &str) -> String {
        format!(
            "[listener.tls]\ncertfile = {:?}\nkeyfile = {:?}\n{extra}",
            self.server.cert_file, self.server.key_file
        )
    }

    /// `tls_table` with client certificates required (CA file) and `extra` lines.
    pub fn mtls_table(&self, extra: &str) -> String {
        self.tls_table(&format!(
            "cafile = {:?}\nrequire_certificate = true\n{extra}",
            self.ca_file
        ))
    }
}
