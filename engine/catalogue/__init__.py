"""The catalogue: every event type, fact, action type and role a pathway may name.

This is the contract between pathway authors, inbound adapters and outbound ports. A pathway
that names anything not listed here is rejected at load time.
"""

from engine.catalogue.actions import ACTIONS, ROLES, ActionSpec, ParamKind, ParamSpec
from engine.catalogue.events import (
    APPOINTMENT_KINDS,
    EVENT_MODELS,
    INSTANCE_FACTS,
    Event,
    FactKind,
    FactSpec,
    event_facts,
)

__all__ = [
    "ACTIONS",
    "APPOINTMENT_KINDS",
    "EVENT_MODELS",
    "INSTANCE_FACTS",
    "ROLES",
    "ActionSpec",
    "Event",
    "FactKind",
    "FactSpec",
    "ParamKind",
    "ParamSpec",
    "event_facts",
]
