#!/usr/bin/env bash
# bench/instructions.sh [N] -- CPU instructions per accepted message, counted
# by callgrind (perf's counters are not available on these VMs). Counts, not
# seconds: the same binary and load give the same figure on a busy machine,
# so a change's effect shows without noise.
#
# Runs target/release/postel under callgrind twice on a fresh data folder:
# once with no mail (start-up, Argon2's dummy hash, shutdown), once with N
# messages (default 1000, 4 KiB, one session reusing its connection, by
# smtp-source). Prints (Ir with mail - Ir without) / N. Loopback only.
set -euo pipefail
N="${1:-1000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POSTEL="${POSTEL:-$ROOT/target/release/postel}"
PORT=2610
WORK="$(mktemp -d /var/tmp/postel-instr.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
SRC="$(command -v smtp-source || echo /usr/sbin/smtp-source)"

run() {  # run MESSAGES -> total Ir
  local n=$1 dir="$WORK/$1"
  mkdir -p "$dir"; : > "$dir/postel.toml"
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    "$POSTEL" serve --config "$dir/postel.toml" --smtp "127.0.0.1:$PORT" --data-dir "$dir/data" \
    --hostname bench.test >"$dir/log" 2>&1 &
  local pid=$!
  # "ready" comes after start-up's work (Argon2's dummy hash): only then
  # does SIGTERM stop the server cleanly, with every count in.
  for _ in $(seq 600); do grep -q "ready" "$dir/log" 2>/dev/null && break; sleep 0.1; done
  if [ "$n" -gt 0 ]; then
    "$SRC" -s 1 -m "$n" -d -l 4096 -f load@bench.test -t sink@example.test "127.0.0.1:$PORT" >/dev/null
  fi
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^summary:/ {print $2}' "$dir/cg.out"
}
base=$(run 0)
with=$(run "$N")
echo "instructions: start/stop $base, with $N messages $with"
echo "per message: $(( (with - base) / N ))"
