#!/usr/bin/env bash
# One-time set-up of a fresh machine (also what CI runs): Debian's chromium for the browser
# tests, a virtual environment with the pinned requirements, and the project itself.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null; then
    as_root apt-get update
    as_root apt-get install -y --no-install-recommends chromium
  else
    echo "setup: no apt-get; install Chromium at /usr/bin/chromium for the browser tests" >&2
  fi
fi

# The CDK's jsii runtime (tests/infra synthesizes the app in-process) runs on Node.js.
command -v node >/dev/null || { echo "setup: Node.js >= 18 is required by aws-cdk-lib" >&2; exit 1; }

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
.venv/bin/python -m pip install --disable-pip-version-check -q --no-deps -e .
echo "setup: done (.venv ready)"
