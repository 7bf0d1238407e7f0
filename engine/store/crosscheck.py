"""What the hash chains vouch for, checked against the tables they do not cover themselves
(`audit verify`, engine.store.verify, runs these once the chain in question is intact):

    pathways      each version's text has the sha256 its chained record holds; every version
                  an instance, an action or an audit record names is recorded
    outbox        each action's status agrees with the input log: enrol and exit are only
                  recorded; succeeded and failed need the `action.succeeded` / `action.failed`
                  input the dispatcher records before it writes the status back, with the same
                  reference or error; pending and running have no outcome yet
    snapshots     every instance row is enrolled by an action in the outbox, and marked active
                  unless the outbox holds its exit; its columns agree with its state and its
                  hash with its content; the states the latest snapshot holds have the digest it
                  recorded; the timers table holds exactly the timers of those states
    dead_letters  each dead letter holds what came in (its log's content hash), with the status
                  and reason of its latest log entry; every letter logged is there

Each returns the first problem found, or None and a line saying what held."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store import letters
from engine.store import schema as t
from engine.store.chain import StateDigest, state_hash, text_hash
from engine.store.report import ChainProblem
from engine.store.times import to_text

Row = Any  # a row of the table in question (sqlalchemy Row, read by attribute)

#: the actions that are recorded, never carried out (rows.outbox_row)
RECORDED_ONLY = ("enrol", "exit")
OUTCOMES = {"succeeded": "action.succeeded", "failed": "action.failed"}


@dataclass(slots=True)
class Tables:
    """Everything the checks read: the chained tables' rows (in chain order) and the others."""

    chained: Mapping[str, Sequence[Row]]
    instances: Sequence[Row] = field(default_factory=list)
    timers: Sequence[Row] = field(default_factory=list)
    letters: Sequence[Row] = field(default_factory=list)

    @classmethod
    def read(cls, conn: Connection, chained: Mapping[str, Sequence[Row]]) -> Tables:
        def rows(table: sa.Table) -> list[Row]:
            return list(conn.execute(sa.select(table).order_by(*table.primary_key.columns)))

        return cls(chained, rows(t.instances), rows(t.timers), rows(t.dead_letters))


def _problem(chain: str, record: int, kind: str, message: str) -> tuple[ChainProblem, str]:
    return ChainProblem(chain, record, kind, message), ""


# -- pathway versions -----------------------------------------------------------------------------


def pathways(tables: Tables) -> tuple[ChainProblem | None, str]:
    versions = tables.chained["pathways"]
    for row in versions:
        if text_hash(row.source_text) != row.source_hash:
            return _problem(
                "pathways",
                row.number,
                "edited",
                f"the text of {row.key} was edited: its sha256 is not the one recorded",
            )
    known = {row.key for row in versions}
    named: list[tuple[str, str]] = [
        *((row.pathway_key, f"instance {row.instance_id}") for row in tables.instances),
        *((row.pathway_key, f"action {row.action_id}") for row in tables.chained["outbox"]),
        *((row.pathway_key, f"audit record {row.id}") for row in tables.chained["audit"]),
    ]
    for key, by in named:
        if key and key not in known:
            return _problem(
                "pathways", 0, "deleted", f"{key}, which {by} names, is not in the store"
            )
    return None, "every text matches its hash; every version named is there"


# -- the outbox -----------------------------------------------------------------------------------


def outbox(tables: Tables) -> tuple[ChainProblem | None, str]:
    outcomes = _outcomes(tables.chained["inputs"])
    actions = tables.chained["outbox"]
    for row in actions:
        wrong = _status_problem(row, outcomes.get(row.action_id, {}))
        if wrong:
            return _problem("outbox", row.number, "edited", f"action {row.action_id} {wrong}")
    ids = {row.action_id for row in actions}
    for action_id, recorded in outcomes.items():
        if action_id not in ids:
            seq = min(seq for found in recorded.values() for seq, _ in found)
            return _problem(
                "outbox",
                0,
                "deleted",
                f"action {action_id} has its outcome in the input log (input {seq}) but is "
                "not in the outbox",
            )
    return None, "every status agrees with the outcomes in the input log"


def _outcomes(inputs: Sequence[Row]) -> dict[str, dict[str, list[tuple[int, str]]]]:
    """action id -> status -> (seq, reference or error) of each outcome input recorded for it
    (as accepted, or as a duplicate: a re-run after a crash reports its outcome again)."""
    found: dict[str, dict[str, list[tuple[int, str]]]] = {}
    statuses = {kind: status for status, kind in OUTCOMES.items()}
    for row in inputs:
        status = statuses.get(row.type)
        if status is None:
            continue
        data = json.loads(row.payload).get("data", {})
        detail = data.get("reference" if status == "succeeded" else "error", "")
        found.setdefault(str(data.get("action_id")), {}).setdefault(status, []).append(
            (row.seq, detail)
        )
    return found


def _status_problem(row: Row, outcomes: Mapping[str, list[tuple[int, str]]]) -> str | None:
    """What is wrong with the status of the outbox row `row`, given the outcomes the input log
    records for its action; None if nothing."""
    status = row.status
    if row.action in RECORDED_ONLY:
        if (status, row.attempts, row.outcome) != ("recorded", 0, None):
            return f"is an {row.action}, recorded and never carried out, but is marked {status}"
        return None
    if status in ("pending", "running"):
        if row.outcome is not None:
            return f"is {status} but has an outcome"
        if status == "running" and row.attempts < 1:
            return "is running but was never claimed"
        return None
    if status not in OUTCOMES:
        return f"has a status no dispatcher writes: '{status}'"
    recorded = outcomes.get(status)
    if not recorded:
        return f"is marked {status}, but the input log records no {OUTCOMES[status]} for it"
    try:
        outcome = json.loads(row.outcome) if row.outcome is not None else None
    except ValueError:
        outcome = None
    key = "reference" if status == "succeeded" else "error"
    if (
        not isinstance(outcome, dict)
        or outcome.get("succeeded") is not (status == "succeeded")
        or (outcome.get(key) or "") not in {detail for _, detail in recorded}
        or row.attempts < 1
    ):
        return f"is marked {status}, but its outcome is not the one the input log records"
    return None


