"""A short chaos soak on every backend (tests/soak/run.py; the long one is `nox -s soak`):
30 tasks transfer money for about 8 s while server kills, query cancels, task
cancellations and TCP cuts (some right after COMMIT is sent) land about three times a
second; then the invariants are checked: sum unchanged, balances reconcile with the ledger
(every transfer applied exactly once), only asyncdb exceptions reached the workers, no
connection checked out, no session left on the server.

The seed is fixed so a failure replays (`ASYNCDB_SOAK_SEED` overrides it); retry budgets
are generous and nothing is timed, so a loaded machine only makes fewer transfers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.soak

from tests.soak.run import soak

SEED = int(os.environ.get("ASYNCDB_SOAK_SEED", "20261126"))


async def test_soak_keeps_every_invariant(backend: str, db_url: str) -> None:
    result = await soak(backend, db_url, duration=8.0, tasks=30, accounts=20, seed=SEED)
    print(result.table())
    assert result.ok, f"soak on {backend}, seed {SEED}:\n{result.table()}"
    assert result.committed > 0, result.table()  # the workload really ran
    faults = sum(result.faults.values())
    assert faults > 0, result.table()  # and was really attacked
