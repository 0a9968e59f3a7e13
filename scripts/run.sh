#!/usr/bin/env bash
# Install the B2BUA into .venv (first run only) and start it on the shipped config.
# Extra arguments go to `b2bua run`, e.g. --listen udp:0.0.0.0:5060
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/b2bua ] || [ pyproject.toml -nt .venv/.installed ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e .
    touch .venv/.installed
fi
exec .venv/bin/b2bua run --config config/b2bua.yaml "$@"
