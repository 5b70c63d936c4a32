//! `postel explain`: what an SMTP reply code means, when one meets it, and
//! what to do, in English, Japanese or French. The texts live in
//! `explain/basic.toml` (RFC 5321 reply codes) and `explain/enhanced.toml`
//! (the IANA registry of enhanced status codes, RFC 3463 and later), built
//! into the binary; the tests here check that
//! every code has every text in every language.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::bail;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::Reply;

/// The language of the texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    En,
    Ja,
    Fr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Text {
    meaning: String,
    when: String,
    fix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    rfc: String,
    title: Option<String>,
    /// Withdrawn from the registry (X.6.10).
    #[serde(default)]
    deprecated: bool,
    en: Text,
    ja: Text,
    fr: Text,
}

impl Entry {
    fn text(&self, lang: Lang) -> &Text {
        lang.pick(&self.en, &self.ja, &self.fr)
    }
}

impl Lang {
    /// The one of three texts in this language.
    fn pick<'a, T>(self, en: &'a T, ja: &'a T, fr: &'a T) -> &'a T {
        match self {
            Lang::En => en,
            Lang::Ja => ja,
            Lang::Fr => fr,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassText {
    name: String,
    meaning: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Class {
    en: ClassText,
    ja: ClassText,
    fr: ClassText,
}

impl Class {
    fn text(&self, lang: Lang) -> &ClassText {
        lang.pick(&self.en, &self.ja, &self.fr)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    class: BTreeMap<String, Class>,
    code: BTreeMap<String, Entry>,
}

fn load(name: &str, text: &str) -> Table {
    // Checked by the tests: a broken file never reaches a release.
    toml::from_str(text).unwrap_or_else(|e| panic!("explain/{name}: {e}"))
}

static BASIC: LazyLock<Table> =
    LazyLock::new(|| load("basic.toml", include_str!("explain/basic.toml")));
static ENHANCED: LazyLock<Table> =
    LazyLock::new(|| load("enhanced.toml", include_str!("explain/enhanced.toml")));

/// A code, as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Code {
    /// `550`
    Basic(u16),
    /// `5.1.1`: class, subject, detail.
    Enhanced(u8, u16, u16),
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Basic(c) => write!(f, "{c}"),
            Code::Enhanced(a, b, c) => write!(f, "{a}.{b}.{c}"),
        }
    }
}

/// The codes in what was given: `550`, `5.1.1`, or a whole reply line
/// from a log (`550 5.1.1 <x@y> User unknown`, or `550-5.1.1 ...`).
fn codes_in(input: &str) -> anyhow::Result<Vec<Code>> {
    let s = input.trim();
    let mut out = Vec::new();
    let head = s.get(..3).filter(|h| h.bytes().all(|b| b.is_ascii_digit()));
    let rest = if let Some(h) = head
        && matches!(s.as_bytes().get(3), None | Some(b' ' | b'-'))
    {
        out.push(Code::Basic(h.parse()?));
        s.get(4..).unwrap_or("").trim_start()
    } else {
        s
    };
    let word = rest.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = word.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    {
        out.push(Code::Enhanced(
            parts[0].parse()?,
            parts[1].parse()?,
            parts[2].parse()?,
        ));
    } else if out.is_empty() {
        bail!(
            "{input:?} holds no reply code: give a code such as 550, an enhanced code such as 5.1.1, or a reply line such as \"550 5.1.1 User unknown\""
        );
    }
    if let (Some(Code::Basic(b)), Some(Code::Enhanced(e, ..))) = (out.first(), out.get(1))
        && u16::from(*e) != b / 100
    {
        // Kept, but said: a 4xx reply with a 5.x.x code is a server bug.
        eprintln!("note: the classes differ ({b} and {e}.x.x); RFC 3463 wants them to agree");
    }
    Ok(out)
}

/// Labels in each language.
fn labels(lang: Lang) -> [&'static str; 6] {
    match lang {
        Lang::En => [
            "class",
            "meaning",
            "when",
            "fix",
            "differences",
            "not a registered code",
        ],
        Lang::Ja => [
            "区分",
            "意味",
            "発生する場面",
            "対処",
            "主な違い",
            "登録されていないコード",
        ],
        Lang::Fr => [
            "classe",
            "signification",
            "quand",
            "que faire",
            "différences",
            "code non enregistré",
        ],
    }
}

