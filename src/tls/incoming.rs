//! The accept loop of a port: plain, TLS, or both on one port (etcd serves
//! `http://` and `https://` URLs of one host:port on one listener). A TLS
//! client's first byte is a handshake record (0x16); an HTTP/1.1 or HTTP/2
//! client's is a letter. Each connection is sniffed and handshaken in a
//! task of its own, so a client that connects and sends nothing holds up
//! no one, and is closed after the handshake timeout.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::server::ServerTls;

/// The first byte of a TLS handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;
/// Connections handshaken and not yet taken by the server.
const BACKLOG: usize = 128;

/// What a port accepts.
#[derive(Clone)]
pub struct Accept {
    /// Plain connections (an `http://` URL on this port).
    pub plain: bool,
    /// TLS connections (an `https://` URL on this port).
    pub tls: Option<Arc<ServerTls>>,
    /// How long a connection may take to show what it is and finish its
    /// TLS handshake.
    pub handshake_timeout: Duration,
    /// The peer port's check that a client certificate's IP or DNS SANs
    /// name the address it connects from (etcd's default for peers).
    pub check_client_san: bool,
}

impl Accept {
    pub fn plain() -> Accept {
        Accept { plain: true, tls: None, handshake_timeout: Duration::from_secs(10), check_client_san: false }
    }
}

/// What the server knows of a connection: tonic puts it in every
/// request's extensions (`request.extensions().get::<ConnInfo>()`).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// The verified client certificate's subject CN, on a TLS connection
    /// that showed one. The auth layer takes it as the user (etcd: with
    /// --client-cert-auth, a certificate's CN is the user unless the call
    /// carries a token).
    pub client_cn: Option<String>,
}

/// An accepted connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream, ConnInfo),
    Tls(Box<TlsStream<TcpStream>>, ConnInfo),
}

/// The connections `listener` accepts under `accept`, handshaken.
pub fn incoming(listener: TcpListener, accept: Accept) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait, go on.
                        tracing::warn!(target: "tessera::tls", "accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let (tx, accept) = (tx.clone(), accept.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(accept.handshake_timeout, open(tcp, remote, &accept)).await {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(target: "tessera::tls", %remote, "rejected connection: {e}"),
                    Err(_) => {
                        tracing::warn!(target: "tessera::tls", %remote, "rejected connection: no TLS handshake within {:?}", accept.handshake_timeout)
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Decides what a connection is and handshakes a TLS one.
async fn open(tcp: TcpStream, remote: SocketAddr, accept: &Accept) -> io::Result<Conn> {
    let info = ConnInfo { remote: Some(remote), client_cn: None };
    let tls = match (&accept.tls, accept.plain) {
        (None, _) => return Ok(Conn::Plain(tcp, info)),
        (Some(tls), false) => tls,
        (Some(tls), true) => {
            let mut first = [0u8; 1];
            if tcp.peek(&mut first).await? == 0 || first[0] != HANDSHAKE_RECORD {
                return Ok(Conn::Plain(tcp, info));
            }
            tls
        }
    };
    let stream = tokio_rustls::TlsAcceptor::from(tls.config()).accept(tcp).await?;
    let leaf = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    if let (Some(leaf), true) = (&leaf, accept.check_client_san) {
        check_san(leaf, remote).await?;
    }
    let client_cn = leaf.as_deref().and_then(super::common_name);
    Ok(Conn::Tls(Box::new(stream), ConnInfo { remote: Some(remote), client_cn }))
}

/// etcd's peer check: a client certificate with IP or DNS SANs must name
/// the address it connects from (a certificate without SANs passes).
async fn check_san(der: &[u8], remote: SocketAddr) -> io::Result<()> {
    use x509_parser::extensions::GeneralName;
    let bad = |msg: String| io::Error::new(io::ErrorKind::PermissionDenied, msg);
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(format!("client certificate: {e}")))?;
    let names =
        cert.subject_alternative_name().ok().flatten().map(|san| san.value.general_names.clone()).unwrap_or_default();
    let mut ips = Vec::new();
    let mut dns = Vec::new();
    for name in names {
        match name {
            GeneralName::IPAddress(b) if b.len() == 4 => {
                ips.push(std::net::IpAddr::from(<[u8; 4]>::try_from(b).expect("4")))
            }
            GeneralName::IPAddress(b) if b.len() == 16 => {
                ips.push(std::net::IpAddr::from(<[u8; 16]>::try_from(b).expect("16")))
            }
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            _ => {}
        }
    }
    if (ips.is_empty() && dns.is_empty()) || ips.contains(&remote.ip()) {
        return Ok(());
    }
    for name in &dns {
        if let Ok(mut addrs) = tokio::net::lookup_host((name.as_str(), 0)).await {
            if addrs.any(|a| a.ip() == remote.ip()) {
                return Ok(());
            }
        }
    }
    Err(bad(format!("client certificate SANs (IPs {ips:?}, DNS names {dns:?}) do not name {}", remote.ip())))
}

impl Conn {
    fn info(&self) -> &ConnInfo {
        match self {
            Conn::Plain(_, i) | Conn::Tls(_, i) => i,
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info().clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s, _) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
