#!/usr/bin/env bash
# stop-postfix.sh SPOOLDIR -- stops the instance start-postfix.sh runs from
# SPOOLDIR: "postfix -c SPOOLDIR/etc stop", which signals the master named in
# SPOOLDIR/queue/pid/master.pid; if that master has not exited 10 s later,
# SIGKILL to that one PID. Not running is not an error. The queue is kept.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"
SPOOL="${1:?usage: stop-postfix.sh SPOOLDIR}"
[ -d "$SPOOL" ] || { echo "postfix: no $SPOOL, nothing to stop"; exit 0; }
SPOOL="$(cd "$SPOOL" && pwd)"
peers_sbin

pidfile="$SPOOL/queue/pid/master.pid"
pid="$( [ -f "$pidfile" ] && tr -dc '0-9' < "$pidfile" || true)"
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
  echo "postfix: not running from $SPOOL"
  exit 0
fi
postfix -c "$SPOOL/etc" stop 2>/dev/null || true
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || { echo "postfix: stopped (master pid $pid)"; exit 0; }
  sleep 0.1
done
echo "stop-postfix.sh: master $pid still running 10 s after 'postfix stop': SIGKILL" >&2
kill -KILL "$pid" 2>/dev/null || true
