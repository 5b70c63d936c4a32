//! MTA-STS policies kept on disk (`mta-sts.policies` in the data folder),
//! so that a restart does not forget them: the policy model trusts a
//! policy once seen for its max_age (RFC 8461 5), and one forgotten could
//! be withheld by whoever can block the next fetch.
//!
//! One line per domain, fields separated by spaces:
//! `domain id fetched until mode max_age mx,mx,...`, written by
//! `state_file`.

use std::path::Path;

use crate::mta_sts::{Mode, Policy};

/// One kept policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kept {
    pub(crate) domain: String,
    pub(crate) id: String,
    pub(crate) fetched: i64,
    pub(crate) until: i64,
    pub(crate) policy: Policy,
}

fn mode_word(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "enforce",
        Mode::Testing => "testing",
        Mode::None => "none",
    }
}

/// The file's policies that have not expired at `now`; a line that cannot
/// be read is skipped.
pub(crate) fn load(path: &Path, now: i64) -> Vec<Kept> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let [domain, id, fetched, until, mode, max_age, mx] = f.as_slice() else {
                return None;
            };
            let mode = match *mode {
                "enforce" => Mode::Enforce,
                "testing" => Mode::Testing,
                "none" => Mode::None,
                _ => return None,
            };
            let kept = Kept {
                domain: (*domain).to_owned(),
                id: (*id).to_owned(),
                fetched: fetched.parse().ok()?,
                until: until.parse().ok()?,
                policy: Policy {
                    mode,
                    mx: mx
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    max_age: max_age.parse().ok()?,
                },
            };
            let sane = !kept.domain.is_empty()
                && kept.domain.bytes().all(|b| b.is_ascii_graphic())
                && kept.id.bytes().all(|b| b.is_ascii_alphanumeric());
            (sane && kept.until > now).then_some(kept)
        })
        .collect()
}

/// Writes `kept` to `path`, replacing it.
///
/// # Errors
/// When the folder cannot be written.
pub(crate) fn save(path: &Path, kept: &[Kept]) -> std::io::Result<()> {
    let mut text = String::new();
    for k in kept {
        text.push_str(&format!(
            "{} {} {} {} {} {} {}\n",
            k.domain,
            k.id,
            k.fetched,
            k.until,
            mode_word(k.policy.mode),
            k.policy.max_age,
            k.policy.mx.join(",")
        ));
    }
    crate::state_file::replace(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_policies_round_trip_and_expired_ones_go() {
        let dir = std::env::temp_dir().join(format!("postel-policy-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("mta-sts.policies");
        let k = |domain: &str, until: i64| Kept {
            domain: domain.into(),
            id: "2026a".into(),
            fetched: 100,
            until,
            policy: Policy {
                mode: Mode::Enforce,
                mx: vec!["mx.a.test".into(), "*.b.test".into()],
                max_age: 86_400,
            },
        };
        save(&path, &[k("a.test", 1_000), k("old.test", 150)]).expect("save");
        assert_eq!(load(&path, 200), vec![k("a.test", 1_000)]);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "garbage\na.test x 1 2 bogus 3 mx\n").expect("write");
        assert!(load(&path, 0).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
