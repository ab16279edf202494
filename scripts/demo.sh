#!/usr/bin/env bash
# Run the demo on SQLite from a fresh machine: a venv with asyncdb-layer[sqlite], then the tour.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ASYNCDB_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
        python3 -m venv "$VENV"
    }
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[sqlite]" 2>&1 | grep -v "is ignored" >&2 || true
exec "$VENV/bin/python" -m asyncdb.demo "$@"
