//! TLS on the client and peer ports, as etcd 3.5 configures it
//! (docs/security.md): rustls with the ring provider, TLS 1.2 and 1.3.
//!
//! - [`Policy`]: what both ports share (`--tls-min-version`,
//!   `--tls-max-version`, `--cipher-suites`), checked with etcd's messages.
//! - [`server::ServerTls`]: one port's server side; its certificate, key and
//!   CA files are read again for a new connection once they change on disk
//!   (rotation without restart).
//! - [`incoming`]: the accept loop every port serves through: plain, TLS, or
//!   both on one port (the first byte tells), with a handshake timeout, and
//!   the client certificate's CN kept with the connection ([`ConnInfo`]) for
//!   the auth layer to take as the user.
//! - [`client::Dialer`]: how tessera itself dials (peer links, forwarded
//!   calls, joining, the admin CLI, the bench).
//! - [`selfcert`]: `--auto-tls` and `--peer-auto-tls` certificates.

pub mod client;
pub mod incoming;
pub mod selfcert;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ProtocolVersion, RootCertStore, SupportedCipherSuite, SupportedProtocolVersion};

pub use incoming::ConnInfo;

/// Why a TLS configuration is refused; etcd's words where etcd has them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    #[error("unexpected TLS cipher suite {0:?}")]
    UnknownCipherSuite(String),
    #[error(
        "TLS cipher suite {0:?} is not served by tessera (only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305)"
    )]
    UnservedCipherSuite(String),
    #[error("unexpected TLS version {0:?} (must be one of: TLS1.2, TLS1.3)")]
    UnknownVersion(String),
    #[error("min version ({min}) is greater than max version ({max})")]
    MinAboveMax { min: String, max: String },
    #[error("cipher suites cannot be configured when only TLS1.3 is enabled")]
    SuitesWithOnlyTls13,
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, msg: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), msg: msg.to_string() }
}

/// The TLS versions and cipher suites both ports offer.
#[derive(Clone, Debug)]
pub struct Policy {
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static SupportedProtocolVersion>,
}

impl Default for Policy {
    /// etcd's defaults: TLS 1.2 and 1.3, every suite the provider has.
    fn default() -> Policy {
        Policy::new("TLS1.2", "", &[]).expect("the defaults are valid")
    }
}

impl Policy {
    /// `min` and `max` as etcd's `--tls-min-version`/`--tls-max-version`
    /// (`TLS1.2`, `TLS1.3`, or empty: the lowest/highest tessera has);
    /// `suites` as `--cipher-suites` (Go's names). As in Go, the list names
    /// the TLS 1.2 suites; TLS 1.3's are always all offered.
    pub fn new(min: &str, max: &str, suites: &[String]) -> Result<Policy, TlsError> {
        let lo = version(min)?.unwrap_or(ProtocolVersion::TLSv1_2);
        let hi = version(max)?.unwrap_or(ProtocolVersion::TLSv1_3);
        if lo == ProtocolVersion::TLSv1_3 && hi == ProtocolVersion::TLSv1_2 {
            return Err(TlsError::MinAboveMax { min: min.to_string(), max: max.to_string() });
        }
        if lo == ProtocolVersion::TLSv1_3 && !suites.is_empty() {
            return Err(TlsError::SuitesWithOnlyTls13);
        }
        let mut provider = rustls::crypto::ring::default_provider();
        if !suites.is_empty() {
            let named = suites
                .iter()
                .map(|s| cipher_suite(s.trim(), &provider.cipher_suites).map(|s| s.suite()))
                .collect::<Result<Vec<_>, _>>()?;
            provider.cipher_suites.retain(|s| is_tls13(s) || named.contains(&s.suite()));
        }
        let has12 = provider.cipher_suites.iter().any(|s| !is_tls13(s));
        let mut versions = Vec::new();
        if lo == ProtocolVersion::TLSv1_2 && has12 {
            versions.push(&rustls::version::TLS12);
        }
        if hi == ProtocolVersion::TLSv1_3 {
            versions.push(&rustls::version::TLS13);
        }
        if versions.is_empty() {
            return Err(TlsError::Config("no TLS version is left with these cipher suites".into()));
        }
        Ok(Policy { provider: Arc::new(provider), versions })
    }

    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.provider.clone()
    }

    pub fn versions(&self) -> &[&'static SupportedProtocolVersion] {
        &self.versions
    }
}

