"""OpenTelemetry for asyncdb: a span per statement, a span per transaction, and the database
client metrics of OpenTelemetry's semantic conventions, on every backend.

```python
from asyncdb import Database
from asyncdb.contrib.opentelemetry import instrument

db = Database("postgresql://app@localhost/app")
instrument(db)            # the global tracer and meter providers, or pass your own
```

Built on asyncdb's hooks (`asyncdb._hooks`), so it sees exactly what asyncdb does: one span
per statement (an `iterate` span lasts the whole iteration), nested under the caller's current
span; a span per transaction or savepoint, with its outcome (commit, rollback, retry, unknown),
around the statements run inside it. The spans and metrics follow the database semantic
conventions: `db.system.name`, `db.namespace`, `db.operation.name`, `db.query.text` (the SQL as
sent, with placeholders: parameter values are never recorded), `server.address`,
`server.port`, `error.type`. Needs `opentelemetry-api` (`pip install
'asyncdb-layer[opentelemetry]'`); without an SDK configured everything is a no-op.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "asyncdb.contrib.opentelemetry needs opentelemetry-api: "
        "pip install 'asyncdb-layer[opentelemetry]'"
    ) from exc

from .._database import Database
from .._exceptions import InterfaceError, PoolTimeout
from .._statements import first_keyword
from .._url import DEFAULT_PORTS

__all__ = ["instrument", "uninstrument"]

_SCOPE = "asyncdb.contrib.opentelemetry"
_Token = contextvars.Token[otel_context.Context]
# The semantic conventions' advice for db.client.operation.duration (seconds).
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_FETCHES = frozenset({"fetch_all", "fetch_one", "fetch_val", "iterate"})

_instrumented: weakref.WeakKeyDictionary[Database, _Instrumentation] = weakref.WeakKeyDictionary()
_metrics_by_provider: weakref.WeakKeyDictionary[metrics.MeterProvider, _Metrics] = (
    weakref.WeakKeyDictionary()
)


def instrument(
    db: Database,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    statement_spans: bool = True,
    transaction_spans: bool = True,
    query_text: bool = True,
    pool_name: str | None = None,
) -> None:
    """Trace and measure everything `db` does from now on (connected or not yet).

    `statement_spans=False` keeps the transaction spans and all metrics but makes no span per
    statement: for an application that already traces its driver (for instance with
    opentelemetry-instrumentation-asyncpg), so each statement is traced once.
    `query_text=False` leaves `db.query.text` out (the SQL is recorded with its placeholders,
    never with parameter values, but SQL built by hand may contain literals).
    `pool_name` is `db.client.connection.pool.name` on the pool metrics (default:
    host:port/database, or the SQLite path). Instrumenting twice is an error; call
    `uninstrument(db)` first.
    """
    if not isinstance(db, Database):
        raise InterfaceError(f"instrument() takes an asyncdb Database, got {db!r}")
    if db in _instrumented:
        raise InterfaceError(f"{db!r} is instrumented already; uninstrument() it first")
    meter_provider = meter_provider or metrics.get_meter_provider()
    instrumentation = _Instrumentation(
        db,
        tracer=trace.get_tracer(_SCOPE, _version(), tracer_provider),
        metrics=_Metrics.of(meter_provider),
        statement_spans=statement_spans,
        transaction_spans=transaction_spans,
        query_text=query_text,
        pool_name=pool_name,
    )
    instrumentation.attach()
    _instrumented[db] = instrumentation


def uninstrument(db: Database) -> None:
    """Stop tracing and measuring `db`. Spans already open (a transaction, an iteration)
    still end when it does, so no task is left with a span current forever."""
    instrumentation = _instrumented.pop(db, None)
    if instrumentation is not None:
        instrumentation.detach()


def _version() -> str | None:
    try:
        return metadata.version("asyncdb-layer")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return None


def _error_type(error: BaseException) -> str:
    """`error.type`: asyncdb's exception class (its classification of the failure)."""
    cls = type(error)
    module = cls.__module__
    if module.startswith("asyncdb"):
        return f"asyncdb.{cls.__qualname__}"
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


