//! ESMTP parameters on MAIL and RCPT (RFC 5321 4.1.2 `Mail-parameters`).
//!
//! Known on MAIL: `SIZE` (RFC 1870), `BODY` (RFC 6152), `SMTPUTF8`
//! (RFC 6531), `AUTH` (RFC 4954), `RET` and `ENVID` (RFC 3461),
//! `REQUIRETLS` (RFC 8689). Known on
//! RCPT: `NOTIFY` and `ORCPT` (RFC 3461). An unknown keyword is a `555`, a
//! known one with a bad value or given twice a `501` (RFC 5321 4.1.1.11).
//!
//! Every parameter is also kept verbatim, so the store records exactly what
//! the client said.

/// Why the parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A keyword this server does not support (reply 555).
    #[error("unsupported parameter {0}")]
    Unknown(String),
    /// A known keyword with a malformed value, a repeat, or a malformed
    /// `keyword[=value]` (reply 501).
    #[error("bad value or repeated parameter {0}")]
    Syntax(String),
}

/// `BODY=` values (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`
    SevenBit,
    /// `BODY=8BITMIME`
    EightBitMime,
}

/// The parameters of one MAIL command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n`: the client's estimate of the message size, saturated at
    /// `u64::MAX` for a 20-digit value that does not fit.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8`: addresses and headers may be UTF-8 (RFC 6531).
    pub smtputf8: bool,
    /// `AUTH=` was given (RFC 4954 section 5). Valid only where AUTH was
    /// advertised: the session refuses it elsewhere with `555`.
    pub auth: bool,
    /// `RET=HDRS` (true) or `RET=FULL` (false) (RFC 3461 4.3).
    pub ret_hdrs: Option<bool>,
    /// `ENVID=`, as sent (xtext, RFC 3461 4.4).
    pub envid: Option<String>,
    /// `REQUIRETLS` (RFC 8689): deliver only over authenticated TLS.
    /// Valid only where it was advertised (over TLS): the session refuses
    /// it elsewhere with `555`.
    pub requiretls: bool,
    /// Every parameter as sent, `KEYWORD` or `KEYWORD=value`.
    pub raw: Vec<String>,
}

/// The parameters of one RCPT command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=`, uppercase, as a list: `["NEVER"]`, or some of
    /// `SUCCESS`, `FAILURE`, `DELAY` (RFC 3461 4.1).
    pub notify: Option<Vec<String>>,
    /// `ORCPT=`, as sent: `addr-type;xtext` (RFC 3461 4.2).
    pub orcpt: Option<String>,
    /// Every parameter as sent.
    pub raw: Vec<String>,
}

/// The most octets of an `ENVID` value (RFC 3461 4.4: 100 characters).
const MAX_ENVID: usize = 100;

/// The most octets of an `ORCPT` value (RFC 3461 4.2: 500 characters).
const MAX_ORCPT: usize = 500;

/// Whether `v` is xtext (RFC 3461 4): printable ASCII but `+` and `=`,
/// and `+` followed by two uppercase hex digits.
pub fn is_xtext(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'+' => {
                let hex = |b: Option<&u8>| {
                    b.is_some_and(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
                };
                if !hex(v.get(i + 1)) || !hex(v.get(i + 2)) {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            33..=126 => i += 1,
            _ => return false,
        }
    }
    true
}

/// Splits the text after a path into `(keyword, value)` pairs.
fn pairs(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == b' ').filter(|p| !p.is_empty())
}

/// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
fn is_keyword(k: &[u8]) -> bool {
    k.first().is_some_and(u8::is_ascii_alphanumeric)
        && k.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 with SMTPUTF8 (RFC 6531).
fn is_value(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|&b| (33..=126).contains(&b) && b != b'=' || b >= 0x80)
}

fn split_param(p: &[u8]) -> Result<(String, Option<&[u8]>), ParamError> {
    let (k, v) = match p.iter().position(|&b| b == b'=') {
        Some(i) => (&p[..i], Some(&p[i + 1..])),
        None => (p, None),
    };
    let name = String::from_utf8_lossy(k).to_ascii_uppercase();
    if !is_keyword(k) || v.is_some_and(|v| !is_value(v)) {
        return Err(ParamError::Syntax(name));
    }
    Ok((name, v))
}

/// Returns true if and only if the MAIL parameters ask for SMTPUTF8; used
/// before the path is parsed, since it decides whether UTF-8 is allowed there.
pub fn wants_smtputf8(s: &[u8]) -> bool {
    pairs(s).any(|p| p.eq_ignore_ascii_case(b"SMTPUTF8"))
}

