#!/usr/bin/env bash
# stop-aiosmtpd.sh PORT -- stops what start-aiosmtpd.sh PORT started (by the
# PID in its PID file, nothing else).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"
peers_stop_pidfile "$PEERS_RUN_DIR/aiosmtpd-${1:?usage: stop-aiosmtpd.sh PORT}.pid"
