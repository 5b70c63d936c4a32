//! DANE for SMTP (RFC 7672): TLSA records, from DNSSEC-validated answers,
//! that say which certificate an MX host must present.
//!
//! - The destination's MX RRset must be secure (validated up to the trust
//!   anchor), else DANE does not apply and the destination keeps the
//!   opportunistic (or MTA-STS) policy; a bogus one defers.
//! - Each MX host's `_<port>._tcp.<host>` TLSA RRset: secure and usable
//!   (usage 3 DANE-EE or 2 DANE-TA; selector 0 or 1; matching 0, 1 or 2)
//!   makes the host DANE-authenticated; none, or an insecure answer, leaves
//!   the host opportunistic; a bogus answer or a failed lookup skips it.
//! - Over TLS, [`DaneVerifier`] accepts a certificate a record matches:
//!   DANE-EE by the end-entity certificate or its public key alone (no
//!   name, no expiry: RFC 7672 3.1.1); DANE-TA by a certificate of the
//!   chain as its trust anchor, with the chain and the MX name checked.
//!
//! Off by default (`[delivery] dane`): a resolver that does not pass
//! DNSSEC records on would make every answer bogus and defer all mail.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{RData, RecordType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// One usable TLSA record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// 2: DANE-TA, 3: DANE-EE.
    pub usage: u8,
    /// 0: the whole certificate, 1: its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0: exact, 1: SHA-256, 2: SHA-512.
    pub matching: u8,
    /// The association data.
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Whether a record of these numbers can be used for SMTP (RFC 7672
    /// 3.1: PKIX-TA and PKIX-EE, usages 0 and 1, are not).
    fn usable(usage: u8, selector: u8, matching: u8) -> bool {
        matches!(usage, 2 | 3) && matches!(selector, 0 | 1) && matches!(matching, 0..=2)
    }

    /// Whether `cert` (DER) matches this record.
    fn matches(&self, cert: &[u8]) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.to_vec(),
            _ => match x509_parser::parse_x509_certificate(cert) {
                Ok((_, c)) => c.tbs_certificate.subject_pki.raw.to_vec(),
                Err(_) => return false,
            },
        };
        let digest = |alg| ring::digest::digest(alg, &selected).as_ref().to_vec();
        let value = match self.matching {
            0 => selected,
            1 => digest(&ring::digest::SHA256),
            _ => digest(&ring::digest::SHA512),
        };
        value == self.data
    }
}

/// What DNSSEC says of a destination or a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// A secure answer.
    Secure(T),
    /// Insecure (an unsigned zone), or securely absent: DANE does not
    /// apply.
    Insecure,
    /// Bogus, or the lookup failed: do not deliver there now.
    Bogus(String),
}

/// The validating resolver DANE asks.
#[derive(Clone)]
pub struct Dane {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dane").finish_non_exhaustive()
    }
}

impl Dane {
    /// A validating resolver asking `nameservers` (or the system's), with
    /// the DNSKEY records in `trust_anchor` (or the IANA root keys).
    ///
    /// # Errors
    /// When the trust anchor cannot be read or the resolver set up.
    pub fn new(nameservers: &[SocketAddr], trust_anchor: Option<&Path>) -> Result<Dane, String> {
        let anchors = match trust_anchor {
            Some(path) => {
                TrustAnchors::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => TrustAnchors::default(),
        };
        let mut builder = crate::mx::resolver_builder(nameservers)?;
        let opts = builder.options_mut();
        opts.validate = true;
        // Most hosts have no TLSA records: their denial is kept a while
        // (hickory keeps no negative TTL when it validates).
        opts.negative_min_ttl = Some(std::time::Duration::from_secs(60));
        let resolver = builder
            .with_trust_anchor(Arc::new(anchors))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Dane { resolver })
    }

