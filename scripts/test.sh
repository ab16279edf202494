#!/usr/bin/env bash
# Run the whole test suite on Python 3.11, 3.12 and 3.13, on PostgreSQL, MariaDB and SQLite,
# from a fresh machine.
#
# Creates one venv per Python (.venv-3.11, .venv-3.12, .venv-3.13: asyncdb with all drivers and
# test tools), starts throwaway PostgreSQL, PgBouncer and MariaDB once with scripts/servers.sh
# (installing the Debian packages if missing), runs pytest with every backend required on each
# Python, two Pythons at a time on two server sets, then ruff and mypy --strict once, and
# stops the servers
# (ASYNCDB_KEEP_SERVERS=1 keeps them running).
#
# Split: the first Python runs everything; the others skip tests/packaging (it builds the sdist
# and wheel and installs them into fresh venvs: what it checks does not depend on the Python
# running it) and the long soak (tests/integration/test_soak.py). Every other test runs on
# every Python.
#
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k savepoint -x`.
# ASYNCDB_PYTHONS="3.11" (versions or interpreter paths, space- or comma-separated) runs a
# subset, for local speed. A Python that cannot be found fails the run under CI=true (or
# ASYNCDB_REQUIRE_ALL_PYTHONS=1, as .ci/run sets); elsewhere it is skipped with a warning,
# repeated at the end. ASYNCDB_VENV=DIR names the venvs DIR-3.11 and so on (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

DEFAULT_PYTHONS="3.11 3.12 3.13"
# The first entry runs the packaging test and the soak; keep it the oldest supported Python.
PYTHONS=${ASYNCDB_PYTHONS:-$DEFAULT_PYTHONS}
PYTHONS=${PYTHONS//,/ }
VENV_PREFIX=${ASYNCDB_VENV:-.venv}
REQUIRE_ALL=0
case "${CI:-}" in "" | 0 | false | False | FALSE | no) ;; *) REQUIRE_ALL=1 ;; esac
[ -z "${ASYNCDB_REQUIRE_ALL_PYTHONS:-}" ] || REQUIRE_ALL=1

say() { echo "test: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# Print "X.Y" for an interpreter that runs and is >= 3.11, or nothing.
py_version() {
    "$1" -c 'import sys; assert sys.version_info >= (3, 11); print("%d.%d" % sys.version_info[:2])' \
        2>/dev/null || true
}

# Find an interpreter for version X.Y: pyenv installs (newest patch first), then pythonX.Y on
# PATH, then the usual system places. Every candidate is run: a pyenv shim for a version that
# is installed but not active exists on PATH and fails when run.
find_python() {
    local want=$1 cand root
    local -a cands=()
    for root in "${PYENV_ROOT:-}" "$HOME/.pyenv"; do
        [ -n "$root" ] && [ -d "$root/versions" ] || continue
        while IFS= read -r cand; do cands+=("$cand"); done < <(
            ls -d "$root/versions/$want".[0-9]*/bin/python 2>/dev/null | sort -V -r || true)
    done
    cand=$(command -v "python$want" 2>/dev/null || true)
    [ -n "$cand" ] && cands+=("$cand")
    cands+=("/usr/local/bin/python$want" "/usr/bin/python$want")
    for cand in "${cands[@]}"; do
        if [ -x "$cand" ] && [ "$(py_version "$cand")" = "$want" ]; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

# Resolve ASYNCDB_PYTHONS into parallel arrays of versions and interpreters.
VERSIONS=()
INTERPRETERS=()
MISSING=()
for entry in $PYTHONS; do
    if [[ $entry == */* ]] || ! [[ $entry =~ ^3\.[0-9]+$ ]]; then
        interp=$(command -v "$entry" 2>/dev/null || true)  # a path or a command name
        version=$([ -n "$interp" ] && py_version "$interp" || true)
        [ -n "$version" ] || die "$entry is not a Python >= 3.11 interpreter (ASYNCDB_PYTHONS)"
    else
        version=$entry
        interp=$(find_python "$version" || true)
        if [ -z "$interp" ]; then
            MISSING+=("$version")
            continue
        fi
    fi
    VERSIONS+=("$version")
    INTERPRETERS+=("$interp")
done
if [ ${#MISSING[@]} -gt 0 ]; then
    msg="Python ${MISSING[*]} not found (looked in \$PYENV_ROOT/versions, ~/.pyenv/versions, PATH, /usr/local/bin, /usr/bin)"
    if [ $REQUIRE_ALL -eq 1 ]; then
        die "$msg; CI must test every supported Python. Install it (e.g. \`pyenv install ${MISSING[0]}\`) or, outside CI, choose with ASYNCDB_PYTHONS=\"3.11\""
    fi
    say "WARNING: $msg: SKIPPING it (under CI=true this fails the run)"
fi
[ ${#VERSIONS[@]} -gt 0 ] || die "no Python to test with (ASYNCDB_PYTHONS=\"$PYTHONS\")"

# One venv per Python, built in parallel (pip is mostly waiting on downloads and unpacking).
# A venv whose Python is another version is rebuilt; pip runs again only if pyproject.toml
# changed since the last successful install.
make_venv() {
    local interp=$1 version=$2 venv=$3 stamp
    if [ -x "$venv/bin/python" ] && [ "$(py_version "$venv/bin/python")" != "$version" ]; then
        rm -rf "$venv"
    fi
    if [ ! -x "$venv/bin/python" ]; then
        "$interp" -m venv "$venv" 2>/dev/null || {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "python$version-venv" python3-venv
            "$interp" -m venv "$venv"
        }
    fi
    stamp="$version $(cksum <pyproject.toml)"
    if [ "$(cat "$venv/.asyncdb-installed" 2>/dev/null)" != "$stamp" ]; then
        rm -f "$venv/.asyncdb-installed"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[all,test]" 2>&1 \
            | grep -v "is ignored" || true
    fi
    "$venv/bin/python" -c 'import asyncpg, aiomysql, aiosqlite, pytest_asyncio, build' \
        || { echo "dependencies failed to install in $venv" >&2; return 1; }
    echo "$stamp" >"$venv/.asyncdb-installed"
}

phase=$SECONDS
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
VENVS=()
PIDS=()
for i in "${!VERSIONS[@]}"; do
    VENVS+=("$VENV_PREFIX-${VERSIONS[$i]}")
    say "Python ${VERSIONS[$i]}: ${INTERPRETERS[$i]} -> ${VENVS[$i]}"
    make_venv "${INTERPRETERS[$i]}" "${VERSIONS[$i]}" "${VENVS[$i]}" >"$LOGS/venv-$i.log" 2>&1 &
    PIDS+=($!)
done
for i in "${!PIDS[@]}"; do
    if ! wait "${PIDS[$i]}"; then
        cat "$LOGS/venv-$i.log" >&2
        die "could not set up ${VENVS[$i]} (Python ${VERSIONS[$i]})"
    fi
done
VENV=${VENVS[0]}  # lint and type checks run once, on the first Python's venv
say "venvs ready: $((SECONDS - phase)) s"
phase=$SECONDS

# One server set: PostgreSQL, PgBouncer, MariaDB; a PostgreSQL primary + standby; a MariaDB
# primary + GTID replica and a two-node Galera cluster (~15 s the first time). Prints the
# export lines. (Not `eval "$(...)"`: eval of nothing succeeds, and a failed start must stop.)
SERVER_SCRIPTS="servers.sh replicas.sh replicas-mysql.sh"
start_servers() {
    local script out
    for script in $SERVER_SCRIPTS; do
        out=$(bash "scripts/$script" start) || { say "scripts/$script did not start"; return 1; }
        printf '%s\n' "$out"
    done
}
stop_servers() {
    local script
    for script in $SERVER_SCRIPTS; do bash "scripts/$script" stop || true; done
}
# A second set, in directories of its own (the scripts pick free ports), for the second
# stream of Pythons; the tests restart and promote servers, so two runs never share a set.
in_set_b() {
    ASYNCDB_SERVERS_DIR="${ASYNCDB_SERVERS_DIR:-/tmp/asyncdb-servers}-b" \
        ASYNCDB_REPLICAS_DIR="${ASYNCDB_REPLICAS_DIR:-/tmp/asyncdb-replicas}-b" \
        ASYNCDB_REPLICAS_MYSQL_DIR="${ASYNCDB_REPLICAS_MYSQL_DIR:-/tmp/asyncdb-replicas-mysql}-b" \
        "$@"
}

env_a=$(start_servers) || die "the servers did not start (see above)"
STREAMS=1
[ ${#VERSIONS[@]} -gt 1 ] && STREAMS=2
if [ $STREAMS -eq 2 ]; then
    { in_set_b start_servers >"$LOGS/env-b" 2>"$LOGS/servers-b.log"; echo $? >"$LOGS/set-b.rc"; } &
fi
if [ -z "${ASYNCDB_KEEP_SERVERS:-}" ]; then
    trap 'stop_servers; [ $STREAMS -eq 1 ] || in_set_b stop_servers; rm -rf "$LOGS"' EXIT
fi
eval "$env_a"
export ASYNCDB_REQUIRE_ALL_BACKENDS=1
say "servers up: $((SECONDS - phase)) s"

# Two streams of Pythons at once, each on its own server set: the first (and third...) here,
# the second (and fourth...) in the background, its output shown when it ends. The first
# Python runs everything; the others skip tests/packaging and the soak.
run_python() { # index
    local i=$1 start=$SECONDS once=()
    [ "$i" -eq 0 ] || once=(--ignore=tests/packaging --ignore=tests/integration/test_soak.py)
    say "pytest on Python ${VERSIONS[$i]} ($((i + 1)) of ${#VERSIONS[@]})"
    if "${VENVS[$i]}/bin/python" -m pytest "${once[@]}" "${PYTEST_ARGS[@]}"; then
        echo "${VERSIONS[$i]}" >>"$LOGS/passed"
    else
        echo "${VERSIONS[$i]}" >>"$LOGS/failed"
    fi
    say "Python ${VERSIONS[$i]}: $((SECONDS - start)) s"
}
run_stream() { # first index
    local i
    for ((i = $1; i < ${#VERSIONS[@]}; i += STREAMS)); do run_python "$i"; done
}
PYTEST_ARGS=("$@")
if [ $STREAMS -eq 2 ]; then
    (
        while [ ! -s "$LOGS/set-b.rc" ]; do sleep 0.5; done
        cat "$LOGS/servers-b.log" >&2
        if [ "$(cat "$LOGS/set-b.rc")" != 0 ]; then
            say "the second server set did not start"
            echo "${VERSIONS[1]}" >>"$LOGS/failed"
            exit 1
        fi
        eval "$(cat "$LOGS/env-b")"
        run_stream 1
    ) >"$LOGS/stream-b.log" 2>&1 &
    STREAM_B=$!
fi
run_stream 0
if [ $STREAMS -eq 2 ]; then
    wait $STREAM_B || true
    say "--- the second stream (Python ${VERSIONS[*]:1:1}...), on its own servers:"
    cat "$LOGS/stream-b.log" >&2
fi
mapfile -t PASSED < <(cat "$LOGS/passed" 2>/dev/null || true)
mapfile -t FAILED < <(cat "$LOGS/failed" 2>/dev/null || true)

# The same gates as `nox -s lint typecheck`, on the venv we already have.
phase=$SECONDS
"$VENV/bin/ruff" check asyncdb tests benchmarks examples noxfile.py
"$VENV/bin/ruff" format --check asyncdb
"$VENV/bin/mypy" asyncdb
# The documentation site, --strict: a broken link or API reference fails the run (nox -s docs).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[docs]" 2>&1 | grep -v "is ignored" >&2 || true
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict -q -d site
say "ruff, mypy and the docs build: $((SECONDS - phase)) s; total: $SECONDS s"

skipped=""
[ ${#MISSING[@]} -eq 0 ] || skipped="; NOT tested on Python ${MISSING[*]} (not found)"
if [ ${#FAILED[@]} -gt 0 ]; then
    die "tests FAILED on Python ${FAILED[*]}${PASSED:+ (passed on ${PASSED[*]})}$skipped"
fi
say "all backends passed on Python ${PASSED[*]}; ruff and mypy --strict clean$skipped"
