//! The day's TLS-report counts kept on disk (`tls-report.json` in the data
//! folder), so that a restart does not lose them: written every few
//! minutes and at shutdown, read back at start. JSON, written by `state_file`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::tls_report::{Applied, Counts};

fn applied_json(a: &Applied) -> Value {
    match a {
        Applied::Tlsa { records, hosts } => {
            json!({"type": "tlsa", "strings": records, "hosts": hosts})
        }
        Applied::Sts { lines, mx } => json!({"type": "sts", "strings": lines, "hosts": mx}),
        Applied::None => json!({"type": "none"}),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn applied_of(v: &Value) -> Applied {
    match v["type"].as_str() {
        Some("tlsa") => Applied::Tlsa {
            records: strings(&v["strings"]),
            hosts: strings(&v["hosts"]),
        },
        Some("sts") => Applied::Sts {
            lines: strings(&v["strings"]),
            mx: strings(&v["hosts"]),
        },
        _ => Applied::None,
    }
}

/// Writes the period starting at `start` with its `counts`.
///
/// # Errors
/// When the folder cannot be written.
pub(crate) fn save(
    path: &Path,
    start: i64,
    counts: &BTreeMap<String, Counts>,
) -> std::io::Result<()> {
    let domains: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(d, c)| {
            let details: Vec<Value> = c
                .details
                .iter()
                .map(|((k, host, ip), n)| json!([k, host, ip.map(|i| i.to_string()), n]))
                .collect();
            (
                d.clone(),
                json!({
                    "applied": applied_json(&c.applied),
                    "success": c.success,
                    "failure": c.failure,
                    "details": details,
                }),
            )
        })
        .collect();
    let text = json!({"start": start, "domains": domains}).to_string();
    crate::state_file::replace(path, text.as_bytes())
}

/// The period and counts in `path`, if it holds them.
pub(crate) fn load(path: &Path) -> Option<(i64, BTreeMap<String, Counts>)> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let start = v["start"].as_i64()?;
    let mut out = BTreeMap::new();
    for (d, c) in v["domains"].as_object()? {
        let mut details = BTreeMap::new();
        for item in c["details"].as_array().into_iter().flatten() {
            let (Some(k), Some(host), Some(n)) = (
                item[0].as_u64().and_then(|k| u8::try_from(k).ok()),
                item[1].as_str(),
                item[3].as_u64().and_then(|n| u32::try_from(n).ok()),
            ) else {
                continue;
            };
            let ip = item[2].as_str().and_then(|s| s.parse().ok());
            details.insert((k, host.to_owned(), ip), n);
        }
        out.insert(
            d.clone(),
            Counts {
                applied: applied_of(&c["applied"]),
                success: c["success"]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                failure: c["failure"]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                details,
            },
        );
    }
    Some((start, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip() {
        let dir = std::env::temp_dir().join(format!("postel-report-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tls-report.json");
        let mut counts = BTreeMap::new();
        let mut details = BTreeMap::new();
        details.insert(
            (
                3,
                "mx.a.test".to_owned(),
                Some("192.0.2.1".parse().expect("ip")),
            ),
            4,
        );
        details.insert((0, String::new(), None), 1);
        counts.insert(
            "a.test".to_owned(),
            Counts {
                applied: Applied::Sts {
                    lines: vec!["mode: enforce".into()],
                    mx: vec!["mx.a.test".into()],
                },
                success: 7,
                failure: 5,
                details,
            },
        );
        save(&path, 86_400, &counts).expect("save");
        assert_eq!(load(&path), Some((86_400, counts)));
        std::fs::write(&path, "not json").expect("write");
        assert_eq!(load(&path), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
