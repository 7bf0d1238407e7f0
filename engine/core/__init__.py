"""The deterministic decision core: no clock, no I/O, no randomness."""

from engine.core.compiled import CompiledPathway, ReferenceEvaluator, compile_pathway
from engine.core.decide import decide
from engine.core.decisions import Action, AuditEntry, Decision, TimerChange
from engine.core.inputs import EventInput, Input, TimerInput
from engine.core.registry import Registry, route
from engine.core.state import InstanceState, OpenChain

__all__ = [
    "Action",
    "AuditEntry",
    "CompiledPathway",
    "Decision",
    "EventInput",
    "Input",
    "InstanceState",
    "OpenChain",
    "ReferenceEvaluator",
    "Registry",
    "TimerChange",
    "TimerInput",
    "compile_pathway",
    "decide",
    "route",
]
