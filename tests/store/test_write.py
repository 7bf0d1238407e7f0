"""What the store records: `simulate --db` fills every table; one input is one transaction (and
a group of them, one transaction too); a duplicate is recorded and does nothing else; the hash
chains; pathway versions are immutable."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from engine.catalogue import Event
from engine.core import Decision, InstanceState, Registry
from engine.core.inputs import Input
from engine.definition.loader import load_text
from engine.definition.model import Pathway
from engine.errors import StoreError
from engine.runtime.durable import DurableEngine
from engine.runtime.memory import MemoryEngine
from engine.store import Recorded, Store
from engine.store import schema as t
from engine.store.chain import (
    AUDIT_FIELDS,
    GENESIS,
    HOLIDAY_FIELDS,
    INPUT_FIELDS,
    LETTER_FIELDS,
    OUTBOX_FIELDS,
    PATHWAY_FIELDS,
    SNAPSHOT_FIELDS,
    hashed,
    link,
)

ROOT = Path(__file__).resolve().parents[2]
PATHWAYS = ROOT / "pathways"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
RECORDED_TABLES = (t.inputs, t.audit, t.outbox, t.instances, t.timers, t.chain_heads)


@pytest.fixture
def reference_store(tmp_path: Path) -> Iterator[Store]:
    """A second, independent store (SQLite) to compare against."""
    opened = Store.open(f"sqlite:///{tmp_path / 'reference.db'}")
    yield opened
    opened.close()


def dump(store: Store, *tables: sa.Table) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of each table, in primary-key order."""
    out = {}
    with store.engine.connect() as conn:
        for table in tables or RECORDED_TABLES:
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(r) for r in rows]
    return out


def tail(store: Store) -> tuple[int, str, int, str]:
    return store.last_seq, store.input_hash, store.last_audit, store.audit_hash


def decided(store: Store, registry: Registry, events: list[Event]) -> list[Recorded]:
    """The records `DurableEngine` would write for `events` on top of `store`, not written."""
    out: list[Recorded] = []

    def journal(
        input_: Input | Event,
        patient_id: str,
        now: datetime,
        decision: Decision,
        changed: list[InstanceState],
    ) -> None:
        if isinstance(input_, Event):
            payload = input_.model_dump(mode="json")
            out.append(
                Recorded(
                    None, "duplicate", input_.id, patient_id, input_.type,
                    input_.occurred_at, now, now, payload,
                )
            )  # fmt: skip
        else:
            out.append(Recorded.of(input_, now, decision, changed, patient_id))

    memory = MemoryEngine(registry, journal=journal)
    memory.restore(store.instances(), store.clock())
    memory.seen = store.known_event_ids([e.id for e in events])
    for event in events:
        memory.submit(event)
    return out


def run(store: Store, registry: Registry, events: list[Event]) -> list[Decision]:
    """Ingest `events`, then snapshot, as an engine that stops (DurableEngine.close) does."""
    decisions = DurableEngine(store, registry).submit_many(events)
    store.snapshot()
    return decisions


# -- simulate --db ------------------------------------------------------------------------------


