"""The scale of cost: how each layer's time grows with the work.

Two sweeps, every layer on the same server in one process, interleaved and shuffled per round:

- `fetch_all` of 10, 1,000 and 100,000 rows (two integer columns): a constant per-call
  overhead shows as a ratio to the raw driver that falls towards 1 as the result grows;
  a per-row overhead would keep it flat above 1.
- 1, 10, 100 and 1,000 concurrent tasks running `fetch_one` on a pool of 20: throughput
  (calls per second) and p99 latency. Past 20 tasks they wait in the pool's line, so
  throughput should stay level and latency grow with the queue alike for every layer.

`python -m benchmarks.run --scale` runs only this (with `--quick`: fewer calls per point).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path
from typing import Any

from .contestants import MANY, Contestant, contestants

SIZES = (10, 1_000, 100_000)
CONCURRENCY = (1, 10, 100, 1_000)
LAYERS = ("raw (pool)", "asyncdb", "databases", "sqlalchemy")


def _calls(rows: int, quick: bool) -> int:
    """Calls per round for one result size: enough samples, bounded time."""
    base = {10: 60, 1_000: 20, 100_000: 4}[rows]
    return max(1, base // 2) if quick else base


async def _fetch_sweep(c: Contestant, rows: int, calls: int) -> list[float]:
    sql = f"{MANY} LIMIT {rows}"
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        got = await c.fetch_rows(sql)
        samples.append(time.perf_counter() - start)
        assert len(got) == rows, (c.name, len(got))
    return samples


async def _concurrent(c: Contestant, tasks: int, total: int) -> tuple[float, list[float]]:
    """`tasks` tasks share `total` fetch_one calls (at least 3 each, so that what a task costs
    to start is not taken for what a call costs); return (calls/s, each call's latency)."""
    per_task = max(3, total // tasks)
    latencies: list[float] = []

    async def worker(t: int) -> None:
        for k in range(per_task):
            start = time.perf_counter()
            await c.fetch_one((t * per_task + k) % 1000 + 1)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return tasks * per_task / (time.perf_counter() - start), latencies


async def bench_scale(backend: str, url: str, rounds: int, quick: bool) -> dict[str, Any]:
    from .run import prepare

    await prepare(url)
    players = [c for c in contestants(backend) if c.name in LAYERS]
    # SQLite's "pool" is a connection per call (no pool to share): no concurrency sweep.
    concurrency = () if backend == "sqlite" else CONCURRENCY
    total = 200 if quick else 600
    fetch: dict[tuple[int, str], list[float]] = {}
    throughput: dict[tuple[int, str], list[float]] = {}
    latency: dict[tuple[int, str], list[float]] = {}
    for c in players:
        await c.start(url)
    try:
        for c in players:  # warm up
            for i in range(5):
                await c.fetch_one(i + 1)
                await c.fetch_rows(f"{MANY} LIMIT 10")
        for round_ in range(rounds):
            for rows in SIZES:
                order = players[:]
                random.shuffle(order)
                for c in order:
                    samples = await _fetch_sweep(c, rows, _calls(rows, quick))
                    fetch.setdefault((rows, c.name), []).extend(samples)
            for tasks in concurrency:
                order = players[:]
                random.shuffle(order)
                for c in order:
                    rate, lat = await _concurrent(c, tasks, max(total, tasks))
                    throughput.setdefault((tasks, c.name), []).append(rate)
                    latency.setdefault((tasks, c.name), []).extend(lat)
            print(f"  {backend} scale: round {round_ + 1}/{rounds} done", flush=True)
    finally:
        for c in players:
            await c.stop()
    return {
        "names": [c.name for c in players],
        "fetch": {k: statistics.median(v) for k, v in fetch.items()},
        "throughput": {k: statistics.median(v) for k, v in throughput.items()},
        "p99": {k: statistics.quantiles(v, n=100)[98] for k, v in latency.items()},
        "concurrency": concurrency,
    }


def summarize_scale(result: dict[str, Any]) -> str:
    names = result["names"]
    raw = "raw (pool)"
    lines = [
        "| work | " + " | ".join(names) + " | asyncdb − raw (pool) | asyncdb / raw (pool) |",
        "|" + "---|" * (len(names) + 3),
    ]
    for rows in SIZES:
        t = {n: result["fetch"][(rows, n)] * 1e6 for n in names if (rows, n) in result["fetch"]}
        cells = [f"{t[n]:,.0f}" if n in t else "—" for n in names]
        diff = f"{t['asyncdb'] - t[raw]:+,.0f} µs" if raw in t else "—"
        ratio = f"{t['asyncdb'] / t[raw]:.2f}×" if raw in t else "—"
        lines.append(
            f"| fetch_all {rows:,} rows (µs/call) | " + " | ".join(cells) + f" | {diff} | {ratio} |"
        )
    for tasks in result["concurrency"]:
        rate = {n: result["throughput"][(tasks, n)] for n in names}
        p99 = {n: result["p99"][(tasks, n)] * 1e3 for n in names}
        cells = [f"{rate[n]:,.0f}" for n in names]
        lines.append(
            f"| {tasks:,} tasks, pool 20: throughput (calls/s) | "
            + " | ".join(cells)
            + f" | {rate['asyncdb'] - rate[raw]:+,.0f} /s | {rate[raw] / rate['asyncdb']:.2f}× |"
        )
        cells = [f"{p99[n]:,.1f}" for n in names]
        lines.append(
            f"| {tasks:,} tasks, pool 20: p99 latency (ms) | "
            + " | ".join(cells)
            + f" | {p99['asyncdb'] - p99[raw]:+,.1f} ms | {p99['asyncdb'] / p99[raw]:.2f}× |"
        )
    lines.append("")
    lines.append(
        "Throughput ratio is raw's calls/s over asyncdb's (time per call, like the others: "
        "above 1 asyncdb is slower)."
    )
    return "\n".join(lines)


def plot_scale(results: dict[str, dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    backends = list(results)
    fig, axes = plt.subplots(len(backends), 3, figsize=(16, 4.2 * len(backends)), squeeze=False)
    for row, backend in zip(axes, backends, strict=True):
        result = results[backend]
        names = result["names"]
        for name in names:
            style = {"linewidth": 2.5} if name == "asyncdb" else {"linewidth": 1.2}
            sizes = [r for r in SIZES if (r, name) in result["fetch"]]
            row[0].plot(
                sizes,
                [result["fetch"][(r, name)] * 1e6 / r for r in sizes],
                "o-",
                label=name,
                **style,
            )
            conc = result["concurrency"]
            if conc:
                row[1].plot(
                    conc, [result["throughput"][(t, name)] for t in conc], "o-", label=name, **style
                )
                row[2].plot(
                    conc, [result["p99"][(t, name)] * 1e3 for t in conc], "o-", label=name, **style
                )
        row[0].set(
            xscale="log",
            yscale="log",
            xlabel="rows fetched",
            ylabel="µs per row (per call / rows)",
            title=f"{backend}: fetch_all, cost per row",
        )
        row[1].set(
            xscale="log",
            xlabel="concurrent tasks (pool of 20)",
            ylabel="calls/s",
            title=f"{backend}: fetch_one throughput",
        )
        row[2].set(
            xscale="log",
            yscale="log",
            xlabel="concurrent tasks (pool of 20)",
            ylabel="p99 latency (ms)",
            title=f"{backend}: fetch_one p99 latency",
        )
        for ax in row:
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True
