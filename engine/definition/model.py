"""A loaded pathway: every name resolved, every duration parsed, every condition a tree.

The decision core reads only these frozen objects. They are built by `engine.definition.loader`
from a file that passed every check, so code that reads them need not re-check anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from engine.catalogue.execution import ExecutionPolicy, default_execution
from engine.definition.conditions import TRUE, Condition, Scalar
from engine.durations import Duration


class Anchor(StrEnum):
    """What a relative time counts from."""

    EVENT = "event"  # the occurred_at of the input being handled
    ENROLMENT = "enrolment"  # the occurred_at of the enrolling event (D)


@dataclass(frozen=True, slots=True)
class Offset:
    duration: Duration
    anchor: Anchor


@dataclass(frozen=True, slots=True)
class Due:
    """When an action is due: one offset, or the later (or earlier) of several."""

    offsets: tuple[Offset, ...]
    pick_later: bool = True


@dataclass(frozen=True, slots=True)
class ActionTemplate:
    type: str
    params: Mapping[str, Scalar]
    due: Due | None = None
    only_if: Condition = TRUE
    location: str = ""


@dataclass(frozen=True, slots=True)
class Window:
    """A windowed fact a condition needs: e.g. weight_gain over 24h -> fact 'weight_gain_86400s'."""

    fact: str  # the fact in the message
    base: str  # the catalogue fact (weight_gain)
    seconds: int


@dataclass(frozen=True, slots=True)
class Trigger:
    id: str
    event_type: str
    condition: Condition
    exclusion: Condition | None
    actions: tuple[ActionTemplate, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    event_type: str
    condition: Condition
    actions: tuple[ActionTemplate, ...]
    windows: tuple[Window, ...] = ()
    max_age: Duration | None = None
    if_stale: tuple[ActionTemplate, ...] = ()
    cancels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MissingDataRule:
    """No `event_type` for `silence`, counted from enrolment, then from the latest such event."""

    id: str
    event_type: str
    silence: Duration
    actions: tuple[ActionTemplate, ...]


class DeadlineStart(StrEnum):
    ENROLMENT = "enrolment"
    EVENT = "event"
    ACTION = "action"


@dataclass(frozen=True, slots=True)
class Deadline:
    id: str
    start: DeadlineStart
    after: Duration | None
    cancel_event: str
    cancel_condition: Condition
    actions: tuple[ActionTemplate, ...]
    start_event: str | None = None  # DeadlineStart.EVENT
    start_condition: Condition = TRUE
    start_action: str | None = None  # DeadlineStart.ACTION: armed at that action's due time


@dataclass(frozen=True, slots=True)
class Level:
    role: str
    acknowledge_within: Duration | None  # None only on the final level


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    levels: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class Exit:
    reason: str
    event_type: str | None
    condition: Condition
    after: Duration | None
    actions: tuple[ActionTemplate, ...]


@dataclass(frozen=True, slots=True)
class Pathway:
    id: str
    version: str
    title: str
    description: str
    owner: str
    parameters: Mapping[str, object]
    triggers: tuple[Trigger, ...]
    rules: tuple[Rule, ...]
    missing_data: tuple[MissingDataRule, ...]
    deadlines: tuple[Deadline, ...]
    chains: Mapping[str, Chain]
    exits: tuple[Exit, ...]
    #: action type -> how it is carried out, as the file declares it (see `execution_for`)
    execution: Mapping[str, ExecutionPolicy] = field(default_factory=dict)
    file: str = ""
    source_text: str = field(default="", repr=False)
    source_hash: str = ""

    @property
    def key(self) -> str:
        """`id@version`, the name of this pathway version everywhere (flows, store, output)."""
        return f"{self.id}@{self.version}"

    def event_types(self) -> frozenset[str]:
        """Every event type this pathway reacts to."""
        types = {t.event_type for t in self.triggers}
        types |= {r.event_type for r in self.rules}
        types |= {m.event_type for m in self.missing_data}
        types |= {d.cancel_event for d in self.deadlines}
        types |= {d.start_event for d in self.deadlines if d.start_event}
        types |= {e.event_type for e in self.exits if e.event_type}
        if self.chains:
            types.add("task.acknowledged")
        return frozenset(types)

    def action_types(self) -> frozenset[str]:
        """Every action type this pathway can fire (not `enrol`/`exit`, which are records)."""
        templates = [a for t in self.triggers for a in t.actions]
        for rule in self.rules:
            templates += [*rule.actions, *rule.if_stale]
        templates += [a for m in self.missing_data for a in m.actions]
        templates += [a for d in self.deadlines for a in d.actions]
        templates += [a for e in self.exits for a in e.actions]
        types = {a.type for a in templates}
        if self.chains:
            types.add("escalate")  # every level of a chain is sent as an escalate action
        return frozenset(types)

    def execution_for(self, action_type: str) -> ExecutionPolicy:
        """Retries, retry delay and timeout for an action type: declared, or its family's."""
        return self.execution.get(action_type) or default_execution(action_type)
