#!/usr/bin/env bash
# stop-smtp-sink.sh PORT -- stops what start-smtp-sink.sh PORT started (by the
# PID in its PID file, nothing else).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"
peers_stop_pidfile "$PEERS_RUN_DIR/smtp-sink-${1:?usage: stop-smtp-sink.sh PORT}.pid"
