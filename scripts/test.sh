#!/usr/bin/env bash
# Run the whole test suite on PostgreSQL, MariaDB and SQLite, from a fresh machine.
#
# Creates .venv (asyncdb with all drivers and test tools), starts throwaway PostgreSQL,
# PgBouncer and MariaDB with scripts/servers.sh (installing the Debian packages if missing),
# runs pytest with every backend required, then ruff and mypy --strict, and stops the
# servers (ASYNCDB_KEEP_SERVERS=1 keeps them running).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k savepoint -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${ASYNCDB_VENV:-.venv}

if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "test: Python >= 3.11 is required ($PYTHON)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" 2>/dev/null || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
        "$PYTHON" -m venv "$VENV"
    }
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[all,test]" 2>&1 \
    | grep -v "is ignored" >&2 || true
"$VENV/bin/python" -c 'import asyncpg, aiomysql, aiosqlite, pytest_asyncio' \
    || { echo "test: dependencies failed to install" >&2; exit 1; }

eval "$(bash scripts/servers.sh start)"
eval "$(bash scripts/replicas.sh start)"        # PostgreSQL primary + standby
eval "$(bash scripts/replicas-mysql.sh start)"  # MariaDB primary + replica, Galera (~15 s)
if [ -z "${ASYNCDB_KEEP_SERVERS:-}" ]; then
    trap 'bash scripts/replicas.sh stop; bash scripts/replicas-mysql.sh stop; bash scripts/servers.sh stop' EXIT
fi

export ASYNCDB_REQUIRE_ALL_BACKENDS=1
"$VENV/bin/python" -m pytest "$@"

# The same gates as `nox -s lint typecheck`, on the venv we already have.
"$VENV/bin/ruff" check asyncdb tests benchmarks examples noxfile.py
"$VENV/bin/ruff" format --check asyncdb
"$VENV/bin/mypy" asyncdb
# The documentation site, --strict: a broken link or API reference fails the run (nox -s docs).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[docs]" 2>&1 | grep -v "is ignored" >&2 || true
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict -q -d site
echo "test: all backends passed; ruff and mypy --strict clean" >&2
