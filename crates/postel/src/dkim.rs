//! `postel dkim generate DOMAIN`: an RSA-2048 and an Ed25519 key for a
//! domain, written private (0600, in a 0700 folder), with the TXT records
//! to publish and the `[[dkim]]` tables to add printed.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use postel_auth::keys;

/// Writes the two keys of `domain` under `dir/<domain>/`, named by their
/// selectors (`<prefix>r` for RSA, `<prefix>e` for Ed25519), and prints
/// what to publish and configure. Never over an existing key.
///
/// # Errors
/// When the domain or selector is not valid, a key exists, or a file
/// cannot be written.
pub(crate) fn generate(domain: &str, prefix: Option<&str>, dir: &Path) -> anyhow::Result<()> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !postel_proto::address::is_domain(domain.as_bytes(), false) {
        bail!("{domain:?} is not a domain name");
    }
    let prefix = match prefix {
        Some(p) => p.to_owned(),
        None => {
            let now = time::OffsetDateTime::now_utc();
            format!("s{:04}{:02}", now.year(), u8::from(now.month()))
        }
    };
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        bail!("selector {prefix:?}: letters, digits and hyphens only");
    }
    let folder = dir.join(&domain);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&folder)
        .with_context(|| format!("cannot make {}", folder.display()))?;
    let made = [
        (format!("{prefix}r"), keys::rsa_2048()?),
        (format!("{prefix}e"), keys::ed25519()?),
    ];
    // Both names free before either is written: a second run never leaves
    // half a pair.
    for (selector, _) in &made {
        let path = folder.join(format!("{selector}.pem"));
        if path.exists() {
            bail!("{} exists: pick another --selector", path.display());
        }
    }
    let mut out = String::new();
    out.push_str(&format!(
        "# DKIM keys for {domain}, in {}\n# 1. Publish these TXT records:\n",
        folder.display()
    ));
    for (selector, key) in &made {
        out.push_str(&format!(
            "{selector}._domainkey.{domain}. IN TXT {}\n",
            keys::zone_text(&key.record)
        ));
    }
    out.push_str("# 2. Once they resolve, add to the config and reload:\n");
    for (selector, key) in &made {
        let path = folder.join(format!("{selector}.pem"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot write {} (a key of that name exists?)",
                    path.display()
                )
            })?;
        f.write_all(key.private_pem.as_bytes())?;
        f.sync_all()?;
        out.push_str(&format!(
            "[[dkim]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nkey = \"{}\"\n\n",
            path.display()
        ));
    }
    print!("{out}");
    Ok(())
}
