//! Outbound DKIM signing (RFC 6376, RFC 8463): every key of the domain of
//! the header `From:` signs, so that an RSA and an Ed25519 key sign side
//! by side, and two selectors sign at once while a key is rotated.
//!
//! Signatures use relaxed/relaxed canonicalization and never `l=`. The
//! fields in [`OVERSIGNED`] are listed once more than the message has
//! them, so that a field of the same name added later breaks the
//! signature (RFC 6376 8.15).

use std::path::{Path, PathBuf};

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// Fields signed and over-signed.
pub const OVERSIGNED: &[&str] = &["From", "To", "Subject", "Date", "Message-ID"];

/// Fields signed when present (and, absent, signed as absent).
pub const SIGNED: &[&str] = &[
    "Cc",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no private key this signer knows.
    #[error(
        "{0}: not an RSA or Ed25519 private key in PEM (PKCS#8 \"PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\")"
    )]
    Format(PathBuf),
    /// An RSA key shorter than 1024 bits, which verifiers ignore (RFC 8301).
    #[error("{0}: an RSA key must have at least 1024 bits (RFC 8301); 2048 is usual")]
    TooShort(PathBuf),
}

enum Kind {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// One signing key.
pub struct Key {
    domain: String,
    selector: String,
    kind: Kind,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Reads the private key in `path` (PEM) for `domain` and `selector`.
    ///
    /// # Errors
    /// When the file cannot be read or holds no usable key.
    pub fn load(domain: &str, selector: &str, path: &Path) -> Result<Key, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Key::from_pem(domain, selector, &pem, path)
    }

    /// The private key `pem` for `domain` and `selector`; `origin` names
    /// where it came from, in errors (a file, or a database row).
    ///
    /// # Errors
    /// When it holds no usable key.
    pub fn from_pem(
        domain: &str,
        selector: &str,
        pem: &[u8],
        origin: &Path,
    ) -> Result<Key, KeyError> {
        let path = origin;
        let bad = || KeyError::Format(path.to_owned());
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| bad())?;
        let domain = domain.to_ascii_lowercase();
        let ed25519 = match &der {
            PrivateKeyDer::Pkcs8(p8) => {
                Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der()).ok()
            }
            PrivateKeyDer::Pkcs1(_) => None,
            _ => return Err(bad()),
        };
        let kind = match ed25519 {
            Some(k) => Kind::Ed25519(signer(k, &domain, selector)),
            None => {
                let k = RsaKey::<Sha256>::from_key_der(der).map_err(|_| bad())?;
                // The public key's DER: a 1024-bit modulus makes 140 octets.
                if k.public_key().len() < 140 {
                    return Err(KeyError::TooShort(path.to_owned()));
                }
                Kind::Rsa(signer(k, &domain, selector))
            }
        };
        Ok(Key {
            domain,
            selector: selector.to_owned(),
            kind,
        })
    }

    /// `rsa-sha256` or `ed25519-sha256`.
    pub fn algorithm(&self) -> &'static str {
        match self.kind {
            Kind::Rsa(_) => "rsa-sha256",
            Kind::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// The signing domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The `DKIM-Signature:` field for `message`, CRLF-terminated.
    fn sign(&self, message: &[u8]) -> Option<String> {
        let signature = match &self.kind {
            Kind::Rsa(s) => s.sign(message),
            Kind::Ed25519(s) => s.sign(message),
        };
        signature.ok().map(|s| unfold_last_semicolon(s.to_header()))
    }
}

/// mail-auth folds the line before the final `;` when the `b=` value
/// fills the line (`b=...\r\n\t;`). RFC 6376 3.7 deletes the `b=` value
/// with the whitespace around it, so that is valid, but dkimpy keeps the
/// fold (it hashes `b= ;` where the signer hashed `b=;`) and the
/// signature fails there. Joining that last line costs nothing, since
/// `b=` is the last tag. Only that fold: one elsewhere (after `bh=`) is
/// inside what was signed.
pub(crate) fn unfold_last_semicolon(field: String) -> String {
    match field.strip_suffix("\r\n\t;\r\n") {
        Some(head) => format!("{head};\r\n"),
        None => field,
    }
}

/// A signer with `key`: relaxed/relaxed, no `l=`, [`signed_fields`].
fn signer<T: SigningKey>(key: T, domain: &str, selector: &str) -> DkimSigner<T, Done> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(signed_fields())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// `h=`: the over-signed fields twice (the second is found missing, and
/// so signed as absent), then the others.
fn signed_fields() -> Vec<String> {
    OVERSIGNED
        .iter()
        .chain(OVERSIGNED)
        .chain(SIGNED)
        .map(|h| (*h).to_owned())
        .collect()
}

/// The keys, by domain.
#[derive(Debug, Default)]
pub struct Signer {
    keys: Vec<Key>,
}

