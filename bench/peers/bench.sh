#!/usr/bin/env bash
# bench.sh HOST:PORT -- load an SMTP server on loopback with Postfix's
# smtp-source and report throughput, CPU and memory, one row per run.
#
# The loads. smtp-source sends one recipient per message, greets with HELO
# and never pipelines; -m counts messages over all sessions together:
#   s1    -s 1   -m 2000        one session, a new connection per message
#   s1d   -s 1   -m 5000  -d    one session, one connection for everything
#   s20   -s 20  -m 10000       20 sessions, a new connection per message
#   s20d  -s 20  -m 20000 -d    20 sessions, each keeps its connection
#   s100  -s 100 -m 10000       100 sessions, a new connection per message
# Without -d every message is connect, HELO, MAIL, RCPT, DATA, QUIT; with -d
# the next MAIL follows on the same connection.
#
# Settings, all from the environment and all optional:
#   LOADS="s1 s1d s20 s20d s100"   the loads to run, in this order
#   REPS=1         runs of each load
#   FIRST_REP=1    rep number printed for the first run
#   SIZE=4096      message payload in octets (smtp-source -l)
#   COUNT_<load>   message count for one load instead of the default above
#   SERVER_PID     the server's PID (for Postfix, its master). With it, the
#                  server's whole process tree is measured: CPU seconds used
#                  during the run (reaped children included), and its summed
#                  RSS and PSS, sampled every 0.25 s, at their peak (KiB).
#   LABEL=server   the first column
#   CSV=FILE       append each row to FILE too (a header first if it is empty)
#   BETWEEN=CMD    shell command run before each run (e.g. wait for a queue)
#   TIMEOUT=300    seconds after which one smtp-source run is killed
#   FROM=a@example.test  the MAIL FROM address
#   MESSAGE_FILE=FILE    send this pre-formatted message (smtp-source -F)
#                        instead of a generated one
#
# Columns: label load rep msgs elapsed_s msgs_per_s client_cpu_s server_cpu_s
# other_cpu_s steal_s peak_rss_kb peak_pss_kb rc.
#   other_cpu_s  CPU seconds the machine spent busy (/proc/stat) that were
#                neither the client's nor the server's: unattributed kernel
#                work, the sampler, anything else running.
#   steal_s      seconds the hypervisor ran someone else on our vCPUs.
#   A large other_cpu_s or steal_s marks a disturbed run.
#   rc           smtp-source's exit status. It gives up on the first reply
#                that is not the expected 2xx/3xx, so rc 0 means every message
#                was accepted: refusals can never count as throughput.
#                Any other rc prints FAIL as the rate.
#
# Refuses any target that is not loopback (127.0.0.0/8, localhost, ::1).
set -uo pipefail

TARGET="${1:?usage: bench.sh HOST:PORT}"
HOST="${TARGET%:*}" PORT="${TARGET##*:}"
HOST="${HOST#\[}" HOST="${HOST%\]}"
case "$HOST" in
  localhost|::1) ;;
  *) [[ "$HOST" =~ ^127(\.[0-9]{1,3}){3}$ ]] || { echo "bench.sh: $HOST is not a loopback address; refusing" >&2; exit 2; } ;;
esac
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "bench.sh: no port in '$TARGET'" >&2; exit 2; }
[ "$HOST" = ::1 ] && HOST="[::1]"

case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
SOURCE="$(command -v smtp-source)" || { echo "bench.sh: smtp-source (package postfix) is missing: run bench/peers/install.sh" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench.sh: /usr/bin/time (package time) is missing: run bench/peers/install.sh" >&2; exit 1; }

LOADS="${LOADS:-s1 s1d s20 s20d s100}"
REPS="${REPS:-1}" FIRST_REP="${FIRST_REP:-1}" SIZE="${SIZE:-4096}"
LABEL="${LABEL:-server}" SERVER_PID="${SERVER_PID:-}" CSV="${CSV:-}"
BETWEEN="${BETWEEN:-}" TIMEOUT="${TIMEOUT:-300}"
HZ="$(getconf CLK_TCK)"
# What each message holds: generated (SIZE octets) or a file's.
content=(-l "$SIZE")
[ -n "${MESSAGE_FILE:-}" ] && content=(-F "$MESSAGE_FILE")
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# load_flags LOAD: smtp-source's session, message count and reuse flags.
load_flags() {
  local var="COUNT_$1" sessions count reuse=""
  case "$1" in
    s1)   sessions=1   count=2000 ;;
    s1d)  sessions=1   count=5000  reuse=-d ;;
    s20)  sessions=20  count=10000 ;;
    s20d) sessions=20  count=20000 reuse=-d ;;
    s100) sessions=100 count=10000 ;;
    *) echo "bench.sh: no load called '$1'" >&2; return 1 ;;
  esac
  echo "-s $sessions -m ${!var:-$count} $reuse"
}

# descendants PID: PID itself and every process below it.
descendants() {
  ps -e -o pid= -o ppid= | awk -v top="$1" '
    { kids[$2] = kids[$2] " " $1 }
    END {
      queue[1] = top; n = 1
      for (i = 1; i <= n; i++) {
        print queue[i]
        m = split(kids[queue[i]], k, " ")
        for (j = 1; j <= m; j++) queue[++n] = k[j]
      }
    }'
}

