#!/usr/bin/env bash
# start-postfix.sh PORT SPOOLDIR
#
# A private Postfix instance, separate from any system-wide one, listening on
# 127.0.0.1:PORT. Everything it owns lives under SPOOLDIR:
#   etc/           its config_directory: main.cf, master.cf, a self-signed
#                  TLS key and certificate
#   queue/         its queue_directory. Postfix fsyncs a queue file before it
#                  answers "250 2.0.0 Ok: queued", which makes this instance
#                  the durable reference point for Postel's numbers.
#   data/          its data_directory
#   log/maillog    its log, written by postlogd (no syslog daemon needed)
#
# Mail policy: recipients @$DOMAIN (default example.test) are accepted,
# every other domain gets "554 5.7.1 <rcpt>: Recipient address rejected:
# Access denied".
# Accepted mail goes to the discard transport; every transport is discard and
# master.cf defines no smtp, lmtp, local or pipe delivery service, so nothing
# can leave the machine. No DNS lookups of any kind, IPv4 only.
# STARTTLS is offered (never required) with a self-signed certificate;
# TLS=0 turns it off.
#
# RELAYHOST=[127.0.0.1]:PORT turns it into a relay instead (bench/relay.sh):
# mail from 127.0.0.0/8 to any domain is accepted and sent on by the smtp
# transport to that one loopback host, and nowhere else.
#
# Must run as root (the master process starts as root and drops privileges).
# SPOOLDIR should be on a real disk: on tmpfs an fsync costs nothing and the
# comparison would flatter Postfix (the script warns).
# Starting it again stops the running instance first and keeps the queue.
# Stop: stop-postfix.sh SPOOLDIR.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"
PORT="${1:?usage: start-postfix.sh PORT SPOOLDIR}"
SPOOL="${2:?usage: start-postfix.sh PORT SPOOLDIR}"
DOMAIN="${DOMAIN:-example.test}"
TLS="${TLS:-1}"
RELAYHOST="${RELAYHOST:-}"
case "$RELAYHOST" in
  ""|"[127."*"]:"*) ;;
  *) peers_die "RELAYHOST must be a loopback [127.x.y.z]:port" ;;
esac
[[ "$PORT" =~ ^[0-9]+$ ]] || peers_die "bad port '$PORT'"
[ "$(id -u)" = 0 ] || peers_die "needs root: the Postfix master process starts as root"
peers_sbin
command -v postfix >/dev/null || peers_die "Postfix is missing: run bench/peers/install.sh"

mkdir -p "$SPOOL"
SPOOL="$(cd "$SPOOL" && pwd)"
CONF="$SPOOL/etc"
fstype="$(stat -f -c %T "$SPOOL")"
case "$fstype" in
  tmpfs|ramfs)
    echo "start-postfix.sh: warning: $SPOOL is on $fstype, where fsync does nothing; Postfix is not durable here" >&2 ;;
esac

# A rerun replaces the running instance.
"$HERE/stop-postfix.sh" "$SPOOL" >/dev/null

mkdir -p "$CONF" "$SPOOL/queue" "$SPOOL/data" "$SPOOL/log"
# Postfix's own user has to be able to walk down to every one of these.
chmod 0755 "$SPOOL" "$CONF" "$SPOOL/log"
# Ownership Postfix insists on: the queue top belongs to root, the data
# directory to the mail_owner.
chown root:root "$SPOOL/queue" && chmod 0755 "$SPOOL/queue"
chown postfix:root "$SPOOL/data" && chmod 0700 "$SPOOL/data"

