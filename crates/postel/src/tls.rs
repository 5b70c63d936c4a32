//! TLS for STARTTLS and implicit-TLS listeners: the certificate from PEM
//! files, or a self-signed one made on first start in the zero-config mode,
//! and reloading without a restart when the files change or on SIGHUP (so a
//! renewed Let's Encrypt certificate is picked up).
//!
//! TLS 1.2 and 1.3 only (rustls supports nothing older), with the `ring`
//! provider.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

/// Where the certificate and key come from.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// Serves whichever certificate was loaded last.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

fn load(files: &TlsFiles) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read certificate file {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", files.cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a PEM private key from {}", files.key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).with_context(|| {
        format!(
            "the key in {} does not fit the certificate in {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// Makes a self-signed certificate for `hostname` in `dir` unless one is
/// there already; returns its files.
pub(crate) fn self_signed(dir: &Path, hostname: &str) -> anyhow::Result<TlsFiles> {
    let files = TlsFiles {
        cert: dir.join("tls").join("cert.pem"),
        key: dir.join("tls").join("key.pem"),
    };
    if files.cert.exists() && files.key.exists() {
        info!(cert = %files.cert.display(), "using the self-signed certificate made on an earlier start");
        return Ok(files);
    }
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir)
        .with_context(|| format!("cannot create {}", tls_dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (key, cert) = make_self_signed(hostname, now)?;
    write_private(&files.key, key.as_bytes())?;
    std::fs::write(&files.cert, cert)
        .with_context(|| format!("cannot write {}", files.cert.display()))?;
    info!(cert = %files.cert.display(), hostname, "made a self-signed certificate (configure [tls] cert and key for a real one)");
    Ok(files)
}

/// How long a self-signed certificate is valid: two years, so that it is
/// renewed in the life of a machine, not left to outlive it (rcgen's
/// default runs to the year 4096).
const SELF_SIGNED_DAYS: i64 = 730;

/// A key and a certificate (PEM) for `hostname` (and `localhost`), named
/// `hostname` (not "rcgen self signed cert"), valid from the day of `now`
/// (Unix seconds) for [`SELF_SIGNED_DAYS`].
fn make_self_signed(hostname: &str, now: i64) -> anyhow::Result<(String, String)> {
    let names = vec![hostname.to_owned(), "localhost".to_owned()];
    let mut params =
        rcgen::CertificateParams::new(names).context("cannot make a self-signed certificate")?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, hostname);
    dn.push(rcgen::DnType::OrganizationName, "Postel self-signed");
    params.distinguished_name = dn;
    let today = time::OffsetDateTime::from_unix_timestamp(now)
        .context("the clock is out of range")?
        .replace_time(time::Time::MIDNIGHT);
    params.not_before = today;
    params.not_after = today + time::Duration::days(SELF_SIGNED_DAYS);
    let key = rcgen::KeyPair::generate().context("cannot make a key")?;
    let cert = params
        .self_signed(&key)
        .context("cannot make a self-signed certificate")?;
    Ok((key.serialize_pem(), cert.pem()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The TLS acceptor, and the handle that reloads its certificate.
pub(crate) struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<Resolver>,
    files: TlsFiles,
}

impl Tls {
    /// Loads the certificate and builds the acceptor.
    ///
    /// # Errors
    /// When the files cannot be read or do not form a certificate and key.
    pub(crate) fn new(files: TlsFiles) -> anyhow::Result<Tls> {
        let resolver = Arc::new(Resolver {
            current: RwLock::new(load(&files)?),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
            files,
        })
    }

    /// Loads the files again; on failure the old certificate stays in use.
    pub(crate) fn reload(&self) {
        match load(&self.files) {
            Ok(k) => {
                *self
                    .resolver
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = k;
                info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => warn!(
                error = format!("{e:#}"),
                "TLS certificate not reloaded; keeping the old one"
            ),
        }
    }

    fn modified(&self) -> Option<(SystemTime, SystemTime)> {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(&self.files.cert)?, m(&self.files.key)?))
    }

    /// Reloads on SIGHUP, and when either file changes (checked every few
    /// seconds), for as long as the server runs.
    pub(crate) fn watch(self: Arc<Self>, every: Duration) {
        let mut last = self.modified();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(every);
            loop {
                #[cfg(unix)]
                let by_signal = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                #[cfg(not(unix))]
                let by_signal = {
                    tick.tick().await;
                    false
                };
                let now = self.modified();
                if by_signal || (now.is_some() && now != last) {
                    last = now;
                    self.reload();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_and_loads() {
        let dir = std::env::temp_dir().join(format!("postel-tls-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = self_signed(&dir, "mx.test").expect("make");
        let first = std::fs::read(&files.cert).expect("cert");
        assert!(Tls::new(files.clone()).is_ok());
        let again = self_signed(&dir, "mx.test").expect("reuse");
        assert_eq!(
            std::fs::read(&again.cert).expect("cert"),
            first,
            "an existing certificate is reused"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&files.key)
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_self_signed_certificate_names_the_host_for_two_years() {
        use x509_parser::prelude::{FromDer as _, X509Certificate};
        // 2026-11-29T22:00:00Z
        let (_, pem) = make_self_signed("mx.example.test", 1_795_996_800).expect("make");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c)
            .expect("pem");
        let (_, cert) = X509Certificate::from_der(&der).expect("der");
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .filter_map(|c| c.as_str().ok())
            .collect();
        assert_eq!(cn, ["mx.example.test"]);
        let v = cert.validity();
        let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400;
        assert_eq!(days, 730);
        assert_eq!(v.not_before.timestamp() % 86_400, 0, "from midnight UTC");
        assert!(v.not_before.timestamp() <= 1_795_996_800);
    }

    #[test]
    fn mismatched_files_say_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("postel-tls-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let files = TlsFiles {
            cert: dir.join("none.pem"),
            key: dir.join("none.key"),
        };
        let err = format!("{:#}", Tls::new(files).err().expect("missing files"));
        assert!(err.contains("none.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