def test_simulate_db_writes_inputs_instances_timers_outbox_and_audit(
    store_url: str, events_file: Path, history: list[Event], cli: Callable[..., Result]
) -> None:
    plain = cli("simulate", "--pathways", str(PATHWAYS), "--events", str(events_file))
    assert plain.exit_code == 0, plain.stderr
    result = cli(
        "simulate", "--pathways", str(PATHWAYS), "--events", str(events_file), "--db", store_url
    )
    assert result.exit_code == 0, result.stderr
    # the store changes nothing about what is decided
    assert result.stdout == plain.stdout
    printed = [json.loads(line) for line in result.stdout.splitlines()]

    store = Store.open(store_url)
    try:
        inputs = dump(store, t.inputs)["inputs"]
        kinds = [row[1] for row in inputs]
        assert [row[0] for row in inputs] == list(range(1, len(inputs) + 1))
        assert sorted(r[2] for r in inputs if r[1] == "event") == sorted(e.id for e in history)
        assert set(kinds) == {"event", "timer"}
        assert kinds.count("timer") >= 3  # the red flag's level 2, missing weights, a deadline

        instances = {s.patient_id: s for s in store.instances()}
        assert set(instances) == {"p-001", "p-003", "p-004"}  # p-002 went to a nursing facility
        pending = {(s.instance_id, k, v) for s in instances.values() for k, v in s.timers.items()}
        stored = {(i, k, datetime.fromisoformat(due)) for i, k, due in store.pending_timers()}
        assert stored == pending and stored

        assert store.actions() == printed
        assert {"enrol", "outreach_call", "escalate", "book_foot_screening"} <= {
            a["action"] for a in printed
        }
        audit = store.audit_records()
        assert {"enrol", "fire", "escalate", "acknowledge", "deadline", "cancel"} <= {
            r["kind"] for r in audit
        }
        # every audit record names its input and the three times
        by_seq = {row[0]: row for row in inputs}
        for record in audit:
            assert record["input"] == by_seq[record["seq"]][2]
            assert record["decided_at"] == by_seq[record["seq"]][8]
        assert {key for key, _, _ in store.pathway_sources()} == {
            "chf-post-discharge@1",
            "diabetic-foot-care@1",
        }
        heads = {c: (n, h) for c, n, h in dump(store, t.chain_heads)["chain_heads"]}
        assert heads["audit"] == (store.last_audit, store.audit_hash)
        assert heads["inputs"] == (store.last_seq, store.input_hash)
        assert heads["outbox"] == (len(printed), store.outbox_hash)
        assert heads["pathways"][0] == 2
        assert heads["snapshots"] == (1, store.snapshot_hash)  # simulate's, at the end
        assert heads["holidays"] == heads["dead_letters"] == (0, GENESIS)
        before = dump(store)
    finally:
        store.close()

    again = cli(
        "simulate", "--pathways", str(PATHWAYS), "--events", str(events_file), "--db", store_url
    )
    assert again.exit_code == 0, again.stderr
    assert again.stdout == ""  # every event was a duplicate: nothing decided
    store = Store.open(store_url)
    try:
        after = dump(store)
        added = after["inputs"][len(before["inputs"]) :]
        assert sorted(r[2] for r in added) == sorted(e.id for e in history)
        assert {r[1] for r in added} == {"duplicate"}
        for name in ("audit", "outbox", "instances", "timers"):
            assert after[name] == before[name], name
    finally:
        store.close()


# -- transactions -------------------------------------------------------------------------------


def test_a_failure_after_the_first_insert_commits_nothing_of_the_batch(
    store: Store, reference_store: Store, registry: Registry, history: list[Event]
) -> None:
    first, rest = history[:4], history[4:]
    engine = DurableEngine(store, registry)
    engine.submit_many(first)
    before, chain_tail = dump(store), tail(store)
    inserts: list[str] = []

    def fail_second_insert(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)
            if len(inserts) == 2:
                raise sa.exc.OperationalError(statement, {}, Exception("connection lost"))

    sa.event.listen(store.engine, "before_cursor_execute", fail_second_insert)
    try:
        with pytest.raises(StoreError, match="connection lost"):
            engine.submit_many(rest)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", fail_second_insert)
    assert "inputs" in inserts[0]  # the batch's log records had been sent
    assert dump(store) == before
    assert tail(store) == chain_tail

    # the sender re-sends; the result is what an undisturbed run records, hashes and all
    engine.submit_many(rest)
    store.snapshot()
    run(reference_store, registry, history)
    assert dump(store) == dump(reference_store)


def test_a_constraint_violated_late_in_a_batch_commits_nothing_of_it(
    store: Store, registry: Registry, history: list[Event]
) -> None:
    run(store, registry, history[:4])
    before, chain_tail = dump(store), tail(store)
    batch = decided(store, registry, history[4:])
    taken = store.actions()[0]  # an action id already in the outbox
    clash = decided(store, registry, history[4:5])[0]
    clash.input_id, clash.payload = "e-clash", {**clash.payload, "id": "e-clash"}
    clash.decision = Decision(actions=[_action_from(taken)], audit=clash.decision.audit)
    assert len(batch) > 3
    with pytest.raises(StoreError):
        store.write([*batch, clash])
    assert dump(store) == before
    assert tail(store) == chain_tail
    store.write(batch)  # the same records without the bad one go in, chained to what was there
    assert dump(store, t.inputs)["inputs"][len(before["inputs"])][10] == chain_tail[1]


