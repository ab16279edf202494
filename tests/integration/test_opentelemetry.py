"""asyncdb.contrib.opentelemetry on real servers, read back through the SDK's in-memory span
exporter and metric reader: spans per statement (iterate included) and per transaction, named
and attributed by the database semantic conventions, nested under the caller's span across
asyncio tasks, and the database client metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import backends
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from asyncdb import (
    Database,
    DatabaseURL,
    DataError,
    DisconnectionError,
    InterfaceError,
    PoolTimeout,
    ProgrammingError,
    Rollback,
)
from asyncdb.contrib.opentelemetry import instrument, uninstrument
from tests.integration.test_mysql_replication import replication_urls

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cr3t-param-value"


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    meter_provider: MeterProvider
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def clients(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.kind is SpanKind.CLIENT]

    def transactions(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if "asyncdb.transaction.outcome" in (s.attributes or {})]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points, from one collection."""
        data = self.reader.get_metrics_data()
        points: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points

    def instrument(self, db: Database, **options: Any) -> None:
        instrument(
            db,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **options,
        )


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(tracer_provider, exporter, meter_provider, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
async def tdb(db_url: str, telemetry: Telemetry, backend: str) -> Any:
    """An instrumented Database with a fresh `items(id, name)` table (made before tracing)."""
    async with Database(db_url, max_size=5) as setup:
        await setup.execute("DROP TABLE IF EXISTS items")
        engine = " ENGINE=InnoDB" if backend == "mysql" else ""
        await setup.execute(
            f"CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL){engine}"
        )
    db = Database(db_url, max_size=5)
    telemetry.instrument(db)
    async with db:
        yield db
    uninstrument(db)


def _all_attribute_text(spans: list[ReadableSpan]) -> str:
    return " ".join(f"{k}={v}" for s in spans for k, v in (s.attributes or {}).items())


async def test_a_client_span_per_statement_under_the_callers_span(
    tdb: Database, telemetry: Telemetry, backend: str, db_url: str
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        await tdb.execute(
            "INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 1, "name": SECRET}
        )
        await tdb.execute_many(
            "INSERT INTO items (id, name) VALUES (:id, :name)",
            [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
        )
        assert len(await tdb.fetch_all("SELECT id, name FROM items ORDER BY id")) == 3
        await tdb.fetch_one("SELECT name FROM items WHERE name = :n", {"n": SECRET})
        assert await tdb.fetch_val("SELECT COUNT(*) FROM items") == 3
        assert [r["id"] async for r in tdb.iterate("SELECT id FROM items ORDER BY id")] == [1, 2, 3]
    spans = telemetry.clients()
    operations = [s.attributes["asyncdb.operation"] for s in spans]  # type: ignore[index]
    assert operations == [
        "execute",
        "execute_many",
        "fetch_all",
        "fetch_one",
        "fetch_val",
        "iterate",
    ]
    url = DatabaseURL(db_url)
    # the test servers are MariaDB, which the conventions name apart from MySQL
    system = {"postgresql": "postgresql", "mysql": "mariadb", "sqlite": "sqlite"}[backend]
    for span in spans:
        attributes = dict(span.attributes or {})
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.context.trace_id == request.get_span_context().trace_id
        assert attributes["db.system.name"] == system
        assert attributes["db.namespace"] == url.database
        assert span.name == f"{attributes['db.operation.name']} {url.database}"
        assert span.status.status_code is StatusCode.UNSET
        if backend == "sqlite":
            assert "server.address" not in attributes
        else:
            assert attributes["server.address"] == url.hostname
            assert attributes["server.port"] == url.port
    assert [s.attributes["db.operation.name"] for s in spans] == (  # type: ignore[index]
        ["INSERT", "INSERT", "SELECT", "SELECT", "SELECT", "SELECT"]
    )
    insert = dict(spans[0].attributes or {})
    assert insert["db.query.text"].startswith("INSERT INTO items (id, name) VALUES (")
    assert insert["asyncdb.rowcount"] == 1
    assert spans[2].attributes["db.response.returned_rows"] == 3  # type: ignore[index]
    assert spans[5].attributes["db.response.returned_rows"] == 3  # type: ignore[index]
    # Parameter values never reach a span: only the SQL with its placeholders.
    assert SECRET not in _all_attribute_text(telemetry.spans())


async def test_an_iterate_span_lasts_the_whole_iteration(
    tdb: Database, telemetry: Telemetry
) -> None:
    await tdb.execute_many(
        "INSERT INTO items (id, name) VALUES (:id, :name)",
        [{"id": i, "name": f"n{i}"} for i in range(1, 2501)],  # three batches of rows
    )
    tracer = telemetry.tracer_provider.get_tracer("app")
    telemetry.exporter.clear()
    count = 0
    async for _row in tdb.iterate("SELECT id FROM items ORDER BY id"):
        count += 1
        if count in (1, 2500):
            with tracer.start_as_current_span(f"body-{count}"):
                pass
    (iteration,) = telemetry.clients()
    bodies = {s.name: s for s in telemetry.spans() if s.name.startswith("body-")}
    assert iteration.attributes["asyncdb.operation"] == "iterate"  # type: ignore[index]
    assert iteration.attributes["db.response.returned_rows"] == 2500  # type: ignore[index]
    assert iteration.start_time is not None and iteration.end_time is not None
    for body in bodies.values():
        assert body.start_time is not None and body.end_time is not None
        assert iteration.start_time <= body.start_time <= body.end_time <= iteration.end_time

    # Left early: the span ends when the iteration is closed, without an error.
    telemetry.exporter.clear()
    rows = tdb.iterate("SELECT id FROM items ORDER BY id")
    async for _row in rows:
        break
    assert telemetry.clients() == []  # still open: the iteration is not over
    await rows.aclose()  # type: ignore[attr-defined]
    (early,) = telemetry.clients()
    assert early.status.status_code is StatusCode.UNSET
    assert early.attributes["db.response.returned_rows"] == 1000  # type: ignore[index]


async def test_a_failed_statement_is_an_error_span_and_an_error_measurement(
    tdb: Database, telemetry: Telemetry, backend: str
) -> None:
    with pytest.raises(ProgrammingError):
        await tdb.fetch_all("SELECT * FROM no_such_table")
    (span,) = telemetry.clients()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "asyncdb.ProgrammingError"  # type: ignore[index]
    if backend == "postgresql":
        assert span.attributes["db.response.status_code"] == "42P01"  # type: ignore[index]
    elif backend == "mysql":
        assert span.attributes["db.response.status_code"] == "1146"  # type: ignore[index]
    assert [e.name for e in span.events] == ["exception"]
    (point,) = [
        p
        for p in telemetry.metrics()["db.client.operation.duration"]
        if p.attributes.get("error.type") == "asyncdb.ProgrammingError"
    ]
    assert point.count == 1 and point.attributes["db.operation.name"] == "SELECT"


async def test_transaction_spans_parent_their_statements_and_say_how_they_ended(
    tdb: Database, telemetry: Telemetry, backend: str
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        async with tdb.transaction():
            await tdb.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
            async with tdb.transaction():
                await tdb.execute("INSERT INTO items (id, name) VALUES (2, 'b')")
        with pytest.raises(RuntimeError):
            async with tdb.transaction():
                await tdb.execute("INSERT INTO items (id, name) VALUES (3, 'c')")
                raise RuntimeError("changed my mind")
        async with tdb.transaction():
            raise Rollback()
        after = await tdb.fetch_val("SELECT COUNT(*) FROM items")
    assert after == 2
    spans = telemetry.spans()
    by_id = {s.context.span_id: s for s in spans}
    transactions = telemetry.transactions()
    names = [s.name for s in transactions]
    database = tdb.url.database
    assert (
        names
        == [f"SAVEPOINT {database}", f"TRANSACTION {database}"] + [f"TRANSACTION {database}"] * 2
    )
    savepoint, committed, failed, quiet = transactions
    outcomes = [s.attributes["asyncdb.transaction.outcome"] for s in transactions]  # type: ignore[index]
    assert outcomes == ["commit", "commit", "rollback", "rollback"]
    assert savepoint.parent is not None and savepoint.parent.span_id == committed.context.span_id
    for tx in (committed, failed, quiet):
        assert tx.parent is not None and tx.parent.span_id == request.get_span_context().span_id
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "RuntimeError"  # type: ignore[index]
    assert quiet.status.status_code is StatusCode.UNSET  # Rollback asked for: no error
    # Every statement is a child of the innermost transaction open when it ran, BEGIN and
    # COMMIT included; the last SELECT, outside any, is the request's.
    parents = {
        s.attributes["db.query.text"]: by_id[s.parent.span_id].name  # type: ignore[union-attr,index]
        for s in telemetry.clients()
    }
    assert parents["INSERT INTO items (id, name) VALUES (1, 'a')"] == f"TRANSACTION {database}"
    assert parents["INSERT INTO items (id, name) VALUES (2, 'b')"] == f"SAVEPOINT {database}"
    assert parents["SELECT COUNT(*) FROM items"] == "request"
    commands = [s for s in telemetry.clients() if s.attributes["asyncdb.operation"] == "command"]  # type: ignore[index]
    assert {s.attributes["db.operation.name"] for s in commands} >= {"COMMIT", "ROLLBACK"}  # type: ignore[index]
    assert all(by_id[s.parent.span_id] in transactions for s in commands)  # type: ignore[union-attr]


@backends("postgresql", "mysql")
async def test_a_retried_transaction_shows_each_attempt(
    tdb: Database, telemetry: Telemetry, backend: str, db_url: str
) -> None:
    query = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
    kill = "SELECT pg_terminate_backend(:id)" if backend == "postgresql" else "KILL :id"
    attempts = 0

    @tdb.transaction(retry=3)
    async def work(admin: Database) -> int:
        nonlocal attempts
        attempts += 1
        await tdb.execute("INSERT INTO items (id, name) VALUES (:id, 'x')", {"id": attempts})
        if attempts == 1:  # the first attempt loses its connection for real
            await admin.execute(kill, {"id": await tdb.fetch_val(query)})
            await asyncio.sleep(0.2)
            await tdb.fetch_val("SELECT 1")
        return attempts

    async with Database(db_url, min_size=0) as admin:
        assert await work(admin) == 2
    transactions = telemetry.transactions()
    summary = [
        (s.attributes["asyncdb.transaction.attempt"], s.attributes["asyncdb.transaction.outcome"])  # type: ignore[index]
        for s in transactions
    ]
    assert summary == [(1, "retry"), (2, "commit")]
    assert transactions[0].attributes["error.type"] == "asyncdb.DisconnectionError"  # type: ignore[index]
    assert transactions[0].status.status_code is StatusCode.ERROR
    assert await tdb.fetch_val("SELECT COUNT(*) FROM items") == 1


async def test_spans_follow_the_context_into_child_tasks(
    tdb: Database, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")

    async def child(n: int) -> int:
        with tracer.start_as_current_span(f"child-{n}"):
            return int(await tdb.fetch_val(f"SELECT {n}"))

    with tracer.start_as_current_span("request") as request:
        assert await asyncio.gather(*(child(n) for n in range(4))) == [0, 1, 2, 3]
        async with tdb.transaction():
            # a task created inside the transaction inherits its span as parent
            await asyncio.create_task(tdb.fetch_val("SELECT 7"))
    spans = telemetry.spans()
    by_id = {s.context.span_id: s for s in spans}
    for n in range(4):
        (mine,) = [
            s
            for s in telemetry.clients()
            if s.parent is not None and by_id[s.parent.span_id].name == f"child-{n}"
        ]
        parent = by_id[mine.parent.span_id]  # type: ignore[union-attr]
        assert parent.parent is not None
        assert parent.parent.span_id == request.get_span_context().span_id
    (select7,) = [s for s in telemetry.clients() if s.attributes["db.query.text"] == "SELECT 7"]  # type: ignore[index]
    assert by_id[select7.parent.span_id] in telemetry.transactions()  # type: ignore[union-attr]
    # after the transaction the task's current span is the request again
    transaction = by_id[select7.parent.span_id]  # type: ignore[union-attr]
    assert transaction.parent is not None
    assert transaction.parent.span_id == request.get_span_context().span_id


async def test_pool_metrics_count_connections_waiters_and_wait_time(
    db_url: str, telemetry: Telemetry
) -> None:
    db = Database(db_url, min_size=1, max_size=1, acquire_timeout=30)
    telemetry.instrument(db, pool_name="main-pool")
    async with db:
        await db.fetch_val("SELECT 1")
        pool = {"db.client.connection.pool.name": "main-pool"}
        points = telemetry.metrics()
        (maximum,) = points["db.client.connection.max"]
        assert maximum.value == 1 and dict(maximum.attributes) == pool
        counts = {
            p.attributes["db.client.connection.state"]: p.value
            for p in points["db.client.connection.count"]
        }
        assert counts == {"idle": 1, "used": 0}

        release = asyncio.Event()
        holding = asyncio.Event()

        async def hold() -> None:
            async with db.connection():
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        waiters = [asyncio.create_task(db.fetch_val("SELECT 2")) for _ in range(3)]
        for _ in range(200):
            if db.pool_stats()["waiting"] == 3:
                break
            await asyncio.sleep(0.01)
        points = telemetry.metrics()
        (pending,) = points["db.client.connection.pending_requests"]
        assert pending.value == 3
        counts = {
            p.attributes["db.client.connection.state"]: p.value
            for p in points["db.client.connection.count"]
        }
        assert counts == {"idle": 0, "used": 1}
        await asyncio.sleep(0.05)
        release.set()
        await holder
        assert await asyncio.gather(*waiters) == [2, 2, 2]
        points = telemetry.metrics()
        (wait,) = points["db.client.connection.wait_time"]
        assert wait.count >= 5  # every checkout: the holder's, the first query's, 3 waiters'
        assert wait.max >= 0.05  # the waiters waited at least as long as the holder slept
        (pending,) = points["db.client.connection.pending_requests"]
        assert pending.value == 0
        (created,) = points["db.client.connection.create_time"]
        assert created.count == 1 and created.sum > 0  # min_size=1: opened once, at connect

    # timeouts: a second database whose only connection is held
    short = Database(db_url, min_size=0, max_size=1, acquire_timeout=0.2)
    telemetry.instrument(short, pool_name="short-pool")
    async with short:
        async with short.connection() as held:
            await held.fetch_val("SELECT 1")
            with pytest.raises(PoolTimeout):
                await asyncio.create_task(short.fetch_val("SELECT 1"))
    points = telemetry.metrics()
    (timeouts,) = points["db.client.connection.timeouts"]
    assert timeouts.value == 1
    assert dict(timeouts.attributes) == {"db.client.connection.pool.name": "short-pool"}
    # disconnected databases report nothing
    assert "db.client.connection.max" not in points or not points["db.client.connection.max"]


async def test_operation_duration_histogram(
    tdb: Database, telemetry: Telemetry, backend: str
) -> None:
    for _ in range(3):
        await tdb.fetch_val("SELECT 1")
    await tdb.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
    points = telemetry.metrics()["db.client.operation.duration"]
    by_operation = {
        p.attributes["db.operation.name"]: p for p in points if "error.type" not in p.attributes
    }
    assert by_operation["SELECT"].count == 3
    assert by_operation["INSERT"].count == 1
    assert by_operation["SELECT"].sum > 0
    system = "mariadb" if backend == "mysql" else backend  # the test servers are MariaDB
    assert by_operation["SELECT"].attributes["db.system.name"] == system
    assert list(by_operation["SELECT"].explicit_bounds) == [
        0.001,
        0.005,
        0.01,
        0.05,
        0.1,
        0.5,
        1.0,
        5.0,
        10.0,
    ]


async def test_options_uninstrument_and_misuse(db_url: str, telemetry: Telemetry) -> None:
    db = Database(db_url)
    telemetry.instrument(db, statement_spans=False, query_text=False)
    with pytest.raises(InterfaceError, match="instrumented already"):
        telemetry.instrument(db)
    with pytest.raises(InterfaceError, match="takes an asyncdb Database"):
        instrument("sqlite:///x.db")  # type: ignore[arg-type]
    async with db:
        async with db.transaction():
            await db.fetch_val("SELECT 1")
        assert telemetry.clients() == []  # no statement spans ...
        (transaction,) = telemetry.spans()  # ... but the transaction's
        assert transaction.attributes["asyncdb.transaction.outcome"] == "commit"  # type: ignore[index]
        points = telemetry.metrics()["db.client.operation.duration"]  # ... and the metrics
        measured = sum(p.count for p in points)
        assert measured >= 3  # BEGIN, SELECT, COMMIT (cumulative from here on)
        uninstrument(db)
        uninstrument(db)  # twice is harmless
        telemetry.exporter.clear()
        await db.fetch_val("SELECT 1")
        async with db.transaction():
            pass
        assert telemetry.spans() == []
        points = telemetry.metrics()["db.client.operation.duration"]
        assert sum(p.count for p in points) == measured
        assert "db.client.connection.max" not in telemetry.metrics()  # no longer observed
    db2 = Database(db_url)
    telemetry.instrument(db2, query_text=False)
    async with db2:
        await db2.fetch_val("SELECT 1")
    (span,) = telemetry.clients()
    assert "db.query.text" not in (span.attributes or {})


@backends("postgresql", "mysql")
async def test_a_lost_connection_ends_its_span_with_the_classified_error(
    tdb: Database, telemetry: Telemetry, backend: str, db_url: str
) -> None:
    query = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
    kill = "SELECT pg_terminate_backend(:id)" if backend == "postgresql" else "KILL :id"
    async with Database(db_url, min_size=0) as admin:
        with pytest.raises(DisconnectionError):
            async with tdb.connection() as conn:
                await admin.execute(kill, {"id": await conn.fetch_val(query)})
                await asyncio.sleep(0.2)
                await conn.fetch_val("SELECT 1")
    failed = [s for s in telemetry.clients() if s.status.status_code is StatusCode.ERROR]
    assert [s.attributes["error.type"] for s in failed] == ["asyncdb.DisconnectionError"]  # type: ignore[index]


async def test_uninstrument_inside_a_transaction_still_ends_its_span(
    db_url: str, telemetry: Telemetry
) -> None:
    from opentelemetry import trace

    tracer = telemetry.tracer_provider.get_tracer("app")
    db = Database(db_url)
    telemetry.instrument(db)
    async with db:
        with tracer.start_as_current_span("request") as request:
            async with db.transaction():
                uninstrument(db)
                await db.fetch_val("SELECT 1")  # not traced any more
            # the transaction's span ended with it and is no longer current
            assert trace.get_current_span() is request
        (transaction,) = telemetry.transactions()
        assert transaction.attributes["asyncdb.transaction.outcome"] == "commit"  # type: ignore[index]
        (begin,) = telemetry.clients()  # sent before uninstrument(); SELECT and COMMIT after
        assert begin.attributes["db.operation.name"] in ("BEGIN", "START")  # type: ignore[index]
        assert len(telemetry.spans()) == 3
        # and once nothing is open, no hook of ours is left behind
        assert all(not callbacks for callbacks in db._hooks._callbacks.values())


@backends("postgresql")
async def test_an_iteration_failing_half_way_ends_its_span_with_the_error(
    tdb: Database, telemetry: Telemetry
) -> None:
    seen = 0
    with pytest.raises(DataError):  # division by zero at row 1500, in the second batch
        async for _row in tdb.iterate("SELECT 1 / (g - 1500) FROM generate_series(1, 3000) g"):
            seen += 1
    assert seen == 1000
    (span,) = telemetry.clients()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "asyncdb.DataError"  # type: ignore[index]
    assert span.attributes["db.response.status_code"] == "22012"  # type: ignore[index]
    assert "db.response.returned_rows" not in (span.attributes or {})


def test_a_clear_error_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "asyncdb.contrib.opentelemetry")
    with pytest.raises(ImportError, match=r"pip install 'asyncdb-layer\[opentelemetry\]'"):
        importlib.import_module("asyncdb.contrib.opentelemetry")


async def test_concurrent_tasks_never_share_a_transaction_span(
    tdb: Database, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")

    async def request(n: int) -> None:
        with tracer.start_as_current_span(f"request-{n}"):
            async with tdb.transaction():
                await tdb.fetch_val(f"SELECT {n}")
                await asyncio.sleep(0.01)  # let the other tasks' transactions interleave
                await tdb.fetch_val(f"SELECT {n + 100}")

    await asyncio.gather(*(request(n) for n in range(12)))
    by_id = {s.context.span_id: s for s in telemetry.spans()}
    for n in range(12):
        for sql in (f"SELECT {n}", f"SELECT {n + 100}"):
            (span,) = [s for s in telemetry.clients() if s.attributes["db.query.text"] == sql]  # type: ignore[index]
            transaction = by_id[span.parent.span_id]  # type: ignore[union-attr]
            assert transaction in telemetry.transactions()
            assert (
                transaction.attributes["asyncdb.connection.id"]
                == span.attributes["asyncdb.connection.id"]
            )  # type: ignore[index]
            assert by_id[transaction.parent.span_id].name == f"request-{n}"  # type: ignore[union-attr]


@backends("postgresql", "mysql")
async def test_a_cancelled_task_ends_its_statement_and_transaction_spans(
    tdb: Database, telemetry: Telemetry, backend: str
) -> None:
    sleep = "SELECT pg_sleep(30)" if backend == "postgresql" else "SELECT SLEEP(30)"
    started = asyncio.Event()

    async def work() -> None:
        async with tdb.transaction():
            started.set()
            await tdb.fetch_val(sleep)

    task = asyncio.create_task(work())
    await started.wait()
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (statement,) = [s for s in telemetry.clients() if s.attributes["db.query.text"] == sleep]  # type: ignore[index]
    assert statement.attributes["error.type"] == "asyncio.exceptions.CancelledError"  # type: ignore[index]
    (transaction,) = telemetry.transactions()
    assert transaction.attributes["asyncdb.transaction.outcome"] == "rollback"  # type: ignore[index]
    assert transaction.status.status_code is StatusCode.ERROR
    assert statement.parent is not None
    assert statement.parent.span_id == transaction.context.span_id
    assert await tdb.fetch_val("SELECT 1") == 1  # and the database goes on


@pytest.mark.mysql
async def test_a_routed_mariadb_cluster_is_named_mariadb(telemetry: Telemetry) -> None:
    """With replicas=, the hosts' own connections tell the server apart: a MariaDB primary
    and replica are `mariadb` on the spans, as a single MariaDB server is."""
    primary, replica = replication_urls()
    db = Database(primary, replicas=[replica])
    telemetry.instrument(db)
    async with db:
        await db.fetch_val("SELECT 1")
        await db.execute("DO 1")
    systems = {s.attributes["db.system.name"] for s in telemetry.clients()}  # type: ignore[index]
    assert systems == {"mariadb"}
