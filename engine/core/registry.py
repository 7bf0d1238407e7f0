"""The pathway versions an engine knows, and routing of one input to a patient's instances."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from engine.core.compiled import (
    CompiledPathway,
    EvaluatorFactory,
    compile_pathway,
    rulebook_evaluator,
)
from engine.core.decide import decide
from engine.core.decisions import Decision
from engine.core.inputs import EventInput, Input, TimerInput
from engine.core.state import InstanceState
from engine.definition.model import Pathway


@dataclass
class Registry:
    """Every loaded pathway version (instances stay pinned to theirs) and, per pathway id, the
    version new enrolments get."""

    by_key: dict[str, CompiledPathway] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, pathways: Iterable[Pathway], evaluator_factory: EvaluatorFactory = rulebook_evaluator
    ) -> Registry:
        registry = cls()
        for pathway in pathways:
            registry.add(compile_pathway(pathway, evaluator_factory))
        return registry

    def add(self, compiled: CompiledPathway, *, current: bool = True) -> None:
        self.by_key[compiled.key] = compiled
        if current:
            self.current[compiled.pathway.id] = compiled.key

    def pathway_ids(self) -> list[str]:
        return sorted(self.current)


def route(
    registry: Registry,
    instances: Mapping[str, InstanceState],
    input_: Input,
    now: datetime,
    holidays: Collection[date] = (),
) -> tuple[list[InstanceState], Decision]:
    """Decide one input for one patient across every pathway.

    `instances` maps pathway id to the patient's latest instance of it (for an event), or holds
    the one instance a timer belongs to. Returns the instances that changed or were created.
    """
    decision = Decision()
    changed: list[InstanceState] = []
    if isinstance(input_, TimerInput):
        state = next((s for s in instances.values() if s.instance_id == input_.instance_id), None)
        if state is None:
            return changed, decision
        new, part = decide(registry.by_key[state.pathway_key], state, input_, now, holidays)
        decision.extend(part)
        if new is not None:
            changed.append(new)
        return changed, decision
    assert isinstance(input_, EventInput)
    died: bool | None = None  # worked out when an enrolment is first possible
    for pathway_id in registry.pathway_ids():
        state = instances.get(pathway_id)
        active = state is not None and state.active
        key = state.pathway_key if state is not None and active else registry.current[pathway_id]
        compiled = registry.by_key[key]
        if input_.event.type not in compiled.event_types:
            continue
        if not active:
            if died is None:
                died = any(_ended_by_death(registry, s) for s in instances.values())
            if died:
                continue  # a patient whose death a pathway recorded is never enrolled again
        new, part = decide(
            compiled, state if state is None or state.active else None, input_, now, holidays
        )
        decision.extend(part)
        if new is not None:
            changed.append(new)
    return changed, decision


def _ended_by_death(registry: Registry, state: InstanceState) -> bool:
    """The instance ended on an exit that `patient.deceased` triggers."""
    if state.active or state.exit_reason is None:
        return False
    compiled = registry.by_key.get(state.pathway_key)
    if compiled is None:
        return False
    return any(
        e.reason == state.exit_reason and e.event_type == "patient.deceased"
        for e in compiled.pathway.exits
    )
