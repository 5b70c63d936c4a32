//! The messages of SCRAM-SHA-256 (RFC 5802, RFC 7677) as SMTP AUTH carries
//! them: the client's first and final messages parsed, the server's first
//! message written. Syntax only: the keys and the proof are checked by the
//! driver (postel-policy), which holds the users' stored keys.
//!
//! Channel binding (the `-PLUS` variant) is not offered, so a client may
//! say `n` (it has none) or `y` (it has, but we did not offer it); a client
//! that asks for it (`p=`) is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::sasl::SaslError;

/// The mechanism's name, as advertised.
pub const NAME: &str = "SCRAM-SHA-256";

/// The client's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The GS2 header as sent (`n,,` or `n,a=alice,`): the final message
    /// must repeat it, in base64, as its channel binding.
    pub gs2_header: String,
    /// The identity to act as (`a=`), decoded; empty if none.
    pub authzid: String,
    /// The user name (`n=`), decoded.
    pub username: String,
    /// The client's nonce (`r=`).
    pub nonce: String,
    /// The message without its GS2 header: the first part of the signed
    /// AuthMessage.
    pub bare: String,
}

/// The client's final message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    /// Everything before `,p=`: the last part of the AuthMessage.
    pub without_proof: String,
    /// The ClientProof, decoded.
    pub proof: Vec<u8>,
}

/// Decodes a `saslname` (RFC 5802 section 7): `=2C` is a comma, `=3D` an
/// equals sign, and no other `=` or `,` may appear.
fn saslname(s: &str) -> Result<String, SaslError> {
    if s.is_empty() || s.contains(',') {
        return Err(SaslError::Decode);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslError::Decode),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A nonce: printable ASCII other than a comma (RFC 5802 section 7).
fn valid_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Parses the client's first message.
///
/// # Errors
/// [`SaslError::Decode`] for anything that is not a client-first-message
/// of RFC 5802 section 7, for a request of channel binding, and for the
/// reserved `m=` extension.
pub fn parse_client_first(message: &str) -> Result<ClientFirst, SaslError> {
    let mut parts = message.splitn(3, ',');
    let (Some(flag), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Decode);
    };
    if flag != "n" && flag != "y" {
        return Err(SaslError::Decode);
    }
    let authzid = match authz {
        "" => String::new(),
        a => saslname(a.strip_prefix("a=").ok_or(SaslError::Decode)?)?,
    };
    let mut attrs = bare.split(',');
    let username = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or(SaslError::Decode)
        .and_then(saslname)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| valid_nonce(n))
        .ok_or(SaslError::Decode)?;
    // Extensions may follow; none is known, and each must be `x=value`.
    if attrs.any(|a| a.len() < 2 || a.as_bytes()[1] != b'=') {
        return Err(SaslError::Decode);
    }
    Ok(ClientFirst {
        gs2_header: message[..flag.len() + authz.len() + 2].to_owned(),
        authzid,
        username,
        nonce: nonce.to_owned(),
        bare: bare.to_owned(),
    })
}

/// The server's first message: the whole nonce (the client's, then ours),
/// the salt and the iteration count.
pub fn server_first(
    client_nonce: &str,
    server_nonce: &str,
    salt: &[u8],
    iterations: u32,
) -> String {
    format!(
        "r={client_nonce}{server_nonce},s={},i={iterations}",
        STANDARD.encode(salt)
    )
}

/// The whole nonce in a server's first message.
fn nonce_of(server_first: &str) -> Option<&str> {
    server_first.split(',').next()?.strip_prefix("r=")
}

/// Parses the client's final message and checks that it repeats the GS2
/// header and the whole nonce of `server_first`.
///
/// # Errors
/// [`SaslError::Decode`] when it is not a client-final-message, names
/// another channel binding or nonce, or its proof is not base64.
pub fn parse_client_final(
    message: &str,
    gs2_header: &str,
    server_first: &str,
) -> Result<ClientFinal, SaslError> {
    let (without_proof, proof) = message.rsplit_once(",p=").ok_or(SaslError::Decode)?;
    let mut attrs = without_proof.split(',');
    let binding = attrs.next().and_then(|a| a.strip_prefix("c="));
    let nonce = attrs.next().and_then(|a| a.strip_prefix("r="));
    if binding != Some(STANDARD.encode(gs2_header).as_str()) || nonce != nonce_of(server_first) {
        return Err(SaslError::Decode);
    }
    let proof = STANDARD.decode(proof).map_err(|_| SaslError::Decode)?;
    Ok(ClientFinal {
        without_proof: without_proof.to_owned(),
        proof,
    })
}

/// The AuthMessage both sides sign (RFC 5802 section 3).
pub fn auth_message(first: &ClientFirst, server_first: &str, last: &ClientFinal) -> String {
    format!("{},{server_first},{}", first.bare, last.without_proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3's example exchange.
    const FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    #[test]
    fn the_rfc_7677_exchange() {
        let first = parse_client_first(FIRST).expect("first");
        assert_eq!(first.gs2_header, "n,,");
        assert_eq!(
            (first.username.as_str(), first.authzid.as_str()),
            ("user", "")
        );
        assert_eq!(first.nonce, "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first.bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        assert_eq!(
            server_first(&first.nonce, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", &salt, 4096),
            SERVER_FIRST
        );
        let last = parse_client_final(FINAL, &first.gs2_header, SERVER_FIRST).expect("final");
        assert_eq!(last.proof.len(), 32);
        assert_eq!(
            auth_message(&first, SERVER_FIRST, &last),
            format!(
                "n=user,r=rOprNGfwEbeRWgbNEkqO,{SERVER_FIRST},c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
            )
        );
    }

    #[test]
    fn names_and_authzid_are_unescaped() {
        let first = parse_client_first("y,a=ad=3Dmin,n=a=2Cb,r=xyz,e=ext").expect("first");
        assert_eq!(first.gs2_header, "y,a=ad=3Dmin,");
        assert_eq!(
            (first.authzid.as_str(), first.username.as_str()),
            ("ad=min", "a,b")
        );
    }

    #[test]
    fn malformed_first_messages() {
        for bad in [
            "",
            "n,,",
            "p=tls-unique,,n=user,r=abc",
            "x,,n=user,r=abc",
            "n,,m=ext,n=user,r=abc",
            "n,,n=,r=abc",
            "n,,n=us=er,r=abc",
            "n,,n=user",
            "n,,n=user,r=",
            "n,,n=user,r=a\u{7f}b",
            "n,z=x,n=user,r=abc",
            "n,,n=user,r=abc,bad",
        ] {
            assert_eq!(parse_client_first(bad), Err(SaslError::Decode), "{bad:?}");
        }
    }

    #[test]
    fn final_must_repeat_binding_and_nonce() {
        let ok = parse_client_final(FINAL, "n,,", SERVER_FIRST);
        assert!(ok.is_ok());
        // Another GS2 header (y instead of n), another nonce, no proof,
        // a proof that is not base64.
        assert!(parse_client_final(FINAL, "y,,", SERVER_FIRST).is_err());
        let other_nonce = FINAL.replace("k0,p", "k1,p");
        assert!(parse_client_final(&other_nonce, "n,,", SERVER_FIRST).is_err());
        assert!(parse_client_final("c=biws,r=x", "n,,", SERVER_FIRST).is_err());
        let bad_proof = FINAL.replace("p=dHz", "p=!Hz");
        assert!(parse_client_final(&bad_proof, "n,,", SERVER_FIRST).is_err());
    }
}
