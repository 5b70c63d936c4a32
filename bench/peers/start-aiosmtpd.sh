#!/usr/bin/env bash
# start-aiosmtpd.sh PORT [more aiosmtpd arguments]
#
# aiosmtpd (PyPI, pinned 1.4.6 by install.sh and scripts/test.sh) on
# 127.0.0.1:PORT with its Sink handler: every message is accepted and
# dropped, in memory, with no fsync. Not durable, so no durable baseline;
# its value is as a second, independent SMTP implementation.
#
# Runs in the background; PID file RUN_DIR/aiosmtpd-PORT.pid. Starting it
# again on the same PORT replaces the earlier one. Stop: stop-aiosmtpd.sh PORT.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"
PORT="${1:?usage: start-aiosmtpd.sh PORT [aiosmtpd arguments]}"; shift
[[ "$PORT" =~ ^[0-9]+$ ]] || peers_die "bad port '$PORT'"

# Ask the interpreter for its own path: under pyenv, python3 on PATH is a
# shim script, and the PID file should name Python itself.
PY="$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')" \
  || peers_die "no python3 (set PYTHON=)"
"$PY" -c 'import aiosmtpd' 2>/dev/null \
  || peers_die "aiosmtpd is missing for $PY: run bench/peers/install.sh"

peers_stop_pidfile "$PEERS_RUN_DIR/aiosmtpd-$PORT.pid" >/dev/null
peers_spawn aiosmtpd "$PORT" \
  "$PY" -m aiosmtpd --nosetuid --listen "127.0.0.1:$PORT" --class aiosmtpd.handlers.Sink "$@"