    /// `domain`'s MX host names (lowercase, no final dot), when its MX
    /// RRset is secure: the hosts DANE may be used with. The plain
    /// resolver's answer is not trusted for that.
    pub async fn mx(&self, domain: &str) -> Lookup<Vec<String>> {
        let name = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.lookup(name.as_str(), RecordType::MX).await {
            Ok(l) => {
                let answers = of_type(l.answers(), RecordType::MX);
                let hosts = answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some(
                            mx.exchange
                                .to_ascii()
                                .trim_end_matches('.')
                                .to_ascii_lowercase(),
                        ),
                        _ => None,
                    })
                    .collect();
                proof_of(answers.iter().map(|r| r.proof), hosts)
            }
            Err(e) => negative(&e),
        }
    }

    /// The usable TLSA records of `host` for `port`.
    pub async fn tlsa(&self, host: &str, port: u16) -> Lookup<Vec<Tlsa>> {
        let name = format!("_{port}._tcp.{}.", host.trim_end_matches('.'));
        match self.resolver.lookup(name.as_str(), RecordType::TLSA).await {
            Ok(l) => {
                let answers = of_type(l.answers(), RecordType::TLSA);
                let records: Vec<Tlsa> = answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TLSA(t) => {
                            let (u, s, m) = (
                                u8::from(t.cert_usage),
                                u8::from(t.selector),
                                u8::from(t.matching),
                            );
                            Tlsa::usable(u, s, m).then(|| Tlsa {
                                usage: u,
                                selector: s,
                                matching: m,
                                data: t.cert_data.clone(),
                            })
                        }
                        _ => None,
                    })
                    .collect();
                match proof_of(answers.iter().map(|r| r.proof), ()) {
                    // RFC 7672 2.2: only unusable records (PKIX-TA,
                    // PKIX-EE): TLS is still required, unauthenticated
                    // (an empty list says so).
                    Lookup::Secure(()) => Lookup::Secure(records),
                    Lookup::Insecure => Lookup::Insecure,
                    Lookup::Bogus(e) => Lookup::Bogus(e),
                }
            }
            Err(e) => negative(&e),
        }
    }
}

/// The answers of `wanted` type (and CNAMEs on the way), without the
/// RRSIGs: only the signature a validator used carries a proof, so a
/// second one (a key rollover) would read as bogus.
fn of_type(
    answers: &[hickory_resolver::proto::rr::Record],
    wanted: RecordType,
) -> Vec<&hickory_resolver::proto::rr::Record> {
    answers
        .iter()
        .filter(|r| r.record_type() == wanted || r.record_type() == RecordType::CNAME)
        .collect()
}

/// The proof of an RRset: secure only if every record is.
fn proof_of<T>(proofs: impl Iterator<Item = Proof>, value: T) -> Lookup<T> {
    let proofs: Vec<Proof> = proofs.collect();
    if proofs.is_empty() {
        return Lookup::Insecure;
    }
    if proofs.iter().all(|p| *p == Proof::Secure) {
        Lookup::Secure(value)
    } else if proofs.iter().all(|p| *p == Proof::Insecure) {
        Lookup::Insecure
    } else {
        Lookup::Bogus(format!("DNSSEC: {:?}", proofs[0]))
    }
}

/// A failed lookup: no records is no DANE, if the denial comes from a
/// zone above the name (its SOA's owner) that is secure or provably
/// unsigned; a denial that names some other zone (a forged SOA of an
/// unsigned zone elsewhere would pass hickory), a bogus denial or a
/// failure is bogus.
fn negative<T>(e: &NetError) -> Lookup<T> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(no)) => {
            let from_above = no.soa.as_ref().is_some_and(|soa| {
                soa.name.zone_of(no.query.name())
                    && matches!(soa.proof, Proof::Secure | Proof::Insecure)
            });
            if from_above {
                Lookup::Insecure
            } else {
                Lookup::Bogus("a denial without its zone's SOA".to_owned())
            }
        }
        NetError::Dns(DnsError::Nsec { proof, .. }) if *proof == Proof::Insecure => {
            Lookup::Insecure
        }
        e => Lookup::Bogus(e.to_string()),
    }
}

/// Checks a server's certificate against its TLSA records.
#[derive(Debug)]
pub struct DaneVerifier {
    records: Arc<Vec<Tlsa>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl DaneVerifier {
    /// A verifier for `records`.
    pub fn new(records: Arc<Vec<Tlsa>>) -> DaneVerifier {
        DaneVerifier {
            records,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// A client config that checks certificates by `records` alone.
    pub fn config(records: Arc<Vec<Tlsa>>) -> Arc<rustls::ClientConfig> {
        let verifier = Arc::new(DaneVerifier::new(records));
        let provider = verifier.provider.clone();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| rustls::ClientConfig::builder());
        Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth(),
        )
    }

    /// DANE-TA: a certificate of the chain that `record` matches, as the
    /// trust anchor of a PKIX check of the chain and `name`.
    fn trust_anchor_verifies(
        &self,
        record: &Tlsa,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> bool {
        let Some(anchor) = intermediates.iter().find(|c| record.matches(c)) else {
            return false;
        };
        let mut roots = rustls::RootCertStore::empty();
        if roots.add(anchor.clone()).is_err() {
            return false;
        }
        let Ok(pkix) = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build() else {
            return false;
        };
        let rest: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|c| c.as_ref() != anchor.as_ref())
            .cloned()
            .collect();
        pkix.verify_server_cert(end_entity, &rest, name, &[], now)
            .is_ok()
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok = self.records.iter().any(|r| match r.usage {
            3 => r.matches(end_entity),
            _ => self.trust_anchor_verifies(r, end_entity, intermediates, server_name, now),
        });
        if ok {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "no TLSA record matches the certificate (DANE)".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
