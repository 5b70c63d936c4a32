#!/usr/bin/env bash
# bench/pg.sh [OUTDIR] -- Postel on PostgreSQL against Postel on SQLite and
# Postfix, same machine, same run; then one node against two on one
# database.
#
# Starts a PostgreSQL of its own (as the postgres user, data under
# /var/tmp, fsync and synchronous_commit on: every 250 waits for a WAL
# flush), then for each rep and load starts each server fresh and drives it
# with smtp-source through bench/peers/bench.sh (4 KiB messages, one
# recipient). Postfix fsyncs each queue file before its 250.
#
# Two nodes: two Postel processes on one database, each given half of the
# sessions and half of the messages by its own smtp-source, started
# together; the rate is all the messages over the time until both are
# done. One node gets the same split (two smtp-source, one port), so that
# the two figures differ only in the number of nodes.
#
# Environment: REPS=3  LOADS="s20d s100"  POSTEL=target/release/postel
#   PG_PORT=55433  PG_DIR=/var/tmp/postel-bench-pg  PORTS: 2620 2621 2622
# Loopback only. Needs smtp-source (bench/peers/install.sh) and postgresql.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PEERS="$HERE/peers"
OUT="${1:-/var/tmp/postel-pg-bench-$(date +%Y%m%d-%H%M%S)}"
REPS="${REPS:-3}" LOADS="${LOADS:-s20d s100}"
POSTEL="${POSTEL:-$ROOT/target/release/postel}"
PG_PORT="${PG_PORT:-55433}" PG_DIR="${PG_DIR:-/var/tmp/postel-bench-pg}"
P1=2620 P2=2621 PFX=2622
export RUN_DIR="${RUN_DIR:-/tmp/postel-pg-bench-run}" PATH="$PATH:/usr/sbin"
mkdir -p "$OUT" "$RUN_DIR"
[ -x "$POSTEL" ] || { echo "build first: cargo build --release" >&2; exit 1; }
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_start() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"; mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
  (cd /tmp && as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres -E UTF8 --no-locale >/dev/null)
  (cd /tmp && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w start \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DIR -c max_connections=300 -c fsync=on -c synchronous_commit=on" >/dev/null)
}
pg_stop() { (cd /tmp && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1) || true; }
fresh_db() {
  psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
}

# postel_start NAME PORT [pg]: a fresh data folder; PostgreSQL with "pg".
postel_start() {
  local dir="/var/tmp/postel-pg-bench-$1"
  rm -rf "$dir"; mkdir -p "$dir"
  printf '[limits]\nmax_message_size = 67108864\n' > "$dir/postel.toml"
  if [ "${3:-}" = pg ]; then
    printf '[store]\nurl = "postgres://postgres@127.0.0.1:%s/bench"\nnode = "%s"\nconnections = 16\n' \
      "$PG_PORT" "$1" >> "$dir/postel.toml"
  fi
  setsid "$POSTEL" serve --config "$dir/postel.toml" --smtp "127.0.0.1:$2" --data-dir "$dir/data" \
    --hostname bench.test </dev/null >"$dir/log" 2>&1 & echo $! > "$RUN_DIR/$1.pid"
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0; sleep 0.05; done
  echo "postel $1 did not start" >&2; cat "$dir/log" >&2; return 1
}
postel_stop() { kill "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null || true; sleep 0.5; }
stored() {
  psql -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bench -c "SELECT count(*) FROM messages"
}

# split PORT_A PORT_B SESSIONS COUNT REUSE: two smtp-source at once, half
# each; prints messages per second over both, or FAIL.
split() {
  local half_s=$(( $3 / 2 )) half_m=$(( $4 / 2 )) t0 t1 rc=0
  t0="$(date +%s.%N)"
  smtp-source -s "$half_s" -m "$half_m" $5 -l 4096 -M client.example.test \
    -f a@example.test -t b@example.test "127.0.0.1:$1" >/dev/null 2>&1 & local a=$!
  smtp-source -s "$half_s" -m "$half_m" $5 -l 4096 -M client.example.test \
    -f a@example.test -t b@example.test "127.0.0.1:$2" >/dev/null 2>&1 & local b=$!
  wait $a || rc=1; wait $b || rc=1
  t1="$(date +%s.%N)"
  if [ $rc = 0 ]; then echo "$4 $t0 $t1" | awk '{printf "%.0f", $1 / ($3 - $2)}'; else echo FAIL; fi
}
flags() { case "$1" in s20d) echo "20 20000 -d";; s100) echo "100 10000 ";; *) echo "no load $1" >&2; exit 1;; esac; }

