"""A Database connected in one event loop and used from another one.

Connections are bound to the loop that opened them: the second loop gets a clear
InterfaceError, nothing is sent on those connections, and the process still exits
(no SQLite worker thread left running, no socket left to a closed loop).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asyncdb import Database, InterfaceError

_MESSAGE = "connected in another event loop"


def test_second_loop_gets_a_clear_error(db_url: str) -> None:
    db = Database(db_url, min_size=2)
    asyncio.run(db.connect())
    assert db.pool_stats()["size"] == 2

    async def use() -> None:
        with pytest.raises(InterfaceError, match=_MESSAGE):
            await db.fetch_val("SELECT 1")
        # the connections of the first loop were dropped without being used
        assert db.pool_stats()["size"] == 0
        with pytest.raises(InterfaceError, match=_MESSAGE):
            await db.fetch_val("SELECT 1")
        # the way out: disconnect and connect again in this loop
        await db.disconnect()
        await db.connect()
        assert await db.fetch_val("SELECT 1") == 1
        await db.disconnect()

    asyncio.run(use())


def test_disconnect_from_second_loop(db_url: str) -> None:
    db = Database(db_url, min_size=2)
    asyncio.run(db.connect())
    asyncio.run(db.disconnect())  # closes without the first loop, raises nothing
    assert not db.is_connected


def test_process_exits_after_second_loop(db_url: str, tmp_path: Path) -> None:
    """Run the scenario in a fresh interpreter: it must exit (a live aiosqlite thread, a
    non-daemon thread, would keep it waiting forever)."""
    script = tmp_path / "second_loop.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys
            from asyncdb import Database, InterfaceError
            db = Database({db_url!r}, min_size=2)
            asyncio.run(db.connect())
            async def use():
                try:
                    await db.fetch_val("SELECT 1")
                except InterfaceError as exc:
                    print("refused:", exc)
            asyncio.run(use())
            """
        )
    )
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONWARNINGS="error")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and _MESSAGE in done.stdout
    assert "Traceback" not in done.stderr
