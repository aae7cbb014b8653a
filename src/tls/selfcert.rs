//! `--auto-tls` and `--peer-auto-tls`: a self-signed certificate for the
//! port's hosts, kept in the data dir (`fixtures/client`, `fixtures/peer`,
//! as etcd's) and used again on the next start while it is there.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::TlsError;

pub const CERT: &str = "cert.pem";
pub const KEY: &str = "key.pem";

/// The certificate and key in `dir`, made for `hosts` (IPs or DNS names)
/// and valid for `years` if they are not there yet.
pub fn ensure(dir: &Path, hosts: &[String], years: u32) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join(CERT), dir.join(KEY));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let fail = |e: &dyn std::fmt::Display| TlsError::File { path: dir.display().to_string(), msg: e.to_string() };
    std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| fail(&e))?;
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "etcd");
    params.distinguished_name.push(rcgen::DnType::CommonName, "tessera");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * i64::from(years.max(1)));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let pair = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let signed = params.self_signed(&pair).map_err(|e| fail(&e))?;
    write_private(&key, pair.serialize_pem().as_bytes()).map_err(|e| fail(&e))?;
    std::fs::write(&cert, signed.pem()).map_err(|e| fail(&e))?;
    tracing::info!(target: "tessera::tls", cert = %cert.display(), ?hosts, "generated a self-signed certificate");
    Ok((cert, key))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
