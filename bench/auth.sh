#!/usr/bin/env bash
# bench/auth.sh [OUTDIR] -- what mail authentication costs intake: Postel
# with its checks off against the same Postel checking SPF (HELO and MAIL
# FROM), DKIM and DMARC of every message, in the same run, alternating.
#
# The load is bench/peers/bench.sh (smtp-source, s20d by default: 20
# sessions, each keeping its connection), sending one message DKIM-signed
# by dkimpy (rsa-sha256, relaxed/relaxed, 4 KiB body) from bench@in.test.
# A dnsmasq on loopback serves in.test's SPF record (pass for 127.0.0.1),
# its DMARC record (p=reject) and the key, so every message gets
# spf=pass dkim=pass dmarc=pass; the checking Postel asks it, with
# [verify] ignore_networks = [] (loopback is otherwise not checked). The
# records have a TTL of an hour, as published records do (dnsmasq's
# default for its own records is 0, which no resolver can cache).
# Both keep every message fsync'd before its 250, on DATA_ROOT.
#
# Outbound signing is measured by `SIGN=1 bench/relay.sh`.
#
# Environment: REPS=3 LOADS=s20d DATA_ROOT=/var/tmp (and bench.sh's);
# PERF=FILE records the checking Postel's first run with `perf record -g`.
# Needs smtp-source (postfix), dnsmasq (dnsmasq-base), python3 with
# dkimpy, and a release build.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
. "$HERE/peers/lib.sh"
peers_sbin
OUT="${1:-/var/tmp/postel-auth-bench-$(date +%Y%m%d-%H%M%S)}"
REPS="${REPS:-3}"; export LOADS="${LOADS:-s20d}"; DATA_ROOT="${DATA_ROOT:-/var/tmp}"
BIN="$ROOT/target/release/postel"
[ -x "$BIN" ] || peers_die "build first: cargo build --release"
DNSMASQ="$(command -v dnsmasq || echo /usr/sbin/dnsmasq)"
[ -x "$DNSMASQ" ] || peers_die "dnsmasq is missing (apt install dnsmasq-base)"
python3 -c 'import dkim' 2>/dev/null || peers_die "dkimpy is missing (pip install dkimpy)"
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK="$(mktemp -d "$DATA_ROOT/postel-auth.XXXXXX")"
DNS_PORT="$(free_port)"; PLAIN_PORT="$(free_port)"; CHECKED_PORT="$(free_port)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# The signer's key (Postel makes it; dkimpy signs with it) and its record.
"$BIN" dkim generate in.test --selector bench --dir "$WORK/keys" > "$WORK/keys.txt"
record="$(python3 - "$WORK/keys.txt" <<'PY'
import sys
text = open(sys.argv[1]).read()
line = text.split("benchr._domainkey.in.test. IN TXT ", 1)[1].split(")", 1)[0]
print("".join(line.split('"')[1::2]))
PY
)"
dkim_strings="$(python3 -c 'import sys; r=sys.argv[1]; print(",".join(r[i:i+250] for i in range(0, len(r), 250)))' "$record")"
"$DNSMASQ" --keep-in-foreground --port="$DNS_PORT" --listen-address=127.0.0.1 --bind-interfaces \
  --no-resolv --no-hosts --local=/test/ --user=root --pid-file= --local-ttl=3600 \
  "--txt-record=in.test,v=spf1 ip4:127.0.0.0/8 -all" \
  "--txt-record=_dmarc.in.test,v=DMARC1; p=reject" \
  "--txt-record=benchr._domainkey.in.test,$dkim_strings" &
pids+=("$!")
peers_await "$DNS_PORT" 10 || peers_die "dnsmasq did not start"

# The message: signed once, sent by every session (LF lines: smtp-source
# ends each with CRLF, which relaxed canonicalization keeps valid).
python3 - "$WORK/keys/in.test/benchr.pem" "$WORK/message.eml" <<'PY'
import sys, dkim
key = open(sys.argv[1], "rb").read()
body = b"".join(b"Line %04d of a message to measure checking with.\r\n" % i for i in range(80))
msg = (b"From: Bench <bench@in.test>\r\nTo: b@example.test\r\nSubject: checks\r\n"
       b"Date: Mon, 30 Nov 2026 06:00:00 +0000\r\nMessage-ID: <bench@in.test>\r\n\r\n" + body)
sig = dkim.sign(msg, b"benchr", b"in.test", key, canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
open(sys.argv[2], "wb").write((sig + msg).replace(b"\r\n", b"\n"))
PY

start_postel() { # NAME PORT VERIFY_TOML
  mkdir -p "$WORK/$1"
  printf '[limits]\nmax_connections_per_ip = 1000\n[dns]\nnameservers = ["127.0.0.1:%s"]\n[verify]\n%s\n' \
    "$DNS_PORT" "$3" > "$WORK/$1.toml"
  RUST_LOG=warn "$BIN" serve --config "$WORK/$1.toml" --no-web --smtp "127.0.0.1:$2" \
    --data-dir "$WORK/$1/data" --hostname bench.test > "$WORK/$1.log" 2>&1 &
  pids+=("$!"); echo "$!" > "$WORK/$1.pid"
  peers_await "$2" 10 || { cat "$WORK/$1.log"; peers_die "postel ($1) did not start"; }
}
start_postel plain "$PLAIN_PORT" 'enabled = false'
start_postel checked "$CHECKED_PORT" 'ignore_networks = []'

# One message through the checking Postel, to show what it wrote.
REPS=1 FROM=bench@in.test MESSAGE_FILE="$WORK/message.eml" LOADS=s1 COUNT_s1=1 \
  "$HERE/peers/bench.sh" "127.0.0.1:$CHECKED_PORT" > /dev/null
"$BIN" messages list --json --data-dir "$WORK/checked/data" \
  | python3 -c 'import json,sys; m=json.load(sys.stdin)[0]; print("checks:", json.dumps(m["checks"]))' | tee "$OUT/checks.txt"
grep -q '"dkim": "pass"' "$OUT/checks.txt" && grep -q '"dmarc": "pass"' "$OUT/checks.txt" \
  && grep -q '"spf": "pass"' "$OUT/checks.txt" || peers_die "the checks did not all pass: see $OUT/checks.txt"

: > "$OUT/raw.csv"
for rep in $(seq 1 "$REPS"); do
  for name in plain checked; do
    port="$PLAIN_PORT"; [ "$name" = checked ] && port="$CHECKED_PORT"
    perf_pid=""
    if [ -n "${PERF:-}" ] && [ "$name" = checked ] && [ "$rep" = 1 ]; then
      perf record -F 499 -g -o "$PERF" -p "$(cat "$WORK/$name.pid")" >/dev/null 2>&1 & perf_pid=$!
      sleep 0.5
    fi
    REPS=1 FROM=bench@in.test MESSAGE_FILE="$WORK/message.eml" LABEL="postel-$name" FIRST_REP="$rep" \
      SERVER_PID="$(cat "$WORK/$name.pid")" CSV="$OUT/raw.csv" \
      "$HERE/peers/bench.sh" "127.0.0.1:$port"
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  done
done
python3 - "$OUT/raw.csv" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rate = {}
for r in rows:
    rate.setdefault((r["label"], r["load"]), []).append(float(r["msgs_per_s"]))
for load in sorted({l for _, l in rate}):
    plain = statistics.median(rate[("postel-plain", load)])
    checked = statistics.median(rate[("postel-checked", load)])
    print(f"{load}: checks off {plain:.0f}/s, on {checked:.0f}/s (medians): on/off = {checked / plain:.2f}")
PY
