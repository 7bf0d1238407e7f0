"""A synthetic, seeded patient population and its events, for the engine benchmarks.

Most instances are on the CHF pathway (discharged with I50.9), some on diabetic foot care
(diagnosed E11.9). After the enrolment day, day by day:

- each CHF patient sends a morning weight (95 % of days; a random walk around a baseline, with
  now and then a jump of 1-2.5 kg that crosses the 24 h or 7 d threshold and opens the
  `weight_gain` chain); the care team acknowledges most escalations (by pathway and chain)
  within hours;
- the follow-up is booked (4 % of days until it is) and attended (4 % of days from two days
  after the booking): a stationary mix, as if the patients were at every stage of their 30
  days, so that short runs (at 100,000 instances) see the same mix as long ones; a symptom is
  reported on 3 % of days (one in eight a red flag, acknowledged within the hour);
- a foot patient books a screening (2 % of days) or has a foot exam (5 % of days, risk 0-3).

So about 87 % of the steady-state events are weights. Everything is deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.catalogue import Event

ROOT = Path(__file__).resolve().parent.parent
PATHWAYS = ROOT / "pathways"
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
SYMPTOMS = ("fatigue", "edema", "cough", "orthopnea", "palpitations", "dyspnea_on_exertion")
RED_FLAGS = ("dyspnea_at_rest", "chest_pain", "syncope")


def load_registry() -> Any:
    from engine.core import Registry
    from engine.definition.loader import check_paths

    pathways, problems = check_paths([PATHWAYS])
    if problems:
        raise SystemExit("\n".join(p.render() for p in problems))
    return pathways, Registry.of(pathways)


@dataclass
class _Patient:
    pid: str
    foot: bool
    baseline: float = 80.0
    weight: float = 80.0
    booked: int = 0  # the day the follow-up was booked (0: not yet)
    attended: bool = False


class Population:
    def __init__(self, instances: int, foot_share: float = 0.1, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        foot = round(instances * foot_share)
        self.patients = [
            _Patient(f"pt-f{i:06d}" if i < foot else f"pt-c{i:06d}", i < foot)
            for i in range(instances)
        ]
        for p in self.patients:
            p.baseline = p.weight = round(self.rng.uniform(55, 120), 1)
        self._n = 0

    def _event(self, kind: str, pid: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
        self._n += 1
        return {
            "id": f"ev-{self._n:08d}",
            "type": kind,
            "patient_id": pid,
            "occurred_at": at.isoformat(),
            "data": data,
        }

    def enrolment(self) -> list[Event]:
        """Day 0: every patient enrols (discharge or diagnosis), spread over the day."""
        raw = []
        step = 86400 / max(1, len(self.patients))
        for i, p in enumerate(self.patients):
            at = START + timedelta(seconds=int(i * step))
            if p.foot:
                raw.append(self._event("condition.diagnosed", p.pid, at, {"code": "E11.9"}))
            else:
                disposition = "06" if self.rng.random() < 0.2 else "01"
                raw.append(
                    self._event(
                        "encounter.discharged",
                        p.pid,
                        at,
                        {"encounter_id": f"enc-{p.pid}", "diagnoses": ["I50.9", "E11.9"],
                         "disposition": disposition},
                    )
                )
        return [Event.model_validate(r) for r in raw]

    def day(self, number: int) -> list[Event]:
        """Day `number` (1 = the day after enrolment), in occurred_at order."""
        rng = self.rng
        base = START + timedelta(days=number)
        raw: list[tuple[datetime, dict[str, Any]]] = []

        def add(kind: str, pid: str, at: datetime, data: dict[str, Any]) -> None:
            raw.append((at, self._event(kind, pid, at, data)))

        for p in self.patients:
            if p.foot:
                r = rng.random()
                if r < 0.05:
                    at = base + timedelta(hours=9, minutes=rng.randrange(480))
                    risk = rng.choice((0, 0, 1, 1, 2, 3))
                    add("foot_exam.completed", p.pid, at, {
                        "iwgdf_risk": risk, "active_ulcer": rng.random() < 0.05,
                        "infection": "severe" if rng.random() < 0.01 else "none",
                        "ischemia": False, "gangrene": False})
                elif r < 0.07:
                    at = base + timedelta(hours=9, minutes=rng.randrange(480))
                    add("appointment.booked", p.pid, at, {
                        "appointment_id": f"ap-{p.pid}-{number}", "kind": "foot_screening"})
                continue
            morning = base + timedelta(hours=7, minutes=rng.randrange(120))
            if rng.random() < 0.95:
                jump = rng.random() < 0.04
                step = rng.uniform(1.0, 2.5) if jump else rng.gauss(0, 0.3)
                p.weight = round(min(max(p.weight + step, p.baseline - 4), p.baseline + 6), 1)
                if p.weight > p.baseline + 3:  # treated: back towards the baseline
                    p.weight = round(p.baseline + rng.uniform(0, 1), 1)
                lb = rng.random() < 0.1
                value = round(p.weight / 0.45359237, 1) if lb else p.weight
                add("observation.weight", p.pid, morning,
                    {"value": value, "unit": "lb" if lb else "kg"})
                if jump and rng.random() < 0.8:
                    add("task.acknowledged", p.pid, morning + timedelta(hours=rng.uniform(0.5, 3)),
                        {"pathway": "chf-post-discharge", "escalation": "weight_gain",
                         "by": "hf_nurse"})
            if not p.booked and rng.random() < 0.04:
                p.booked = number
                add("appointment.booked", p.pid, base + timedelta(hours=10), {
                    "appointment_id": f"ap-{p.pid}", "kind": "follow_up"})
            elif p.booked and not p.attended and number > p.booked + 1 and rng.random() < 0.04:
                p.attended = True
                add("appointment.attended", p.pid, base + timedelta(hours=11), {
                    "appointment_id": f"ap-{p.pid}", "kind": "follow_up"})
            if rng.random() < 0.03:
                at = base + timedelta(hours=12, minutes=rng.randrange(600))
                red = rng.random() < 0.125
                add("symptom.reported", p.pid, at,
                    {"symptom": rng.choice(RED_FLAGS if red else SYMPTOMS)})
                if red:
                    add("task.acknowledged", p.pid, at + timedelta(minutes=rng.randrange(10, 55)),
                        {"pathway": "chf-post-discharge", "escalation": "red_flag",
                         "by": "cardiology_on_call"})
        raw.sort(key=lambda pair: pair[0])
        return [Event.model_validate(r) for _, r in raw]

    def days(self, first: int, count: int) -> Iterator[list[Event]]:
        for number in range(first, first + count):
            yield self.day(number)


def days_for(instances: int, events: int, most: int = 25) -> int:
    """Steady-state days to run for about `events` events (at least 2, at most `most`)."""
    return max(2, min(most, -(-events // max(1, int(instances * 0.95)))))


def mix(events: list[Event]) -> str:
    counts: dict[str, int] = {}
    for e in events:
        counts[e.type] = counts.get(e.type, 0) + 1
    total = max(1, len(events))
    return ", ".join(
        f"{k} {100 * v / total:.1f} %" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
    )
