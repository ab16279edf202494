"""asyncdb finds a task's connection by the running task, read straight from asyncio's own
dict where asyncio keeps it there: it must be the task asyncio.current_task() names, in a
task, in a child task, and in an eagerly started one."""

from __future__ import annotations

import asyncio
import sys

import pytest

from asyncdb import _database


def running() -> asyncio.Task[object] | None:
    tasks = _database._TASKS
    if tasks is None:  # this Python keeps it elsewhere: asyncdb asks current_task()
        return asyncio.current_task()
    return tasks.get(asyncio.get_running_loop())


async def test_the_running_task_is_the_current_task() -> None:
    assert running() is asyncio.current_task() is not None

    async def child() -> bool:
        return running() is asyncio.current_task()

    assert await asyncio.create_task(child())
    assert running() is asyncio.current_task()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
async def test_an_eager_task_is_found_too() -> None:
    loop = asyncio.get_running_loop()

    async def child() -> bool:
        return running() is asyncio.current_task() is not None

    eager = asyncio.eager_task_factory(loop, child())  # type: ignore[attr-defined]
    assert await eager
