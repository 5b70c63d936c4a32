#!/usr/bin/env bash
# bench/compare.sh [OUTDIR] -- Postel against its peers, same machine, same run.
#
# Starts each server fresh for each load (Postel with an empty data folder on a
# real disk), drives it with Postfix's smtp-source through
# bench/peers/bench.sh, and writes raw.csv and summary.md (medians).
# Loopback only. Needs the peers installed: bench/peers/install.sh.
#
# Then, unless LATENCY=0, bench/latency.py at 20 sessions against each server
# (latency.txt); unless LARGE=0, bench/large.py: LARGE_MESSAGES messages of
# LARGE_SIZE octets over 4 sessions against each server, REPS times
# (large.csv, large.md: MB/s and peak memory); and bench/chart.py draws
# throughput.svg from raw.csv.
#
# Environment: REPS=3  LOADS="s1 s1d s20 s20d s100"  SERVERS="postel smtp-sink postfix aiosmtpd"
#   COUNT_<load>=N (see bench.sh)   POSTEL=target/release/postel
#   LARGE_MESSAGES=40  LARGE_SIZE=26214400 (25 MiB)
#   PORT_POSTEL=2600 PORT_SINK=2601 PORT_POSTFIX=2602 PORT_AIOSMTPD=2603
#   POSTEL_DIR=/var/tmp/postel-compare-data  POSTFIX_SPOOL=/var/tmp/postel-compare-postfix
#   RUN_DIR=/tmp/postel-compare-run
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PEERS="${PEERS:-$HERE/peers}"
OUT="${1:-/var/tmp/postel-compare-$(date +%Y%m%d-%H%M%S)}"
REPS="${REPS:-3}"
LOADS="${LOADS:-s1 s1d s20 s20d s100}"
SERVERS="${SERVERS:-postel smtp-sink postfix aiosmtpd}"
POSTEL="${POSTEL:-$ROOT/target/release/postel}"
PORT_POSTEL="${PORT_POSTEL:-2600}" PORT_SINK="${PORT_SINK:-2601}"
PORT_POSTFIX="${PORT_POSTFIX:-2602}" PORT_AIOSMTPD="${PORT_AIOSMTPD:-2603}"
POSTEL_DIR="${POSTEL_DIR:-/var/tmp/postel-compare-data}"
POSTFIX_SPOOL="${POSTFIX_SPOOL:-/var/tmp/postel-compare-postfix}"
LARGE_MESSAGES="${LARGE_MESSAGES:-40}" LARGE_SIZE="${LARGE_SIZE:-26214400}"
export RUN_DIR="${RUN_DIR:-/tmp/postel-compare-run}" PATH="$PATH:/usr/sbin"
mkdir -p "$OUT" "$RUN_DIR"
[ -x "$POSTEL" ] || { echo "build first: cargo build --release" >&2; exit 1; }

