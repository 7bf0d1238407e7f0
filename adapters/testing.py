"""A recording port for tests: it records every call, has each idempotency key's effect once,
and can be told to fail.

    port = RecordingPort()
    port.fail("book_follow_up", times=2)     # every book_follow_up fails twice, then works
    port.fail("i-3f2a9c0d1e2f3a4b.7")        # this action always fails
    ...
    port.effects["i-3f2a9c0d1e2f3a4b.2"]     # the action as first carried out
    port.calls.count("i-3f2a9c0d1e2f3a4b.2") # attempts, including repeats and failures

A second call with a key that already had its effect returns the first reference and records
no second effect: the double behaves as every real port must (idempotent by key), and
`effect_counts` (effects per action id, whatever key came with them) proves that a re-run
had no second effect.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import AdapterError


@dataclass
class _Failure:
    times: int | None  # None: always
    error: str
    seen: Counter[str]


class RecordingPort:
    def __init__(self, name: str = "recorded") -> None:
        self.name = name
        self.calls: list[str] = []  # the idempotency key of every call, in order
        self.effects: dict[str, dict[str, Any]] = {}  # key -> the action, first effect only
        self.references: dict[str, str] = {}
        #: effects per action id: above 1 if one action was carried out under two keys
        self.effect_counts: Counter[str] = Counter()
        self._failures: dict[str, _Failure] = {}
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()

    def fail(self, match: str, times: int | None = None, error: str = "unavailable") -> None:
        """Make actions fail: `match` is an action type or an action id (the key). `times`
        failures per key before it works; None: always."""
        self._failures[match] = _Failure(times, error, Counter())

    def delay(self, match: str, seconds: float) -> None:
        """Make every attempt for `match` (type or key) take `seconds` (to exercise timeouts)."""
        self._delays[match] = seconds

    def carry_out(self, action: Mapping[str, Any], idempotency_key: str) -> str | None:
        kind = str(action["action"])
        pause = self._delays.get(idempotency_key, self._delays.get(kind, 0.0))
        if pause:
            time.sleep(pause)
        with self._lock:
            self.calls.append(idempotency_key)
            if idempotency_key in self.references:
                return self.references[idempotency_key]
            failure = self._failures.get(idempotency_key) or self._failures.get(kind)
            if failure is not None:
                failure.seen[idempotency_key] += 1
                if failure.times is None or failure.seen[idempotency_key] <= failure.times:
                    raise AdapterError(
                        f"{kind} for {idempotency_key}: {failure.error} "
                        f"(attempt {failure.seen[idempotency_key]})"
                    )
            reference = f"{self.name}-{len(self.references) + 1}"
            self.references[idempotency_key] = reference
            self.effects[idempotency_key] = dict(action)
            self.effect_counts[str(action.get("id", idempotency_key))] += 1
            return reference

    def attempts(self, idempotency_key: str) -> int:
        with self._lock:
            return self.calls.count(idempotency_key)