# -- instance states and timers -------------------------------------------------------------------


def snapshots(tables: Tables) -> tuple[ChainProblem | None, str]:
    taken = tables.chained["snapshots"]
    latest = taken[-1] if taken else None
    number, seq = (latest.number, latest.seq) if latest else (0, 0)

    def problem(kind: str, message: str) -> tuple[ChainProblem, str]:
        return _problem("snapshots", number, kind, message)

    enrolled: dict[str, int] = {}  # instance -> the input that enrolled it
    exited: set[str] = set()
    for action in tables.chained["outbox"]:
        if action.action == "enrol":
            enrolled[action.instance_id] = action.seq
        elif action.action == "exit":
            exited.add(action.instance_id)
    digest = StateDigest()
    held: dict[tuple[str, str], str] = {}  # (instance, timer) -> due, of the states held
    states = 0
    for row in tables.instances:
        iid = row.instance_id
        if iid not in enrolled:
            return problem("inserted", f"instance {iid} was enrolled by no action in the outbox")
        state = _state(row.state)
        if state is None or not _columns_agree(row, state):
            return problem("edited", f"instance {iid}'s row does not agree with its state")
        if row.active and iid in exited:
            return problem(
                "edited", f"instance {iid} is marked active, but the outbox holds its exit"
            )
        if not row.active and iid not in exited:
            return problem(
                "edited", f"instance {iid} is marked ended, but the outbox holds no exit"
            )
        if row.hash != state_hash(iid, row.last_seq, row.state):
            return problem("edited", f"instance {iid}'s row is not the one Carepath wrote")
        if row.state_seq <= seq:
            states += 1
            digest.add(row.hash)
            for key, due in state.get("timers", {}).items():
                held[iid, key] = to_text(datetime.fromisoformat(due))
    rows = {row.instance_id for row in tables.instances}
    for iid, by in sorted(enrolled.items()):
        if iid not in rows:
            return problem("deleted", f"instance {iid}, enrolled by input {by}, has no row")
    if latest is not None and latest.digest is None:
        return problem("edited", f"snapshot {number} (as of input {seq}) has no digest")
    if digest.hex() != (latest.digest if latest else StateDigest().hex()):
        return problem(
            "edited",
            f"the instance states snapshot {number} (as of input {seq}) holds are not the "
            "ones it recorded: their digest differs",
        )
    timers = {(row.instance_id, row.key): row.due_utc for row in tables.timers}
    for iid, key in sorted(held.keys() | timers.keys()):
        pending, stored = held.get((iid, key)), timers.get((iid, key))
        if stored is None:
            return problem("deleted", f"timer {key} of instance {iid}, due {pending}, is gone")
        if pending is None:
            return problem("inserted", f"timer {key} of instance {iid} is in no state")
        if stored != pending:
            return problem(
                "edited", f"timer {key} of instance {iid} is due {stored}, its state {pending}"
            )
    return None, (
        f"{states} instance states and {len(timers)} timers agree with snapshot {number}; "
        f"{len(rows)} instances, each enrolled in the outbox"
    )


def _state(text: str) -> dict[str, Any] | None:
    try:
        state = json.loads(text)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def _columns_agree(row: Row, state: Mapping[str, Any]) -> bool:
    try:
        enrolled_at = to_text(datetime.fromisoformat(state["enrolled_at"]))
        return bool(
            state["instance_id"] == row.instance_id
            and state["pathway"] == row.pathway_key
            and row.pathway_id == row.pathway_key.split("@", 1)[0]
            and state["patient_id"] == row.patient_id
            and enrolled_at == row.enrolled_at
        )
    except (KeyError, TypeError, ValueError):
        return False


# -- dead letters ---------------------------------------------------------------------------------


def dead_letters(tables: Tables) -> tuple[ChainProblem | None, str]:
    latest: dict[int, Row] = {}
    for entry in tables.chained["dead_letters"]:
        latest[entry.letter_id] = entry
    for row in tables.letters:
        entry = latest.get(row.id)
        if entry is None:
            return _problem("dead_letters", 0, "inserted", f"dead letter {row.id} is in no log")
        number = entry.number
        mapping = row._mapping
        came = letters.content(row.received_at, row.source, letters.raw_bytes(mapping))
        if came != entry.content or (
            row.payload_bytes is not None and row.payload != letters.render(row.payload_bytes)
        ):
            return _problem(
                "dead_letters",
                number,
                "edited",
                f"dead letter {row.id} does not hold what came in (its payload, source or "
                "time received was changed)",
            )
        if (row.status, row.reason) != (entry.status, entry.reason):
            return _problem(
                "dead_letters",
                number,
                "edited",
                f"dead letter {row.id} is {row.status} ({row.reason}), but its log says "
                f"{entry.status} ({entry.reason})",
            )
    rows = {row.id for row in tables.letters}
    for letter_id, entry in latest.items():
        if letter_id not in rows:
            return _problem(
                "dead_letters", entry.number, "deleted", f"dead letter {letter_id} is gone"
            )
    return None, "every dead letter agrees with its log"