impl Signer {
    /// A signer with `keys`.
    pub fn new(keys: Vec<Key>) -> Signer {
        Signer { keys }
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that sign for `author`: those of its own domain, else
    /// those of its nearest parent domain that has keys (DMARC's relaxed
    /// alignment: `example.org` signs for `mx.example.org`, so that the
    /// notices from `MAILER-DAEMON@<hostname>` are signed too).
    fn keys_for(&self, author: &str) -> Vec<&Key> {
        let mut domain = author;
        loop {
            let keys: Vec<&Key> = self
                .keys
                .iter()
                .filter(|k| k.domain.eq_ignore_ascii_case(domain))
                .collect();
            if !keys.is_empty() {
                return keys;
            }
            match domain.split_once('.') {
                Some((_, parent)) if parent.contains('.') => domain = parent,
                _ => return Vec::new(),
            }
        }
    }

    /// The `DKIM-Signature:` fields to put on top of `message` (header
    /// and body, CRLF): one per key of the domain of its `From:` address
    /// (or of its nearest parent with keys); empty when there is none, or
    /// not exactly one author domain.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match author_domain(message) {
            Some(domain) => self.sign_as(message, &domain),
            None => Vec::new(),
        }
    }

    /// [`Signer::sign`], for a caller that has read the author's domain
    /// already ([`author_domain`]).
    pub fn sign_as(&self, message: &[u8], domain: &str) -> Vec<u8> {
        let mut fields = Vec::new();
        for key in self.keys_for(domain) {
            match key.sign(message) {
                Some(f) => fields.extend_from_slice(f.as_bytes()),
                None => {
                    tracing::warn!(domain, selector = key.selector, "DKIM signing failed");
                }
            }
        }
        fields
    }
}

/// The domain of the header `From:`: None unless there is exactly one
/// `From:` field and all its addresses share one domain.
pub fn author_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let froms = parsed
        .headers()
        .iter()
        .filter(|h| h.name == mail_parser::HeaderName::From)
        .count();
    if froms != 1 {
        return None;
    }
    let mut domain: Option<String> = None;
    for addr in parsed.from()?.iter() {
        let d = addr.address()?.rsplit_once('@')?.1.to_ascii_lowercase();
        match &domain {
            Some(seen) if *seen != d => return None,
            _ => domain = Some(d),
        }
    }
    domain
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_folded_final_semicolon_is_joined() {
        let folded = "DKIM-Signature: v=1; b=abc\r\n\tdef\r\n\t;\r\n".to_owned();
        assert_eq!(
            super::unfold_last_semicolon(folded),
            "DKIM-Signature: v=1; b=abc\r\n\tdef;\r\n"
        );
        let plain = "DKIM-Signature: v=1;\r\n\tb=abc;\r\n".to_owned();
        assert_eq!(super::unfold_last_semicolon(plain.clone()), plain);
        // A fold after bh= is signed text: left alone.
        let inner = "DKIM-Signature: v=1; bh=xyz\r\n\t; b=abc;\r\n".to_owned();
        assert_eq!(super::unfold_last_semicolon(inner.clone()), inner);
    }

    use super::*;

    fn key(dir: &Path, domain: &str, selector: &str) -> Key {
        let k = crate::keys::ed25519().expect("key");
        let path = dir.join(format!("{domain}-{selector}.pem"));
        std::fs::write(&path, &k.private_pem).expect("write");
        Key::load(domain, selector, &path).expect("load")
    }

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("postel-sign-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn the_author_domain_needs_one_from_field_and_one_domain() {
        let one = b"From: A <a@Example.ORG>\r\nTo: b@c.test\r\n\r\nhi\r\n";
        assert_eq!(author_domain(one).as_deref(), Some("example.org"));
        let two_fields = b"From: a@example.org\r\nFrom: a@evil.test\r\n\r\nhi\r\n";
        assert_eq!(author_domain(two_fields), None);
        let two_domains = b"From: a@example.org, b@evil.test\r\n\r\nhi\r\n";
        assert_eq!(author_domain(two_domains), None);
        let same_domain = b"From: a@example.org, b@example.org\r\n\r\nhi\r\n";
        assert_eq!(author_domain(same_domain).as_deref(), Some("example.org"));
        assert_eq!(author_domain(b"Subject: none\r\n\r\n"), None);
    }

    #[test]
    fn every_key_of_the_domain_signs_and_a_parent_signs_for_subdomains() {
        let d = dir();
        let signer = Signer::new(vec![
            key(&d, "example.org", "a"),
            key(&d, "example.org", "b"),
            key(&d, "other.test", "c"),
        ]);
        let msg = |from: &str| {
            format!("From: {from}\r\nTo: x@y.test\r\nSubject: s\r\n\r\nbody\r\n").into_bytes()
        };
        let signed = String::from_utf8(signer.sign(&msg("a@example.org"))).expect("utf-8");
        assert_eq!(signed.matches("DKIM-Signature:").count(), 2, "{signed}");
        assert!(
            signed.contains("d=example.org") && signed.contains("s=a") && signed.contains("s=b")
        );
        assert!(!signed.contains("l="), "never l=");
        // h= lists From twice: once for the field, once for none more.
        let h = signed
            .split("h=")
            .nth(1)
            .expect("h=")
            .split(';')
            .next()
            .expect("h");
        assert_eq!(h.to_ascii_lowercase().matches("from").count(), 2, "{h}");
        let sub =
            String::from_utf8(signer.sign(&msg("MAILER-DAEMON@mx.example.org"))).expect("utf-8");
        assert_eq!(sub.matches("d=example.org").count(), 2, "{sub}");
        assert!(signer.sign(&msg("a@example.org.evil.test")).is_empty());
        assert!(signer.sign(&msg("a@unknown.test")).is_empty());
    }
}
