//! `postel dkim generate DOMAIN`: an RSA-2048 and an Ed25519 key for a
//! domain, written private (0600, in a 0700 folder), with the TXT records
//! to publish and the `[[dkim]]` tables to add printed.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use postel_auth::keys;

/// The domain (lowercase, no final dot) and the selectors' prefix
/// (default sYYYYMM), checked.
fn names(domain: &str, prefix: Option<&str>) -> anyhow::Result<(String, String)> {
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
    Ok((domain, prefix))
}

/// `postel dkim generate DOMAIN --config FILE`: the two keys go into the
/// PostgreSQL store the config names, where every node finds them at its
/// next start; prints the TXT records to publish.
///
/// # Errors
/// When the config names no PostgreSQL store, the database cannot be
/// written, or a key of that name is there already.
pub(crate) fn generate_into_store(
    domain: &str,
    prefix: Option<&str>,
    config: &Path,
) -> anyhow::Result<()> {
    let (domain, prefix) = names(domain, prefix)?;
    let args = crate::cli::StoreArgs {
        data_dir: None,
        config: Some(config.to_owned()),
    };
    let admin = crate::admin::Admin::open(&args, false)?;
    let postel_store::AnyStore::Postgres(pg) = &admin.store else {
        bail!(
            "{} names no PostgreSQL store ([store] url): without one, keys are files (leave out --config)",
            config.display()
        );
    };
    let made = [
        (format!("{prefix}r"), keys::rsa_2048()?),
        (format!("{prefix}e"), keys::ed25519()?),
    ];
    let existing = admin.run(pg.dkim_keys())?;
    for (selector, _) in &made {
        if existing
            .iter()
            .any(|(d, s, _)| *d == domain && s == selector)
        {
            bail!("{domain} has a key {selector} in the database: pick another --selector");
        }
    }
    let mut out =
        format!("# DKIM keys for {domain}, in the database\n# 1. Publish these TXT records:\n");
    for (selector, key) in &made {
        out.push_str(&format!(
            "{selector}._domainkey.{domain}. IN TXT {}\n",
            keys::zone_text(&key.record)
        ));
    }
    for (selector, key) in &made {
        if !admin.run(pg.add_dkim_key(&domain, selector, &key.private_pem))? {
            bail!("{domain} has a key {selector} in the database already");
        }
    }
    out.push_str(
        "# 2. Every node signs with them from its next start (no [[dkim]] table needed).\n",
    );
    print!("{out}");
    Ok(())
}

/// Writes the two keys of `domain` under `dir/<domain>/`, named by their
/// selectors (`<prefix>r` for RSA, `<prefix>e` for Ed25519), and prints
/// what to publish and configure. Never over an existing key.
///
/// # Errors
/// When the domain or selector is not valid, a key exists, or a file
/// cannot be written.
pub(crate) fn generate(domain: &str, prefix: Option<&str>, dir: &Path) -> anyhow::Result<()> {
    let (domain, prefix) = names(domain, prefix)?;
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
