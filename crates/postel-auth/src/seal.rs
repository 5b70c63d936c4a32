//! ARC sealing (RFC 8617) where Postel forwards mail from outside: the
//! results of its own checks go on in an `ARC-Authentication-Results:`
//! field, with an `ARC-Message-Signature:` over the message as it arrived
//! and an `ARC-Seal:` over the chain, so that the next hop can trust what
//! Postel saw before forwarding changed the envelope (SPF) or the
//! message.
//!
//! Sealing happens inside the checks (`Verifier::message`), where the
//! parsed message and the chain's validation are at hand. Only a message
//! with no chain, or one whose chain passed, is sealed: a set on a failed
//! chain is of no use downstream (RFC 8617 5.1.2), and one on a chain
//! that could not be checked in time might claim the wrong instance.

use std::path::Path;

use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::Done;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::KeyError;
use crate::sign::{OVERSIGNED, SIGNED};

/// Seals with one RSA key (ARC verifiers know rsa-sha256; few know
/// Ed25519).
pub struct Sealer {
    /// The same key with signed-field lists of different lengths: see
    /// [`Sealer::seal`].
    sealers: Vec<ArcSealer<RsaKey<Sha256>, Done>>,
    domain: String,
}

/// Fields that may be signed as absent to shift where a signature's
/// `b=` ends (see [`Sealer::seal`]).
const SHIFTS: &[&str] = &["Sender", "Resent-From", "Resent-To"];

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Reads the RSA private key in `path` (PEM) for `domain` and
    /// `selector`.
    ///
    /// # Errors
    /// When the file cannot be read or holds no RSA key of 2048 bits or
    /// more.
    pub fn load(domain: &str, selector: &str, path: &Path) -> Result<Sealer, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let domain = domain.to_ascii_lowercase();
        let mut sealers = Vec::new();
        for shift in 0..=SHIFTS.len() {
            let der = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|_| KeyError::Format(path.to_owned()))?;
            let key = RsaKey::<Sha256>::from_key_der(der)
                .map_err(|_| KeyError::Format(path.to_owned()))?;
            // The public key's DER: a 2048-bit modulus makes 270 octets.
            if key.public_key().len() < 270 {
                return Err(KeyError::TooShort(path.to_owned()));
            }
            let fields = OVERSIGNED
                .iter()
                .chain(SIGNED)
                .chain(&["DKIM-Signature"])
                .chain(&SHIFTS[..shift])
                .copied();
            sealers.push(
                ArcSealer::from_key(key)
                    .domain(domain.clone())
                    .selector(selector)
                    .headers(fields),
            );
        }
        Ok(Sealer { sealers, domain })
    }

    /// The sealing domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The three fields of a new ARC set, CRLF-terminated, to put on top of
    /// `message`; None when the chain cannot be sealed (it failed, or
    /// holds the most sets there may be).
    ///
    /// mail-auth folds the line before a signature's final `;` when its
    /// `b=` value fills the line. RFC 6376 3.7 deletes the value with the
    /// whitespace around it, but dkimpy (and the ARC of Mailman, which uses
    /// it) keeps the fold, and the signature fails there. The seal's own
    /// fold can be joined (nothing else signs that field), but the
    /// message signature's cannot (the seal signs it as it is), so a set
    /// whose message signature ends folded is made again with one more
    /// field signed as absent, which moves where `b=` ends.
    pub(crate) fn seal(
        &self,
        message: &AuthenticatedMessage<'_>,
        results: &AuthenticationResults<'_>,
        arc: &ArcOutput<'_>,
    ) -> Option<String> {
        let mut last = None;
        for sealer in &self.sealers {
            let set = sealer.seal(message, results, arc).ok()?.to_header();
            let ams = set.find("ARC-Message-Signature:")?;
            let aar = set.find("ARC-Authentication-Results:")?;
            let (seal, rest) = set.split_at(ams);
            let tidy = format!(
                "{}{rest}",
                crate::sign::unfold_last_semicolon(seal.to_owned())
            );
            // The message signature ends before the results field.
            if !set[ams..aar].ends_with("\r\n\t;\r\n") {
                return Some(tidy);
            }
            last = Some(tidy);
        }
        last
    }
}
