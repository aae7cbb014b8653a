//! One port's server side: a rustls `ServerConfig` built from the port's
//! files, built again for a new connection once a file changed on disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use super::{Policy, PortFiles, TlsError};

/// ALPN: gRPC clients (grpc-go insists) ask for h2; curl for /health may
/// ask for either.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A port's TLS server configuration, kept current with its files.
pub struct ServerTls {
    files: PortFiles,
    policy: Policy,
    current: Mutex<(Stamp, Arc<ServerConfig>)>,
}

/// What the files looked like when the configuration was built: each
/// file's modification time, length and inode (a file replaced by a rename
/// within one timestamp tick still shows).
type Stamp = Vec<Option<(SystemTime, u64, u64)>>;

impl ServerTls {
    /// Reads the port's files; refuses a port without a certificate and key.
    pub fn new(files: PortFiles, policy: Policy) -> Result<ServerTls, TlsError> {
        if !files.has_cert() {
            return Err(TlsError::Config("a TLS port needs a certificate and key file".into()));
        }
        let stamp = stamp(&files);
        let config = build(&files, &policy)?;
        Ok(ServerTls { files, policy, current: Mutex::new((stamp, config)) })
    }

    /// The configuration for a new connection: built again when a file
    /// changed since the last build. A change that does not load (a key
    /// written before its certificate) keeps the previous configuration
    /// until the files agree again.
    pub fn config(&self) -> Arc<ServerConfig> {
        let now = stamp(&self.files);
        let mut current = self.current.lock();
        if current.0 != now {
            match build(&self.files, &self.policy) {
                Ok(config) => {
                    tracing::info!(target: "tessera::tls", cert = ?self.files.cert_file, "certificate files changed: loaded them");
                    *current = (now, config);
                }
                Err(e) => {
                    tracing::warn!(target: "tessera::tls", "certificate files changed but do not load ({e}); keeping the previous ones");
                    current.0 = now;
                }
            }
        }
        current.1.clone()
    }

    pub fn files(&self) -> &PortFiles {
        &self.files
    }
}

fn paths(files: &PortFiles) -> impl Iterator<Item = &PathBuf> {
    [&files.cert_file, &files.key_file, &files.trusted_ca_file].into_iter().flatten()
}

fn stamp(files: &PortFiles) -> Stamp {
    paths(files)
        .map(|p| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())))
        })
        .collect()
}

fn build(files: &PortFiles, policy: &Policy) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert, key) = (files.cert_file.as_ref().expect("checked"), files.key_file.as_ref().expect("checked"));
    let chain = super::read_certs(cert)?;
    let key = super::read_key(key)?;
    let builder = ServerConfig::builder_with_provider(policy.provider())
        .with_protocol_versions(policy.versions())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if files.requires_client_cert() {
        let Some(ca) = &files.trusted_ca_file else {
            return Err(TlsError::Config(
                "client certificate authentication needs the CA that signs client certificates (--trusted-ca-file, --peer-trusted-ca-file)".into(),
            ));
        };
        let roots = Arc::new(super::read_roots(ca)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, policy.provider())
            .build()
            .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
        let verifier: Arc<dyn ClientCertVerifier> = match &files.allowed_cn {
            Some(cn) => Arc::new(AllowedCn { inner: verifier, cn: cn.clone() }),
            None => verifier,
        };
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError::File {
        path: cert.display().to_string(),
        msg: format!("certificate and key do not make a pair: {e}"),
    })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Takes a client certificate the CA verified only if its CN is the one
/// allowed (etcd's `--peer-cert-allowed-cn`).
#[derive(Debug)]
struct AllowedCn {
    inner: Arc<dyn ClientCertVerifier>,
    cn: String,
}

impl ClientCertVerifier for AllowedCn {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        match super::common_name(end_entity) {
            Some(cn) if cn == self.cn => Ok(verified),
            cn => Err(rustls::Error::General(format!(
                "client certificate authentication failed: CommonName {:?} is not the allowed {:?}",
                cn.unwrap_or_default(),
                self.cn
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
