#!/usr/bin/env bash
# Postel's test command: installs what the tests need, only where it is
# missing, then checks formatting (cargo fmt) and lints (clippy, warnings as
# errors), then runs every test in the workspace. CI (.ci/run) runs exactly
# this.
#
# The tests drive the real `postel` binary with real clients: curl, swaks
# (Debian packages) and Python's smtplib (standard library), real servers
# (Postfix, aiosmtpd from PyPI) for `postel send` and `probe`, and the web
# inbox in headless Chromium (Debian's) driven by Playwright (playwright-core
# from npm, pinned in e2e/package-lock.json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# postfix and aiosmtpd are peers: `postel send` and `postel probe` are
# tested against them, started by the scripts in bench/peers/ (as root).
# dnsmasq-base is the DNS server of the delivery rig (MX, null MX, NXDOMAIN
# on loopback), and aiosmtpd its receiving MXes (tests/peers/mx.py).
# postgrey is a policy server; Dovecot (LMTP, IMAP) the mailbox server that
# local delivery hands mail to, and reads it back from. The milters: a
# test filter on libmilter itself (python3-milter, for Debian's python3),
# rspamd, OpenDKIM (dkimpy checks its signatures) and clamav-milter.
# gsasl (GNU SASL) and scramp (PyPI) are SCRAM-SHA-256 clients. Knot
# (knotd, keymgr, kdig) signs the fake root zone the DANE tests validate.
# PostgreSQL: the store several nodes share (the tests run their own
# server, as the postgres user, in a temp folder).
APT_PACKAGES=(curl swaks python3 procps openssl libio-socket-ssl-perl libauthen-sasl-perl chromium postfix dnsmasq-base postgrey dovecot-lmtpd dovecot-imapd python3-milter rspamd opendkim opendkim-tools clamav-daemon clamav-milter postfix-policyd-spf-python iproute2 gsasl knot knot-dnsutils postgresql)
# Each is module=package: the module imported to tell whether it is there.
PIP_PACKAGES=(aiosmtpd=aiosmtpd==1.4.6 dkim=dkimpy==1.1.8 nacl=pynacl authres=authres authheaders=authheaders==0.16.3 scramp=scramp==1.5.0)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3 may come from elsewhere (pyenv): a working interpreter is enough.
if command -v python3 >/dev/null 2>&1; then
  missing=("${missing[@]/python3}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
# Node.js may come from elsewhere too (nodesource, nvm): npm is what counts.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix without a system-wide configuration: the tests run their own.
  echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
for p in "${PIP_PACKAGES[@]}"; do
  python3 -c "import ${p%%=*}" 2>/dev/null || python3 -m pip install --quiet "${p#*=}"
done

# The browser test's one npm package, exactly as locked; the browser is
# Debian's /usr/bin/chromium, so nothing downloads one.
if [ ! -d e2e/node_modules/playwright-core ]; then
  echo "test.sh: installing e2e/node_modules (npm ci)"
  (cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

# Formatting and lints first: cheap, and what CI holds every change to.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