# cpu_ticks PID: user+system ticks of the tree, waited-for children included
# (fields 14 to 17 of /proc/PID/stat, counted after the ")" of the name).
cpu_ticks() {
  local total=0 pid rest
  for pid in $(descendants "$1"); do
    rest="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
    rest="${rest##*) }"
    # shellcheck disable=SC2086
    set -- $rest
    total=$(( total + ${12} + ${13} + ${14} + ${15} ))
  done
  echo "$total"
}

# machine_ticks: "busy steal" for all CPUs together, where busy is
# user + nice + system + irq + softirq from the first line of /proc/stat.
machine_ticks() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $9; exit }' /proc/stat
}

# sample_memory PID FILE: until PID exits, append "rss_kb pss_kb" for its
# whole tree to FILE every 0.25 s. One ps and one awk per sample, however
# many processes the server has (Postfix can have a couple of hundred).
sample_memory() {
  local files pid
  while kill -0 "$1" 2>/dev/null; do
    files=()
    for pid in $(descendants "$1"); do
      files+=("/proc/$pid/status" "/proc/$pid/smaps_rollup")
    done
    # Files are read with getline: one that vanished meanwhile is skipped.
    awk 'BEGIN {
           for (i = 1; i < ARGC; i++)
             while ((getline line < ARGV[i]) > 0) {
               split(line, f, " ")
               if (f[1] == "VmRSS:") rss += f[2]
               else if (f[1] == "Pss:") pss += f[2]
             }
           printf "%d %d\n", rss, pss
         }' "${files[@]}" >> "$2"
    sleep 0.25
  done
}

seconds() { awk -v t="$1" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }'; }

COLUMNS_CSV="label,load,rep,msgs,elapsed_s,msgs_per_s,client_cpu_s,server_cpu_s,other_cpu_s,steal_s,peak_rss_kb,peak_pss_kb,rc"
row() { printf '%-10s %-5s %3s %6s %9s %10s %8s %8s %8s %6s %10s %10s %3s\n' "$@"; }
if [ -n "$CSV" ] && [ ! -s "$CSV" ]; then echo "$COLUMNS_CSV" > "$CSV"; fi
row label load rep msgs elapsed_s msgs_per_s cli_cpu srv_cpu oth_cpu steal peak_rss peak_pss rc

for load in $LOADS; do
  flags="$(load_flags "$load")" || exit 2
  msgs="$(set -- $flags; echo "$4")"
  for (( rep = FIRST_REP; rep < FIRST_REP + REPS; rep++ )); do
    [ -z "$BETWEEN" ] || bash -c "$BETWEEN"

    server_before="" sampler=""
    if [ -n "$SERVER_PID" ]; then
      server_before="$(cpu_ticks "$SERVER_PID")"
      : > "$WORK/memory"
      sample_memory "$SERVER_PID" "$WORK/memory" &
      sampler=$!
    fi
    read -r busy_before steal_before < <(machine_ticks)
    start="$(date +%s.%N)"
    # shellcheck disable=SC2086
    /usr/bin/time -f 'cpu %U %S' -o "$WORK/time" \
      timeout "$TIMEOUT" "$SOURCE" $flags "${content[@]}" \
      -M client.example.test -f "${FROM:-a@example.test}" -t b@example.test \
      "$HOST:$PORT" > "$WORK/source.out" 2>&1
    rc=$?
    end="$(date +%s.%N)"
    read -r busy_after steal_after < <(machine_ticks)

    server_cpu="-" rss="-" pss="-"
    if [ -n "$sampler" ]; then
      kill "$sampler" 2>/dev/null
      wait "$sampler" 2>/dev/null
      server_cpu="$(seconds $(( $(cpu_ticks "$SERVER_PID") - server_before )))"
      read -r rss pss < <(awk '$1 > r { r = $1 } $2 > p { p = $2 } END { print r + 0, p + 0 }' "$WORK/memory")
    fi
    client_cpu="$(awk '$1 == "cpu" { printf "%.2f", $2 + $3; found = 1 } END { if (!found) print "-" }' "$WORK/time")"
    elapsed="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')"
    steal="$(seconds $(( steal_after - steal_before )))"
    other="-"
    if [ "$server_cpu" != "-" ]; then
      other="$(awk -v busy="$(seconds $(( busy_after - busy_before )))" -v c="$client_cpu" -v s="$server_cpu" \
        'BEGIN { if (c == "-") c = 0; printf "%.2f", busy - c - s }')"
    fi
    if [ "$rc" -eq 0 ]; then
      rate="$(awk -v n="$msgs" -v e="$elapsed" 'BEGIN { printf "%.1f", n / e }')"
    else
      rate=FAIL
      echo "bench.sh: $load rep $rep: smtp-source exited $rc: $(grep -v '^Command exited' "$WORK/source.out" | tail -n 3 | tr '\n' ' ')" >&2
    fi
    row "$LABEL" "$load" "$rep" "$msgs" "$elapsed" "$rate" "$client_cpu" "$server_cpu" "$other" "$steal" "$rss" "$pss" "$rc"
    [ -z "$CSV" ] || echo "$LABEL,$load,$rep,$msgs,$elapsed,$rate,$client_cpu,$server_cpu,$other,$steal,$rss,$pss,$rc" >> "$CSV"
  done
done
