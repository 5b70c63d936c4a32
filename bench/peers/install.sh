#!/usr/bin/env bash
# install.sh -- installs what the peer scripts in this folder run, and only
# what is missing, so running it again just prints versions. Uses apt (as root
# or through sudo) and pip.
#
#   postfix   Debian package: the Postfix peer (start-postfix.sh) and its test
#             tools smtp-source (the load generator of bench.sh) and smtp-sink
#             (start-smtp-sink.sh). It is preseeded to "No configuration", so
#             no system-wide MTA gets configured or started: the peers are
#             private instances.
#   swaks     with the Perl modules for its TLS and AUTH options, to check a
#             server by hand.
#   time      /usr/bin/time, for bench.sh's client CPU figures.
#   procps, openssl   ps for bench.sh, a certificate for start-postfix.sh.
#   aiosmtpd  PyPI, pinned to 1.4.6 (as scripts/test.sh), for whichever
#             python3 is first on PATH (or $PYTHON).
#
# Other MTAs (exim4, opensmtpd) are left out on purpose: Debian lets only one
# package providing mail-transport-agent be installed, and Postfix is the one
# whose tools the benchmark needs.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
APT=(postfix swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl time procps openssl)
AIOSMTPD=aiosmtpd==1.4.6

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -E "$@"; fi; }

missing=()
for pkg in "${APT[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: apt packages to install: ${missing[*]}"
  printf '%s\n' \
    "postfix postfix/main_mailer_type select No configuration" \
    "postfix postfix/mailname string localhost" | sudo_if_needed debconf-set-selections
  sudo_if_needed apt-get update
  sudo_if_needed apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

PY="${PYTHON:-python3}"
"$PY" -c 'import aiosmtpd' 2>/dev/null || "$PY" -m pip install --quiet "$AIOSMTPD"

# What is there now.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
echo "postfix     $(postconf -d -h mail_version 2>/dev/null || echo MISSING)"
for tool in smtp-source smtp-sink swaks; do
  printf '%-11s %s\n' "$tool" "$(command -v "$tool" || echo MISSING)"
done
echo "aiosmtpd    $("$PY" -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null || echo MISSING) ($PY)"
