//! A command line (without its line ending) to a verb and its arguments.
//!
//! Parsing is in two steps on purpose: [`Verb::split`] names the verb, the
//! session checks the command sequence (a `503` beats a `501`, as RFC 5321
//! 4.1.4 and Postfix order them), and only then are the arguments parsed by
//! the `parse_*` functions here.

use crate::address::{self, AddressError, ForwardPath, ReversePath};
use crate::params::{self, MailParams, ParamError, RcptParams};

/// The commands Postel knows. Anything else is [`Verb::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// RFC 5321 4.1.1.1
    Ehlo,
    /// RFC 5321 4.1.1.1
    Helo,
    /// RFC 5321 4.1.1.2
    Mail,
    /// RFC 5321 4.1.1.3
    Rcpt,
    /// RFC 5321 4.1.1.4
    Data,
    /// RFC 3030
    Bdat,
    /// RFC 5321 4.1.1.5
    Rset,
    /// RFC 5321 4.1.1.6
    Vrfy,
    /// RFC 5321 4.1.1.7
    Expn,
    /// RFC 5321 4.1.1.8
    Help,
    /// RFC 5321 4.1.1.9
    Noop,
    /// RFC 5321 4.1.1.10
    Quit,
    /// RFC 3207
    StartTls,
    /// RFC 4954
    Auth,
    /// Known verbs Postel does not implement: TURN, ETRN, ATRN, SEND, SOML,
    /// SAML (contract: "recognised, not implemented").
    NotImplemented,
    /// Not a command.
    Unknown,
}

impl Verb {
    /// How many verbs there are (the length of a per-verb table).
    pub const COUNT: usize = 16;

    /// Every verb, in the order of [`Verb::index`].
    pub const ALL: [Verb; Verb::COUNT] = [
        Verb::Ehlo,
        Verb::Helo,
        Verb::Mail,
        Verb::Rcpt,
        Verb::Data,
        Verb::Bdat,
        Verb::Rset,
        Verb::Vrfy,
        Verb::Expn,
        Verb::Help,
        Verb::Noop,
        Verb::Quit,
        Verb::StartTls,
        Verb::Auth,
        Verb::NotImplemented,
        Verb::Unknown,
    ];

    /// This verb's place in [`Verb::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A lowercase label for metrics: the verb, or `not_implemented` /
    /// `unknown`.
    pub fn label(self) -> &'static str {
        match self {
            Verb::Ehlo => "ehlo",
            Verb::Helo => "helo",
            Verb::Mail => "mail",
            Verb::Rcpt => "rcpt",
            Verb::Data => "data",
            Verb::Bdat => "bdat",
            Verb::Rset => "rset",
            Verb::Vrfy => "vrfy",
            Verb::Expn => "expn",
            Verb::Help => "help",
            Verb::Noop => "noop",
            Verb::Quit => "quit",
            Verb::StartTls => "starttls",
            Verb::Auth => "auth",
            Verb::NotImplemented => "not_implemented",
            Verb::Unknown => "unknown",
        }
    }

    /// Splits a line into its verb and the arguments after the first space
    /// (leading and trailing spaces of the arguments removed).
    pub fn split(line: &[u8]) -> (Verb, &[u8]) {
        let (word, args) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], trim(&line[i + 1..])),
            None => (line, &line[line.len()..]),
        };
        let verb = match word.len() {
            4 => {
                let mut w = [0u8; 4];
                w.copy_from_slice(word);
                w.make_ascii_uppercase();
                match &w {
                    b"EHLO" => Verb::Ehlo,
                    b"HELO" => Verb::Helo,
                    b"MAIL" => Verb::Mail,
                    b"RCPT" => Verb::Rcpt,
                    b"DATA" => Verb::Data,
                    b"BDAT" => Verb::Bdat,
                    b"RSET" => Verb::Rset,
                    b"VRFY" => Verb::Vrfy,
                    b"EXPN" => Verb::Expn,
                    b"HELP" => Verb::Help,
                    b"NOOP" => Verb::Noop,
                    b"QUIT" => Verb::Quit,
                    b"AUTH" => Verb::Auth,
                    b"TURN" | b"ETRN" | b"ATRN" | b"SEND" | b"SOML" | b"SAML" => {
                        Verb::NotImplemented
                    }
                    _ => Verb::Unknown,
                }
            }
            8 if word.eq_ignore_ascii_case(b"STARTTLS") => Verb::StartTls,
            _ => Verb::Unknown,
        };
        (verb, args)
    }

    /// The verb's name, for usage texts.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Ehlo => "EHLO",
            Verb::Helo => "HELO",
            Verb::Mail => "MAIL",
            Verb::Rcpt => "RCPT",
            Verb::Data => "DATA",
            Verb::Bdat => "BDAT",
            Verb::Rset => "RSET",
            Verb::Vrfy => "VRFY",
            Verb::Expn => "EXPN",
            Verb::Help => "HELP",
            Verb::Noop => "NOOP",
            Verb::Quit => "QUIT",
            Verb::StartTls => "STARTTLS",
            Verb::Auth => "AUTH",
            Verb::NotImplemented | Verb::Unknown => "",
        }
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    &s[start..end]
}

