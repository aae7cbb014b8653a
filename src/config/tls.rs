//! etcd's TLS flags (docs/security.md) and what they make: the client
//! port's and the peer port's server side, and how this member dials the
//! others. Each refusal is etcd's message where etcd has one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tessera::tls::client::{ClientFiles, Dialer};
use tessera::tls::incoming::Accept;
use tessera::tls::server::ServerTls;
use tessera::tls::{selfcert, Policy, PortFiles};

use super::listen::{is_https, Listen};

#[derive(clap::Args, Clone, Debug)]
pub struct TlsArgs {
    /// The client port's certificate (PEM), served on https:// client URLs.
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// The key of --cert-file (PEM).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Clients must show a certificate signed by --trusted-ca-file.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    client_cert_auth: bool,
    /// The CA that signs client certificates; given alone it already
    /// requires one (as etcd).
    #[arg(long)]
    trusted_ca_file: Option<PathBuf>,
    /// Without --cert-file: serve https:// client URLs with a self-signed
    /// certificate generated into DATA_DIR/fixtures/client.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    auto_tls: bool,
    /// The peer port's certificate (PEM), served on https:// peer URLs and
    /// shown when dialing other members.
    #[arg(long)]
    peer_cert_file: Option<PathBuf>,
    #[arg(long)]
    peer_key_file: Option<PathBuf>,
    /// The certificate shown when dialing other members (default: --peer-cert-file).
    #[arg(long)]
    peer_client_cert_file: Option<PathBuf>,
    #[arg(long)]
    peer_client_key_file: Option<PathBuf>,
    /// Members must show a certificate signed by --peer-trusted-ca-file.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    peer_client_cert_auth: bool,
    /// The CA that signs the members' certificates (checked both ways;
    /// given alone it already requires a member certificate).
    #[arg(long)]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Without --peer-cert-file: self-signed peer certificates in
    /// DATA_DIR/fixtures/peer (encrypted, not authenticated, as etcd's).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    peer_auto_tls: bool,
    /// Only a member certificate with this CommonName is taken.
    #[arg(long)]
    peer_cert_allowed_cn: Option<String>,
    /// Years a self-signed certificate is valid.
    #[arg(long, default_value_t = 1)]
    self_signed_cert_validity: u32,
    /// Comma-separated TLS 1.2 cipher suites (Go's names); default: all
    /// tessera serves.
    #[arg(long, value_delimiter = ',')]
    cipher_suites: Vec<String>,
    /// TLS1.2 or TLS1.3.
    #[arg(long, default_value = "TLS1.2")]
    tls_min_version: String,
    /// TLS1.2 or TLS1.3 (default: the highest).
    #[arg(long, default_value = "")]
    tls_max_version: String,
    /// A connection that has not finished its TLS handshake (or, on a port
    /// serving http and https, sent its first byte) by then is closed.
    #[arg(long, default_value = "10s", value_parser = tessera::bench::parse_duration)]
    tls_handshake_timeout: Duration,
    /// Do not check that a member certificate's SANs name the address it
    /// connects from.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    experimental_peer_skip_client_san_verification: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Port {
    Client,
    Peer,
}

impl TlsArgs {
    pub fn policy(&self) -> Result<Policy> {
        Ok(Policy::new(&self.tls_min_version, &self.tls_max_version, &self.cipher_suites)?)
    }

    /// The client port's TLS, or `None` when no client URL is https://.
    pub fn client(&self, data_dir: &Path, urls: &[String], policy: &Policy) -> Result<Option<Arc<ServerTls>>> {
        let files = PortFiles {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
            allowed_cn: None,
        };
        self.port(Port::Client, files, data_dir, urls, policy)
    }

    /// The peer port's TLS, or `None` when no peer URL is https://.
    pub fn peer(&self, data_dir: &Path, urls: &[String], policy: &Policy) -> Result<Option<Arc<ServerTls>>> {
        let files = PortFiles {
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
            trusted_ca_file: self.peer_trusted_ca_file.clone(),
            client_cert_auth: self.peer_client_cert_auth,
            allowed_cn: self.peer_cert_allowed_cn.clone().filter(|cn| !cn.is_empty()),
        };
        self.port(Port::Peer, files, data_dir, urls, policy)
    }

    fn port(
        &self,
        port: Port,
        files: PortFiles,
        data_dir: &Path,
        urls: &[String],
        policy: &Policy,
    ) -> Result<Option<Arc<ServerTls>>> {
        let (auto, what) = match port {
            Port::Client => (self.auto_tls, "client"),
            Port::Peer => (self.peer_auto_tls, "peer"),
        };
        let files = if auto && files.has_cert() {
            tracing::warn!(target: "tessera", "ignoring {what} auto TLS since certs given");
            files
        } else if auto {
            let hosts = urls.iter().filter_map(|u| host_of(u)).collect::<Vec<_>>();
            let dir = data_dir.join("fixtures").join(what);
            let (cert, key) = selfcert::ensure(&dir, &hosts, self.self_signed_cert_validity)?;
            PortFiles { cert_file: Some(cert), key_file: Some(key), ..Default::default() }
        } else {
            files
        };
        if !files.has_cert() {
            if let Some(url) = urls.iter().find(|u| is_https(u)) {
                match port {
                    Port::Client => bail!(
                        "TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with HTTPS scheme"
                    ),
                    Port::Peer => bail!(
                        "cannot listen on TLS for {}: KeyFile and CertFile are not presented",
                        url.trim_start_matches("https://").trim_end_matches('/')
                    ),
                }
            }
            return Ok(None);
        }
        if !urls.iter().any(|u| is_https(u)) {
            tracing::warn!(target: "tessera", "scheme is HTTP while key and cert files are present; ignoring key and cert files ({what} URLs {urls:?})");
            return Ok(None);
        }
        Ok(Some(Arc::new(ServerTls::new(files, policy.clone())?)))
    }

    /// How this member dials the others: with its peer certificate, and
    /// checking theirs against --peer-trusted-ca-file (not at all with
    /// --peer-auto-tls).
    pub fn peer_dialer(&self, peer: Option<&ServerTls>, policy: &Policy) -> Result<Dialer> {
        let Some(peer) = peer else { return Ok(Dialer::default()) };
        let served = peer.files();
        let (cert_file, key_file) = match (&self.peer_client_cert_file, &self.peer_client_key_file) {
            (Some(c), Some(k)) => (Some(c.clone()), Some(k.clone())),
            _ => (served.cert_file.clone(), served.key_file.clone()),
        };
        let auto = self.peer_auto_tls && self.peer_cert_file.is_none();
        let files = ClientFiles { ca_file: self.peer_trusted_ca_file.clone(), cert_file, key_file, skip_verify: auto };
        Ok(Dialer::new(&files, policy)?)
    }

    /// What one listener accepts.
    pub fn accept(&self, listen: &Listen, tls: Option<&Arc<ServerTls>>, peer: bool) -> Accept {
        Accept {
            plain: listen.plain,
            tls: if listen.tls { tls.cloned() } else { None },
            handshake_timeout: self.tls_handshake_timeout,
            check_client_san: peer && !self.experimental_peer_skip_client_san_verification,
        }
    }
}

/// `https://10.0.0.1:2380` -> `10.0.0.1` (a self-signed certificate's SAN).
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1.trim_end_matches('/');
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => rest,
    };
    Some(host.trim_start_matches('[').trim_end_matches(']').to_string())
}
