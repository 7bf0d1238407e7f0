"""RuleBook: a pathway version's conditions, compiled into one durable-rules ruleset.

    book = RuleBook(name="chf-post-discharge@1", rules=[RuleSpec("weight_gain_24h",
                    "observation.weight", condition), ...])
    book.evaluate("observation.weight", {"weight_gain_24h_kg": 1.0})  # -> ("weight_gain_24h",)

`evaluate` answers the ids of the rules for that event type whose condition holds, in
declaration order, exactly as `engine.definition.conditions.evaluate` would. It keeps nothing
between calls (no per-patient session), so one book serves every instance of its pathway.
Calls are serialised by a lock; each takes a few tens of microseconds.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any as AnyType

from engine.definition.conditions import Condition
from rules.compiler import Program, compile_book
from rules.encoding import UnsupportedFact
from rules.errors import FactError, RuleEngineError
from rules.host import RuleHost


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One condition to evaluate on messages of one event type."""

    id: str
    event_type: str
    condition: Condition


class RuleBook:
    """The rules of one pathway version, evaluated by durable-rules."""

    def __init__(self, name: str, rules: Iterable[RuleSpec]) -> None:
        self.name = name
        self.rules: tuple[RuleSpec, ...] = tuple(rules)
        self._program: Program = compile_book(name, self.rules)
        self._owners = {
            name: tuple(self.rules[i].id for i in indices)
            for name, indices in self._program.owners.items()
        }
        self._order = {spec.id: i for i, spec in enumerate(self.rules)}
        self._lock = threading.Lock()
        self._next_id = 0
        self._host, self._release = self._new_host()

    @property
    def ruleset(self) -> dict[str, AnyType]:
        """The durable-rules ruleset this book registered (JSON-able; for inspection)."""
        return copy.deepcopy(self._program.ruleset)

    def evaluate(self, event_type: str, facts: Mapping[str, object]) -> tuple[str, ...]:
        """Ids of the rules for `event_type` whose condition holds, in declaration order."""
        encoder = self._program.encoders.get(event_type)
        if encoder is None:
            return ()
        with self._lock:
            self._next_id += 1
            try:
                message = encoder.encode(facts, self._next_id)
            except UnsupportedFact as exc:
                raise FactError(
                    str(exc), ruleset=self.name, event_type=event_type, fact=exc.fact
                ) from None
            if self._host.broken:  # a failure left durable-rules' state unknown: start afresh
                self._release()
                self._host, self._release = self._new_host()
            fired = self._host.match(message, event_type)
        if not fired:
            return ()
        try:
            ids = {rule_id for name in set(fired) for rule_id in self._owners[name]}
        except KeyError as exc:
            raise RuleEngineError(
                f"durable-rules fired unknown rule {exc}", ruleset=self.name, event_type=event_type
            ) from None
        return tuple(sorted(ids, key=self._order.__getitem__))

    def close(self) -> None:
        """Free durable-rules' memory for this book now (also done when it is collected)."""
        with self._lock:
            self._release()

    def _new_host(self) -> tuple[RuleHost, weakref.finalize[[], RuleBook]]:
        host = RuleHost(self._program.ruleset, book=self.name)
        return host, weakref.finalize(self, host.close)

    def __repr__(self) -> str:
        return f"RuleBook(name={self.name!r}, rules={len(self.rules)})"
