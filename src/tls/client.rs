//! How tessera dials: a tonic connector that opens `http://` URLs plain
//! and `https://` URLs with TLS. Every peer link, forwarded call and join
//! dials through one [`Dialer`] built from the peer flags; the admin CLI
//! and the bench build theirs from etcdctl's `--cacert/--cert/--key`.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Policy, TlsError};

/// What a dialing side trusts and shows.
#[derive(Clone, Debug, Default)]
pub struct ClientFiles {
    /// The CA that signs the servers' certificates (else the system's).
    pub ca_file: Option<PathBuf>,
    /// The certificate (and key) shown to a server that asks for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Do not verify the server's certificate (`--peer-auto-tls`'s
    /// self-signed ones, etcdctl's `--insecure-skip-tls-verify`).
    pub skip_verify: bool,
}

/// Opens connections for tonic channels; cheap to clone.
#[derive(Clone, Default)]
pub struct Dialer {
    /// `None`: `https://` URLs are verified against the system's CAs.
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").field("tls", &self.tls.is_some()).finish()
    }
}

impl Dialer {
    pub fn new(files: &ClientFiles, policy: &Policy) -> Result<Dialer, TlsError> {
        let builder = ClientConfig::builder_with_provider(policy.provider())
            .with_protocol_versions(policy.versions())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if files.skip_verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(policy.provider())))
        } else {
            let roots = match &files.ca_file {
                Some(ca) => super::read_roots(ca)?,
                None => system_roots(),
            };
            builder.with_root_certificates(roots)
        };
        let mut config =
            match (&files.cert_file, &files.key_file) {
                (Some(cert), Some(key)) => builder
                    .with_client_auth_cert(super::read_certs(cert)?, super::read_key(key)?)
                    .map_err(|e| TlsError::File { path: cert.display().to_string(), msg: e.to_string() })?,
                _ => builder.with_no_client_auth(),
            };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Dialer { tls: Some(Arc::new(config)) })
    }

    /// A channel to `url`, connected now.
    pub async fn connect(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        endpoint.connect_with_connector(self.connector()).await
    }

    /// A channel to `url` that connects on first use.
    pub fn connect_lazy(&self, endpoint: Endpoint) -> Channel {
        endpoint.connect_with_connector_lazy(self.connector())
    }

    fn connector(&self) -> Connector {
        Connector { tls: self.tls.clone() }
    }
}

/// An error with its sources: a TLS refusal is two or three levels down
/// in a tonic connect error.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

/// tonic's connector: a tower service from a URI to a connection.
#[derive(Clone)]
struct Connector {
    tls: Option<Arc<ClientConfig>>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<ClientConn>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<ClientConn>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move { dial(uri, tls).await.map(TokioIo::new) })
    }
}

async fn dial(uri: Uri, tls: Option<Arc<ClientConfig>>) -> io::Result<ClientConn> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    let host = uri.host().ok_or_else(|| invalid(format!("{uri}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let secure = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    if !secure {
        return Ok(ClientConn::Plain(tcp));
    }
    let config = match tls {
        Some(c) => c,
        None => Dialer::new(&ClientFiles::default(), &Policy::default())
            .map_err(|e| invalid(e.to_string()))?
            .tls
            .expect("built with TLS"),
    };
    let name = ServerName::try_from(host).map_err(|e| invalid(format!("{uri}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
    Ok(ClientConn::Tls(Box::new(stream)))
}

/// A dialed connection, plain or TLS.
pub enum ClientConn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ClientConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientConn::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Takes any server certificate (signatures are still checked): etcd's
/// peers dial `--peer-auto-tls` members so, since a self-signed
/// certificate has no CA to check it against.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// etcdctl's TLS options, for tessera's own clients (`tessera admin`,
/// `tessera bench`) of an `https://` endpoint.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// The CA that signs the server's certificate (PEM; default: the system's).
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// A client certificate (PEM), for a server that asks for one.
    #[arg(long, global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The key of --cert (PEM).
    #[arg(long, global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Do not verify the server's certificate.
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
}

impl ClientTlsArgs {
    pub fn dialer(&self) -> Result<Dialer, TlsError> {
        let files = ClientFiles {
            ca_file: self.cacert.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            skip_verify: self.insecure_skip_tls_verify,
        };
        Dialer::new(&files, &Policy::default())
    }
}
