"""LISTEN/NOTIFY on a real PostgreSQL: the round trip, a listener that survives its
connection being killed and says it may have missed notifications, a listener that leaves
nothing behind however its loop is left, and NOTIFY's transactional delivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import backends
from proxy import TcpProxy

from asyncdb import (
    Database,
    DatabaseURL,
    DataError,
    DisconnectionError,
    InterfaceError,
    Listener,
    Notification,
    ProgrammingError,
    Rollback,
)

pytestmark = pytest.mark.timeout(120)
WAIT = 20.0  # generous: the machine is shared; nothing here asserts speed


@pytest.fixture
async def admin(db_url: str) -> AsyncIterator[Database]:
    async with Database(db_url, max_size=2) as database:
        yield database


async def listening_pids(admin: Database, channel: str) -> list[int]:
    """Backends whose last statement was our LISTEN on `channel` (asyncpg quotes the name)."""
    rows = await admin.fetch_all(
        "SELECT pid FROM pg_stat_activity WHERE query = :q AND pid <> pg_backend_pid()",
        {"q": f'LISTEN "{channel}"'},
    )
    return [row["pid"] for row in rows]


async def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def collect(listener: Listener, into: list[Notification]) -> None:
    async for note in listener:
        into.append(note)


async def until(notes: list[Notification], n: int) -> None:
    async def enough() -> bool:
        return len(notes) >= n

    await wait_for(enough, f"{n} notifications (got {notes})")


@backends("postgresql")
async def test_notify_listen_round_trip(db: Database) -> None:
    notifier_pid = await db.fetch_val("SELECT pg_backend_pid()")
    async with db.listen("orders", 'Odd "Name"') as notes:
        await db.notify("orders", "42")
        await db.notify('Odd "Name"')  # exact, case-sensitive name; no payload
        await db.notify("ORDERS", "not ours")  # another channel
        await db.notify("orders", "43")
        got = [await asyncio.wait_for(anext(notes), WAIT) for _ in range(3)]
    assert got == [
        Notification("orders", "42", notifier_pid),
        Notification('Odd "Name"', "", notifier_pid),
        Notification("orders", "43", notifier_pid),
    ]
    assert not any(note.missed for note in got)


@backends("postgresql")
async def test_listener_uses_its_own_connection_with_on_connect(
    db_url: str, admin: Database
) -> None:
    opened: list[Any] = []

    async def on_connect(raw: Any) -> None:
        opened.append(raw)
        await raw.execute("SET application_name = 'asyncdb-listen-test'")

    async with Database(db_url, min_size=1, max_size=1, on_connect=on_connect) as db:
        stats = db.pool_stats()
        async with db.listen("own") as notes:
            assert len(opened) == 2  # the pool's connection, then the listener's own
            assert db.pool_stats()["size"] == stats["size"] == 1
            assert db.pool_stats()["in_use"] == 0  # no pool slot held while listening
            [pid] = await listening_pids(admin, "own")
            name = await admin.fetch_val(
                "SELECT application_name FROM pg_stat_activity WHERE pid = :p", {"p": pid}
            )
            assert name == "asyncdb-listen-test"
            assert pid != await db.fetch_val("SELECT pg_backend_pid()")  # not the pooled one
            await db.notify("own", "x")
            assert (await asyncio.wait_for(anext(notes), WAIT)).payload == "x"
        # and the pooled connection never ran LISTEN: nothing to undo on it
        assert await db.fetch_val("SELECT count(*) FROM pg_listening_channels()") == 0


@backends("postgresql")
async def test_listener_survives_terminate_and_reports_possible_misses(
    db: Database, admin: Database
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    for event in ("connect", "disconnect_detected"):
        db.add_hook(event, lambda event, details: events.append((event, details)))
    listener = db.listen("jobs", "other", reconnect_timeout=60)
    notes: list[Notification] = []
    consumer = asyncio.create_task(collect(listener, notes))
    try:

        async def listening() -> bool:
            return len(await listening_pids(admin, "other")) == 1

        await wait_for(listening, "the listener's LISTEN")
        await db.notify("jobs", "before")
        await until(notes, 1)
        [first_pid] = await listening_pids(admin, "other")
        assert await admin.fetch_val("SELECT pg_terminate_backend(:p)", {"p": first_pid})
        await db.notify("jobs", "while down")  # may be lost: that is what `missed` says
        await until(notes, 3)  # the two `missed` notices, one per channel
        missed = [n for n in notes[1:] if n.missed]
        assert {n.channel for n in missed} == {"jobs", "other"}
        assert all(n.payload == "" and n.pid == 0 for n in missed)

        async def relistening() -> bool:
            pids = await listening_pids(admin, "other")
            return bool(pids) and pids != [first_pid]

        await wait_for(relistening, "the listener's new LISTEN")
        count = len(notes)
        await db.notify("jobs", "after")
        await until(notes, count + 1)
        assert notes[-1].payload == "after" and not notes[-1].missed
        assert listener.reconnects == 1
        # the hooks saw the listener connect, lose its connection, and connect again
        mine = [(e, d) for e, d in events if e != "connect" or d["pool"].endswith(" listener")]
        assert [e for e, _ in mine] == ["connect", "disconnect_detected", "connect"]
        assert all(d["connection_id"] is None for e, d in mine if e == "connect")
        assert isinstance(mine[1][1]["error"], DisconnectionError)
        assert "jobs, other" in str(mine[1][1]["error"])
        # the `missed` notices came before anything received on the new connection
        last_missed = max(i for i, n in enumerate(notes) if n.missed)
        assert notes.index(notes[-1]) > last_missed
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


@backends("postgresql")
@pytest.mark.parametrize("leave", ["break", "raise", "cancel", "async-with"])
async def test_leaving_the_loop_closes_the_listener_connection(
    db: Database, admin: Database, leave: str
) -> None:
    channel = f"leave_{leave.replace('-', '_')}"

    async def listening() -> bool:
        return len(await listening_pids(admin, channel)) == 1

    async def consume() -> None:
        if leave == "async-with":
            async with db.listen(channel) as notes:
                await anext(notes)
            return
        async for _note in db.listen(channel):
            if leave == "break":
                break
            if leave == "raise":
                raise KeyError("the loop body failed")
            await asyncio.sleep(3600)  # "cancel": cancelled while busy in the loop

    task = asyncio.create_task(consume())
    await wait_for(listening, "the listener's LISTEN")
    await db.notify(channel, "go")
    if leave == "cancel":
        await asyncio.sleep(0.2)
        task.cancel()
    result = await asyncio.gather(task, return_exceptions=True)
    if leave == "raise":
        assert isinstance(result[0], KeyError)

    async def gone() -> bool:
        return not await listening_pids(admin, channel)

    await wait_for(gone, "the listener's session to end")


@backends("postgresql")
async def test_cancelling_a_waiting_listener_closes_it(db: Database, admin: Database) -> None:
    listener = db.listen("idle_cancel")
    task = asyncio.create_task(anext(listener))

    async def listening() -> bool:
        return len(await listening_pids(admin, "idle_cancel")) == 1

    await wait_for(listening, "the listener's LISTEN")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    async def gone() -> bool:
        return not await listening_pids(admin, "idle_cancel")

    await wait_for(gone, "the listener's session to end")
    assert "closed" in repr(listener)
    with pytest.raises(StopAsyncIteration):
        await anext(listener)


@backends("postgresql")
async def test_notify_in_a_transaction_is_delivered_at_commit_only(db: Database) -> None:
    notes: list[Notification] = []
    async with db.listen("tx") as listener:
        consumer = asyncio.create_task(collect(listener, notes))
        try:
            async with db.transaction():
                await db.notify("tx", "committed")
                await asyncio.sleep(0.5)
                assert notes == []  # nothing before COMMIT
            await until(notes, 1)
            assert [n.payload for n in notes] == ["committed"]

            async with db.transaction():
                await db.notify("tx", "rolled back")
                raise Rollback
            await db.notify("tx", "marker")  # outside a transaction: at once
            await until(notes, 2)
            assert [n.payload for n in notes] == ["committed", "marker"]
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


@backends("postgresql")
async def test_disconnect_ends_the_listening_loop(db_url: str, admin: Database) -> None:
    db = Database(db_url)
    await db.connect()
    notes: list[Notification] = []
    consumer = asyncio.create_task(collect(db.listen("bye"), notes))

    async def listening() -> bool:
        return len(await listening_pids(admin, "bye")) == 1

    await wait_for(listening, "the listener's LISTEN")
    await db.disconnect()
    await asyncio.wait_for(consumer, WAIT)  # the loop ended, without an error

    async def gone() -> bool:
        return not await listening_pids(admin, "bye")

    await wait_for(gone, "the listener's session to end")


@backends("postgresql")
async def test_listener_reconnects_through_a_cut_line_then_gives_up(db_url: str) -> None:
    url = DatabaseURL(db_url)
    proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 0).start()
    try:
        async with Database(url.replace(port=proxy.port), ssl=False) as db:
            async with db.listen("cut", reconnect_timeout=2, ping_interval=0.5) as notes:
                await db.notify("cut", "1")
                assert (await asyncio.wait_for(anext(notes), WAIT)).payload == "1"
                proxy.cut()  # the line dies; the proxy still accepts: reconnecting works
                note = await asyncio.wait_for(anext(notes), WAIT)
                assert note == Notification("cut", "", 0, missed=True)
                await db.notify("cut", "2")
                assert (await asyncio.wait_for(anext(notes), WAIT)).payload == "2"
                await proxy.close()  # now nothing answers: back-off, then give up
                with pytest.raises(DisconnectionError, match="could not reconnect"):
                    await asyncio.wait_for(anext(notes), WAIT)
                assert "closed" in repr(notes)
    finally:
        await proxy.close()


@backends("postgresql")
async def test_bad_channel_and_payload_are_refused(db: Database) -> None:
    with pytest.raises(ProgrammingError, match="at least one channel"):
        db.listen()
    with pytest.raises(ProgrammingError, match="channel name"):
        db.listen("")
    with pytest.raises(ProgrammingError, match="longer than 63 bytes"):
        db.listen("x" * 64)
    with pytest.raises(ProgrammingError, match="channel name"):
        await db.notify(3)  # type: ignore[arg-type]
    with pytest.raises(ProgrammingError, match="payload is a str"):
        await db.notify("a", {"id": 1})  # type: ignore[arg-type]
    with pytest.raises(ProgrammingError, match="reconnect_timeout"):
        db.listen("a", reconnect_timeout=-1)
    with pytest.raises(DataError, match="payload string too long"):  # the server's limit
        await db.notify("a", "x" * 9000)


@backends("mysql", "sqlite")
async def test_other_backends_refuse_listen_and_notify(db: Database, backend: str) -> None:
    with pytest.raises(InterfaceError, match=f"LISTEN/NOTIFY needs PostgreSQL.*{backend}"):
        db.listen("a")
    with pytest.raises(InterfaceError, match=f"LISTEN/NOTIFY needs PostgreSQL.*{backend}"):
        await db.notify("a", "b")


@backends("postgresql")
async def test_disconnect_ends_a_listener_that_waits_to_reconnect(db_url: str) -> None:
    url = DatabaseURL(db_url)
    proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 0).start()
    try:
        db = Database(url.replace(port=proxy.port), ssl=False)
        await db.connect()
        async with db.listen("retry", reconnect_timeout=None) as listener:  # retries forever
            notes: list[Notification] = []
            consumer = asyncio.create_task(collect(listener, notes))
            await db.notify("retry", "1")
            await until(notes, 1)
            await proxy.close()  # nothing answers any more: the listener backs off, retries
            await asyncio.sleep(1)
            assert not consumer.done()
            await db.disconnect()
            await asyncio.wait_for(consumer, WAIT)  # the loop ended, without an error
            assert "closed" in repr(listener)
    finally:
        await proxy.close()