def _action_from(data: dict[str, Any]) -> Any:
    from engine.core import Action

    return Action(
        id=data["id"],
        action=data["action"],
        patient_id=data["patient_id"],
        pathway=data["pathway"],
        pathway_version=data["pathway_version"],
        instance_id=data["instance_id"],
        rule=data["rule"],
        fired_at=datetime.fromisoformat(data["fired_at"]),
        due_by=None,
        params=data["params"],
    )


def test_group_commit_writes_many_inputs_in_one_transaction(
    store: Store, reference_store: Store, registry: Registry, history: list[Event]
) -> None:
    batch = decided(store, registry, history)
    commits: list[int] = []
    sa.event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    store.write(batch)
    assert len(commits) == 1
    assert len(batch) > len(history)  # timers fired between the events
    assert [r.seq for r in batch] == list(range(1, len(batch) + 1))

    # one input per transaction records exactly the same thing, hashes included
    for record in decided(reference_store, registry, history):
        reference_store.write([record])
    store.snapshot()
    reference_store.snapshot()
    assert dump(store) == dump(reference_store)


# -- duplicates ---------------------------------------------------------------------------------


def test_a_repeated_event_id_is_recorded_as_a_duplicate_and_does_nothing_else(
    store: Store, registry: Registry, history: list[Event]
) -> None:
    run(store, registry, history)
    before = dump(store)
    weight, discharge = history[6], history[1]
    assert (weight.id, discharge.id) == ("e-003", "e-001")
    decisions = run(store, registry, [weight, discharge])
    assert [d.actions for d in decisions] == [[], []]
    after = dump(store)
    added = after["inputs"][len(before["inputs"]) :]
    assert [(r[1], r[2], r[3], r[5]) for r in added] == [
        ("duplicate", "e-003", "p-001", "observation.weight"),
        ("duplicate", "e-001", "p-001", "encounter.discharged"),
    ]
    assert json.loads(added[0][9]) == weight.model_dump(mode="json")
    for name in ("audit", "outbox", "instances", "timers"):
        assert after[name] == before[name], name
    assert store.known_event_ids(["e-003", "e-001"]) == {"e-003", "e-001"}


def test_the_same_event_twice_in_one_batch_is_accepted_once(
    store: Store, registry: Registry, history: list[Event]
) -> None:
    run(store, registry, history[:3])
    discharge = history[3]  # p-003's discharge enrols
    run(store, registry, [discharge, discharge])
    rows = dump(store, t.inputs)["inputs"]
    assert [r[1] for r in rows if r[2] == discharge.id] == ["event", "duplicate"]
    duplicate_seq = next(r[0] for r in rows if r[2] == discharge.id and r[1] == "duplicate")
    tables = dump(store, t.audit, t.outbox)
    assert not [r for r in tables["audit"] if r[1] == duplicate_seq]
    assert not [r for r in tables["outbox"] if r[1] == duplicate_seq]
    assert len([s for s in store.instances() if s.patient_id == "p-003"]) == 1


# -- hash chains --------------------------------------------------------------------------------


def _assert_chained(rows: list[Any], fields: tuple[str, ...], key: str) -> None:
    prev = GENESIS
    for number, row in enumerate(rows, start=1):
        assert row[key] == number
        assert row["prev_hash"] == prev
        assert row["hash"] == link(prev, hashed(row, fields))
        prev = row["hash"]


