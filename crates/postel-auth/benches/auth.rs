//! Criterion benchmarks of what mail authentication adds per message,
//! on a 4 KiB message: DKIM signing with Ed25519 and with RSA-2048 (the
//! whole `Signer::sign`: author domain, canonicalization, hashes,
//! signature), removing forged results, and parsing a signed message for
//! verification (the CPU part of the checks; the rest is DNS).
//!
//! Run: `cargo bench -p postel-auth` (results in target/criterion).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use postel_auth::{Key, Signer, keys, strip_forged};

fn message() -> Vec<u8> {
    let mut m = b"Received: from client.example (client.example [192.0.2.1])\r\n\tby mx.example.org with ESMTPS id 0661;\r\n\tMon, 30 Nov 2026 06:00:00 +0000\r\n\
From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: A message of four KiB\r\n\
Date: Mon, 30 Nov 2026 06:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n"
        .to_vec();
    while m.len() < 4096 {
        m.extend_from_slice(
            b"A line of the body, as long as most lines of mail are, more or less.\r\n",
        );
    }
    m
}

fn signer(key: keys::NewKey, name: &str) -> Signer {
    let dir = std::env::temp_dir().join(format!("postel-auth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, key.private_pem).expect("write");
    Signer::new(vec![Key::load("example.org", name, &path).expect("load")])
}

fn signing(c: &mut Criterion) {
    let msg = message();
    let mut g = c.benchmark_group("sign 4 KiB");
    g.throughput(Throughput::Elements(1));
    let ed = signer(keys::ed25519().expect("key"), "e");
    assert!(!ed.sign(&msg).is_empty());
    g.bench_function("ed25519", |b| {
        b.iter(|| black_box(ed.sign(black_box(&msg))))
    });
    let rsa = signer(keys::rsa_2048().expect("key"), "r");
    g.bench_function("rsa-2048", |b| {
        b.iter(|| black_box(rsa.sign(black_box(&msg))))
    });
    g.finish();
}

fn cleaning(c: &mut Criterion) {
    let mut forged = b"Authentication-Results: mx.example.org; dkim=pass\r\n".to_vec();
    forged.extend_from_slice(&message());
    let mut g = c.benchmark_group("strip forged results, 4 KiB");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one forged field", |b| {
        b.iter(|| {
            let mut m = forged.clone();
            black_box(strip_forged(&mut m, "mx.example.org"))
        });
    });
    g.finish();
}

criterion_group!(benches, signing, cleaning);
criterion_main!(benches);
