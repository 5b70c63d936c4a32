//! SCRAM-SHA-256 (RFC 5802, RFC 7677), the server's keys: made from the
//! password when it is set (they cannot be made from the Argon2 hash),
//! kept in RFC 5803's text form, and the client's proof checked against
//! them. The messages themselves are parsed in `postel_proto::scram`.
//!
//! The keys let nobody log in (the server never learns the ClientKey), but
//! a stolen copy can be attacked offline at the cost of [`ITERATIONS`]
//! rounds of PBKDF2 per guess, far less than Argon2 costs: keep the store
//! private, as every file of Postel's is.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// PBKDF2 rounds for new keys. RFC 7677 asks for at least 4096; this many
/// costs a client a few milliseconds once per login.
pub const ITERATIONS: u32 = 10_000;
/// The most rounds a stored key may ask of a client (a bound on what a
/// tampered store can make clients do).
const MAX_ITERATIONS: u32 = 1_000_000;
const SALT_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// A user's stored keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// PBKDF2 rounds.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// H(ClientKey): what the proof is checked against.
    pub stored_key: [u8; KEY_LEN],
    /// The key the server signs with, proving it knows the keys.
    pub server_key: [u8; KEY_LEN],
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why no keys can be made from a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// SASLprep (RFC 4013) forbids a character in it: such a password can
    /// still be used with PLAIN and LOGIN.
    #[error("the password holds a character that SASLprep forbids")]
    Prohibited,
    /// The system's random source failed.
    #[error("no random salt could be made")]
    Random,
}

fn hmac256(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0; KEY_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0; KEY_LEN];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// Random octets, for salts and nonces.
fn random<const N: usize>() -> Result<[u8; N], ScramError> {
    let mut out = [0; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| ScramError::Random)?;
    Ok(out)
}

/// A fresh server nonce: 18 random octets in base64 (no comma in it).
///
/// # Errors
/// When the system's random source fails.
pub fn nonce() -> Result<String, ScramError> {
    Ok(STANDARD.encode(random::<18>()?))
}

impl ScramKeys {
    /// New keys for `password`, with a random salt and [`ITERATIONS`].
    ///
    /// # Errors
    /// [`ScramError::Prohibited`] when SASLprep refuses the password.
    pub fn new(password: &str) -> Result<ScramKeys, ScramError> {
        Self::derive(password, &random::<SALT_LEN>()?, ITERATIONS)
    }

    /// The keys for `password` with this salt and round count.
    ///
    /// # Errors
    /// [`ScramError::Prohibited`] when SASLprep refuses the password.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Result<ScramKeys, ScramError> {
        let prepared = stringprep::saslprep(password).map_err(|_| ScramError::Prohibited)?;
        let mut salted = [0; KEY_LEN];
        let rounds =
            std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            salt,
            prepared.as_bytes(),
            &mut salted,
        );
        Ok(ScramKeys {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&hmac256(&salted, b"Client Key")),
            server_key: hmac256(&salted, b"Server Key"),
        })
    }

    /// Keys that no proof matches, the same for the same `user` while the
    /// process runs: given for users who do not exist or have no keys, so
    /// that they cannot be told apart from a wrong password.
    pub fn decoy(secret: &[u8; KEY_LEN], user: &str) -> ScramKeys {
        let salt = hmac256(secret, format!("salt\0{user}").as_bytes());
        ScramKeys {
            iterations: ITERATIONS,
            salt: salt[..SALT_LEN].to_vec(),
            // The hash of no ClientKey anyone knows.
            stored_key: hmac256(secret, format!("stored\0{user}").as_bytes()),
            server_key: hmac256(secret, format!("server\0{user}").as_bytes()),
        }
    }

    /// A secret for [`ScramKeys::decoy`].
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn decoy_secret() -> Result<[u8; KEY_LEN], ScramError> {
        random()
    }

    /// RFC 5803's form: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    /// Reads [`ScramKeys::to_text`]'s form; None if it is not that.
    pub fn from_text(text: &str) -> Option<ScramKeys> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok()?;
        if !(1..=MAX_ITERATIONS).contains(&iterations) {
            return None;
        }
        let key = |s: &str| -> Option<[u8; KEY_LEN]> { STANDARD.decode(s).ok()?.try_into().ok() };
        Some(ScramKeys {
            iterations,
            salt: STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// Checks the client's proof of `auth_message`. On success, returns
    /// the server's final message (`v=` and its signature), which proves to
    /// the client that this server holds the keys.
    pub fn verify(&self, auth_message: &str, proof: &[u8]) -> Option<String> {
        if proof.len() != KEY_LEN {
            return None;
        }
        let signature = hmac256(&self.stored_key, auth_message.as_bytes());
        let mut client_key = [0; KEY_LEN];
        for (k, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature)) {
            *k = p ^ s;
        }
        // Compared without an early exit, so time says nothing of where
        // the first difference is.
        let differs = sha256(&client_key)
            .iter()
            .zip(self.stored_key)
            .fold(0, |acc, (a, b)| acc | (a ^ b));
        (differs == 0).then(|| {
            let server_signature = hmac256(&self.server_key, auth_message.as_bytes());
            format!("v={}", STANDARD.encode(server_signature))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    const AUTH_MESSAGE: &str = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

    fn rfc_keys() -> ScramKeys {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        ScramKeys::derive("pencil", &salt, 4096).expect("keys")
    }

    #[test]
    fn the_rfc_7677_proof_and_signature() {
        let proof = STANDARD
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .expect("proof");
        assert_eq!(
            rfc_keys().verify(AUTH_MESSAGE, &proof).as_deref(),
            Some("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        );
        let mut wrong = proof.clone();
        wrong[31] ^= 1;
        assert_eq!(rfc_keys().verify(AUTH_MESSAGE, &wrong), None);
        assert_eq!(rfc_keys().verify(AUTH_MESSAGE, &proof[..31]), None);
        let other = ScramKeys::derive("pencil2", &rfc_keys().salt, 4096).expect("keys");
        assert_eq!(other.verify(AUTH_MESSAGE, &proof), None);
    }

    #[test]
    fn text_form_round_trips_and_bad_forms_are_none() {
        let keys = ScramKeys::new("correct horse").expect("keys");
        assert_eq!(keys.iterations, ITERATIONS);
        let text = keys.to_text();
        assert!(text.starts_with("SCRAM-SHA-256$10000:"), "{text}");
        assert_eq!(ScramKeys::from_text(&text), Some(keys));
        for bad in [
            "",
            "$argon2id$v=19$m=19456,t=2,p=1$abc$def",
            "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$99999999:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:$x:y",
        ] {
            assert_eq!(ScramKeys::from_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn saslprep_applies_and_forbids() {
        // U+00A0 (no-break space) maps to a space (RFC 4013 2.1).
        let salt = b"salty";
        assert!(
            ScramKeys::derive("a\u{a0}b", salt, 4096).expect("keys")
                == ScramKeys::derive("a b", salt, 4096).expect("keys")
        );
        assert_eq!(
            ScramKeys::derive("bell\u{7}", salt, 4096),
            Err(ScramError::Prohibited)
        );
    }

    #[test]
    fn decoys_are_stable_per_user_and_match_nothing() {
        let secret = [7; KEY_LEN];
        let a = ScramKeys::decoy(&secret, "ghost");
        assert_eq!(a, ScramKeys::decoy(&secret, "ghost"));
        assert_ne!(a.salt, ScramKeys::decoy(&secret, "other").salt);
        assert_eq!(a.verify(AUTH_MESSAGE, &[0; KEY_LEN]), None);
    }
}
