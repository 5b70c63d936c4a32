#!/usr/bin/env bash
# Postel's test command: installs what the tests need, only where it is
# missing, then runs every test in the workspace.
#
# The tests drive the real `postel` binary with real clients: curl, swaks
# (Debian packages) and Python's smtplib (standard library). No PyPI package
# is needed yet; add them to PIP_PACKAGES when one is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

APT_PACKAGES=(curl swaks python3 procps openssl libio-socket-ssl-perl libauthen-sasl-perl)
PIP_PACKAGES=()

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3 may come from elsewhere (pyenv): a working interpreter is enough.
if command -v python3 >/dev/null 2>&1; then
  missing=("${missing[@]/python3}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
for p in "${PIP_PACKAGES[@]}"; do
  python3 -c "import ${p%%[=<>]*}" 2>/dev/null || python3 -m pip install --quiet "$p"
done

cargo test --workspace --locked "$@"