port_of() { case "$1" in postel) echo $PORT_POSTEL;; smtp-sink) echo $PORT_SINK;; postfix) echo $PORT_POSTFIX;; aiosmtpd) echo $PORT_AIOSMTPD;; esac; }
start() {
  case "$1" in
    postel)
      rm -rf "$POSTEL_DIR"; mkdir -p "$POSTEL_DIR"
      # A config file: the production mode, without the zero-config web
      # inbox and retention, with every message fsync'd before its 250. The
      # size limit only matters to the large-message run (as for Postfix).
      printf '[limits]\nmax_message_size = 67108864\n' > "$POSTEL_DIR/postel.toml"
      setsid "$POSTEL" serve --config "$POSTEL_DIR/postel.toml" --smtp "127.0.0.1:$PORT_POSTEL" \
        --data-dir "$POSTEL_DIR/data" --hostname bench.test \
        </dev/null >"$POSTEL_DIR/log" 2>&1 & echo $! > "$RUN_DIR/postel.pid"
      for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT_POSTEL") 2>/dev/null && return 0; sleep 0.05; done
      echo "postel did not start" >&2; cat "$POSTEL_DIR/log" >&2; return 1 ;;
    smtp-sink) "$PEERS/start-smtp-sink.sh" $PORT_SINK >/dev/null ;;
    postfix)   "$PEERS/start-postfix.sh" $PORT_POSTFIX "$POSTFIX_SPOOL" >/dev/null ;;
    aiosmtpd)  "$PEERS/start-aiosmtpd.sh" $PORT_AIOSMTPD >/dev/null ;;
  esac
}
stop() {
  case "$1" in
    postel)    [ -f "$RUN_DIR/postel.pid" ] && { kill "$(cat "$RUN_DIR/postel.pid")" 2>/dev/null || true; sleep 0.3; } ;;
    smtp-sink) "$PEERS/stop-smtp-sink.sh" $PORT_SINK >/dev/null || true ;;
    postfix)   "$PEERS/stop-postfix.sh" "$POSTFIX_SPOOL" >/dev/null 2>&1 || true ;;
    aiosmtpd)  "$PEERS/stop-aiosmtpd.sh" $PORT_AIOSMTPD >/dev/null || true ;;
  esac
}
pid_of() {
  case "$1" in
    postel)    cat "$RUN_DIR/postel.pid" ;;
    smtp-sink) cat "$RUN_DIR/smtp-sink-$PORT_SINK.pid" ;;
    postfix)   tr -d ' \n' < "$POSTFIX_SPOOL/queue/pid/master.pid" ;;
    aiosmtpd)  cat "$RUN_DIR/aiosmtpd-$PORT_AIOSMTPD.pid" ;;
  esac
}
trap 'for s in $SERVERS; do stop "$s"; done' EXIT
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)"
  echo "memory: $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "postel: $("$POSTEL" --version); data on $(stat -f -c %T /var/tmp)"
  echo "postfix: $(postconf -d -h mail_version)"
  echo "reps: $REPS; loads: $LOADS"
} | tee "$OUT/versions.txt"
rm -f "$OUT/raw.csv"
for rep in $(seq "$REPS"); do
  for s in $SERVERS; do
    for l in $LOADS; do
      start "$s"
      FIRST_REP="$rep" REPS=1 LOADS="$l" LABEL="$s" SERVER_PID="$(pid_of "$s")" CSV="$OUT/raw.csv" \
        "$PEERS/bench.sh" "127.0.0.1:$(port_of "$s")" | tail -n +2
      if [ "$s" = postel ]; then
        sent="$(tail -1 "$OUT/raw.csv" | cut -d, -f4)"
        stored="$("$POSTEL" messages list --json --data-dir "$POSTEL_DIR/data" | grep -c '"id"')"
        echo "postel rep $rep $l: smtp-source sent $sent, postel stored $stored" >> "$OUT/delivery-check.txt"
      fi
      stop "$s"
    done
  done
done
# Latency, end of data to 250, at 20 sessions (LATENCY=0 skips it).
if [ "${LATENCY:-1}" = 1 ]; then
  for s in $SERVERS; do
    [ "$s" = smtp-sink ] && continue   # smtp-sink answers before it reads: nothing to time
    start "$s"
    python3 "$HERE/latency.py" "127.0.0.1:$(port_of "$s")" --sessions 20 --messages 250 --label "$s" \
      | tee -a "$OUT/latency.txt"
    stop "$s"
  done
fi
# Large messages, 4 sessions (LARGE=0 skips it). Postfix's default size
# limit (10 MB) is raised to Postel's, 64 MiB; aiosmtpd's is 32 MiB.
if [ "${LARGE:-1}" = 1 ]; then
  rm -f "$OUT/large.csv"
  for rep in $(seq "$REPS"); do
    for s in $SERVERS; do
      start "$s"
      if [ "$s" = postfix ]; then
        postconf -c "$POSTFIX_SPOOL/etc" -e message_size_limit=67108864
        postfix -c "$POSTFIX_SPOOL/etc" reload >/dev/null 2>&1
        sleep 1
      fi
      python3 "$HERE/large.py" "127.0.0.1:$(port_of "$s")" --pid "$(pid_of "$s")" --label "$s" \
        --sessions 4 --messages "$LARGE_MESSAGES" --size "$LARGE_SIZE" --csv "$OUT/large.csv" || true
      if [ "$s" = postel ]; then
        stored="$("$POSTEL" messages list --json --data-dir "$POSTEL_DIR/data" | grep -c '"id"')"
        echo "postel rep $rep large: smtp-source sent $LARGE_MESSAGES, postel stored $stored" >> "$OUT/delivery-check.txt"
      fi
      stop "$s"
    done
  done
  python3 "$HERE/large.py" --summary "$OUT/large.csv" > "$OUT/large.md"
  cat "$OUT/large.md"
fi
python3 "$PEERS/summarize.py" "$OUT/raw.csv" > "$OUT/summary.md"
python3 "$HERE/chart.py" "$OUT/raw.csv" > "$OUT/throughput.svg"
cat "$OUT/delivery-check.txt" 2>/dev/null || true
cat "$OUT/summary.md"
echo "results in $OUT"
