"""The outbox: actions waiting to be carried out, claimed in batches, and their outcomes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine.store import schema as t
from engine.store.times import to_text

if TYPE_CHECKING:
    from engine.store.store import Store


@dataclass(frozen=True, slots=True)
class OutboxItem:
    action_id: str
    pathway_key: str
    action: dict[str, Any]  # Action.as_dict()
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What carrying out an action came to. `reference` is the outside system's id for it (a
    booked appointment, a FHIR resource id, a message id)."""

    action_id: str
    succeeded: bool
    reference: str | None = None
    error: str | None = None
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "succeeded": self.succeeded,
            "reference": self.reference,
            "error": self.error,
            "attempts": self.attempts,
        }


class Outbox:
    """The outbox of a store: actions waiting to be carried out, claimed in batches.

    pending --claim--> running --complete--> succeeded | failed
    A dispatcher that dies leaves actions `running`; `recover()` puts them back to pending when
    the next one starts. Every action carries its id as idempotency key, so an action re-run
    after such a crash has its effect once."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def recover(self) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                t.outbox.update().where(t.outbox.c.status == "running").values(status="pending")
            ).rowcount

    def release(self, action_ids: Sequence[str]) -> int:
        """Put claimed actions that were not finished (their flow run crashed or was lost) back
        to pending, for the next claim."""
        if not action_ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                t.outbox.update()
                .where(t.outbox.c.action_id.in_(list(action_ids)), t.outbox.c.status == "running")
                .values(status="pending")
            ).rowcount

    def claim(self, limit: int, now: datetime) -> list[OutboxItem]:
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(
                    t.outbox.c.action_id,
                    t.outbox.c.pathway_key,
                    t.outbox.c.payload,
                    t.outbox.c.attempts,
                )
                .where(t.outbox.c.status == "pending")
                .order_by(t.outbox.c.seq, t.outbox.c.action_id)
                .limit(limit)
            ).all()
            if not rows:
                return []
            ids = [r.action_id for r in rows]
            conn.execute(
                t.outbox.update()
                .where(t.outbox.c.action_id.in_(ids), t.outbox.c.status == "pending")
                .values(status="running", attempts=t.outbox.c.attempts + 1, updated_at=to_text(now))
            )
        return [
            OutboxItem(r.action_id, r.pathway_key, json.loads(r.payload), r.attempts + 1)
            for r in rows
        ]

    def complete(self, outcomes: Sequence[Outcome], now: datetime) -> None:
        if not outcomes:
            return
        with self.engine.begin() as conn:
            conn.execute(
                t.outbox.update()
                .where(t.outbox.c.action_id == sa.bindparam("aid"))
                .values(
                    status=sa.bindparam("st"),
                    outcome=sa.bindparam("oc"),
                    updated_at=sa.bindparam("at"),
                ),
                [
                    {
                        "aid": o.action_id,
                        "st": "succeeded" if o.succeeded else "failed",
                        "oc": json.dumps(o.as_dict(), sort_keys=True),
                        "at": to_text(now),
                    }
                    for o in outcomes
                ],
            )

    def status(self, action_id: str) -> tuple[str, dict[str, Any] | None] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.outbox.c.status, t.outbox.c.outcome).where(
                    t.outbox.c.action_id == action_id
                )
            ).first()
        if row is None:
            return None
        return row.status, json.loads(row.outcome) if row.outcome else None

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                r.status: r.n
                for r in conn.execute(
                    sa.select(t.outbox.c.status, sa.func.count().label("n")).group_by(
                        t.outbox.c.status
                    )
                )
            }
