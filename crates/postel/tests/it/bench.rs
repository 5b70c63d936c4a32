//! The benchmark runner keeps working: `bench/compare.sh` cut down to one
//! server and a few hundred messages (the smoke run for CI). This
//! asserts that every script in the chain ran and that every message sent
//! was stored, never how fast: speed is measured by a person with the full
//! run, and recorded in BENCHMARKS.md.

use std::path::Path;
use std::process::Command;

use crate::support::temp_dir;
use crate::tools::free_port;

#[test]
fn compare_sh_smoke_run_against_postel_alone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = temp_dir("compare-out");
    let work = temp_dir("compare-work");
    let run = Command::new("bash")
        .arg(root.join("bench/compare.sh"))
        .arg(&out)
        .env("POSTEL", env!("CARGO_BIN_EXE_postel"))
        .env("SERVERS", "postel")
        .env("REPS", "1")
        .env("LOADS", "s1 s20d")
        .env("COUNT_s1", "50")
        .env("COUNT_s20d", "300")
        .env("LATENCY", "0")
        .env("LARGE_MESSAGES", "4")
        .env("LARGE_SIZE", "1048576")
        .env("PORT_POSTEL", free_port().to_string())
        .env("POSTEL_DIR", work.join("postel"))
        .env("RUN_DIR", work.join("run"))
        .output()
        .expect("run bench/compare.sh");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "compare.sh failed:\n{log}");
    let read = |name: &str| {
        std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{log}"))
    };
    // smtp-source saw only the replies it expected (rc 0), for every message.
    let raw = read("raw.csv");
    for (load, n) in [("s1", 50), ("s20d", 300)] {
        let row = raw
            .lines()
            .find(|l| l.starts_with(&format!("postel,{load},")))
            .unwrap_or_else(|| panic!("no {load} row in raw.csv:\n{raw}"));
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells[3], n.to_string(), "{row}");
        assert_eq!(cells.last(), Some(&"0"), "smtp-source failed: {row}");
        assert!(cells[5].parse::<f64>().is_ok_and(|r| r > 0.0), "{row}");
    }
    // Postel stored every message sent, small and large.
    let delivered = read("delivery-check.txt");
    for line in [
        "postel rep 1 s1: smtp-source sent 50, postel stored 50",
        "postel rep 1 s20d: smtp-source sent 300, postel stored 300",
        "postel rep 1 large: smtp-source sent 4, postel stored 4",
    ] {
        assert!(delivered.contains(line), "{delivered}");
    }
    let large = read("large.csv");
    let row = large
        .lines()
        .find(|l| l.starts_with("postel,4,4,1048576,"))
        .unwrap_or_else(|| panic!("{large}"));
    assert!(row.ends_with(",0"), "smtp-source failed: {row}");
    assert!(read("large.md").contains("| postel | 1/1 |"));
    assert!(read("summary.md").contains("postel"));
    let svg = read("throughput.svg");
    assert!(svg.starts_with("<svg") && svg.contains("postel"), "{svg}");
}
