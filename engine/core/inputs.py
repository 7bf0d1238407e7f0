"""Inputs to the decision core: an event, or a timer firing. Both are recorded before they are
acted on, so replay can feed back exactly what the engine saw.

Every input keeps two times: when it happened (`occurred_at`) and when the engine learned of it
(`recorded_at`). For a timer, both are its due time as the engine fired it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.catalogue import Event


@dataclass(frozen=True, slots=True)
class EventInput:
    event: Event
    recorded_at: datetime
    seq: int = 0  # global input sequence, assigned when recorded

    @property
    def occurred_at(self) -> datetime:
        return self.event.occurred_at

    @property
    def input_id(self) -> str:
        return self.event.id


@dataclass(frozen=True, slots=True)
class TimerInput:
    """A pending timer of an instance falling due."""

    instance_id: str
    timer: str  # the timer's key, e.g. "deadline:follow_up_not_booked"
    due_at: datetime
    recorded_at: datetime
    seq: int = 0

    @property
    def occurred_at(self) -> datetime:
        return self.due_at

    @property
    def input_id(self) -> str:
        return f"timer:{self.instance_id}:{self.timer}:{self.due_at.isoformat()}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "timer": self.timer,
            "due_at": self.due_at.isoformat(),
        }


Input = EventInput | TimerInput