/// What a code is, as JSON (the `--json` form; the text form prints it).
fn describe(code: &Code, lang: Lang) -> anyhow::Result<Value> {
    let (table, class_key, key) = match code {
        Code::Basic(c) => (&*BASIC, (c / 100).to_string(), c.to_string()),
        Code::Enhanced(a, b, c) => (&*ENHANCED, a.to_string(), format!("{b}.{c}")),
    };
    let Some(class) = table.class.get(&class_key) else {
        bail!(
            "{code}: the first digit must be {}",
            match code {
                Code::Basic(_) => "2, 3, 4 or 5",
                Code::Enhanced(..) => "2, 4 or 5",
            }
        );
    };
    let c = class.text(lang);
    let mut v = json!({
        "code": code.to_string(),
        "kind": match code { Code::Basic(_) => "basic", Code::Enhanced(..) => "enhanced" },
        "class": { "digit": class_key, "name": c.name, "meaning": c.meaning },
        "registered": false,
    });
    if let Some(e) = table.code.get(&key) {
        let t = e.text(lang);
        v["registered"] = json!(true);
        v["rfc"] = json!(e.rfc);
        if let Some(title) = &e.title {
            v["title"] = json!(title);
        }
        v["deprecated"] = json!(e.deprecated);
        v["meaning"] = json!(t.meaning);
        v["when"] = json!(t.when);
        v["fix"] = json!(t.fix);
    }
    Ok(v)
}

fn print_one(v: &Value, lang: Lang) {
    let l = labels(lang);
    let s = |k: &str| v[k].as_str().unwrap_or("");
    let width = l[..4].iter().map(|x| x.chars().count()).max().unwrap_or(8);
    let row = |label: &str, text: &str| {
        println!(
            "  {label}{} {text}",
            " ".repeat(width - label.chars().count())
        );
    };
    let head = match (v["title"].as_str(), v["registered"].as_bool()) {
        (Some(t), _) => format!("{}  {t}", s("code")),
        (None, Some(true)) => format!("{}  {}", s("code"), s("meaning")),
        _ => format!("{}  ({})", s("code"), l[5]),
    };
    let deprecated = if v["deprecated"] == json!(true) {
        " (deprecated)"
    } else {
        ""
    };
    match v["rfc"].as_str() {
        Some(rfc) => println!("{head}   [{rfc}]{deprecated}"),
        None => println!("{head}"),
    }
    row(
        l[0],
        &format!(
            "{}: {}",
            v["class"]["name"].as_str().unwrap_or(""),
            v["class"]["meaning"].as_str().unwrap_or("")
        ),
    );
    if v["registered"] == json!(true) {
        if v["title"].is_string() {
            row(l[1], s("meaning"));
        }
        row(l[2], s("when"));
        row(l[3], s("fix"));
    }
}