if [ "$TLS" = 1 ] && ! [ -s "$CONF/tls.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=peer-postfix.$DOMAIN" \
    -keyout "$CONF/tls.key" -out "$CONF/tls.crt" 2>/dev/null
  chmod 0600 "$CONF/tls.key"
fi

# main.cf, rewritten on every start so that it always matches this script.
{
  cat <<CF
# Written by bench/peers/start-postfix.sh: a loopback-only benchmark peer.
# Edits are lost at the next start.
compatibility_level = 3.6

# Where this instance keeps its state.
queue_directory = $SPOOL/queue
data_directory = $SPOOL/data
maillog_file = $SPOOL/log/maillog
maillog_file_prefixes = $SPOOL/log

# Identity.
myhostname = peer-postfix.$DOMAIN
mydomain = $DOMAIN
myorigin = \$myhostname
smtpd_banner = \$myhostname ESMTP \$mail_name
append_dot_mydomain = no
biff = no
readme_directory = no

# Listen on IPv4 loopback only and never ask DNS anything.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native

# Recipients: any address @$DOMAIN is taken (as a relay domain with no
# recipient list); nothing is local; other domains are refused, so this is
# no open relay.
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = $DOMAIN
relay_recipient_maps =
smtpd_recipient_restrictions =

CF
  if [ -n "$RELAYHOST" ]; then
    cat <<CF
# Relay: everything from mynetworks goes on to $RELAYHOST, and only there.
smtpd_relay_restrictions = permit_mynetworks, permit_auth_destination, reject
relayhost = $RELAYHOST
default_transport = smtp
relay_transport = smtp
local_transport = discard:peer benchmark sink
virtual_transport = discard:peer benchmark sink
smtp_tls_security_level = none
CF
  else
    cat <<CF
smtpd_relay_restrictions = permit_auth_destination, reject
# Whatever is accepted is thrown away by the discard transport.
default_transport = discard:peer benchmark sink
relay_transport = discard:peer benchmark sink
local_transport = discard:peer benchmark sink
virtual_transport = discard:peer benchmark sink
CF
  fi
  if [ "$TLS" = 1 ]; then
    cat <<CF

# STARTTLS on offer with the self-signed pair; clients may ignore it.
smtpd_tls_security_level = may
smtpd_tls_cert_file = $CONF/tls.crt
smtpd_tls_key_file = $CONF/tls.key
smtpd_tls_loglevel = 0
CF
  fi
} > "$CONF/main.cf"

# master.cf: the SMTP listener plus the internal services the server side
# needs, none chrooted. Deliberately absent: smtp, lmtp, local, virtual,
# pipe (every way to deliver mail anywhere).
{
  echo "# Written by bench/peers/start-postfix.sh; edits are lost at the next start."
  printf '%-18s %-10s %-7s %-7s %-7s %-7s %-7s %s\n' \
    "# service" type private unpriv chroot wakeup maxproc command
  while read -r svc type private unpriv wakeup maxproc cmd; do
    printf '%-18s %-10s %-7s %-7s %-7s %-7s %-7s %s\n' \
      "$svc" "$type" "$private" "$unpriv" n "$wakeup" "$maxproc" "$cmd"
  done <<SERVICES
127.0.0.1:$PORT inet n - - - smtpd
pickup unix n - 60 1 pickup
cleanup unix n - - 0 cleanup
qmgr unix n - 300 1 qmgr
tlsmgr unix - - 1000? 1 tlsmgr
rewrite unix - - - - trivial-rewrite
bounce unix - - - 0 bounce
defer unix - - - 0 bounce
trace unix - - - 0 bounce
verify unix - - - 1 verify
flush unix n - 1000? 0 flush
proxymap unix - - - - proxymap
proxywrite unix - - - 1 proxymap
showq unix n - - - showq
error unix - - - - error
retry unix - - - - error
discard unix - - - - discard
anvil unix - - - 1 anvil
scache unix - - - 1 scache
postlog unix-dgram n - - 1 postlogd
SERVICES
  # The relay's only way out: the smtp client, to RELAYHOST (loopback).
  if [ -n "$RELAYHOST" ]; then
    printf '%-18s %-10s %-7s %-7s %-7s %-7s %-7s %s\n' smtp unix - - n - - smtp
  fi
} > "$CONF/master.cf"

# Not on a terminal, postfix reports a fatal error only in syslog, which may
# not exist here; on failure, run the command again verbosely to show why.
postfix_cmd() {
  postfix -c "$CONF" "$@" && return 0
  postfix -v -c "$CONF" "$@" 2>&1 | grep -E 'fatal|error|warning' >&2 || true
  return 1
}
postfix_cmd check
postfix_cmd start

if peers_await "$PORT" 10; then
  echo "postfix: 127.0.0.1:$PORT, master pid $(tr -dc '0-9' < "$SPOOL/queue/pid/master.pid"), config $CONF, log $SPOOL/log/maillog"
  exit 0
fi
echo "start-postfix.sh: nothing listening on 127.0.0.1:$PORT after 10 s; see $SPOOL/log/maillog" >&2
exit 1
