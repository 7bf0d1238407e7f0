"""A pathway version made ready to decide: its conditions compiled into one rule book, indexed
by event type, so that one evaluation per (input, instance) answers every question at once.

Condition ids in the rule book:

    trigger:<id>  unless:<id>  rule:<id>  exit:<reason>  cancel:<deadline>  start:<deadline>
    only_if:<location of the action in the file>
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from engine.definition.conditions import TRUE, Condition, evaluate, facts_used
from engine.definition.model import (
    ActionTemplate,
    Deadline,
    DeadlineStart,
    Exit,
    MissingDataRule,
    Pathway,
    Rule,
)


@dataclass(frozen=True, slots=True)
class ConditionSpec:
    id: str
    event_type: str
    condition: Condition


class Evaluator(Protocol):
    """Answers: which of these conditions hold for this message? (the ids, in order)"""

    def evaluate(self, event_type: str, facts: Mapping[str, Any]) -> Iterable[str]: ...


class ReferenceEvaluator:
    """Evaluates conditions with `conditions.evaluate`: the semantics the rule book must match."""

    def __init__(self, specs: Iterable[ConditionSpec]) -> None:
        self._by_type: dict[str, list[ConditionSpec]] = defaultdict(list)
        for spec in specs:
            self._by_type[spec.event_type].append(spec)

    def evaluate(self, event_type: str, facts: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(
            s.id for s in self._by_type.get(event_type, ()) if evaluate(s.condition, facts)
        )


EvaluatorFactory = Callable[[str, list[ConditionSpec]], Evaluator]


def rulebook_evaluator(name: str, specs: list[ConditionSpec]) -> Evaluator:
    """The production evaluator: the specs compiled into a durable-rules ruleset (rules/)."""
    from rules import RuleBook, RuleSpec

    return RuleBook(
        name=name,
        rules=[RuleSpec(id=s.id, event_type=s.event_type, condition=s.condition) for s in specs],
    )


@dataclass(slots=True)
class CompiledPathway:
    pathway: Pathway
    evaluator: Evaluator
    specs: dict[str, ConditionSpec]
    #: which spec ids matter for each event type (and whether any is non-trivial)
    by_event: dict[str, list[str]] = field(default_factory=dict)
    #: the longest window looked back over, per measured event type, in seconds
    retention: dict[str, int] = field(default_factory=dict)
    rules_by_event: dict[str, list[Rule]] = field(default_factory=dict)
    deadlines_started_by_action: dict[str, list[Deadline]] = field(default_factory=dict)
    event_types: frozenset[str] = frozenset()
    #: per event type: the conditions that are always true, and every fact any condition reads
    always: dict[str, frozenset[str]] = field(default_factory=dict)
    facts_needed: dict[str, frozenset[str]] = field(default_factory=dict)
    #: per event type, in file order, what the core looks at for every event (precomputed:
    #: this is the hot path): the exits it may trigger (with their condition id), the rules
    #: (with theirs), the deadlines it may cancel or start (with the timer key and condition
    #: id), the missing-data rules watching it, and the windows its rules read (fact, length)
    exits_by_event: dict[str, tuple[tuple[Exit, str], ...]] = field(default_factory=dict)
    rule_ids: dict[str, tuple[tuple[Rule, str], ...]] = field(default_factory=dict)
    cancels_by_event: dict[str, tuple[tuple[Deadline, str, str], ...]] = field(default_factory=dict)
    starts_by_event: dict[str, tuple[tuple[Deadline, str, str], ...]] = field(default_factory=dict)
    missing_by_event: dict[str, tuple[MissingDataRule, ...]] = field(default_factory=dict)
    windows_by_event: dict[str, tuple[tuple[str, timedelta], ...]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.pathway.key

    def matches(self, event_type: str, facts: Mapping[str, Any]) -> frozenset[str]:
        """Ids of the conditions relevant to `event_type` that hold (TRUE ones always do)."""
        ids = self.by_event.get(event_type)
        if not ids:
            return frozenset()
        always = self.always[event_type]
        if len(always) == len(ids):
            return always
        return frozenset(self.evaluator.evaluate(event_type, facts)) | always


def compile_pathway(
    pathway: Pathway, evaluator_factory: EvaluatorFactory = rulebook_evaluator
) -> CompiledPathway:
    specs: list[ConditionSpec] = []

    def add(spec_id: str, event_type: str | None, condition: Condition) -> None:
        if event_type is not None:
            specs.append(ConditionSpec(spec_id, event_type, condition))

    def add_only_ifs(actions: Iterable[ActionTemplate], event_type: str | None) -> None:
        for action in actions:
            if action.only_if != TRUE:
                add(f"only_if:{action.location}", event_type, action.only_if)

    for trigger in pathway.triggers:
        add(f"trigger:{trigger.id}", trigger.event_type, trigger.condition)
        if trigger.exclusion is not None:
            add(f"unless:{trigger.id}", trigger.event_type, trigger.exclusion)
        add_only_ifs(trigger.actions, trigger.event_type)
    for rule in pathway.rules:
        add(f"rule:{rule.id}", rule.event_type, rule.condition)
        add_only_ifs(rule.actions, rule.event_type)
        add_only_ifs(rule.if_stale, rule.event_type)
    for exit_ in pathway.exits:
        add(f"exit:{exit_.reason}", exit_.event_type, exit_.condition)
        add_only_ifs(exit_.actions, exit_.event_type)
    started_by_action: dict[str, list[Deadline]] = defaultdict(list)
    for deadline in pathway.deadlines:
        add(f"cancel:{deadline.id}", deadline.cancel_event, deadline.cancel_condition)
        if deadline.start is DeadlineStart.EVENT:
            add(f"start:{deadline.id}", deadline.start_event, deadline.start_condition)
        if deadline.start is DeadlineStart.ACTION and deadline.start_action:
            started_by_action[deadline.start_action].append(deadline)

    by_event: dict[str, list[str]] = defaultdict(list)
    for spec in specs:
        by_event[spec.event_type].append(spec.id)
    retention: dict[str, int] = {}
    rules_by_event: dict[str, list[Rule]] = defaultdict(list)
    for rule in pathway.rules:
        rules_by_event[rule.event_type].append(rule)
        for window in rule.windows:
            retention[rule.event_type] = max(retention.get(rule.event_type, 0), window.seconds)
    non_trivial = [s for s in specs if s.condition != TRUE]
    always = {
        et: frozenset(i for i in ids if i not in {s.id for s in non_trivial})
        for et, ids in by_event.items()
    }
    needed: dict[str, frozenset[str]] = {}
    for spec in non_trivial:
        needed[spec.event_type] = needed.get(spec.event_type, frozenset()) | facts_used(
            spec.condition
        )
    exits_by_event: dict[str, list[tuple[Exit, str]]] = defaultdict(list)
    for exit_ in pathway.exits:
        if exit_.event_type is not None:
            exits_by_event[exit_.event_type].append((exit_, f"exit:{exit_.reason}"))
    cancels: dict[str, list[tuple[Deadline, str, str]]] = defaultdict(list)
    starts: dict[str, list[tuple[Deadline, str, str]]] = defaultdict(list)
    for deadline in pathway.deadlines:
        key = f"deadline:{deadline.id}"
        cancels[deadline.cancel_event].append((deadline, key, f"cancel:{deadline.id}"))
        if (
            deadline.start is DeadlineStart.EVENT
            and deadline.start_event is not None
            and deadline.after is not None
        ):
            starts[deadline.start_event].append((deadline, key, f"start:{deadline.id}"))
    missing: dict[str, list[MissingDataRule]] = defaultdict(list)
    for missing_rule in pathway.missing_data:
        missing[missing_rule.event_type].append(missing_rule)
    return CompiledPathway(
        pathway=pathway,
        evaluator=evaluator_factory(pathway.key, non_trivial),
        specs={s.id: s for s in specs},
        by_event=dict(by_event),
        retention=retention,
        rules_by_event=dict(rules_by_event),
        deadlines_started_by_action=dict(started_by_action),
        event_types=pathway.event_types(),
        always=always,
        facts_needed=needed,
        exits_by_event={et: tuple(v) for et, v in exits_by_event.items()},
        rule_ids={
            et: tuple((r, f"rule:{r.id}") for r in rules) for et, rules in rules_by_event.items()
        },
        cancels_by_event={et: tuple(v) for et, v in cancels.items()},
        starts_by_event={et: tuple(v) for et, v in starts.items()},
        missing_by_event={et: tuple(v) for et, v in missing.items()},
        windows_by_event={
            et: tuple((w.fact, timedelta(seconds=w.seconds)) for r in rules for w in r.windows)
            for et, rules in rules_by_event.items()
        },
    )
