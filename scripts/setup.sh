#!/usr/bin/env bash
# One-time set-up of a fresh Debian machine (also what CI runs): Debian's chromium for the browser
# tests, python3-venv and Node.js where missing, a virtual environment with the pinned requirements,
# and the project itself. Idempotent: a second run only checks that everything is there, and
# repairs a virtual environment an earlier, interrupted run left without pip.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

# What apt must add: the browser the UI tests drive, venv support for Debian's python3, and the
# Node.js the CDK's jsii runtime needs (tests/infra synthesizes the app in-process).
packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
python3 -c "import ensurepip" 2>/dev/null || packages+=(python3-venv)
command -v node >/dev/null || packages+=(nodejs)
if [ "${#packages[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    as_root apt-get update
    as_root apt-get install -y --no-install-recommends "${packages[@]}"
  else
    echo "setup: no apt-get; install ${packages[*]} (Chromium at /usr/bin/chromium)" >&2
    exit 1
  fi
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "setup: Node.js >= 18 is required by aws-cdk-lib (found $(node --version))" >&2
  exit 1
fi

# A venv without pip (python3-venv was missing when it was made) is made again.
.venv/bin/python -m pip --version >/dev/null 2>&1 || { rm -rf .venv && python3 -m venv .venv; }
.venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
.venv/bin/python -m pip install --disable-pip-version-check -q --no-deps -e .
echo "setup: done (.venv ready)"