/// What sets two codes apart: the class (retry or not) first, then the
/// rest in words.
fn differences(a: &Value, b: &Value, lang: Lang) -> Vec<String> {
    let (ca, cb) = (
        a["code"].as_str().unwrap_or(""),
        b["code"].as_str().unwrap_or(""),
    );
    let (da, db) = (
        a["class"]["digit"].as_str().unwrap_or(""),
        b["class"]["digit"].as_str().unwrap_or(""),
    );
    let retry = |d: &str| -> &'static str {
        match (d, lang) {
            ("2", Lang::En) => "success: nothing to retry",
            ("3", Lang::En) => "the server waits for more: go on",
            ("4", Lang::En) => "temporary: keep the message and retry later",
            ("5", Lang::En) => "permanent: do not retry unchanged",
            ("2", Lang::Ja) => "成功: 再試行は不要",
            ("3", Lang::Ja) => "サーバは続きを待っている: そのまま続行",
            ("4", Lang::Ja) => "一時的: メールを保持して後で再試行",
            ("5", Lang::Ja) => "恒久的: 変更せずに再試行してはならない",
            ("2", Lang::Fr) => "succès : rien à réessayer",
            ("3", Lang::Fr) => "le serveur attend la suite : continuer",
            ("4", Lang::Fr) => "temporaire : garder le message et réessayer plus tard",
            ("5", Lang::Fr) => "définitif : ne pas réessayer sans rien changer",
            _ => "",
        }
    };
    let mut out = Vec::new();
    if da != db {
        out.push(format!("{ca}: {}; {cb}: {}", retry(da), retry(db)));
    } else {
        out.push(match lang {
            Lang::En => format!("same class ({da}): {}", retry(da)),
            Lang::Ja => format!("同じ区分 ({da}): {}", retry(da)),
            Lang::Fr => format!("même classe ({da}) : {}", retry(da)),
        });
    }
    let what = |v: &Value| {
        v["title"]
            .as_str()
            .or(v["meaning"].as_str())
            .unwrap_or("?")
            .to_owned()
    };
    out.push(format!("{ca}: {}", what(a)));
    out.push(format!("{cb}: {}", what(b)));
    if a["kind"] != b["kind"] {
        out.push(match lang {
            Lang::En => "one is a basic reply code (RFC 5321), the other an enhanced status code (RFC 3463): a reply carries both, and the enhanced one says more precisely what happened".to_owned(),
            Lang::Ja => "一方は基本応答コード (RFC 5321)、もう一方は拡張ステータスコード (RFC 3463) です。応答には両方が含まれ、拡張コードの方が原因をより詳しく示します".to_owned(),
            Lang::Fr => "l'un est un code de réponse de base (RFC 5321), l'autre un code d'état étendu (RFC 3463) : une réponse porte les deux, et le code étendu précise la cause".to_owned(),
        });
    }
    out
}

/// `postel explain`.
///
/// # Errors
/// When an input holds no code, or a code is not of a known class.
pub(crate) fn run(
    input: &[String],
    vs: Option<&str>,
    lang: Lang,
    as_json: bool,
) -> anyhow::Result<bool> {
    let joined = input.join(" ");
    let codes = codes_in(&joined)?;
    let described = codes
        .iter()
        .map(|c| describe(c, lang))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let all_known = described.iter().all(|v| v["registered"] == json!(true));
    if let Some(other) = vs {
        let b_codes = codes_in(other)?;
        let b = describe(&b_codes[0], lang)?;
        let a = &described[0];
        let diff = differences(a, &b, lang);
        if as_json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"a": a, "b": b, "differences": diff}))?
            );
        } else {
            print_one(a, lang);
            println!();
            print_one(&b, lang);
            println!();
            println!("{}:", labels(lang)[4]);
            for d in diff {
                println!("  - {d}");
            }
        }
        return Ok(all_known && b["registered"] == json!(true));
    }
    if as_json {
        let v = if described.len() == 1 {
            described[0].clone()
        } else {
            Value::Array(described)
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (i, v) in described.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print_one(v, lang);
        }
    }
    Ok(all_known)
}

/// A one-line explanation of a reply, for `send` and `probe`.
fn brief(r: &Reply, lang: Lang) -> Option<String> {
    let basic = BASIC.code.get(&r.code.to_string())?;
    let mut s = format!("{}: {}", r.code, basic.text(lang).meaning);
    if let Some(e) = r.enhanced()
        && let Ok(codes) = codes_in(&e)
        && let Some(Code::Enhanced(_, b, c)) = codes.first()
        && let Some(entry) = ENHANCED.code.get(&format!("{b}.{c}"))
    {
        let title = entry.title.as_deref().unwrap_or("");
        s.push_str(&format!(" {e}: {title}"));
    }
    Some(s)
}

