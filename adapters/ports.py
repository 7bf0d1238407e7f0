"""The outbound port: the one thing the engine asks of the outside world.

An action (the shape of `Action.as_dict()`: id, action, patient_id, pathway, pathway_version,
instance_id, rule, fired_at, due_by, params) is carried out, and the outside system's reference
for it comes back (a booked appointment's id, a FHIR resource, a message id), or None.

The idempotency key is the action's id. A port must have the action's effect at most once per
key: a retried attempt, or an action run again after a restart, finds the first effect and
returns its reference. Failures raise `engine.errors.AdapterError` (anything else raised counts
as a failure too); the caller retries by the pathway's execution policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ActionPort(Protocol):
    def carry_out(self, action: Mapping[str, Any], idempotency_key: str) -> str | None:
        """Carry out `action` once per `idempotency_key`; return the external reference."""
        ...