/// Parses the parameters of a MAIL command.
///
/// # Errors
/// [`ParamError::Unknown`] for a keyword not supported here,
/// [`ParamError::Syntax`] for a malformed or repeated one.
pub fn parse_mail_params(s: &[u8]) -> Result<MailParams, ParamError> {
    let mut out = MailParams::default();
    for p in pairs(s) {
        let (name, value) = split_param(p)?;
        let dup = || ParamError::Syntax(name.clone());
        match (name.as_str(), value) {
            ("SIZE", Some(v)) if out.size.is_none() => {
                // size-value = 1*20DIGIT (RFC 1870)
                if v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
                    return Err(dup());
                }
                let n = v.iter().fold(0u64, |n, &d| {
                    n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                out.size = Some(n);
            }
            ("BODY", Some(v)) if out.body.is_none() => {
                out.body = Some(if v.eq_ignore_ascii_case(b"7BIT") {
                    Body::SevenBit
                } else if v.eq_ignore_ascii_case(b"8BITMIME") {
                    Body::EightBitMime
                } else {
                    return Err(dup());
                });
            }
            // A repeated bare flag cannot conflict with itself, and Python's
            // smtplib sends it twice when asked for it and also needing it.
            ("SMTPUTF8", None) => out.smtputf8 = true,
            ("REQUIRETLS", None) if !out.requiretls => out.requiretls = true,
            // RFC 4954 section 5: the submitter's identity, `<>` or an
            // xtext address. Recorded as sent; policy does not use it.
            ("AUTH", Some(_)) if !out.auth => out.auth = true,
            ("RET", Some(v)) if out.ret_hdrs.is_none() => {
                out.ret_hdrs = Some(if v.eq_ignore_ascii_case(b"HDRS") {
                    true
                } else if v.eq_ignore_ascii_case(b"FULL") {
                    false
                } else {
                    return Err(dup());
                });
            }
            ("ENVID", Some(v)) if out.envid.is_none() => {
                if v.len() > MAX_ENVID || !is_xtext(v) {
                    return Err(dup());
                }
                out.envid = Some(String::from_utf8_lossy(v).into_owned());
            }
            ("SIZE" | "BODY" | "SMTPUTF8" | "AUTH" | "RET" | "ENVID" | "REQUIRETLS", _) => {
                return Err(dup());
            }
            _ => return Err(ParamError::Unknown(name)),
        }
        out.raw.push(String::from_utf8_lossy(p).into_owned());
    }
    Ok(out)
}

/// Parses the parameters of a RCPT command.
///
/// # Errors
/// [`ParamError::Unknown`] for a keyword other than `NOTIFY` and `ORCPT`,
/// [`ParamError::Syntax`] for a malformed or repeated one.
pub fn parse_rcpt_params(s: &[u8]) -> Result<RcptParams, ParamError> {
    let mut out = RcptParams::default();
    for p in pairs(s) {
        let (name, value) = split_param(p)?;
        let bad = || ParamError::Syntax(name.clone());
        match (name.as_str(), value) {
            ("NOTIFY", Some(v)) if out.notify.is_none() => {
                let list: Vec<String> = String::from_utf8_lossy(v)
                    .split(',')
                    .map(str::to_ascii_uppercase)
                    .collect();
                let known = |k: &String| matches!(k.as_str(), "SUCCESS" | "FAILURE" | "DELAY");
                let never = list.len() == 1 && list[0] == "NEVER";
                let mut sorted = list.clone();
                sorted.sort();
                sorted.dedup();
                if !never && (sorted.len() != list.len() || !list.iter().all(known)) {
                    return Err(bad());
                }
                out.notify = Some(list);
            }
            ("ORCPT", Some(v)) if out.orcpt.is_none() => {
                // addr-type ";" xtext, addr-type an atom (RFC 3461 4.2).
                let Some(semi) = v.iter().position(|&b| b == b';') else {
                    return Err(bad());
                };
                let (kind, addr) = (&v[..semi], &v[semi + 1..]);
                let atom = !kind.is_empty()
                    && kind
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || b"-!#$%&'*/?^_`{|}~".contains(b));
                if v.len() > MAX_ORCPT || !atom || addr.is_empty() || !is_xtext(addr) {
                    return Err(bad());
                }
                out.orcpt = Some(String::from_utf8_lossy(v).into_owned());
            }
            ("NOTIFY" | "ORCPT", _) => return Err(bad()),
            _ => return Err(ParamError::Unknown(name)),
        }
        out.raw.push(String::from_utf8_lossy(p).into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_mail_params() {
        let p = parse_mail_params(b" SIZE=1000 body=8bitmime SMTPUTF8").expect("valid");
        assert_eq!(p.size, Some(1000));
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(p.raw, vec!["SIZE=1000", "body=8bitmime", "SMTPUTF8"]);
        assert_eq!(
            parse_mail_params(b"BODY=7BIT").expect("valid").body,
            Some(Body::SevenBit)
        );
        assert_eq!(
            parse_mail_params(b"").expect("valid"),
            MailParams::default()
        );
    }

    #[test]
    fn auth_parameter_is_accepted_once() {
        assert_eq!(
            parse_mail_params(b"AUTH=<>").expect("valid").raw,
            vec!["AUTH=<>"]
        );
        assert!(parse_mail_params(b"AUTH=user+40example.com").is_ok());
        assert!(matches!(
            parse_mail_params(b"AUTH=<> AUTH=<>"),
            Err(ParamError::Syntax(_))
        ));
        assert!(matches!(
            parse_mail_params(b"AUTH"),
            Err(ParamError::Syntax(_))
        ));
    }

    #[test]
    fn requiretls_is_a_bare_flag_given_once() {
        let p = parse_mail_params(b"requiretls").expect("valid");
        assert!(p.requiretls);
        assert_eq!(p.raw, vec!["requiretls"]);
        for bad in [&b"REQUIRETLS=yes"[..], b"REQUIRETLS REQUIRETLS"] {
            assert!(
                matches!(parse_mail_params(bad), Err(ParamError::Syntax(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn huge_size_saturates_and_21_digits_is_syntax() {
        assert_eq!(
            parse_mail_params(b"SIZE=99999999999999999999")
                .expect("20 digits")
                .size,
            Some(u64::MAX)
        );
        assert!(matches!(
            parse_mail_params(b"SIZE=999999999999999999999"),
            Err(ParamError::Syntax(_))
        ));
    }

    #[test]
    fn bad_values_are_syntax_errors() {
        for p in [
            "SIZE=",
            "SIZE=abc",
            "SIZE=-1",
            "BODY=BINARYMIME",
            "BODY",
            "SMTPUTF8=yes",
            "SIZE=1 SIZE=2",
            "=x",
            "-A=1",
            "SIZE=1=2",
        ] {
            assert!(
                matches!(parse_mail_params(p.as_bytes()), Err(ParamError::Syntax(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn unknown_is_555_material() {
        assert_eq!(
            parse_mail_params(b"FOO=bar"),
            Err(ParamError::Unknown("FOO".into()))
        );
        assert_eq!(
            parse_mail_params(b"FOO"),
            Err(ParamError::Unknown("FOO".into()))
        );
        assert_eq!(
            parse_rcpt_params(b"BAR=1"),
            Err(ParamError::Unknown("BAR".into()))
        );
        assert_eq!(
            parse_rcpt_params(b"  ").expect("empty"),
            RcptParams::default()
        );
    }

    #[test]
    fn repeated_smtputf8_flag_is_harmless() {
        assert!(
            parse_mail_params(b"SMTPUTF8 BODY=8BITMIME SMTPUTF8")
                .expect("valid")
                .smtputf8
        );
    }

    #[test]
    fn smtputf8_detected_before_path_parse() {
        assert!(wants_smtputf8(b" SIZE=1 smtputf8"));
        assert!(!wants_smtputf8(b" SMTPUTF8X"));
    }

    #[test]
    fn dsn_parameters() {
        let m = parse_mail_params(b"RET=hdrs ENVID=QQ314159+2Bx").expect("valid");
        assert_eq!(
            (m.ret_hdrs, m.envid.as_deref()),
            (Some(true), Some("QQ314159+2Bx"))
        );
        assert_eq!(
            parse_mail_params(b"RET=FULL").expect("valid").ret_hdrs,
            Some(false)
        );
        for bad in [
            "RET=ALL",
            "RET=FULL RET=HDRS",
            "ENVID=a+2b",
            "ENVID=a+",
            "ENVID",
        ] {
            assert!(
                matches!(
                    parse_mail_params(bad.as_bytes()),
                    Err(ParamError::Syntax(_))
                ),
                "{bad}"
            );
        }
        let long = format!("ENVID={}", "x".repeat(101));
        assert!(parse_mail_params(long.as_bytes()).is_err());

        let r = parse_rcpt_params(b"NOTIFY=success,Failure ORCPT=rfc822;bob+2Bx@a.test")
            .expect("valid");
        assert_eq!(
            r.notify,
            Some(vec!["SUCCESS".to_owned(), "FAILURE".to_owned()])
        );
        assert_eq!(r.orcpt.as_deref(), Some("rfc822;bob+2Bx@a.test"));
        assert_eq!(r.raw.len(), 2);
        assert_eq!(
            parse_rcpt_params(b"NOTIFY=NEVER").expect("valid").notify,
            Some(vec!["NEVER".to_owned()])
        );
        for bad in [
            "NOTIFY=NEVER,SUCCESS",
            "NOTIFY=SOMETIMES",
            "NOTIFY=DELAY,DELAY",
            "NOTIFY=DELAY NOTIFY=DELAY",
            "ORCPT=bob@a.test",
            "ORCPT=;bob",
            "ORCPT=rfc822;",
            "ORCPT=rfc822;a=b",
            "NOTIFY",
        ] {
            assert!(
                matches!(
                    parse_rcpt_params(bad.as_bytes()),
                    Err(ParamError::Syntax(_))
                ),
                "{bad}"
            );
        }
        assert!(is_xtext(b"a+2Bb") && !is_xtext(b"a b") && !is_xtext(b"+2b"));
    }
}
