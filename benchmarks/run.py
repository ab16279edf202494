"""Benchmark asyncdb against the raw drivers and its peers, interleaved round by round.

    python -m benchmarks.run                      # all backends whose URL is set, 5 rounds
    python -m benchmarks.run --backends postgresql --rounds 7
    python -m benchmarks.run --quick              # fewer operations, 100k-row iterate
    python -m benchmarks.run --scale --quick      # only the scale of cost (benchmarks/scale.py)

URLs come from ASYNCDB_TEST_POSTGRES_URL / ASYNCDB_TEST_MYSQL_URL (`scripts/servers.sh start`
prints them); SQLite uses a temporary file. `nox -s bench` starts the servers and runs this.
Results (markdown tables, a PNG of the ratios and one of the scale of cost) go to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import os
import platform
import random
import statistics
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncdb import Database

from .contestants import ITEMS, MANY, WRITES, Contestant, contestants
from .scale import bench_scale, plot_scale, summarize_scale

RESULTS = Path(__file__).parent / "results"
LOOP = "asyncio"


@dataclass
class Workload:
    key: str
    title: str
    unit: str  # what one sample measures
    run: Callable[[Contestant, int], Awaitable[list[float]]]


@dataclass
class PerOp:
    """A workload of single timed calls. The contestants take turns call by call (shuffled
    each time), so a burst of load from elsewhere on the machine hits every layer alike
    rather than whichever one's block of calls it fell on."""

    op: Callable[[Contestant, int], Awaitable[Any]]
    n: int
    block: bool = False  # inside each contestant's `async with db.connection():` block

    async def __call__(self, c: Contestant, round_: int) -> list[float]:
        return (await self.interleaved([c], {}))[c.name]

    async def interleaved(
        self, players: list[Contestant], failed: dict[str, str]
    ) -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {c.name: [] for c in players}
        active = players[:]
        async with contextlib.AsyncExitStack() as stack:
            if self.block:
                for c in active:
                    await stack.enter_async_context(c.block())
            for i in range(self.n):
                random.shuffle(active)
                for c in active[:]:
                    start = time.perf_counter()
                    try:
                        await self.op(c, i)
                    except Exception as exc:  # a peer that cannot do the workload: report it
                        failed[c.name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
                        active.remove(c)
                        continue
                    samples[c.name].append(time.perf_counter() - start)
        return {name: values for name, values in samples.items() if name not in failed}


def per_op(op: Callable[[Contestant, int], Awaitable[Any]], n: int) -> PerOp:
    return PerOp(op, n)


def in_block(op: Callable[[Contestant, int], Awaitable[Any]], n: int) -> PerOp:
    """`per_op` inside each contestant's connection block, each call timed alone."""
    return PerOp(op, n, block=True)


def concurrent_batch(tasks: int, repeats: int) -> Any:
    async def run(c: Contestant, round_: int) -> list[float]:
        samples = []
        for r in range(repeats):
            start = time.perf_counter()
            await asyncio.gather(*(c.three_statement_tx(r * tasks + i) for i in range(tasks)))
            samples.append((time.perf_counter() - start) / tasks)  # seconds per transaction
        return samples

    return run


def iterate_all(rows: int) -> Any:
    async def run(c: Contestant, round_: int) -> list[float]:
        start = time.perf_counter()
        n = await c.iterate(f"{MANY} LIMIT {rows}")
        assert n == rows, (c.name, n)
        return [time.perf_counter() - start]

    return run


def workloads(quick: bool) -> list[Workload]:
    n = 100 if quick else 400
    rows = 100_000 if quick else 1_000_000
    return [
        Workload("fetch_one", "1. fetch_one by primary key", "µs/call",
                 per_op(lambda c, i: c.fetch_one(i % 1000 + 1), n)),
        Workload("fetch_all", "2. fetch_all 1,000 rows × 10 columns", "µs/call",
                 per_op(lambda c, i: c.fetch_all(), n // 4)),
        Workload("insert_tx", "3. insert one row in a transaction", "µs/tx",
                 per_op(lambda c, i: c.insert_tx(i), n // 2)),
        Workload("savepoint_tx", "4. transaction + nested savepoint", "µs/tx",
                 per_op(lambda c, i: c.savepoint_tx(i), n // 2)),
        Workload("concurrent", "5. 200 concurrent 3-statement transactions, pool 20", "µs/tx",
                 concurrent_batch(200, 2 if quick else 4)),
        Workload("iterate", f"6. iterate {rows:,} rows", "ms total", iterate_all(rows)),
        Workload("fetch_one_core", "7. fetch_one as a SQLAlchemy Core select() built per call "
                 "(raw: the same select() built, its SQL compiled ahead)", "µs/call",
                 per_op(lambda c, i: c.fetch_one_core(i % 1000 + 1), n)),
        Workload("fetch_one_block", "8. fetch_one inside `async with db.connection():` "
                 "(layers without such a block: per call)", "µs/call",
                 in_block(lambda c, i: c.fetch_one(i % 1000 + 1), n)),
    ]  # fmt: skip


async def prepare(url: str) -> None:
    import sqlalchemy as sa

    async with Database(url) as db:
        for table in (ITEMS, WRITES):
            await db.execute(sa.text(f"DROP TABLE IF EXISTS {table.name}"))
            await db.execute(sa.schema.CreateTable(table))
        await db.execute_many(
            ITEMS.insert(),
            [
                {"id": i, **{f"c{k}": (i * k if k % 2 else f"value-{i}-{k}") for k in range(1, 10)}}
                for i in range(1, 1001)
            ],
        )


async def peak_memory(c: Contestant, rows: int) -> float:
    """Peak Python memory (MiB) while iterating `rows` rows."""
    gc.collect()
    tracemalloc.start()
    try:
        await c.iterate(f"{MANY} LIMIT {rows}")
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


async def bench_backend(backend: str, url: str, rounds: int, quick: bool) -> dict[str, Any]:
    await prepare(url)
    players = contestants(backend)
    for c in players:
        await c.start(url)
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    failed: dict[tuple[str, str], str] = {}
    plan = workloads(quick)
    try:
        for c in players:  # warm up: compile caches, prepared statements, pool
            for i in range(3):
                await c.fetch_one(i + 1)
                await c.fetch_one_core(i + 1)
                await c.insert_tx(i)
        for round_ in range(rounds):
            for w in plan:
                if isinstance(w.run, PerOp):
                    ready = [c for c in players if (w.key, c.name) not in failed]
                    why: dict[str, str] = {}
                    for name, values in (await w.run.interleaved(ready, why)).items():
                        samples[(w.key, name)] += values
                    for name, reason in why.items():
                        failed[(w.key, name)] = reason
                        samples.pop((w.key, name), None)
                    continue
                order = players[:]
                random.shuffle(order)  # interleaved and shuffled: drift hits everyone alike
                for c in order:
                    key = (w.key, c.name)
                    if key in failed or (w.key == "concurrent" and c.three_statement_tx is None):
                        continue
                    try:
                        samples[key] += await w.run(c, round_)
                    except Exception as exc:  # a peer that cannot do the workload: report it
                        failed[key] = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
                        samples.pop(key, None)
            print(f"  {backend}: round {round_ + 1}/{rounds} done", flush=True)
        memory = {}
        small, big = (10_000, 100_000) if quick else (100_000, 1_000_000)
        for c in players:
            memory[c.name] = (await peak_memory(c, small), await peak_memory(c, big))
    finally:
        for c in players:
            await c.stop()
    names = [c.name for c in players]
    return {"samples": samples, "memory": memory, "plan": plan, "names": names, "failed": failed}


def summarize(backend: str, result: dict[str, Any], rounds: int) -> tuple[str, dict[str, Any]]:
    names = result["names"]
    pairs = _pairs(names)
    header = ["workload", *names, *(f"{ours} / {p}" for ours, p in pairs)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ratios: dict[str, dict[str, float]] = {}
    for w in result["plan"]:
        medians = {}
        for name in names:
            values = result["samples"].get((w.key, name))
            if values:
                scale = 1e3 if w.unit.startswith("ms") else 1e6
                medians[name] = statistics.median(values) * scale
        cells = [f"{w.title} ({w.unit})"]
        cells += [
            f"{medians[n]:,.0f}"
            if n in medians
            else ("failed" if (w.key, n) in result["failed"] else "—")
            for n in names
        ]
        # asyncdb absent: it failed the workload (reported below)
        ratios[w.key] = {
            f"{ours} / {p}": medians[ours] / medians[p]
            for ours, p in pairs
            if p in medians and medians.get(ours)
        }
        cells += [
            f"{ratios[w.key][label]:.2f}×" if label in ratios[w.key] else "—"
            for label in (f"{ours} / {p}" for ours, p in pairs)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    p99 = {
        n: statistics.quantiles(result["samples"][("fetch_one", n)], n=100)[98] * 1e6 for n in names
    }
    lines.append("")
    for (key, name), why in result["failed"].items():
        lines.append(f"- {name} failed `{key}`: {why}")
    lines.append("")
    lines.append("fetch_one p99 (µs): " + ", ".join(f"{n} {v:,.0f}" for n, v in p99.items()))
    memory = result["memory"]
    lines.append(
        "iterate peak Python memory (MiB, small → large result): "
        + ", ".join(f"{n} {a:.1f} → {b:.1f}" for n, (a, b) in memory.items())
    )
    return "\n".join(lines), ratios


def machine() -> str:
    versions = []
    for package in ("asyncpg", "aiomysql", "asyncmy", "aiosqlite", "SQLAlchemy", "databases"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        + ", ".join(versions)
    )


def _pairs(names: list[str]) -> list[tuple[str, str]]:
    """(asyncdb contestant, the other layer) for each ratio: asyncdb on a driver is compared
    with the layers on the same driver (asyncmy with asyncmy, the rest with the rest)."""

    def driver(name: str) -> str:
        return "asyncmy" if "asyncmy" in name else ""

    ours = {driver(n): n for n in names if n in ("asyncdb", "asyncdb asyncmy")}
    return [(ours[driver(n)], n) for n in names if driver(n) in ours and n != ours[driver(n)]]


def plot(all_ratios: dict[str, dict[str, dict[str, float]]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    backends = list(all_ratios)
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4.5), squeeze=False)
    for ax, backend in zip(axes[0], backends, strict=True):
        ratios = all_ratios[backend]
        keys = list(ratios)
        peers = sorted({p for r in ratios.values() for p in r})
        width = 0.8 / max(1, len(peers))
        for j, peer in enumerate(peers):
            ax.bar(
                [i + j * width for i in range(len(keys))],
                [ratios[k].get(peer, 0) for k in keys],
                width,
                label=peer,
            )
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(
            [i + 0.4 - width / 2 for i in range(len(keys))], keys, rotation=30, ha="right"
        )
        ax.set_title(f"{backend}: time ratio (lower is better for asyncdb)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="postgresql,mysql,sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--scale", action="store_true", help="only the scale-of-cost sweeps (benchmarks/scale.py)"
    )
    parser.add_argument("--no-scale", action="store_true", help="skip the scale-of-cost sweeps")
    args = parser.parse_args()
    urls = {
        "postgresql": os.environ.get("ASYNCDB_TEST_POSTGRES_URL"),
        "mysql": os.environ.get("ASYNCDB_TEST_MYSQL_URL"),
    }
    folder = tempfile.mkdtemp()
    urls["sqlite"] = f"sqlite:///{folder}/bench.sqlite3"
    RESULTS.mkdir(exist_ok=True)
    header = [
        f"Machine: {machine()}. Event loop: {LOOP} (ASYNCDB_BENCH_LOOP=asyncio to change).",
        f"Rounds: {args.rounds}{' (quick mode)' if args.quick else ''}; single-call workloads"
        " interleaved call by call, the others layer by layer, shuffled. Medians; ratios are"
        " asyncdb's time over the other layer's time (below 1.00× asyncdb is faster)."
        " Command: `nox -s bench` or `python -m benchmarks.run`.",
        "",
    ]
    report = ["# asyncdb benchmarks", "", *header]
    scale_report = ["# asyncdb benchmarks: the scale of cost", "", *header]
    all_ratios = {}
    scale_results = {}
    for backend in args.backends.split(","):
        url = urls.get(backend)
        if not url:
            raise SystemExit(f"no URL for {backend}: run `scripts/servers.sh start` and export it")
        if not args.scale:
            print(f"benchmarking {backend} ...", flush=True)
            result = await bench_backend(backend, url, args.rounds, args.quick)
            table, all_ratios[backend] = summarize(backend, result, args.rounds)
            report += [f"## {backend}", "", table, ""]
            print(f"\n## {backend}\n\n{table}\n", flush=True)
        if not args.no_scale:
            print(f"scale of cost on {backend} ...", flush=True)
            scale_results[backend] = await bench_scale(backend, url, args.rounds, args.quick)
            table = summarize_scale(scale_results[backend])
            scale_report += [f"## {backend}: scale of cost", "", table, ""]
            print(f"\n## {backend}: scale of cost\n\n{table}\n", flush=True)
    if scale_results:
        if plot_scale(scale_results, RESULTS / "scale.png"):
            scale_report += ["![scale](scale.png)", ""]
        (RESULTS / "scale.md").write_text("\n".join(scale_report))
        print(f"written: {RESULTS / 'scale.md'}")
    if all_ratios:
        if plot(all_ratios, RESULTS / "ratios.png"):
            report += ["![ratios](ratios.png)", ""]
        if scale_results:
            report += ["The scale of cost (fetch_all size, concurrency): [scale.md](scale.md)", ""]
        (RESULTS / "latest.md").write_text("\n".join(report))
        print(f"written: {RESULTS / 'latest.md'}")


def event_loop_runner() -> tuple[str, Callable[[Any], Any]]:
    if os.environ.get("ASYNCDB_BENCH_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop

            return f"uvloop {importlib.metadata.version('uvloop')}", uvloop.run
        except ImportError:
            pass
    return "asyncio", asyncio.run


if __name__ == "__main__":
    LOOP, run = event_loop_runner()
    run(main())
