//! New DKIM keys: an RSA-2048 and an Ed25519 key pair, the private keys
//! as PKCS#8 PEM (what [`crate::sign::Key::load`] reads), and the TXT
//! records to publish at `<selector>._domainkey.<domain>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

/// A new key pair.
pub struct NewKey {
    /// `rsa` or `ed25519`: the `k=` of the record.
    pub kind: &'static str,
    /// The private key, PKCS#8 PEM.
    pub private_pem: String,
    /// The record's text: `v=DKIM1; k=...; p=...`.
    pub record: String,
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a key: {0}")]
pub struct GenerateError(String);

/// A new RSA-2048 key (p= is the SubjectPublicKeyInfo, as opendkim-genkey
/// writes it and every verifier reads it).
///
/// # Errors
/// When the system's random source fails.
pub fn rsa_2048() -> Result<NewKey, GenerateError> {
    let err = |e: &dyn std::fmt::Display| GenerateError(e.to_string());
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(|e| err(&e))?;
    let pem = private.to_pkcs8_pem(LineEnding::LF).map_err(|e| err(&e))?;
    let public = rsa::RsaPublicKey::from(&private)
        .to_public_key_der()
        .map_err(|e| err(&e))?;
    Ok(NewKey {
        kind: "rsa",
        private_pem: pem.to_string(),
        record: format!("v=DKIM1; k=rsa; p={}", STANDARD.encode(public.as_bytes())),
    })
}

/// A new Ed25519 key (RFC 8463: p= is the raw 32-octet public key).
///
/// # Errors
/// When the system's random source fails.
pub fn ed25519() -> Result<NewKey, GenerateError> {
    let err = |e: &dyn std::fmt::Display| GenerateError(e.to_string());
    let pkcs8 = mail_auth::common::crypto::Ed25519Key::generate_pkcs8().map_err(|e| err(&e))?;
    let key = mail_auth::common::crypto::Ed25519Key::from_pkcs8_der(&pkcs8).map_err(|e| err(&e))?;
    Ok(NewKey {
        kind: "ed25519",
        private_pem: rsa::pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &pkcs8)
            .map_err(|e| err(&e))?,
        record: format!(
            "v=DKIM1; k=ed25519; p={}",
            STANDARD.encode(key.public_key())
        ),
    })
}

/// A TXT record's text as a zone file writes it: strings of at most 255
/// octets each (RFC 1035 3.3.14), in one parenthesized value.
pub fn zone_text(record: &str) -> String {
    let parts: Vec<String> = record
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("( {} )", parts.join("\n\t"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ed25519_key_loads_and_its_record_holds_its_public_key() {
        let k = ed25519().expect("key");
        let dir = tempfile_dir();
        let path = dir.join("e.pem");
        std::fs::write(&path, &k.private_pem).expect("write");
        let key = crate::sign::Key::load("Example.ORG", "s1", &path).expect("load");
        assert_eq!(key.algorithm(), "ed25519-sha256");
        assert_eq!(key.domain(), "example.org");
        let p = k.record.rsplit_once("p=").expect("p=").1;
        assert_eq!(STANDARD.decode(p).expect("base64").len(), 32);
    }

    #[test]
    fn long_records_are_split_into_strings() {
        let rec = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        let z = zone_text(&rec);
        assert!(z.starts_with("( \""));
        let joined: String = z
            .split('"')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(joined, rec);
        assert_eq!(zone_text("v=DKIM1"), "\"v=DKIM1\"");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("postel-auth-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }
}