/// The one-line explainer for a language, for `send` and `probe`.
pub(crate) fn brief_for(lang: Lang) -> crate::client::Explainer {
    Box::new(move |r| brief(r, lang))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every basic code Postel explains: RFC 5321 4.2, RFC 4954, RFC 7504.
    const BASIC_CODES: &[u16] = &[
        211, 214, 220, 221, 235, 250, 251, 252, 334, 354, 421, 432, 450, 451, 452, 454, 455, 500,
        501, 502, 503, 504, 521, 530, 534, 535, 538, 550, 551, 552, 553, 554, 555, 556,
    ];

    /// Every subject.detail of the IANA SMTP Enhanced Status Codes registry.
    fn enhanced_codes() -> Vec<String> {
        let mut v = vec!["0.0".to_owned()];
        for (subject, last) in [(1, 10), (2, 4), (3, 6), (4, 7), (5, 6), (6, 10), (7, 30)] {
            for detail in 0..=last {
                v.push(format!("{subject}.{detail}"));
            }
        }
        v
    }

    fn has_japanese(s: &str) -> bool {
        s.chars()
            .any(|c| matches!(c, '\u{3040}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}'))
    }

    fn complete(name: &str, e: &Entry) {
        for (lang, t) in [("en", &e.en), ("ja", &e.ja), ("fr", &e.fr)] {
            for (field, s) in [("meaning", &t.meaning), ("when", &t.when), ("fix", &t.fix)] {
                assert!(!s.trim().is_empty(), "{name} {lang}.{field} is empty");
            }
        }
        for (field, ja) in [
            ("meaning", &e.ja.meaning),
            ("when", &e.ja.when),
            ("fix", &e.ja.fix),
        ] {
            assert!(has_japanese(ja), "{name} ja.{field} is not Japanese: {ja}");
        }
        assert_ne!(e.fr.meaning, e.en.meaning, "{name}: fr is the English text");
        assert_ne!(e.fr.fix, e.en.fix, "{name}: fr is the English text");
        assert!(!e.rfc.trim().is_empty(), "{name}: no reference");
    }

    #[test]
    fn every_basic_code_is_complete_in_three_languages() {
        for c in BASIC_CODES {
            let e = BASIC
                .code
                .get(&c.to_string())
                .unwrap_or_else(|| panic!("{c} is missing"));
            complete(&c.to_string(), e);
        }
        for d in ["2", "3", "4", "5"] {
            let class = BASIC.class.get(d).expect("class");
            assert!(has_japanese(&class.ja.name) && !class.fr.meaning.is_empty());
        }
    }

    #[test]
    fn every_enhanced_code_is_complete_in_three_languages() {
        for k in enhanced_codes() {
            let e = ENHANCED
                .code
                .get(&k)
                .unwrap_or_else(|| panic!("X.{k} is missing"));
            complete(&format!("X.{k}"), e);
            assert!(
                e.title.as_deref().is_some_and(|t| !t.is_empty()),
                "X.{k} title"
            );
        }
        for d in ["2", "4", "5"] {
            let class = ENHANCED.class.get(d).expect("class");
            assert!(has_japanese(&class.ja.meaning) && !class.en.name.is_empty());
        }
    }

    #[test]
    fn codes_are_found_in_what_is_pasted() {
        assert_eq!(codes_in("550").expect("ok"), [Code::Basic(550)]);
        assert_eq!(codes_in(" 5.7.1 ").expect("ok"), [Code::Enhanced(5, 7, 1)]);
        assert_eq!(
            codes_in("550 5.1.1 <bob@example.com>: Recipient address rejected").expect("ok"),
            [Code::Basic(550), Code::Enhanced(5, 1, 1)]
        );
        assert_eq!(
            codes_in("421-4.7.0 Try again later").expect("ok"),
            [Code::Basic(421), Code::Enhanced(4, 7, 0)]
        );
        assert_eq!(codes_in("250 OK").expect("ok"), [Code::Basic(250)]);
        assert!(codes_in("hello").is_err());
        assert!(codes_in("5.1").is_err());
        assert!(describe(&Code::Basic(650), Lang::En).is_err());
        let unknown = describe(&Code::Basic(599), Lang::En).expect("class known");
        assert_eq!(unknown["registered"], false);
        assert_eq!(unknown["class"]["digit"], "5");
    }

    #[test]
    fn differences_lead_with_retry_or_not() {
        let a = describe(&Code::Basic(450), Lang::En).expect("450");
        let b = describe(&Code::Basic(550), Lang::En).expect("550");
        let d = differences(&a, &b, Lang::En);
        assert!(
            d[0].contains("retry later") && d[0].contains("do not retry"),
            "{d:?}"
        );
        let fr = differences(&a, &b, Lang::Fr);
        assert!(fr[0].contains("réessayer"), "{fr:?}");
    }

    #[test]
    fn brief_names_both_codes() {
        let r = Reply {
            code: 550,
            lines: vec!["5.1.1 Mailbox unavailable".into()],
        };
        let b = brief(&r, Lang::En).expect("brief");
        assert!(
            b.starts_with("550: ") && b.contains("5.1.1: Bad destination mailbox address"),
            "{b}"
        );
    }
}