class _Metrics:
    """The instruments of one meter provider, shared by every Database measured with it
    (creating an instrument twice on one meter is refused by the SDK)."""

    def __init__(self, provider: metrics.MeterProvider) -> None:
        meter = metrics.get_meter(_SCOPE, _version() or "", provider)
        self.members: weakref.WeakSet[_Instrumentation] = weakref.WeakSet()
        self.duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.returned_rows = meter.create_histogram(
            "db.client.response.returned_rows",
            unit="{row}",
            description="The number of rows returned by the operation.",
        )
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="The time it took to obtain an open connection from the pool.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.create_time = meter.create_histogram(
            "db.client.connection.create_time",
            unit="s",
            description="The time it took to create a new connection.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            unit="{timeout}",
            description="The number of connection timeouts that have occurred trying to "
            "obtain a connection from the pool.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[self._count],
            unit="{connection}",
            description="The number of connections that are currently in the state described "
            "by the state attribute.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            callbacks=[self._max],
            unit="{connection}",
            description="The maximum number of open connections allowed.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            callbacks=[self._pending],
            unit="{request}",
            description="The number of current pending requests for an open connection.",
        )

    @classmethod
    def of(cls, provider: metrics.MeterProvider) -> _Metrics:
        try:
            return _metrics_by_provider[provider]
        except KeyError:
            created = _metrics_by_provider[provider] = cls(provider)
            return created

    def _pools(self) -> Iterator[tuple[dict[str, Any], dict[str, int]]]:
        # Called from the metric reader's thread, maybe: copy the set before reading it.
        try:
            members = list(self.members)
        except RuntimeError:  # changed size while copied
            return
        for member in members:
            stats = member.stats()
            if stats is not None:
                yield {"db.client.connection.pool.name": member.pool_name}, stats

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, stats in self._pools():
            yield Observation(stats["idle"], {**attributes, "db.client.connection.state": "idle"})
            yield Observation(stats["in_use"], {**attributes, "db.client.connection.state": "used"})

    def _max(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, stats in self._pools():
            yield Observation(stats["max_size"], attributes)

    def _pending(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, stats in self._pools():
            yield Observation(stats["waiting"], attributes)


class _Instrumentation:
    """The hooks that turn one Database's events into spans and measurements."""

    def __init__(
        self,
        db: Database,
        *,
        tracer: trace.Tracer,
        metrics: _Metrics,
        statement_spans: bool,
        transaction_spans: bool,
        query_text: bool,
        pool_name: str | None,
    ) -> None:
        self._db = weakref.ref(db)
        self._tracer, self._metrics = tracer, metrics
        self._statement_spans, self._transaction_spans = statement_spans, transaction_spans
        self._query_text = query_text
        url, system = db.url, _system(db)
        self._namespace = url.database or None
        base: dict[str, Any] = {"db.system.name": system}
        if self._namespace:
            base["db.namespace"] = self._namespace
        address = url.hostname if system != "sqlite" else None
        if address:
            base["server.address"] = address
            base["server.port"] = url.port or DEFAULT_PORTS.get(system)
        self._base = base
        where = f"{address}:{base['server.port']}/" if address else ""
        self.pool_name = pool_name or f"{where}{self._namespace or system}"
        self._active = True  # False after uninstrument(): only open spans are ended
        self._queries: dict[int, trace.Span] = {}
        self._transactions: dict[int, tuple[trace.Span, _Token, asyncio.Task[Any] | None]] = {}
        self._hooks = {
            "query_start": self._query_start,
            "query_end": self._query_end,
            "acquire": self._acquire,
            "connect": self._connect,
            "transaction_start": self._transaction_start,
            "transaction_end": self._transaction_end,
        }

    def attach(self) -> None:
        db = self._db()
        assert db is not None
        for event, hook in self._hooks.items():
            db.add_hook(event, hook)
        self._metrics.members.add(self)

    def detach(self) -> None:
        self._active = False
        self._metrics.members.discard(self)
        db = self._db()
        if db is not None:
            for event in ("query_start", "acquire", "connect", "transaction_start"):
                db.remove_hook(event, self._hooks[event])
        self._finish()

    def _finish(self) -> None:
        """Once detached, keep the end hooks only until the spans still open have ended."""
        db = self._db()
        if self._active or self._queries or self._transactions or db is None:
            return
        for event in ("query_end", "transaction_end"):
            db.remove_hook(event, self._hooks[event])

    def stats(self) -> dict[str, int] | None:
        db = self._db()
        if db is None or not db.is_connected:
            return None
        try:
            return db.pool_stats()
        except Exception:  # disconnected meanwhile, or read from the exporter's thread mid-change
            return None

    def _name(self, operation: str) -> str:
        """`{db.operation.name} {db.namespace}`, as the conventions name client spans."""
        target = self._namespace or str(self._base["db.system.name"])
        return f"{operation} {target}" if operation else target

    # -- statements --------------------------------------------------------------------------

    def _query_start(self, event: str, details: dict[str, Any]) -> None:
        if not self._statement_spans:
            return
        sql: str = details["sql"]
        operation = first_keyword(sql)
        attributes = dict(self._base)
        if operation:
            attributes["db.operation.name"] = operation
        if self._query_text:
            attributes["db.query.text"] = sql
        attributes["asyncdb.operation"] = details["operation"]
        if details["connection_id"] is not None:
            attributes["asyncdb.connection.id"] = details["connection_id"]
        attributes["asyncdb.transaction.depth"] = details["transaction_depth"]
        span = self._tracer.start_span(
            self._name(operation), kind=SpanKind.CLIENT, attributes=attributes
        )
        self._queries[details["query_id"]] = span

    def _query_end(self, event: str, details: dict[str, Any]) -> None:
        error: BaseException | None = details["error"]
        rows: int | None = details["rowcount"]
        fetch = details["operation"] in _FETCHES
        if self._active:
            operation = first_keyword(details["sql"])
            attributes = dict(self._base)
            if operation:
                attributes["db.operation.name"] = operation
            if error is not None:
                attributes["error.type"] = _error_type(error)
            self._metrics.duration.record(details["duration"], attributes)
            if rows is not None and fetch:
                self._metrics.returned_rows.record(rows, attributes)
        span = self._queries.pop(details["query_id"], None)
        if span is not None:
            if rows is not None:
                name = "db.response.returned_rows" if fetch else "asyncdb.rowcount"
                span.set_attribute(name, rows)
            _end_span(span, error)
        if not self._active:
            self._finish()

    # -- transactions ------------------------------------------------------------------------

    def _transaction_start(self, event: str, details: dict[str, Any]) -> None:
        if not self._transaction_spans:
            return
        attributes = dict(self._base)
        attributes["asyncdb.transaction.attempt"] = details["attempt"]
        span = self._tracer.start_span(
            self._name("TRANSACTION"), kind=SpanKind.INTERNAL, attributes=attributes
        )
        # Current while the transaction is open: its statements become its children. The
        # hook runs in the task that opened the transaction, so this sets that task's context.
        token = otel_context.attach(trace.set_span_in_context(span))
        task = asyncio.current_task()
        self._transactions[details["transaction_id"]] = (span, token, task)

    def _transaction_end(self, event: str, details: dict[str, Any]) -> None:
        entry = self._transactions.pop(details["transaction_id"], None)
        if entry is None:
            return  # started before instrument(), or with transaction spans off
        span, token, task = entry
        # Ended by another task (a manual transaction handed over): that task's context never
        # had our span, and the opener's context cannot be changed from here.
        if asyncio.current_task() is task:
            otel_context.detach(token)
        depth: int | None = details["depth"]
        if depth is not None and depth > 1:
            span.update_name(self._name("SAVEPOINT"))
        if depth is not None:
            span.set_attribute("asyncdb.transaction.depth", depth)
        if details["connection_id"] is not None:
            span.set_attribute("asyncdb.connection.id", details["connection_id"])
        span.set_attribute("asyncdb.transaction.outcome", details["outcome"])
        _end_span(span, details["error"])
        if not self._active:
            self._finish()

    # -- the pool ----------------------------------------------------------------------------

    def _acquire(self, event: str, details: dict[str, Any]) -> None:
        attributes = {"db.client.connection.pool.name": self.pool_name}
        self._metrics.wait_time.record(details["wait"], attributes)
        if isinstance(details["error"], PoolTimeout):
            self._metrics.timeouts.add(1, attributes)

    def _connect(self, event: str, details: dict[str, Any]) -> None:
        db = self._db()
        if db is not None:  # MariaDB or MySQL is known once a server has answered
            self._base["db.system.name"] = _system(db)
        attributes = {"db.client.connection.pool.name": self.pool_name}
        self._metrics.create_time.record(details["duration"], attributes)


def _system(db: Database) -> str:
    """`db.system.name`: the backend's name, except "mariadb" for a MariaDB server (the
    conventions name them apart; the server tells which at connect)."""
    # Routed (replicas=), each host has its own backend and only those ever connect.
    router = db._router
    backends = [node.backend for node in router.nodes] if router is not None else [db._backend]
    engines = {getattr(backend, "engine", None) for backend in backends}
    return "mariadb" if "mariadb" in engines else db.backend_name


def _end_span(span: trace.Span, error: BaseException | None) -> None:
    if error is not None:
        span.set_attribute("error.type", _error_type(error))
        # MySQL: its error number; PostgreSQL: the SQLSTATE (as the conventions ask)
        code = getattr(error, "code", None) or getattr(error, "sqlstate", None)
        if code is not None:
            span.set_attribute("db.response.status_code", str(code))
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()
