"""Exponential back-off with jitter, bounded by attempts or by a deadline."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

__all__ = ["Backoff", "Retry"]


@dataclass(frozen=True, slots=True)
class Retry:
    """How `@db.transaction(retry=...)` re-runs a function after a conflict or a disconnect.

    `attempts` counts the first run; delays grow from `initial` by `factor` up to `maximum`,
    each with ±`jitter` (a fraction) so that competing tasks do not retry in lockstep.
    """

    attempts: int = 3
    initial: float = 0.05
    factor: float = 2.0
    maximum: float = 2.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Retry.attempts must be at least 1, got {self.attempts}")

    def delay(self, attempt: int) -> float:
        """The pause before attempt number `attempt + 1` (attempt counts from 1)."""
        base = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


class Backoff:
    """Delays for reconnecting until a deadline (`None` once it has passed)."""

    def __init__(self, timeout: float, policy: Retry | None = None) -> None:
        self._deadline = time.monotonic() + timeout
        self._policy = policy or Retry(attempts=1, initial=0.1, maximum=5.0, jitter=0.1)
        self._attempt = 0

    def next_delay(self) -> float | None:
        self._attempt += 1
        left = self._deadline - time.monotonic()
        if left <= 0:
            return None
        return min(left, self._policy.delay(self._attempt))
