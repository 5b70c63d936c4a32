#!/usr/bin/env bash
# start-smtp-sink.sh PORT [more smtp-sink options]
#
# Postfix's smtp-sink test server on 127.0.0.1:PORT: it answers just enough
# SMTP to take every message and discards it unread (nothing on disk, no
# fsync). It marks the ceiling of what the protocol exchange alone costs on
# this machine, not a server anyone would run.
#
# Up to 1000 sessions at once (-m 1000) and a listen backlog of 1000 (the
# last argument). smtp-sink refuses to run as root unless told which user to
# become, hence -u nobody when started by root.
#
# Background; PID file RUN_DIR/smtp-sink-PORT.pid. Rerunnable.
# Stop: stop-smtp-sink.sh PORT.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"
PORT="${1:?usage: start-smtp-sink.sh PORT [smtp-sink options]}"; shift
[[ "$PORT" =~ ^[0-9]+$ ]] || peers_die "bad port '$PORT'"
peers_sbin
SINK="$(command -v smtp-sink)" || peers_die "smtp-sink (Debian package postfix) is missing: run bench/peers/install.sh"

as_user=()
[ "$(id -u)" = 0 ] && as_user=(-u nobody)

peers_stop_pidfile "$PEERS_RUN_DIR/smtp-sink-$PORT.pid" >/dev/null
peers_spawn smtp-sink "$PORT" "$SINK" "${as_user[@]}" -m 1000 "$@" "127.0.0.1:$PORT" 1000
