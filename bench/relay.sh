#!/usr/bin/env bash
# bench/relay.sh -- the relay benchmark: smtp-source -> server -> smtp-sink,
# for Postel and for Postfix in the same role, in the same run.
#
# Each server relays for 127.0.0.0/8 and sends every message on to one
# smtp-sink (which counts what it receives: `smtp-sink -c`). The figure is
# messages delivered to the sink per second: from smtp-source's first
# connection until the sink has counted every message.
#   Postel:  delivery on, MX of sink.test found through a dnsmasq on loopback
#            (dialled on the sink's port), queue rows fsync'd with the message
#            before every 250 (SQLite, synchronous=FULL).
#   Postfix: relayhost = [127.0.0.1]:SINK, its queue file fsync'd before
#            every 250, as Postfix always does.
# Both keep their data on DATA_ROOT (default /var/tmp): a real disk.
#
# SIGN=1 adds a second Postel, the same but DKIM-signing every message with
# an Ed25519 key of here.test (`postel dkim generate`), run beside the first
# in each rep, and prints the ratio signed/unsigned.
#
# Settings (environment): SESSIONS=20, COUNT=20000, SIZE=4096, REPS=1, SIGN=0,
# DATA_ROOT=/var/tmp, TIMEOUT=600, PERF=FILE (records Postel's run with
# `perf record -g` into FILE, for `perf report -i FILE`). Needs root (Postfix), smtp-source and
# smtp-sink (Debian's postfix), dnsmasq (dnsmasq-base) and a release build
# (cargo build --release). Prints one line per run and the ratio.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
. "$HERE/peers/lib.sh"
peers_sbin
SESSIONS="${SESSIONS:-20}"; COUNT="${COUNT:-20000}"; SIZE="${SIZE:-4096}"
REPS="${REPS:-1}"; DATA_ROOT="${DATA_ROOT:-/var/tmp}"; TIMEOUT="${TIMEOUT:-600}"
BIN="$ROOT/target/release/postel"
[ -x "$BIN" ] || peers_die "build first: cargo build --release"
DNSMASQ="$(command -v dnsmasq || echo /usr/sbin/dnsmasq)"
[ -x "$DNSMASQ" ] || peers_die "dnsmasq is missing (apt install dnsmasq-base)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK="$(mktemp -d "$DATA_ROOT/postel-relay.XXXXXX")"
# Postfix's own user walks down to its spool inside.
chmod 0755 "$WORK"
SINK_PORT="$(free_port)"; DNS_PORT="$(free_port)"; POSTEL_PORT="$(free_port)"; POSTFIX_PORT="$(free_port)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$HERE/peers/stop-postfix.sh" "$WORK/postfix" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The sink, counting.
as_user=(); [ "$(id -u)" = 0 ] && as_user=(-u nobody)
start_sink() {
  smtp-sink "${as_user[@]}" -c -m 1000 "127.0.0.1:$SINK_PORT" 1000 > "$WORK/sink.out" 2>&1 &
  SINK_PID=$!; pids+=("$SINK_PID")
  peers_await "$SINK_PORT" 10 || peers_die "smtp-sink did not start"
}
sink_count() { tr '\r' '\n' < "$WORK/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }

# DNS: sink.test's MX is the sink.
"$DNSMASQ" --keep-in-foreground --port="$DNS_PORT" --listen-address=127.0.0.1 --bind-interfaces \
  --no-resolv --no-hosts --local=/test/ --user=root --pid-file= \
  --mx-host=sink.test,mx.sink.test,10 --host-record=mx.sink.test,127.0.0.1 &
pids+=("$!")
peers_await "$DNS_PORT" 10 || peers_die "dnsmasq did not start"

# proc_cpu LABEL: CPU ticks (1/100 s) used so far by the server's processes
# (Postel's one process; every live process of the Postfix instance: a
# Postfix process that exits during the run is not counted, so Postfix's
# figure is a lower bound).
proc_cpu() {
  local pids
  if [ "$1" = postel ]; then pids="$POSTEL_PID"; elif [ "$1" = postel-signed ]; then pids="$SIGNED_PID"; else
    pids="$(pgrep -f "$WORK/postfix" | tr '\n' ' ')"
    local master; master="$(tr -dc '0-9' < "$WORK/postfix/queue/pid/master.pid" 2>/dev/null || true)"
    [ -n "$master" ] && pids="$pids $master $(pgrep -P "$master" | tr '\n' ' ')"
  fi
  local total=0 p
  for p in $pids; do
    [ -r "/proc/$p/stat" ] || continue
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
  done
  echo "$total"
}

# run LABEL PORT: one load through the server on PORT; prints the row.
run() {
  local label="$1" port="$2" rep="$3"
  kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true
  start_sink
  local t0 t1 n
  local perf_pid=""
  if [ -n "${PERF:-}" ] && [ "$label" = postel ]; then
    perf record -F 499 -g -o "$PERF" -p "$POSTEL_PID" >/dev/null 2>&1 & perf_pid=$!
    sleep 0.5
  fi
  local cpu0; cpu0="$(proc_cpu "$label")"
  t0="$(date +%s.%N)"
  timeout "$TIMEOUT" smtp-source -s "$SESSIONS" -m "$COUNT" -l "$SIZE" \
    -f bench@here.test -t rcpt@sink.test "127.0.0.1:$port" >/dev/null
  local taken; taken="$(python3 -c "import time; print(round(time.time() - $t0, 2))")"
  while :; do
    n="$(sink_count)"; n="${n:-0}"
    [ "$n" -ge "$COUNT" ] && break
    if python3 -c "import sys,time; sys.exit(0 if time.time() - $t0 > $TIMEOUT else 1)"; then
      echo "$label rep=$rep TIMEOUT delivered=$n/$COUNT"; return 1
    fi
    sleep 0.05
  done
  t1="$(date +%s.%N)"
  local cpu1; cpu1="$(proc_cpu "$label")"
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  local secs rate
  secs="$(python3 -c "print($t1 - $t0)")"
  rate="$(python3 -c "print($COUNT / $secs)")"
  printf '%s rep=%s sessions=%s messages=%s accepted_after=%ss seconds=%.2f delivered_per_s=%.0f server_cpu_s=%s\n' \
    "$label" "$rep" "$SESSIONS" "$COUNT" "$taken" "$secs" "$rate" \
    "$(python3 -c "print(round(($cpu1 - $cpu0) / 100, 2))")"
  echo "$rate" > "$WORK/rate-$label-$rep"
}

# Postel (and, with SIGN=1, the signing one).
postel_config() {
cat <<TOML
hostname = "relay.here.test"
data_dir = "$WORK/$1"
[smtp]
listen = ["127.0.0.1:$2"]
[limits]
max_connections_per_ip = 1000
[policy]
domains = ["here.test"]
[delivery]
enabled = true
relay_networks = ["127.0.0.0/8"]
mx_port = $SINK_PORT
allow_private_addresses = true
tls = "none"
max_connections_per_destination = 20
[dns]
nameservers = ["127.0.0.1:$DNS_PORT"]
TOML
}
mkdir -p "$WORK/postel"
postel_config postel "$POSTEL_PORT" > "$WORK/postel.toml"
RUST_LOG=warn "$BIN" serve --config "$WORK/postel.toml" --no-web > "$WORK/postel.log" 2>&1 &
POSTEL_PID=$!; pids+=("$POSTEL_PID")
peers_await "$POSTEL_PORT" 10 || { cat "$WORK/postel.log"; peers_die "postel did not start"; }
if [ "${SIGN:-0}" = 1 ]; then
  SIGNED_PORT="$(free_port)"
  mkdir -p "$WORK/postel-signed"
  "$BIN" dkim generate here.test --selector bench --dir "$WORK/keys" > "$WORK/keys.txt"
  { postel_config postel-signed "$SIGNED_PORT"
    printf '[[dkim]]\ndomain = "here.test"\nselector = "benche"\nkey = "%s"\n' "$WORK/keys/here.test/benche.pem"
  } > "$WORK/postel-signed.toml"
  RUST_LOG=warn "$BIN" serve --config "$WORK/postel-signed.toml" --no-web > "$WORK/postel-signed.log" 2>&1 &
  SIGNED_PID=$!; pids+=("$SIGNED_PID")
  peers_await "$SIGNED_PORT" 10 || { cat "$WORK/postel-signed.log"; peers_die "the signing postel did not start"; }
fi

# Postfix, relaying to the same sink.
RELAYHOST="[127.0.0.1]:$SINK_PORT" TLS=0 "$HERE/peers/start-postfix.sh" "$POSTFIX_PORT" "$WORK/postfix" >/dev/null

start_sink
for rep in $(seq 1 "$REPS"); do
  run postel "$POSTEL_PORT" "$rep"
  [ "${SIGN:-0}" = 1 ] && run postel-signed "$SIGNED_PORT" "$rep"
  run postfix "$POSTFIX_PORT" "$rep"
done
best() { cat "$WORK"/rate-"$1"-* | sort -g | tail -1; }
printf 'ratio postel/postfix (best of %s): %.1fx\n' "$REPS" "$(python3 -c "print($(best postel) / $(best postfix))")"
if [ "${SIGN:-0}" = 1 ]; then
  printf 'ratio signed/unsigned postel (best of %s): %.2f\n' "$REPS" "$(python3 -c "print($(best postel-signed) / $(best postel))")"
fi
