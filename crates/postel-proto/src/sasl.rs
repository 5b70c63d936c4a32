//! SASL for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN mechanisms,
//! decoded from base64 lines into credentials. SCRAM's messages are in
//! [`crate::scram`].
//!
//! Only decoding lives here; the session sequences the exchange and the
//! backend checks the credentials. A password is held in a [`Secret`], whose
//! `Debug` never shows it, so it cannot leak into a log by accident.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// RFC 4954 section 4: a SASL line may be 12,288 octets long.
pub const MAX_SASL_LINE: usize = 12_288;

/// A supported mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616
    Plain,
    /// The de-facto LOGIN mechanism (draft-murchison-sasl-login).
    Login,
    /// RFC 7677 (see [`crate::scram`]).
    ScramSha256,
}

impl Mechanism {
    /// Parses a mechanism name, any case.
    pub fn parse(name: &[u8]) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case(b"PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case(b"LOGIN") {
            Some(Mechanism::Login)
        } else if name.eq_ignore_ascii_case(crate::scram::NAME.as_bytes()) {
            Some(Mechanism::ScramSha256)
        } else {
            None
        }
    }

    /// The name as advertised.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::ScramSha256 => crate::scram::NAME,
        }
    }
}

/// A string that must not be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a client response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `*` (RFC 4954: reply 501 5.0.0).
    #[error("authentication cancelled")]
    Cancelled,
    /// Not base64, not UTF-8, or not the mechanism's shape (reply 501 5.5.2).
    #[error("cannot decode response")]
    Decode,
}

/// Decodes one client response line. `=` is the empty initial response
/// (RFC 4954 section 4).
///
/// # Errors
/// [`SaslError::Cancelled`] for `*`, [`SaslError::Decode`] for anything that
/// is not base64 of UTF-8 text.
pub fn decode_line(line: &[u8]) -> Result<String, SaslError> {
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    if line == b"=" {
        return Ok(String::new());
    }
    let bytes = STANDARD.decode(line).map_err(|_| SaslError::Decode)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Decode)
}

/// Splits a PLAIN message, `authzid NUL authcid NUL passwd`, into
/// `(authzid, username, password)`.
///
/// # Errors
/// [`SaslError::Decode`] when it is not of that shape or the user name or
/// password is empty.
pub fn parse_plain(message: &str) -> Result<(String, String, Secret), SaslError> {
    let mut parts = message.split('\0');
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Decode);
    };
    if user.is_empty() || pass.is_empty() {
        return Err(SaslError::Decode);
    }
    Ok((authz.to_owned(), user.to_owned(), Secret(pass.to_owned())))
}

/// The base64 challenge text of a 334 reply.
pub fn challenge(text: &str) -> String {
    STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_lines() {
        assert_eq!(decode_line(b"dXNlcg=="), Ok("user".into()));
        assert_eq!(decode_line(b"="), Ok(String::new()));
        assert_eq!(decode_line(b"*"), Err(SaslError::Cancelled));
        assert_eq!(decode_line(b"not base64!"), Err(SaslError::Decode));
        assert_eq!(
            decode_line(b"/w=="),
            Err(SaslError::Decode),
            "0xff is not UTF-8"
        );
    }

    #[test]
    fn plain_shape() {
        let (z, u, p) = parse_plain("\0alice\0pw").expect("valid");
        assert_eq!((z.as_str(), u.as_str(), p.0.as_str()), ("", "alice", "pw"));
        assert!(parse_plain("admin\0alice\0pw").is_ok());
        for bad in ["alice\0pw", "\0\0pw", "\0alice\0", "a\0b\0c\0d", ""] {
            assert_eq!(parse_plain(bad), Err(SaslError::Decode), "{bad:?}");
        }
    }

    #[test]
    fn secret_is_not_printed() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(..)");
    }

    #[test]
    fn login_challenges() {
        assert_eq!(challenge("Username:"), "VXNlcm5hbWU6");
        assert_eq!(challenge("Password:"), "UGFzc3dvcmQ6");
    }
}