fn is_tls13(suite: &SupportedCipherSuite) -> bool {
    suite.version().version == ProtocolVersion::TLSv1_3
}

/// etcd's version names; empty is "no bound".
fn version(name: &str) -> Result<Option<ProtocolVersion>, TlsError> {
    match name {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(ProtocolVersion::TLSv1_2)),
        "TLS1.3" => Ok(Some(ProtocolVersion::TLSv1_3)),
        other => Err(TlsError::UnknownVersion(other.to_string())),
    }
}

/// Go's cipher suite names that rustls does not implement (CBC, RC4,
/// 3DES, RSA key exchange): known to etcd, refused here with our reason.
const UNSERVED: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The suite Go calls `name` among `available`.
fn cipher_suite(name: &str, available: &[SupportedCipherSuite]) -> Result<SupportedCipherSuite, TlsError> {
    // Go's TLS 1.3 names lack rustls's "13"; Go also keeps the ChaCha20
    // names without their "_SHA256".
    let rustls_name = match name.strip_prefix("TLS_") {
        Some(rest) if ["AES_128_GCM_SHA256", "AES_256_GCM_SHA384", "CHACHA20_POLY1305_SHA256"].contains(&rest) => {
            format!("TLS13_{rest}")
        }
        _ if name.ends_with("_CHACHA20_POLY1305") => format!("{name}_SHA256"),
        _ => name.to_string(),
    };
    if let Some(s) = available.iter().find(|s| s.suite().as_str() == Some(rustls_name.as_str())) {
        return Ok(*s);
    }
    if UNSERVED.contains(&name) {
        return Err(TlsError::UnservedCipherSuite(name.to_string()));
    }
    Err(TlsError::UnknownCipherSuite(name.to_string()))
}

/// Every certificate in a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| file_error(path, e))
}

/// The CA certificates of a PEM file, as roots.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    Ok(roots)
}

/// The subject's common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// One port's certificate files, as etcd's flags name them (`--cert-file`
/// or `--peer-cert-file`, ...).
#[derive(Clone, Debug, Default)]
pub struct PortFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Clients must present a certificate signed by this CA; given alone
    /// it already requires one, as in etcd.
    pub trusted_ca_file: Option<PathBuf>,
    /// Require and verify a client certificate.
    pub client_cert_auth: bool,
    /// Only a client certificate with this CN is taken (`--peer-cert-allowed-cn`).
    pub allowed_cn: Option<String>,
}

impl PortFiles {
    /// Whether a certificate and key are given (etcd's `!TLSInfo.Empty()`).
    pub fn has_cert(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }

    /// Whether a connection must show a client certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_suites_are_checked_with_etcds_words() {
        let err = |min: &str, max: &str, suites: &[&str]| {
            let suites: Vec<String> = suites.iter().map(|s| s.to_string()).collect();
            Policy::new(min, max, &suites).unwrap_err().to_string()
        };
        assert_eq!(err("TLS1.1", "", &[]), r#"unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)"#);
        assert_eq!(err("TLS1.3", "TLS1.2", &[]), "min version (TLS1.3) is greater than max version (TLS1.2)");
        assert_eq!(err("", "", &["X"]), r#"unexpected TLS cipher suite "X""#);
        assert_eq!(
            err("TLS1.3", "", &["TLS_AES_128_GCM_SHA256"]),
            "cipher suites cannot be configured when only TLS1.3 is enabled"
        );
        assert!(err("", "", &["TLS_RSA_WITH_AES_128_CBC_SHA"]).contains("not served by tessera"));
    }

    #[test]
    fn named_suites_limit_tls12_and_keep_tls13() {
        let p = Policy::new("", "", &["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".to_string()]).unwrap();
        let names: Vec<_> = p.provider.cipher_suites.iter().filter_map(|s| s.suite().as_str()).collect();
        assert!(names.contains(&"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"), "{names:?}");
        assert!(!names.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("TLS13_")));
        let versions = |p: &Policy| p.versions().iter().map(|v| v.version).collect::<Vec<_>>();
        assert_eq!(versions(&p), [ProtocolVersion::TLSv1_2, ProtocolVersion::TLSv1_3]);
        let only13 = Policy::new("", "", &["TLS_AES_128_GCM_SHA256".to_string()]).unwrap();
        assert_eq!(versions(&only13), [ProtocolVersion::TLSv1_3]);
        assert_eq!(versions(&Policy::new("", "TLS1.2", &[]).unwrap()), [ProtocolVersion::TLSv1_2]);
    }
}
