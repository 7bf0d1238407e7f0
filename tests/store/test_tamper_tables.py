"""Tamper evidence beyond the input log and the audit trail: everything the engine acts on.
`carepath audit verify` passes a store that holds some of everything, and, for each way of
changing it behind Carepath's back (pathway texts, the outbox, dead letters, timers, instance
rows, snapshots, holidays, chain heads), exits 1 naming the chain, the record and what was done.
A restart refuses instance states that are not the ones the latest snapshot recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from engine.definition.model import Pathway
from engine.errors import StoreError
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import Store
from engine.store import schema as t
from engine.store.chain import OUTBOX_FIELDS, PATHWAY_FIELDS, hashed, link, state_hash
from tests.store.conftest import T0

CHF, FOOT = "chf-post-discharge@1", "diabetic-foot-care@1"


@dataclass
class Db:
    """Raw SQL on the store's tables, as someone with write access to the database runs it."""

    store: Store

    def rows(self, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
        query = sa.select(table).where(*where).order_by(*table.primary_key.columns)
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def row(self, table: sa.Table, *where: Any) -> dict[str, Any]:
        (found,) = self.rows(table, *where)
        return found

    def run(self, statement: Any) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(statement)

    def update(self, table: sa.Table, where: Any, **values: Any) -> None:
        self.run(table.update().where(where).values(**values))

    def latest_snapshot(self) -> int:
        return max(r["number"] for r in self.rows(t.snapshots))

    def instance(self, pathway_key: str, *, active: bool) -> dict[str, Any]:
        c = t.instances.c
        return self.rows(t.instances, c.pathway_key == pathway_key, c.active == active)[0]

    def head(self, chain: str) -> dict[str, Any]:
        return self.row(t.chain_heads, t.chain_heads.c.chain == chain)


Expected = tuple[str, int, str, str]  # chain, record, kind, a part of the message
Tamper = Callable[[Db], Expected]


# -- pathway versions -----------------------------------------------------------------------------


def pathway_text_edited(db: Db) -> Expected:
    """The tester's edit: the CHF weight gain threshold from 1.0 kg to 9.0 kg."""
    version = db.row(t.pathway_versions, t.pathway_versions.c.key == CHF)
    text = version["source_text"].replace("threshold: 1.0 kg", "threshold: 9.0 kg")
    assert text != version["source_text"]
    db.update(t.pathway_versions, t.pathway_versions.c.key == CHF, source_text=text)
    return "pathways", version["number"], "edited", f"the text of {CHF} was edited"


def pathway_text_and_hash_edited(db: Db) -> Expected:
    import hashlib

    version = db.row(t.pathway_versions, t.pathway_versions.c.key == CHF)
    text = version["source_text"].replace("threshold: 1.0 kg", "threshold: 9.0 kg")
    db.update(t.pathway_versions, t.pathway_versions.c.key == CHF, source_text=text,
              source_hash=hashlib.sha256(text.encode()).hexdigest())  # fmt: skip
    return "pathways", version["number"], "edited", "edited after it was written"


def pathway_version_deleted(db: Db) -> Expected:
    number = db.row(t.pathway_versions, t.pathway_versions.c.key == CHF)["number"]
    db.run(t.pathway_versions.delete().where(t.pathway_versions.c.key == CHF))
    return "pathways", number, "deleted", "were deleted"


def pathway_version_added(db: Db) -> Expected:
    """A version that was never loaded, linked to the last one as the engine would."""
    last = db.rows(t.pathway_versions)[-1]
    forged = {**db.row(t.pathway_versions, t.pathway_versions.c.key == CHF),
              "key": "chf-post-discharge@9", "version": "9", "number": 3}  # fmt: skip
    forged.update(prev_hash=last["hash"], hash=link(last["hash"], hashed(forged, PATHWAY_FIELDS)))
    db.run(t.pathway_versions.insert().values(**forged))
    return "pathways", 3, "inserted", "appended after 2 outside the engine"


def pinned_version_missing(db: Db) -> Expected:
    """The version the instances are pinned to, gone, and the chain rebuilt without it."""
    db.run(t.pathway_versions.delete().where(t.pathway_versions.c.key == CHF))
    (foot,) = db.rows(t.pathway_versions)
    foot.update(number=1, prev_hash="0" * 64)
    foot["hash"] = link(foot["prev_hash"], hashed(foot, PATHWAY_FIELDS))
    db.update(t.pathway_versions, t.pathway_versions.c.key == FOOT, number=1,
              prev_hash=foot["prev_hash"], hash=foot["hash"])  # fmt: skip
    db.update(t.chain_heads, t.chain_heads.c.chain == "pathways", last=1, hash=foot["hash"])
    return "pathways", 0, "deleted", f"{CHF}, which instance"


# -- the outbox ----------------------------------------------------------------------------------


def _action(db: Db, status: str, action: str | None = None) -> dict[str, Any]:
    c = t.outbox.c
    return next(r for r in db.rows(t.outbox, c.status == status) if action in (None, r["action"]))


def outbox_row_deleted(db: Db) -> Expected:
    row = _action(db, "failed")
    db.run(t.outbox.delete().where(t.outbox.c.action_id == row["action_id"]))
    return "outbox", row["number"], "deleted", "were deleted"


def outbox_pending_marked_succeeded(db: Db) -> Expected:
    """Marked done without being carried out: nothing would ever carry it out."""
    row = _action(db, "pending")
    outcome = {"succeeded": True, "reference": "done", "error": None, "attempts": 1}
    db.update(t.outbox, t.outbox.c.action_id == row["action_id"], status="succeeded",
              attempts=1, outcome=json.dumps(outcome))  # fmt: skip
    return "outbox", row["number"], "edited", "records no action.succeeded for it"


def outbox_failed_marked_succeeded(db: Db) -> Expected:
    row = _action(db, "failed")
    outcome = {"succeeded": True, "reference": "booked", "error": None, "attempts": 1}
    db.update(t.outbox, t.outbox.c.action_id == row["action_id"], status="succeeded",
              outcome=json.dumps(outcome))  # fmt: skip
    return "outbox", row["number"], "edited", "records no action.succeeded for it"


def outbox_outcome_edited(db: Db) -> Expected:
    row = _action(db, "succeeded")
    outcome = {**json.loads(row["outcome"]), "reference": "somewhere-else"}
    db.update(t.outbox, t.outbox.c.action_id == row["action_id"], outcome=json.dumps(outcome))
    return "outbox", row["number"], "edited", "its outcome is not the one the input log records"


def outbox_enrol_marked_pending(db: Db) -> Expected:
    row = _action(db, "recorded", "enrol")
    db.update(t.outbox, t.outbox.c.action_id == row["action_id"], status="pending")
    return "outbox", row["number"], "edited", "recorded and never carried out"


def outbox_payload_edited(db: Db) -> Expected:
    row = _action(db, "pending")
    payload = {**json.loads(row["payload"]), "params": {"role": "nobody"}}
    db.update(t.outbox, t.outbox.c.action_id == row["action_id"], payload=json.dumps(payload))
    return "outbox", row["number"], "edited", "edited after it was written"


def outbox_row_inserted(db: Db) -> Expected:
    """An action nobody decided, linked to the last one as the engine would link it."""
    last = max(db.rows(t.outbox), key=lambda r: r["number"])
    forged = {**_action(db, "pending"), "action_id": "forged.1", "number": last["number"] + 1}
    forged.update(prev_hash=last["hash"], hash=link(last["hash"], hashed(forged, OUTBOX_FIELDS)))
    db.run(t.outbox.insert().values(**forged))
    return "outbox", forged["number"], "inserted", "appended after"


def outbox_head_edited(db: Db) -> Expected:
    head = db.head("outbox")
    db.update(t.chain_heads, t.chain_heads.c.chain == "outbox", hash="f" * 64)
    return "outbox", head["last"], "edited", "does not have the hash the chain's recorded head"


# -- dead letters --------------------------------------------------------------------------------


def _entries(db: Db, letter_id: int) -> list[dict[str, Any]]:
    return db.rows(t.dead_letter_log, t.dead_letter_log.c.letter_id == letter_id)


def _letter(db: Db, source: str) -> dict[str, Any]:
    return db.row(t.dead_letters, t.dead_letters.c.source == source)


def letter_deleted(db: Db) -> Expected:
    letter = _letter(db, "hl7v2")
    db.run(t.dead_letters.delete().where(t.dead_letters.c.id == letter["id"]))
    return "dead_letters", _entries(db, letter["id"])[-1]["number"], "deleted", "is gone"


def letter_payload_edited(db: Db) -> Expected:
    letter = db.rows(t.dead_letters)[0]
    db.update(t.dead_letters, t.dead_letters.c.id == letter["id"], payload='{"fixed": true}')
    number = _entries(db, letter["id"])[-1]["number"]
    return "dead_letters", number, "edited", "does not hold what came in"


def letter_bytes_edited(db: Db) -> Expected:
    letter = _letter(db, "hl7v2")
    raw = letter["payload_bytes"].replace(b"p-9", b"p-8")
    db.update(t.dead_letters, t.dead_letters.c.id == letter["id"], payload_bytes=raw)
    number = _entries(db, letter["id"])[-1]["number"]
    return "dead_letters", number, "edited", "does not hold what came in"


def letter_reason_edited(db: Db) -> Expected:
    letter = _letter(db, "fhir")  # retried and refused again: two entries
    db.update(t.dead_letters, t.dead_letters.c.id == letter["id"], reason="nothing wrong")
    number = _entries(db, letter["id"])[-1]["number"]
    return "dead_letters", number, "edited", "but its log says held (retried and refused again"


def letter_marked_accepted(db: Db) -> Expected:
    letter = db.rows(t.dead_letters)[0]
    db.update(t.dead_letters, t.dead_letters.c.id == letter["id"], status="accepted")
    number = _entries(db, letter["id"])[-1]["number"]
    return "dead_letters", number, "edited", f"dead letter {letter['id']} is accepted"


def letter_inserted(db: Db) -> Expected:
    letter = {**db.rows(t.dead_letters)[0], "id": 99}
    db.run(t.dead_letters.insert().values(**letter))
    return "dead_letters", 0, "inserted", "dead letter 99 is in no log"


def letter_log_cut_short(db: Db) -> Expected:
    last = db.rows(t.dead_letter_log)[-1]["number"]
    db.run(t.dead_letter_log.delete().where(t.dead_letter_log.c.number == last))
    return "dead_letters", last, "deleted", f"record {last} was written last"


# -- timers, instances, snapshots ----------------------------------------------------------------


def _timer(db: Db) -> dict[str, Any]:
    return db.rows(t.timers)[0]


def _where_timer(timer: dict[str, Any]) -> Any:
    return sa.and_(t.timers.c.instance_id == timer["instance_id"], t.timers.c.key == timer["key"])


def timer_deleted(db: Db) -> Expected:
    timer = _timer(db)
    db.run(t.timers.delete().where(_where_timer(timer)))
    return "snapshots", db.latest_snapshot(), "deleted", f"timer {timer['key']} of instance"


def timer_postponed(db: Db) -> Expected:
    timer = _timer(db)
    db.update(t.timers, _where_timer(timer), due_utc="2027-01-01T00:00:00.000000+00:00")
    return "snapshots", db.latest_snapshot(), "edited", "is due 2027-01-01"


def timer_inserted(db: Db) -> Expected:
    timer = {**_timer(db), "key": "deadline:forged"}
    db.run(t.timers.insert().values(**timer))
    return "snapshots", db.latest_snapshot(), "inserted", "timer deadline:forged of instance"


def _edited_state(row: dict[str, Any]) -> str:
    state = json.loads(row["state"])
    state["fired"] = [*state["fired"], "forged"]
    return json.dumps(state, separators=(",", ":"))


def instance_state_edited(db: Db) -> Expected:
    row = db.instance(FOOT, active=True)
    db.update(t.instances, t.instances.c.instance_id == row["instance_id"],
              state=_edited_state(row))  # fmt: skip
    return "snapshots", db.latest_snapshot(), "edited", "row is not the one Carepath wrote"


def instance_state_and_hash_edited(db: Db) -> Expected:
    row = db.instance(FOOT, active=True)
    state = _edited_state(row)
    db.update(t.instances, t.instances.c.instance_id == row["instance_id"], state=state,
              hash=state_hash(row["instance_id"], row["last_seq"], state))  # fmt: skip
    return "snapshots", db.latest_snapshot(), "edited", "their digest differs"


def instance_left_out_of_the_snapshot(db: Db) -> Expected:
    row = db.instance(FOOT, active=True)
    db.update(t.instances, t.instances.c.instance_id == row["instance_id"], state_seq=10**9)
    return "snapshots", db.latest_snapshot(), "edited", "their digest differs"


def ended_instance_marked_active(db: Db) -> Expected:
    row = db.instance(CHF, active=False)  # ended after the latest snapshot
    db.update(t.instances, t.instances.c.instance_id == row["instance_id"], active=True)
    return "snapshots", db.latest_snapshot(), "edited", "active, but the outbox holds its exit"


def active_instance_marked_ended(db: Db) -> Expected:
    row = db.instance(FOOT, active=True)
    db.update(t.instances, t.instances.c.instance_id == row["instance_id"], active=False)
    return "snapshots", db.latest_snapshot(), "edited", "ended, but the outbox holds no exit"


def instance_row_deleted(db: Db) -> Expected:
    row = db.instance(FOOT, active=True)
    db.run(t.instances.delete().where(t.instances.c.instance_id == row["instance_id"]))
    return "snapshots", db.latest_snapshot(), "deleted", f"{row['instance_id']}, enrolled by"


def instance_row_inserted(db: Db) -> Expected:
    row = {**db.instance(FOOT, active=True), "instance_id": "i-forged"}
    db.run(t.instances.insert().values(**row))
    return "snapshots", db.latest_snapshot(), "inserted", "i-forged was enrolled by no action"


def snapshot_deleted(db: Db) -> Expected:
    db.run(t.snapshots.delete().where(t.snapshots.c.number == 2))
    return "snapshots", 2, "deleted", "were deleted"


def latest_snapshot_deleted(db: Db) -> Expected:
    latest = db.latest_snapshot()
    db.run(t.snapshots.delete().where(t.snapshots.c.number == latest))
    return "snapshots", latest, "deleted", f"record {latest} was written last"


def snapshot_digest_edited(db: Db) -> Expected:
    db.update(t.snapshots, t.snapshots.c.number == 2, digest="0" * 1024)
    return "snapshots", 2, "edited", "edited after it was written"


def snapshot_count_edited(db: Db) -> Expected:
    db.update(t.snapshots, t.snapshots.c.number == 1, instances=0)
    return "snapshots", 1, "edited", "edited after it was written"


# -- holidays and chain heads --------------------------------------------------------------------


def holidays_edited(db: Db) -> Expected:
    db.update(t.holidays, t.holidays.c.number == 1, dates='["2026-03-04"]')
    return "holidays", 1, "edited", "edited after it was written"


def holidays_deleted(db: Db) -> Expected:
    db.run(t.holidays.delete().where(t.holidays.c.number == 2))
    return "holidays", 2, "deleted", "record 2 was written last"


def inputs_head_edited(db: Db) -> Expected:
    head = db.head("inputs")
    db.update(t.chain_heads, t.chain_heads.c.chain == "inputs", last=head["last"] + 5)
    return "inputs", head["last"], "edited", f"it says record {head['last'] + 5}"


def snapshots_head_edited(db: Db) -> Expected:
    head = db.head("snapshots")
    db.update(t.chain_heads, t.chain_heads.c.chain == "snapshots", hash="e" * 64)
    return "snapshots", head["last"], "edited", "does not have the hash the chain's recorded"


TAMPERINGS: list[Tamper] = [
    pathway_text_edited,
    pathway_text_and_hash_edited,
    pathway_version_deleted,
    pathway_version_added,
    pinned_version_missing,
    outbox_row_deleted,
    outbox_pending_marked_succeeded,
    outbox_failed_marked_succeeded,
    outbox_outcome_edited,
    outbox_enrol_marked_pending,
    outbox_payload_edited,
    outbox_row_inserted,
    outbox_head_edited,
    letter_deleted,
    letter_payload_edited,
    letter_bytes_edited,
    letter_reason_edited,
    letter_marked_accepted,
    letter_inserted,
    letter_log_cut_short,
    timer_deleted,
    timer_postponed,
    timer_inserted,
    instance_state_edited,
    instance_state_and_hash_edited,
    instance_left_out_of_the_snapshot,
    ended_instance_marked_active,
    active_instance_marked_ended,
    instance_row_deleted,
    instance_row_inserted,
    snapshot_deleted,
    latest_snapshot_deleted,
    snapshot_digest_edited,
    snapshot_count_edited,
    holidays_edited,
    holidays_deleted,
    inputs_head_edited,
    snapshots_head_edited,
]


def reports(cli: Callable[..., Result], url: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = cli("audit", "verify", "--db", url, "--json")
    return result.exit_code, {r["chain"]: r for r in json.loads(result.stdout)}


def test_a_store_holding_some_of_everything_verifies_intact(
    lived_in: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    db = Db(lived_in)
    statuses = {r["status"] for r in db.rows(t.outbox)}
    assert statuses == {"recorded", "pending", "succeeded", "failed"}
    assert len(db.rows(t.snapshots)) >= 3 and db.rows(t.timers)
    assert any(r["payload_bytes"] is not None for r in db.rows(t.dead_letters))
    code, found = reports(cli, store_url)
    assert code == 0, [r["problem"] for r in found.values()]
    assert list(found) == [
        "inputs", "audit", "pathways", "outbox", "holidays", "snapshots", "dead_letters"
    ]  # fmt: skip
    assert {c: r["records"] for c, r in found.items()} == {
        "inputs": lived_in.last_seq,
        "audit": len(db.rows(t.audit)),
        "pathways": 2,
        "outbox": len(db.rows(t.outbox)),
        "holidays": 2,
        "snapshots": db.latest_snapshot(),
        "dead_letters": 7,  # five letters; one refused again, one accepted
    }
    assert found["snapshots"]["checked"].startswith(
        f"3 instance states and 5 timers agree with snapshot {db.latest_snapshot()}"
    )
    text = cli("audit", "verify", "--db", store_url)
    assert text.exit_code == 0
    assert len([line for line in text.stdout.splitlines() if line.startswith("head ")]) == 7


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda f: f.__name__)
def test_verify_names_what_was_changed_behind_carepaths_back(
    lived_in: Store, store_url: str, cli: Callable[..., Result], tamper: Tamper
) -> None:
    chain, record, kind, says = tamper(Db(lived_in))
    code, found = reports(cli, store_url)
    assert code == 1
    problem = found[chain]["problem"]
    assert problem is not None, f"{chain}: nothing found"
    assert (problem["record"], problem["kind"]) == (record, kind), problem["message"]
    assert says in problem["message"]
    if chain != "inputs":
        assert found["inputs"]["problem"] is None and found["audit"]["problem"] is None
    text = cli("audit", "verify", "--db", store_url)
    assert text.exit_code == 1
    assert f"BROKEN {chain} record {record}: {kind}: {problem['message']}" in text.stdout


# -- a restart checks the snapshot before it trusts the states -----------------------------------


def restart(url: str, pathways: list[Pathway]) -> None:
    store = Store.open(url)
    try:
        DurableEngine(store, open_registry(store, pathways, T0)).close()
    finally:
        store.close()


def test_a_restart_on_an_intact_store_re_decides_the_tail_and_stays_intact(
    lived_in: Store, store_url: str, pathways: list[Pathway], cli: Callable[..., Result]
) -> None:
    restart(store_url, pathways)
    code, found = reports(cli, store_url)
    assert code == 0, [r["problem"] for r in found.values()]
    assert found["snapshots"]["records"] == Db(lived_in).latest_snapshot()


@pytest.mark.parametrize(
    ("tamper", "refusal"),
    [
        (
            instance_state_and_hash_edited,
            r"the instance states of snapshot \d+ \(as of input "
            r"\d+\) are not the ones it recorded",
        ),
        (instance_state_edited, "are not the ones it recorded"),
        (instance_left_out_of_the_snapshot, "are not the ones it recorded"),
        (
            latest_snapshot_deleted,
            r"the latest snapshot \(as of input \d+\) is not the last "
            "snapshot its chain records",
        ),
        (snapshots_head_edited, "is not the last snapshot its chain records"),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_a_restart_refuses_states_the_latest_snapshot_did_not_record(
    lived_in: Store, store_url: str, pathways: list[Pathway], tamper: Tamper, refusal: str
) -> None:
    tamper(Db(lived_in))
    with pytest.raises(StoreError, match=refusal) as refused:
        restart(store_url, pathways)
    assert "carepath audit verify" in str(refused.value)


def test_a_restart_refuses_a_latest_snapshot_that_was_edited(
    lived_in: Store, store_url: str, pathways: list[Pathway]
) -> None:
    db = Db(lived_in)
    db.update(t.snapshots, t.snapshots.c.number == db.latest_snapshot(), digest="1" * 1024)
    with pytest.raises(StoreError, match=r"\(as of input \d+\) was edited after it was written"):
        restart(store_url, pathways)