/// Why a MAIL or RCPT argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// No `FROM:`/`TO:` or no `<...>` (reply 501).
    #[error("command syntax")]
    Structure,
    /// The path is not a valid mailbox (reply 553).
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A parameter was refused (reply 555 or 501).
    #[error(transparent)]
    Param(#[from] ParamError),
}

/// Strips `FROM:` / `TO:` (any case, optional spaces after the colon, as
/// Postfix allows) and splits the path from the parameters.
fn path_and_params<'a>(args: &'a [u8], keyword: &[u8]) -> Result<(&'a [u8], &'a [u8]), PathError> {
    let rest = args
        .get(..keyword.len())
        .filter(|k| k.eq_ignore_ascii_case(keyword))
        .map(|_| trim(&args[keyword.len()..]))
        .ok_or(PathError::Structure)?;
    let (path, params) = address::split_path(rest).ok_or(PathError::Structure)?;
    // Parameters must be separated from the path by a space.
    if !params.is_empty() && params[0] != b' ' {
        return Err(PathError::Structure);
    }
    Ok((path, params))
}

/// Parses the arguments of MAIL: `FROM:<reverse-path> [params]`.
///
/// # Errors
/// See [`PathError`].
pub fn parse_mail(args: &[u8]) -> Result<(ReversePath, MailParams), PathError> {
    let (path, params) = path_and_params(args, b"FROM:")?;
    let utf8 = params::wants_smtputf8(params);
    let from = address::parse_reverse_path(path, utf8)?;
    let params = params::parse_mail_params(params)?;
    Ok((from, params))
}

/// Parses the arguments of RCPT: `TO:<forward-path> [params]`. `utf8` is
/// whether the transaction's MAIL carried SMTPUTF8.
///
/// # Errors
/// See [`PathError`].
pub fn parse_rcpt(args: &[u8], utf8: bool) -> Result<(ForwardPath, RcptParams), PathError> {
    let (path, params) = path_and_params(args, b"TO:")?;
    let to = address::parse_forward_path(path, utf8)?;
    let params = params::parse_rcpt_params(params)?;
    Ok((to, params))
}

/// Parses the argument of EHLO/HELO: a domain, or (EHLO only, RFC 5321
/// 4.1.1.1) an address literal. Returns the name as text.
///
/// Underscores are allowed in the labels: they are not in the RFC 5321
/// grammar, but Windows machines name themselves with them and refusing
/// them would refuse real clients for no safety gain (Postfix does the same).
pub fn parse_helo(args: &[u8], extended: bool) -> Option<String> {
    if args.is_empty() || args.contains(&b' ') {
        return None;
    }
    let relaxed: Vec<u8> = args
        .iter()
        .map(|&b| if b == b'_' { b'a' } else { b })
        .collect();
    let ok = address::is_domain(&relaxed, false) || (extended && address::is_address_literal(args));
    ok.then(|| String::from_utf8_lossy(args).into_owned())
}

