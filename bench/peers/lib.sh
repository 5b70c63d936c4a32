# bench/peers/lib.sh -- shell functions shared by the start-*/stop-* scripts
# next to it. Sourced, never run on its own.
#
# Peers that are a single process (aiosmtpd, smtp-sink) are tracked by a PID
# file named RUN_DIR/<peer>-<port>.pid with the log beside it as
# RUN_DIR/<peer>-<port>.log. RUN_DIR defaults to /tmp/postel-peers; bench/
# compare.sh sets its own. Only a PID read from such a file is ever signalled.

PEERS_RUN_DIR="${RUN_DIR:-/tmp/postel-peers}"

peers_die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# Debian keeps the Postfix programs in /usr/sbin, which is not on every PATH.
peers_sbin() {
  case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
  export PATH
}

# peers_listening PORT: true if something accepts TCP on 127.0.0.1:PORT.
peers_listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# peers_await PORT SECONDS: poll every 0.1 s until 127.0.0.1:PORT accepts.
peers_await() {
  local tries=$(( $2 * 10 ))
  while [ "$tries" -gt 0 ]; do
    peers_listening "$1" && return 0
    sleep 0.1
    tries=$(( tries - 1 ))
  done
  return 1
}

# peers_spawn NAME PORT COMMAND...: start COMMAND in its own session
# (setsid, so a test harness's signals to its process group do not reach
# it), stdin closed, output to the log; record its PID; wait up to 10 s for
# the port. Prints one status line.
peers_spawn() {
  local name="$1" port="$2"; shift 2
  local pidfile="$PEERS_RUN_DIR/$name-$port.pid" log="$PEERS_RUN_DIR/$name-$port.log"
  mkdir -p "$PEERS_RUN_DIR"
  setsid "$@" </dev/null >"$log" 2>&1 &
  echo "$!" > "$pidfile"
  if peers_await "$port" 10; then
    echo "$name: 127.0.0.1:$port, pid $(cat "$pidfile"), log $log"
    return 0
  fi
  echo "$(basename "$0"): $name is not listening on 127.0.0.1:$port after 10 s; log $log:" >&2
  tail -n 20 "$log" >&2 || true
  peers_stop_pidfile "$pidfile" >/dev/null
  return 1
}

# peers_stop_pidfile FILE: SIGTERM the PID in FILE, give it 5 s, then
# SIGKILL that same PID. A missing file or a dead PID is not an error.
peers_stop_pidfile() {
  local file="$1" pid
  [ -f "$file" ] || return 0
  pid="$(tr -dc '0-9' < "$file")"
  rm -f "$file"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || { echo "stopped pid $pid"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  echo "killed pid $pid (no exit 5 s after SIGTERM)"
}
