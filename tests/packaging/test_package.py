"""The distribution as users get it: the sdist and the wheel, installed into fresh venvs.

`python -m build` makes the sdist and then the wheel *from the sdist*, so a file missing from
the sdist breaks the wheel here, not on a user's machine. Each venv gets the wheel with one
extra and nothing else (no access to the source tree or to this venv's packages): `import
asyncdb` must work on the declared dependencies alone, the extra's backend must run a query,
and every other backend must say which extra installs its driver.

Slow (a build and five small venvs) and independent of the Python running it: scripts/test.sh
runs it on the first Python only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

from tests.conftest import server_urls

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NAME = PROJECT["name"]
VERSION = PROJECT["version"]
DIST = NAME.replace("-", "_")

# Backend extra -> (URL scheme of its backend, driver module it installs). A new backend extra
# in pyproject.toml needs a row here (test_every_backend_extra_is_tested says so).
BACKEND_EXTRAS = {
    "postgresql": ("postgresql", "asyncpg"),
    "mysql": ("mysql", "aiomysql"),
    "sqlite": ("sqlite", "aiosqlite"),
    "asyncmy": ("mysql+asyncmy", "asyncmy"),
}
NOT_BACKENDS = {"all", "test", "docs", "opentelemetry"}
DRIVERS = sorted({driver for _, driver in BACKEND_EXTRAS.values()} | {"pymysql"})

# Run inside a fresh venv with `python -I` (no cwd, no PYTHONPATH: only what is installed).
# For each backend: construct a Database (that imports the driver); if that works, connect and
# run SELECT 1 when a URL is given. Prints one JSON object.
PROBE = r"""
import asyncio, importlib.metadata, importlib.util, json, sys
import asyncdb

async def probe(url, connect):
    try:
        db = asyncdb.Database(url)
    except ImportError as exc:
        return {"ok": False, "error": str(exc)}
    if not connect:
        return {"ok": True, "value": None}
    async with db:
        return {"ok": True, "value": await db.fetch_val("SELECT 1")}

async def main(targets):
    out = {
        "file": asyncdb.__file__,
        "version": asyncdb.__version__,
        "metadata_version": importlib.metadata.version("asyncdb-layer"),
        "drivers": {m: importlib.util.find_spec(m) is not None for m in targets["drivers"]},
        "backends": {},
    }
    for extra, (url, connect) in targets["backends"].items():
        out["backends"][extra] = await probe(url, connect)
    print(json.dumps(out))

asyncio.run(main(json.loads(sys.argv[1])))
"""


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    """Run a command; on failure show its whole output (pip and build say what went wrong)."""
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc.stdout


def _source_copy(dest: Path) -> Path:
    """The project without venvs, caches, build leftovers or VCS data: a clean tree to build."""
    skip = shutil.ignore_patterns(
        ".*", "build", "dist", "*.egg-info", "__pycache__", "*.sqlite3", "*.pyc"
    )
    shutil.copytree(ROOT, dest, ignore=skip)
    return dest


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("dist")
    src = _source_copy(work / "src")
    out = work / "out"
    _run(sys.executable, "-m", "build", "--outdir", out, src)
    sdists = list(out.glob("*.tar.gz"))
    wheels = list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


def _source_modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "asyncdb").rglob("*.py")}


def test_sdist_is_complete_and_versioned(dist: dict[str, Path]) -> None:
    sdist = dist["sdist"]
    assert sdist.name == f"{DIST}-{VERSION}.tar.gz"
    prefix = f"{DIST}-{VERSION}/"
    with tarfile.open(sdist) as tar:
        names = {m.name.removeprefix(prefix) for m in tar.getmembers()}
        pkg_info = tar.extractfile(prefix + "PKG-INFO")
        assert pkg_info is not None
        meta = HeaderParser().parsestr(pkg_info.read().decode())
    assert {"pyproject.toml", "README.md", "asyncdb/py.typed"} <= names
    missing = _source_modules() - names
    assert not missing, f"modules missing from the sdist: {sorted(missing)}"
    assert not [n for n in names if n.startswith((".venv", ".git", ".nox"))]
    assert meta["Name"] == NAME
    assert meta["Version"] == VERSION
    assert meta["Requires-Python"] == PROJECT["requires-python"]


def test_wheel_contents_and_metadata(dist: dict[str, Path]) -> None:
    wheel = dist["wheel"]
    assert wheel.name == f"{DIST}-{VERSION}-py3-none-any.whl"
    info = f"{DIST}-{VERSION}.dist-info/"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = HeaderParser().parsestr(zf.read(info + "METADATA").decode())
        entry_points = zf.read(info + "entry_points.txt").decode()
    package_files = {n for n in names if not n.startswith(info)}
    # exactly the package: its modules and the PEP 561 marker, no tests or benchmarks
    assert package_files == _source_modules() | {"asyncdb/py.typed"}
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == PROJECT["license"]
    requires = meta.get_all("Requires-Dist") or []
    assert [r for r in requires if "extra ==" not in r] == PROJECT["dependencies"]
    assert set(meta.get_all("Provides-Extra") or []) == set(PROJECT["optional-dependencies"])
    assert re.search(r"^\[pytest11\]\s+asyncdb = asyncdb\.testing$", entry_points, re.M)


def _tested_pythons() -> dict[str, list[str]]:
    """The Python versions each place names: they must agree."""
    classifiers = PROJECT["classifiers"]
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    noxfile = (ROOT / "noxfile.py").read_text()
    sh_default = re.search(r'^DEFAULT_PYTHONS="([^"]*)"', test_sh, re.M)
    nox_list = re.search(r"^PYTHONS = \[([^\]]*)\]", noxfile, re.M)
    assert sh_default and nox_list, "DEFAULT_PYTHONS / PYTHONS not found in test.sh / noxfile.py"
    return {
        "pyproject classifiers": [
            c.rsplit(" :: ", 1)[1]
            for c in classifiers
            if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
        ],
        "scripts/test.sh": sh_default.group(1).split(),
        "noxfile.py": re.findall(r'"([^"]+)"', nox_list.group(1)),
    }


def test_classifiers_test_sh_and_nox_name_the_same_pythons() -> None:
    places = _tested_pythons()
    assert len({tuple(v) for v in places.values()}) == 1, places
    minimum = re.fullmatch(r">=(3\.\d+)", PROJECT["requires-python"])
    assert minimum and places["noxfile.py"][0] == minimum.group(1), places


def test_every_backend_extra_is_tested() -> None:
    extras = set(PROJECT["optional-dependencies"]) - NOT_BACKENDS
    assert extras == set(BACKEND_EXTRAS), (
        "tests/packaging/test_package.py: BACKEND_EXTRAS must have one row per backend extra"
    )


def _install(wheel: Path, extra: str | None, venv: Path) -> None:
    """A venv with no pip of its own; this venv's pip installs the wheel into it."""
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    target = f"{wheel}[{extra}]" if extra else str(wheel)
    _run(
        sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
        "--quiet", "--disable-pip-version-check", "--no-input", target,
    )  # fmt: skip


