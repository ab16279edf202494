"""Developer sessions: `nox -s tests lint typecheck demo bench soak docs`.

`tests` needs root (it starts PostgreSQL and MariaDB through scripts/servers.sh, a
PostgreSQL primary + standby through scripts/replicas.sh, and a MariaDB primary + replica
and a Galera cluster through scripts/replicas-mysql.sh); it is
what scripts/test.sh runs, inside a nox virtualenv instead of .venv.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

# The supported Pythons, oldest first (the pyproject classifiers and scripts/test.sh name the
# same ones). `nox -s tests` runs each; `nox -s "tests-3.12"` runs one.
PYTHONS = ["3.11", "3.12", "3.13"]


def _runs(command: str) -> bool:
    try:
        return subprocess.run([command, "-c", ""], capture_output=True).returncode == 0
    except OSError:
        return False


def _pyenv_pythons_on_path() -> None:
    """Let nox find the Pythons pyenv installed but did not activate.

    Their `python3.12` shim is on PATH but refuses to run, so nox would skip the session:
    put the newest such install's bin directory first on PATH instead (as scripts/test.sh
    looks for them)."""
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    for version in reversed(PYTHONS):
        if _runs(f"python{version}"):
            continue
        found = [
            p
            for p in versions.glob(f"{version}.*/bin/python{version}")
            if re.fullmatch(r"\d+\.\d+\.\d+", p.parents[1].name)
        ]
        if found:
            newest = max(found, key=lambda p: [int(n) for n in p.parents[1].name.split(".")])
            os.environ["PATH"] = f"{newest.parent}{os.pathsep}{os.environ.get('PATH', '')}"


_pyenv_pythons_on_path()


_SERVER_SCRIPTS = ("scripts/servers.sh", "scripts/replicas.sh", "scripts/replicas-mysql.sh")


def _server_env() -> dict[str, str]:
    out = "".join(
        subprocess.run(["bash", script, "start"], check=True, capture_output=True, text=True).stdout
        for script in _SERVER_SCRIPTS
    )
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
    return env


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite on PostgreSQL, MariaDB and SQLite (servers started and stopped here).

    As in scripts/test.sh, the packaging test and the long soak run on the oldest Python only.
    """
    session.install("-e", ".[all,test]")
    env = _server_env()
    env["ASYNCDB_REQUIRE_ALL_BACKENDS"] = "1"
    once = []
    if session.python != PYTHONS[0]:
        once = ["--ignore=tests/packaging", "--ignore=tests/integration/test_soak.py"]
    try:
        session.run("pytest", *once, *session.posargs, env=env)
    finally:
        if not os.environ.get("ASYNCDB_KEEP_SERVERS"):
            for script in _SERVER_SCRIPTS:
                subprocess.run(["bash", script, "stop"], check=False)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "asyncdb", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "asyncdb")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[all,test]")  # the pytest plugin is typed against pytest
    session.run("mypy", "asyncdb")


@nox.session
def demo(session: nox.Session) -> None:
    """The SQLite tour (no server)."""
    session.install("-e", ".[sqlite]")
    session.run("python", "-m", "asyncdb.demo")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the raw drivers and the peers (see benchmarks/README.md)."""
    session.install("-e", ".[all]", "databases", "sqlalchemy[asyncio]", "matplotlib", "uvloop")
    env = _server_env()
    session.run("python", "-m", "benchmarks.run", *session.posargs, env=env)


@nox.session  # not in nox.options.sessions: run it by name
def soak(session: nox.Session) -> None:
    """The chaos soak (tests/soak/run.py): `nox -s soak -- --duration 300 --backend all`.

    Servers started and stopped here like `tests`; exits non-zero if an invariant fails."""
    session.install("-e", ".[all]")
    env = _server_env()
    try:
        session.run("python", "-m", "tests.soak.run", *session.posargs, env=env)
    finally:
        if not os.environ.get("ASYNCDB_KEEP_SERVERS"):
            for script in _SERVER_SCRIPTS:
                subprocess.run(["bash", script, "stop"], check=False)


@nox.session  # not in nox.options.sessions: run it by name
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml) into site/; `nox -s docs -- serve` previews it.

    --strict: a broken link, anchor or API reference fails the build."""
    session.install("-e", ".[docs]")
    env = {"NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's end-of-life banner
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:], env=env)
    else:
        session.run("mkdocs", "build", "--strict", "-d", "site", *session.posargs, env=env)