trap 'postel_stop a; postel_stop b; postel_stop sqlite; "$PEERS/stop-postfix.sh" /var/tmp/postel-pg-bench-postfix >/dev/null 2>&1 || true; pg_stop' EXIT
pg_start
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)"
  echo "memory: $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "postel: $("$POSTEL" --version); data on $(stat -f -c %T /var/tmp)"
  echo "postgresql: $(psql -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -c 'SHOW server_version')"
  echo "postfix: $(postconf -d -h mail_version)"
  echo "reps: $REPS; loads: $LOADS"
} | tee "$OUT/versions.txt"
rm -f "$OUT/raw.csv" "$OUT/nodes.txt"
for rep in $(seq "$REPS"); do
  for l in $LOADS; do
    # Postel on SQLite.
    postel_start sqlite $P1
    FIRST_REP=$rep REPS=1 LOADS=$l LABEL=postel-sqlite SERVER_PID="$(cat "$RUN_DIR/sqlite.pid")" \
      CSV="$OUT/raw.csv" "$PEERS/bench.sh" "127.0.0.1:$P1" | tail -n +2
    postel_stop sqlite
    # Postel on PostgreSQL, one node.
    fresh_db
    postel_start a $P1 pg
    FIRST_REP=$rep REPS=1 LOADS=$l LABEL=postel-pg SERVER_PID="$(cat "$RUN_DIR/a.pid")" \
      CSV="$OUT/raw.csv" "$PEERS/bench.sh" "127.0.0.1:$P1" | tail -n +2
    echo "rep $rep $l postel-pg: stored $(stored)" >> "$OUT/delivery-check.txt"
    postel_stop a
    # Postfix.
    "$PEERS/start-postfix.sh" $PFX /var/tmp/postel-pg-bench-postfix >/dev/null
    FIRST_REP=$rep REPS=1 LOADS=$l LABEL=postfix \
      SERVER_PID="$(tr -d ' \n' < /var/tmp/postel-pg-bench-postfix/queue/pid/master.pid)" \
      CSV="$OUT/raw.csv" "$PEERS/bench.sh" "127.0.0.1:$PFX" | tail -n +2
    "$PEERS/stop-postfix.sh" /var/tmp/postel-pg-bench-postfix >/dev/null 2>&1 || true
    # One node, then two, with the same split load.
    read -r s m d <<< "$(flags "$l")"
    fresh_db; postel_start a $P1 pg
    one="$(split $P1 $P1 "$s" "$m" "$d")"
    postel_stop a
    fresh_db; postel_start a $P1 pg; postel_start b $P2 pg
    two="$(split $P1 $P2 "$s" "$m" "$d")"
    echo "rep $rep $l two nodes: stored $(stored)" >> "$OUT/delivery-check.txt"
    postel_stop a; postel_stop b
    echo "rep $rep $l: one node $one msg/s, two nodes $two msg/s" | tee -a "$OUT/nodes.txt"
  done
done
python3 "$PEERS/summarize.py" "$OUT/raw.csv" > "$OUT/summary.md"
cat "$OUT/delivery-check.txt" "$OUT/summary.md" "$OUT/nodes.txt"
echo "results in $OUT"