def test_hash_chains_start_at_genesis_and_link_each_record_to_the_previous(
    store_url: str, registry: Registry, pathways: list[Pathway], history: list[Event]
) -> None:
    store = Store.open(store_url)
    run(store, registry, history[:5])
    store.close()
    store = Store.open(store_url)  # the chain carries on across batches and re-opens
    try:
        run(store, registry, history[5:])
        run(store, registry, history[2:4])  # duplicates are in the chain too
        store.save_pathways(pathways, T0)
        store.record_holidays([date(2026, 3, 3)])
        store.dead_letter("json", "not JSON", b"\xff", T0)
        with store.engine.connect() as conn:

            def rows(table: sa.Table, key: str) -> list[Any]:
                query = sa.select(table).order_by(table.c[key])
                return [r._mapping for r in conn.execute(query)]

            chains = {
                "inputs": (rows(t.inputs, "seq"), INPUT_FIELDS, "seq"),
                "audit": (rows(t.audit, "id"), AUDIT_FIELDS, "id"),
                "outbox": (rows(t.outbox, "number"), OUTBOX_FIELDS, "number"),
                "snapshots": (rows(t.snapshots, "number"), SNAPSHOT_FIELDS, "number"),
                "pathways": (rows(t.pathway_versions, "number"), PATHWAY_FIELDS, "number"),
                "holidays": (rows(t.holidays, "number"), HOLIDAY_FIELDS, "number"),
                "dead_letters": (rows(t.dead_letter_log, "number"), LETTER_FIELDS, "number"),
            }
            heads = {r.chain: (r.last, r.hash) for r in conn.execute(sa.select(t.chain_heads))}
        inputs = chains["inputs"][0]
        assert inputs[-1]["kind"] == "duplicate"
        assert len(chains["snapshots"][0]) == 3  # one per run
        for name, (chained, fields, key) in chains.items():
            assert chained and chained[0]["prev_hash"] == GENESIS, name
            _assert_chained(chained, fields, key)
            assert heads[name] == (len(chained), chained[-1]["hash"]), name
    finally:
        store.close()


# -- pathway versions ---------------------------------------------------------------------------


def _changed(pathway: Pathway, old: str, new: str, file: Path) -> Pathway:
    text = pathway.source_text.replace(old, new)
    assert text != pathway.source_text
    file.write_text(text, encoding="utf-8")
    loaded, problems = load_text(str(file), text)
    assert loaded is not None, problems
    return loaded


def test_save_pathways_refuses_a_changed_file_under_an_existing_version(
    store: Store, pathways: list[Pathway], tmp_path: Path
) -> None:
    chf = next(p for p in pathways if p.id == "chf-post-discharge")
    store.save_pathways(pathways, T0)
    store.save_pathways(pathways, T0)  # the same files again: nothing to do
    assert len(store.pathway_sources()) == 2

    edited = _changed(chf, "weight_gain_24h_threshold: 1.0 kg", "weight_gain_24h_threshold: 0.5 kg",
                      tmp_path / "chf.yaml")  # fmt: skip
    assert edited.key == chf.key
    with pytest.raises(StoreError, match=r"chf-post-discharge@1 .* differs from") as caught:
        store.save_pathways([edited], T0)
    assert "new version" in str(caught.value)
    assert dict((k, text) for k, _, text in store.pathway_sources())[chf.key] == chf.source_text

    bumped = _changed(edited, "\nversion: 1\n", "\nversion: 2\n", tmp_path / "chf.yaml")
    store.save_pathways([bumped], T0)
    assert [k for k, _, _ in store.pathway_sources()] == [
        "chf-post-discharge@1",
        "chf-post-discharge@2",
        "diabetic-foot-care@1",
    ]


def test_simulate_refuses_a_changed_pathway_under_a_recorded_version(
    store_url: str, events_file: Path, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    first = cli(
        "simulate", "--pathways", str(PATHWAYS), "--events", str(events_file), "--db", store_url
    )
    assert first.exit_code == 0, first.stderr
    changed = tmp_path / "pathways"
    changed.mkdir()
    text = (PATHWAYS / "chf-post-discharge.yaml").read_text(encoding="utf-8")
    (changed / "chf.yaml").write_text(text.replace("pathway_length: 30d", "pathway_length: 20d"))
    second = cli(
        "simulate", "--pathways", str(changed), "--events", str(events_file), "--db", store_url
    )
    assert second.exit_code == 2
    assert "chf-post-discharge@1" in second.stderr and "new version" in second.stderr


@pytest.mark.postgres
def test_postgresql_refuses_a_value_longer_than_its_column(pg_url: str) -> None:
    """Rows go to PostgreSQL as JSON taken apart in the server; a text longer than its column
    must be refused as a row by row insert refuses it, never cut short (a cut timer key would
    no longer match the hash the chain holds for it)."""
    store = Store.open(pg_url)
    try:
        with pytest.raises(sa.exc.DataError, match="too long"), store.engine.begin() as conn:
            store._sql.run(conn, store._sql.heads, [("x" * 17, 1, "h")])  # chain: 16 at most
    finally:
        store.close()