def _probe(venv: Path, cwd: Path, connect: set[str]) -> dict:  # type: ignore[type-arg]
    urls = server_urls()
    targets = {}
    for extra, (scheme, _) in BACKEND_EXTRAS.items():
        if scheme == "sqlite":
            url = f"sqlite:///{cwd / 'probe.sqlite3'}"
        else:
            family = scheme.partition("+")[0]  # mysql+asyncmy: the MySQL server, another driver
            url = urls.get(family, f"{family}://user@127.0.0.1:1/none")
            url = url.replace(f"{family}://", f"{scheme}://", 1)
        reachable = scheme == "sqlite" or scheme.partition("+")[0] in urls
        targets[extra] = (url, extra in connect and reachable)
    args = json.dumps({"backends": targets, "drivers": DRIVERS})
    out = _run(venv / "bin" / "python", "-I", "-c", PROBE, args, cwd=cwd)
    result: dict = json.loads(out)  # type: ignore[type-arg]
    result["connected"] = {extra for extra, (_, go) in targets.items() if go}
    # the installed wheel, not the source tree next to the tests
    assert Path(result["file"]).is_relative_to(venv), result["file"]
    assert result["version"] == result["metadata_version"] == VERSION
    return result


def _works(extra: str, result: dict) -> dict:  # type: ignore[type-arg]
    """What a working backend reports: SELECT 1 if a server was there to ask."""
    return {"ok": True, "value": 1 if extra in result["connected"] else None}


def _hint(extra: str) -> str:
    return f"pip install '{NAME}[{extra}]'"


def test_bare_install_imports_and_names_the_extras(dist: dict[str, Path], tmp_path: Path) -> None:
    _install(dist["wheel"], None, tmp_path / "venv")
    result = _probe(tmp_path / "venv", tmp_path, connect=set())
    assert not any(result["drivers"].values()), result["drivers"]
    for extra, outcome in result["backends"].items():
        assert not outcome["ok"], (extra, outcome)
        assert _hint(extra) in outcome["error"], (extra, outcome)


@pytest.mark.parametrize("extra", sorted(BACKEND_EXTRAS))
def test_each_extra_alone_runs_its_backend(
    dist: dict[str, Path], tmp_path: Path, extra: str
) -> None:
    _install(dist["wheel"], extra, tmp_path / "venv")
    result = _probe(tmp_path / "venv", tmp_path, connect={extra})
    driver = BACKEND_EXTRAS[extra][1]
    assert result["drivers"][driver], f"[{extra}] did not install {driver}"
    for other, outcome in result["backends"].items():
        if other == extra:
            assert outcome == _works(extra, result), outcome
        else:
            assert not outcome["ok"] and _hint(other) in outcome["error"], (other, outcome)


def test_all_extra_runs_every_backend(dist: dict[str, Path], tmp_path: Path) -> None:
    _install(dist["wheel"], "all", tmp_path / "venv")
    result = _probe(tmp_path / "venv", tmp_path, connect=set(BACKEND_EXTRAS))
    assert all(result["drivers"].values()), result["drivers"]
    for extra, outcome in result["backends"].items():
        assert outcome == _works(extra, result), (extra, outcome)


def test_opentelemetry_extra_imports_the_instrumentation(
    dist: dict[str, Path], tmp_path: Path
) -> None:
    """[opentelemetry] is enough for asyncdb.contrib.opentelemetry (the API only: no SDK)."""
    venv = tmp_path / "venv"
    _install(dist["wheel"], "opentelemetry", venv)
    out = _run(
        venv / "bin" / "python", "-I", "-c",
        "import asyncdb.contrib.opentelemetry as m; print(callable(m.instrument))",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.strip() == "True"
