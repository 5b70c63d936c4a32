//! Replays every committed fuzz input (`fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`) through the fuzz targets' checks, so the
//! normal test suite keeps what fuzzing found fixed.

use std::path::Path;

use postel_proto::sim::checks;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("entry").path();
            let data = std::fs::read(&path).expect("read input");
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{target}: {} fails", path.display());
            n += 1;
        }
    }
    assert!(
        n > 0,
        "no inputs for {target}: fuzz/corpus/{target} is missing"
    );
}

#[test]
fn command_corpus() {
    replay("command", checks::command);
}

#[test]
fn address_corpus() {
    replay("address", checks::address);
}

#[test]
fn data_corpus() {
    replay("data", checks::data);
}

#[test]
fn bdat_corpus() {
    replay("bdat", checks::bdat);
}

#[test]
fn session_corpus() {
    replay("session", checks::session);
}
