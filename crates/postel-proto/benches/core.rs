//! Criterion benchmarks of the protocol core: commands through a whole
//! session, and DATA decoding against a plain `memchr` scan of the same
//! bytes (the ceiling: any decoder must at least find every line end).
//!
//! Run: `cargo bench -p postel-proto` (results in target/criterion).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use postel_proto::data::{BareLinePolicy, DataDecoder};
use postel_proto::session::{ConnInfo, Event, Limits, Session, Verdict};

/// One pipelined transaction of 8 commands, the way a busy relay sends it.
const TRANSACTION: &[u8] = b"MAIL FROM:<sender@example.com> SIZE=4096 BODY=8BITMIME\r\n\
RCPT TO:<one@example.net>\r\nRCPT TO:<two@example.net>\r\nRCPT TO:<three@example.net>\r\n\
NOOP\r\nRSET\r\nHELP\r\nVRFY someone\r\n";
const COMMANDS_PER_TRANSACTION: u64 = 8;

fn commands(c: &mut Criterion) {
    let limits = Arc::new(Limits::default());
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(COMMANDS_PER_TRANSACTION * 100));
    g.bench_function("100 pipelined transactions", |b| {
        let mut input = b"EHLO client.example.org\r\n".to_vec();
        for _ in 0..100 {
            input.extend_from_slice(TRANSACTION);
        }
        let mut out = Vec::with_capacity(64 * 1024);
        b.iter(|| {
            let mut s = Session::new(limits.clone(), ConnInfo::default());
            let mut pos = 0;
            while pos < input.len() {
                pos += s.feed(&input[pos..]);
                while let Some(ev) = s.poll_event() {
                    if matches!(ev, Event::Mail { .. } | Event::Rcpt { .. }) {
                        s.resolve(Verdict::Accept);
                    }
                }
            }
            out.clear();
            s.take_output(&mut out);
            black_box(out.len())
        });
    });
    g.finish();
}

/// About 1 MiB of message text: 76-octet lines, some starting with a dot.
fn message() -> Vec<u8> {
    let mut m = Vec::with_capacity(1 << 20);
    let mut i = 0u32;
    while m.len() < (1 << 20) - 100 {
        if i.is_multiple_of(17) {
            m.extend_from_slice(b"..");
        }
        m.extend_from_slice(
            format!("{i:08} The quick brown fox jumps over the lazy dog, again and again")
                .as_bytes(),
        );
        m.extend_from_slice(b"\r\n");
        i += 1;
    }
    m
}

fn data(c: &mut Criterion) {
    let mut body = message();
    body.extend_from_slice(b".\r\n");
    let mut g = c.benchmark_group("data");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("DataDecoder 1 MiB", |b| {
        let mut out = Vec::with_capacity(body.len());
        b.iter(|| {
            out.clear();
            let mut d = DataDecoder::new(u64::MAX, BareLinePolicy::Reject);
            black_box(d.decode(&body, &mut out))
        });
    });
    g.bench_function("memchr line scan 1 MiB (ceiling)", |b| {
        b.iter(|| black_box(memchr::memchr_iter(b'\n', &body).count()));
    });
    g.finish();
}

criterion_group!(benches, commands, data);
criterion_main!(benches);