/// The arguments of BDAT: the chunk size and whether it is the last chunk.
///
/// Returns `None` when the size is not a number or anything but `LAST`
/// follows it (RFC 3030: `bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ]`).
pub fn parse_bdat(args: &[u8]) -> Option<(u64, bool)> {
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let size = words.next()?;
    if size.is_empty() || size.len() > 19 || !size.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = size.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((n, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Mailbox;

    #[test]
    fn verb_table_is_in_index_order() {
        for (i, v) in Verb::ALL.iter().enumerate() {
            assert_eq!(v.index(), i, "{v:?}");
        }
        let labels: std::collections::HashSet<_> = Verb::ALL.iter().map(|v| v.label()).collect();
        assert_eq!(labels.len(), Verb::COUNT);
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(Verb::split(b"ehlo x"), (Verb::Ehlo, &b"x"[..]));
        assert_eq!(Verb::split(b"MaIl FROM:<>"), (Verb::Mail, &b"FROM:<>"[..]));
        assert_eq!(Verb::split(b"starttls"), (Verb::StartTls, &b""[..]));
        assert_eq!(Verb::split(b"QUIT  "), (Verb::Quit, &b""[..]));
        assert_eq!(Verb::split(b"ETRN x").0, Verb::NotImplemented);
        assert_eq!(Verb::split(b"").0, Verb::Unknown);
        assert_eq!(Verb::split(b"MAILFROM:<>").0, Verb::Unknown);
        assert_eq!(Verb::split(b"NOOP\rRSET").0, Verb::Unknown);
        assert_eq!(Verb::split(b"\0NOOP").0, Verb::Unknown);
    }

    #[test]
    fn mail_forms() {
        let (from, p) = parse_mail(b"FROM:<a@b.example> SIZE=10").expect("valid");
        assert_eq!(
            from,
            ReversePath::Mailbox(Mailbox {
                local: "a".into(),
                domain: "b.example".into()
            })
        );
        assert_eq!(p.size, Some(10));
        assert!(
            parse_mail(b"from: <a@b.example>").is_ok(),
            "space after colon is tolerated"
        );
        assert_eq!(parse_mail(b"FROM:<>").expect("null").0, ReversePath::Null);
        assert_eq!(parse_mail(b"FROM:a@b.example"), Err(PathError::Structure));
        assert_eq!(parse_mail(b"<a@b.example>"), Err(PathError::Structure));
        assert_eq!(parse_mail(b"TO:<a@b.example>"), Err(PathError::Structure));
        assert_eq!(parse_mail(b""), Err(PathError::Structure));
        assert_eq!(
            parse_mail(b"FROM:<a@b.example>SIZE=1"),
            Err(PathError::Structure)
        );
        assert_eq!(
            parse_mail(b"FROM:<a b@c>"),
            Err(PathError::Address(AddressError::Syntax))
        );
        assert_eq!(
            parse_mail("FROM:<é@b.example>".as_bytes()),
            Err(PathError::Address(AddressError::NeedsUtf8))
        );
        assert!(parse_mail("FROM:<é@b.example> SMTPUTF8".as_bytes()).is_ok());
        assert_eq!(
            parse_mail(b"FROM:<a@b.example> X=1"),
            Err(PathError::Param(ParamError::Unknown("X".into())))
        );
    }

    #[test]
    fn rcpt_forms() {
        assert_eq!(
            parse_rcpt(b"TO:<postmaster>", false).expect("valid").0,
            ForwardPath::Postmaster
        );
        assert_eq!(
            parse_rcpt(b"TO:<>", false),
            Err(PathError::Address(AddressError::Syntax))
        );
        assert_eq!(
            parse_rcpt(b"FROM:<a@b.example>", false),
            Err(PathError::Structure)
        );
        assert!(parse_rcpt("TO:<é@b.example>".as_bytes(), true).is_ok());
    }

    #[test]
    fn helo_names() {
        assert_eq!(
            parse_helo(b"client.example", true).as_deref(),
            Some("client.example")
        );
        assert_eq!(
            parse_helo(b"DESKTOP_12", false).as_deref(),
            Some("DESKTOP_12")
        );
        assert_eq!(
            parse_helo(b"[127.0.0.1]", true).as_deref(),
            Some("[127.0.0.1]")
        );
        assert_eq!(parse_helo(b"[127.0.0.1]", false), None);
        for bad in [
            &b""[..],
            b"a b",
            b"-bad-",
            b"a..b",
            b"x\r",
            b"a\xffb",
            b"<x>",
        ] {
            assert_eq!(parse_helo(bad, true), None, "{bad:?}");
        }
    }

    #[test]
    fn bdat_args() {
        assert_eq!(parse_bdat(b"10"), Some((10, false)));
        assert_eq!(parse_bdat(b"0 last"), Some((0, true)));
        assert_eq!(parse_bdat(b"x"), None);
        assert_eq!(parse_bdat(b""), None);
        assert_eq!(parse_bdat(b"10 LAST x"), None);
        assert_eq!(parse_bdat(b"10 FIRST"), None);
        assert_eq!(parse_bdat(b"-1"), None);
        assert_eq!(parse_bdat(b"99999999999999999999"), None);
    }
}
