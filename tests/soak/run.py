"""Chaos soak: N tasks move money between M accounts while faults are injected (server
kills, query cancels, task cancellations, TCP cuts, some right after COMMIT is sent; on
SQLite task cancellations and interrupts), then asyncdb's promises are checked: nothing
lost, nothing applied twice, only asyncdb exceptions, no connection left checked out, no
session left on the server.

    python -m tests.soak.run --backend postgresql --duration 60 --tasks 100 --seed 1

URLs come from ASYNCDB_TEST_POSTGRES_URL / ASYNCDB_TEST_MYSQL_URL (scripts/servers.sh);
SQLite runs on a temporary file. Exit status 1 if an invariant fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncdb
from asyncdb import CommitOutcomeUnknownError, Database, DatabaseURL, Retry, Rollback

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from proxy import TcpProxy

INITIAL = 1000
APP = "asyncdb-soak"
_ENV = {"postgresql": "ASYNCDB_TEST_POSTGRES_URL", "mysql": "ASYNCDB_TEST_MYSQL_URL"}


@dataclass
class Result:
    backend: str
    seed: int
    committed: int = 0
    calls: int = 0
    attempts: int = 0
    unknown: int = 0
    unknown_present: int = 0
    unknown_resubmitted: int = 0
    late_commits: int = 0
    failed: int = 0
    cancelled: int = 0
    reads: int = 0
    iterations: int = 0
    savepoint_rollbacks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    foreign: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks[name] = self.checks.get(name, True) and ok
        if not ok:
            self.violations.append(f"{name}: {detail}")

    def table(self) -> str:
        rows = [
            ("backend / seed", f"{self.backend} / {self.seed}"),
            ("transfers committed", self.committed),
            ("transfer calls / attempts", f"{self.calls} / {self.attempts}"),
            ("failed (definite)", self.failed),
            ("commit outcome unknown", self.unknown),
            ("  found in ledger", self.unknown_present),
            ("  absent, resubmitted", self.unknown_resubmitted),
            ("  absent, then committed late", self.late_commits),
            ("cancelled mid-flight", self.cancelled),
            ("reads / iterations", f"{self.reads} / {self.iterations}"),
            ("savepoints rolled back", self.savepoint_rollbacks),
        ]
        rows += [(f"error {k}", v) for k, v in sorted(self.errors.items())]
        rows += [(f"fault {k}", v) for k, v in sorted(self.faults.items())]
        rows += [(f"asyncdb warning: {k[:60]}", v) for k, v in sorted(self.warnings.items())]
        rows += [(f"invariant {k}", "OK" if v else "FAILED") for k, v in self.checks.items()]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"VIOLATION {v}" for v in self.violations]
        lines += [f"FOREIGN {f}" for f in self.foreign[:10]]
        return "\n".join(lines)


class _WarningCounter(logging.Handler):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__(logging.WARNING)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.getMessage()] += 1


class Soak:
    def __init__(
        self,
        backend: str,
        url: str,
        *,
        duration: float,
        tasks: int,
        accounts: int,
        seed: int,
        fault_rate: float = 3.0,
        max_size: int = 20,
    ) -> None:
        self.backend, self.url, self.duration = backend, url, duration
        self.ntasks, self.naccounts, self.max_size = tasks, accounts, max_size
        self.fault_rate = fault_rate
        self.rng = random.Random(seed)
        self.result = Result(backend, seed)
        self.status: dict[str, str] = {}  # transfer id -> ok / failed / unknown / present / absent
        self.sums: list[int] = []
        self.stop = asyncio.Event()
        self.slots: list[asyncio.Task[None] | None] = []
        self.proxy: TcpProxy | None = None
        self.others: set[int] = set()  # MariaDB sessions that were there before the soak

    # -- setup -------------------------------------------------------------------------

    async def run(self) -> Result:
        """Set up, attack, check; asyncdb's own warnings are counted for the summary."""
        counter = _WarningCounter(self.result.warnings)
        logging.getLogger("asyncdb").addHandler(counter)
        try:
            return await self._run()
        finally:
            logging.getLogger("asyncdb").removeHandler(counter)

    async def _run(self) -> Result:
        server = self.backend != "sqlite"
        url = DatabaseURL(self.url)
        options: dict[str, Any] = {"max_size": self.max_size, "acquire_timeout": 120}
        if server:
            self.proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 0).start()
            url = url.replace(port=self.proxy.port)
            options["pre_ping"] = 0.5
        if self.backend == "postgresql":
            options["server_settings"] = {"application_name": APP}
        admin_options = (
            {"server_settings": {"application_name": APP + "-admin"}}
            if (self.backend == "postgresql")
            else {}
        )
        # One connection, shared by the fault injector and the checks: MariaDB sessions are
        # told apart from the soak's by CONNECTION_ID().
        admin = Database(self.url, min_size=1, max_size=1, **admin_options)
        await admin.connect()
        try:
            await self._schema(admin)
            if self.backend == "mysql":  # not ours: left by whoever else uses this user and db
                self.others = set(await self._sessions(admin))
            db = Database(url, **options)
            await db.connect()
            try:
                await self._workload(db, admin)
                await self._final(db, admin)
            finally:
                await db.disconnect()
                if self.proxy is not None:
                    await self.proxy.close()
            await self._after_disconnect(admin)
        finally:
            await admin.disconnect()
        return self.result

    async def _schema(self, admin: Database) -> None:
        engine = " ENGINE=InnoDB" if self.backend == "mysql" else ""
        await admin.execute("DROP TABLE IF EXISTS soak_ledger")
        await admin.execute("DROP TABLE IF EXISTS soak_accounts")
        await admin.execute(
            f"CREATE TABLE soak_accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL){engine}"
        )
        await admin.execute(
            "CREATE TABLE soak_ledger (transfer_id VARCHAR(36) PRIMARY KEY, "
            f"src INTEGER NOT NULL, dst INTEGER NOT NULL, amount INTEGER NOT NULL){engine}"
        )
        await admin.execute_many(
            "INSERT INTO soak_accounts (id, balance) VALUES (:id, :b)",
            [{"id": i, "b": INITIAL} for i in range(self.naccounts)],
        )

    # -- the workload ------------------------------------------------------------------

    async def _workload(self, db: Database, admin: Database) -> None:
        retry = Retry(attempts=30, initial=0.02, maximum=1.0)

        async def body(tid: str, src: int, dst: int, amount: int, savepoint: int) -> None:
            self.result.attempts += 1
            first, second = ((src, -amount), (dst, amount))
            if self.rng.random() < 0.5:
                first, second = second, first  # both orders: deadlocks happen, get retried
            for account, delta in (first, second):
                await db.execute(
                    "UPDATE soak_accounts SET balance = balance + :d WHERE id = :id",
                    {"d": delta, "id": account},
                )
            insert = "INSERT INTO soak_ledger VALUES (:t, :s, :d, :a)"
            values = {"t": tid, "s": src, "d": dst, "a": amount}
            if savepoint == 1:  # a released savepoint carries part of the transfer
                async with db.transaction():
                    await db.execute(insert, values)
                return
            await db.execute(insert, values)
            if savepoint == 2:  # a savepoint rolled back: its damage must vanish
                async with db.transaction():
                    await db.execute(
                        "UPDATE soak_accounts SET balance = balance + 1000000 WHERE id = :id",
                        {"id": src},
                    )
                    self.result.savepoint_rollbacks += 1
                    raise Rollback

        plain = db.transaction(retry=retry)(body)
        backoff = db.transaction(retry=retry, reconnect="backoff")(body)
        self._transfers = (plain, backoff)

        def on_query(event: str, details: dict[str, Any]) -> None:
            if (
                self.proxy is not None
                and self._cut_commit
                and details["sql"].strip().upper() == "COMMIT"
            ):
                self._cut_commit = False
                self.proxy.cut_after(b"COMMIT")
                self.result.faults["tcp cut after COMMIT"] += 1

        self._cut_commit = False
        db.add_hook("query_start", on_query)
        self.slots = [None] * self.ntasks
        slots = [asyncio.create_task(self._slot(db, admin, i)) for i in range(self.ntasks)]
        faults = asyncio.create_task(self._faults(db, admin))
        await asyncio.sleep(self.duration)
        self.stop.set()
        self._cut_commit = False
        await faults
        _done, pending = await asyncio.wait(slots, timeout=120)
        for task in pending:  # bounded: a stuck worker is itself a finding
            self.result.check(
                "workers stop", False, f"{len(pending)} workers still running 120 s after stop"
            )
            task.cancel()
            break
        await asyncio.gather(*slots, return_exceptions=True)

    async def _slot(self, db: Database, admin: Database, index: int) -> None:
        """Run worker `index`; when a fault cancels it, start it again."""
        while not self.stop.is_set():
            task = asyncio.create_task(self._worker(db, admin, index))
            self.slots[index] = task
            await asyncio.wait([task])
            self.slots[index] = None
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                self._foreign(exc, "worker")

    async def _worker(self, db: Database, admin: Database, index: int) -> None:
        rng = random.Random(self.rng.random())
        while not self.stop.is_set():
            roll = rng.random()
            try:
                if roll < 0.7:
                    await self._transfer(db, rng)
                elif roll < 0.85:
                    total = await db.fetch_val("SELECT SUM(balance) FROM soak_accounts")
                    self.sums.append(int(total))
                    self.result.reads += 1
                else:
                    limit = rng.randint(1, 20)
                    seen = 0
                    async for _row in db.iterate("SELECT * FROM soak_ledger"):
                        seen += 1
                        if seen >= limit:
                            break
                    self.result.iterations += 1
            except asyncdb.DatabaseError as exc:
                self.result.errors[type(exc).__name__] += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._foreign(exc, "operation")
            await asyncio.sleep(rng.random() * 0.01)

    async def _transfer(self, db: Database, rng: random.Random) -> None:
        tid = str(uuid.UUID(int=rng.getrandbits(128)))
        src, dst = rng.sample(range(self.naccounts), 2)
        args = (tid, src, dst, rng.randint(1, 50), rng.choice((0, 0, 1, 2)))
        transfer = rng.choice(self._transfers)
        self.status[tid] = "cancelled"  # until we know better
        self.result.calls += 1
        try:
            await transfer(*args)
        except CommitOutcomeUnknownError:
            self.result.errors["CommitOutcomeUnknownError"] += 1
            self.result.unknown += 1
            self.status[tid] = "unknown"
            await self._resolve(db, transfer, args)
            return
        except asyncdb.DatabaseError:
            self.status[tid] = "failed"
            self.result.failed += 1
            raise
        except asyncio.CancelledError:
            self.result.cancelled += 1
            raise
        self.status[tid] = "ok"
        self.result.committed += 1

    async def _resolve(self, db: Database, transfer: Any, args: tuple[Any, ...]) -> None:
        """What a user does after CommitOutcomeUnknownError: look the transfer up by its id
        and run it again only if it is absent (never blindly)."""
        tid = args[0]
        await asyncio.sleep(1.5)  # let the old session's COMMIT land or die first
        for _ in range(50):
            try:
                found = await db.fetch_val(
                    "SELECT COUNT(*) FROM soak_ledger WHERE transfer_id = :t", {"t": tid}
                )
                break
            except asyncdb.DatabaseError as exc:
                self.result.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.1)
        else:
            return  # still unknown; the final reconciliation covers it
        if found:
            self.status[tid] = "present"
            self.result.unknown_present += 1
            return
        self.status[tid] = "absent"
        self.result.unknown_resubmitted += 1
        try:
            await transfer(*args)
            self.status[tid] = "ok"
            self.result.committed += 1
        except asyncdb.IntegrityError:
            self.result.late_commits += 1  # it was committed after all: the key kept it single
            self.status[tid] = "present"
        except CommitOutcomeUnknownError:
            self.status[tid] = "unknown"
        except asyncdb.DatabaseError as exc:
            self.result.errors[type(exc).__name__] += 1
            self.status[tid] = "failed"

    def _foreign(self, exc: BaseException, where: str) -> None:
        name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        self.result.foreign.append(f"{where}: {name}: {exc!r}"[:300])

    # -- the faults --------------------------------------------------------------------

    async def _faults(self, db: Database, admin: Database) -> None:
        kinds = (
            ["kill", "cancel query", "cancel task", "tcp cut", "cut after commit"]
            if self.backend != "sqlite"
            else ["cancel task", "interrupt"]
        )
        weights = [3, 2, 3, 1, 2] if self.backend != "sqlite" else [1, 1]
        deadline = time.monotonic() + self.duration
        while not self.stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(self.rng.expovariate(self.fault_rate))
            if self.stop.is_set():
                break
            kind = self.rng.choices(kinds, weights)[0]
            try:
                await self._inject(kind, db, admin)
            except asyncdb.DatabaseError as exc:
                self.result.faults[f"{kind} (failed: {type(exc).__name__})"] += 1

    async def _inject(self, kind: str, db: Database, admin: Database) -> None:
        if kind == "cancel task":
            live = [t for t in self.slots if t is not None and not t.done()]
            if live:
                self.rng.choice(live).cancel()
                self.result.faults[kind] += 1
        elif kind == "tcp cut":
            assert self.proxy is not None
            self.proxy.cut()
            self.result.faults[kind] += 1
        elif kind == "cut after commit":
            self._cut_commit = True  # the query_start hook arms the proxy on the next COMMIT
        elif kind == "interrupt":
            pool = db._pool
            busy = list(getattr(pool, "_in_use", ()))
            if busy:
                raw = self.rng.choice(busy).raw
                if raw._connection is not None:
                    raw._connection.interrupt()
                    self.result.faults[kind] += 1
        else:
            sessions = await self._sessions(admin)
            if not sessions:
                return
            victim = self.rng.choice(sessions)
            if self.backend == "postgresql":
                func = "pg_terminate_backend" if kind == "kill" else "pg_cancel_backend"
                await admin.fetch_val(f"SELECT {func}(:pid)", {"pid": victim})
            else:
                verb = "KILL CONNECTION" if kind == "kill" else "KILL QUERY"
                with contextlib.suppress(asyncdb.DatabaseError):  # it may be gone already
                    await admin.execute(f"{verb} {int(victim)}")
            self.result.faults[kind] += 1

    async def _sessions(self, admin: Database) -> list[int]:
        if self.backend == "postgresql":
            rows = await admin.fetch_all(
                "SELECT pid FROM pg_stat_activity WHERE application_name = :app", {"app": APP}
            )
        else:
            url = DatabaseURL(self.url)
            rows = await admin.fetch_all(
                "SELECT id FROM information_schema.processlist "
                "WHERE user = :u AND db = :d AND id <> CONNECTION_ID()",
                {"u": url.username, "d": url.database},
            )
        return [int(r[0]) for r in rows if int(r[0]) not in self.others]

    # -- the invariants ----------------------------------------------------------------

    async def _final(self, db: Database, admin: Database) -> None:
        r = self.result
        r.check("no foreign exception", not r.foreign, f"{len(r.foreign)} non-asyncdb exceptions")
        in_use = db.pool_stats()["in_use"]
        r.check("pool in_use == 0", in_use == 0, f"in_use = {in_use} after every worker ended")
        if self.backend != "sqlite":
            count = await self._settled(admin, lambda n: n <= self.max_size)
            r.check(
                "server sessions <= max_size",
                count <= self.max_size,
                f"{count} sessions on the server, max_size {self.max_size}",
            )
        total = self.naccounts * INITIAL
        balances = {
            int(row[0]): int(row[1])
            for row in await admin.fetch_all("SELECT id, balance FROM soak_accounts")
        }
        ledger = [
            (str(row[0]), int(row[1]), int(row[2]), int(row[3]))
            for row in await admin.fetch_all(
                "SELECT transfer_id, src, dst, amount FROM soak_ledger"
            )
        ]
        final = sum(balances.values())
        r.check("sum of balances unchanged", final == total, f"{final} != {total} (initial)")
        bad_reads = [s for s in self.sums if s != total]
        r.check(
            "every read saw the total",
            not bad_reads,
            f"{len(bad_reads)} of {len(self.sums)} reads, e.g. {bad_reads[:3]} != {total}",
        )
        expected = dict.fromkeys(range(self.naccounts), INITIAL)
        for _tid, src, dst, amount in ledger:
            expected[src] -= amount
            expected[dst] += amount
        off = {
            a: (expected[a], balances.get(a)) for a in expected if expected[a] != balances.get(a)
        }
        r.check(
            "balances reconcile with the ledger",
            not off,
            f"{len(off)} accounts differ (ledger-expected, actual): {dict(list(off.items())[:5])}",
        )
        in_ledger = {row[0] for row in ledger}
        lost = [t for t, s in self.status.items() if s == "ok" and t not in in_ledger]
        r.check(
            "committed transfers in the ledger", not lost, f"{len(lost)} reported committed, absent"
        )
        ghost = [t for t, s in self.status.items() if s == "failed" and t in in_ledger]
        r.check(
            "failed transfers not applied", not ghost, f"{len(ghost)} reported failed, in ledger"
        )
        unknown_tids = in_ledger - set(self.status)
        r.check("no phantom ledger rows", not unknown_tids, f"{len(unknown_tids)} never attempted")

    async def _settled(self, admin: Database, good: Any, limit: float = 30.0) -> int:
        """Sessions a dead client left can take the server a moment to notice: poll."""
        deadline = time.monotonic() + limit
        while True:
            count = len(await self._sessions(admin))
            if good(count) or time.monotonic() > deadline:
                return count
            await asyncio.sleep(0.25)

    async def _after_disconnect(self, admin: Database) -> None:
        if self.backend == "sqlite":
            return
        count = await self._settled(admin, lambda n: n == 0)
        self.result.check(
            "no session left after disconnect", count == 0, f"{count} sessions still on the server"
        )


def url_for(backend: str, tmpdir: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{os.path.join(tmpdir, 'soak.sqlite3')}"
    url = os.environ.get(_ENV[backend])
    if not url:
        raise SystemExit(f"{_ENV[backend]} is not set (start the servers: scripts/servers.sh)")
    return url


async def soak(backend: str, url: str, **kwargs: Any) -> Result:
    return await Soak(backend, url, **kwargs).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", default="all", choices=["all", "postgresql", "mysql", "sqlite"]
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per backend")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--faults-per-second", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    backends = ["postgresql", "mysql", "sqlite"] if args.backend == "all" else [args.backend]
    failed = False
    with tempfile.TemporaryDirectory() as tmpdir:
        for backend in backends:
            print(
                f"soak: {backend}, {args.duration:g} s, {args.tasks} tasks, seed {seed}", flush=True
            )
            result = asyncio.run(
                soak(
                    backend,
                    url_for(backend, tmpdir),
                    duration=args.duration,
                    tasks=args.tasks,
                    accounts=args.accounts,
                    seed=seed,
                    fault_rate=args.faults_per_second,
                )
            )
            print(result.table(), flush=True)
            failed |= not result.ok
    print("soak: FAILED" if failed else "soak: all invariants OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
