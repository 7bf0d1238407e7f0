"""`replay(store, jobs=N)`: everyone's history split by patient over worker processes gives the
result one process gives; a divergence is the one one process reports; a failing worker makes
replay fail. Workers fork from a server process, whose start costs about a second of imports:
the tests share it, but each parallel replay still costs a few tenths of a second."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from engine.catalogue import Event
from engine.definition.model import Pathway
from engine.errors import RuntimeFailure, StoreError
from engine.replay import ReplayResult, replay
from engine.replay.history import inputs_of, patient_ranges
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import Store
from engine.store import schema as t
from tests.replay.records import alter


def test_ranges_are_contiguous_and_balanced_by_inputs(recorded: Store, tmp_path: Path) -> None:
    with recorded.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(t.inputs)).scalar_one()
    assert [(r.first, r.last, r.inputs) for r in patient_ranges(recorded, 1)] == [
        ("p-01", "p-07", total)
    ]
    assert [(r.first, r.last, r.inputs) for r in patient_ranges(recorded, 2)] == [
        ("p-01", "p-03", 29),
        ("p-04", "p-07", 20),
    ]
    # more parts than patients: one range each, never a patient split
    ranges = patient_ranges(recorded, 100)
    assert [(r.first, r.last) for r in ranges] == [(f"p-0{n}", f"p-0{n}") for n in range(1, 8)]
    assert sum(r.inputs for r in ranges) == total
    assert {(r.until, r.until_hash) for r in ranges} == {(recorded.last_seq, recorded.input_hash)}
    assert len(inputs_of(recorded, ranges[1])) == ranges[1].inputs

    # a worker that opened another store says so instead of replaying it
    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with pytest.raises(StoreError, match=rf"\(input {total} is missing\): not the same store"):
            inputs_of(other, ranges[0])
    finally:
        other.close()


def test_parallel_replay_equals_one_process(recorded: Store) -> None:
    calls: list[tuple[int, int]] = []
    alone = replay(recorded)
    assert alone.identical and alone.timeline
    two = replay(recorded, jobs=2, progress=lambda done, total: calls.append((done, total)))
    assert two.as_dict() == alone.as_dict()
    assert two == alone
    assert replay(recorded, jobs=3).as_dict() == alone.as_dict()

    # progress, counted in this process: every input of the store, as one process counts them
    total = len(list(recorded.inputs()))
    assert calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})


def test_a_divergence_is_the_one_a_single_process_reports(recorded: Store) -> None:
    """Two records altered, one in each range; the second range's comes first, so the first
    range's worker goes on past it."""
    (action,) = [
        a for a in recorded.actions(patient_id="p-04") if a["rule"] == "follow_up_not_booked"
    ]
    alter(recorded, t.outbox, t.outbox.c.action_id, action["id"], "payload",
          lambda a: a["params"].update(role="nobody"))  # fmt: skip
    with recorded.engine.connect() as conn:
        overdue = conn.execute(
            sa.select(t.audit.c.id)
            .join(t.inputs, t.inputs.c.seq == t.audit.c.seq)
            .where(t.audit.c.rule == "follow_up_overdue", t.inputs.c.patient_id == "p-01")
        ).scalar_one()
    alter(recorded, t.audit, t.audit.c.id, overdue, "record",
          lambda r: r.update(note="tampered"))  # fmt: skip
    assert [(r.first, r.last) for r in patient_ranges(recorded, 2)] == [
        ("p-01", "p-03"),
        ("p-04", "p-07"),
    ]

    alone = replay(recorded)
    two = replay(recorded, jobs=2)
    assert alone.divergence is not None
    assert (alone.divergence.what, alone.divergence.recorded[0]["params"]["role"]) == (
        "actions",
        "nobody",
    )
    assert two.divergence == alone.divergence
    assert two.inputs > alone.inputs  # each worker stops at its own first divergence


def test_a_failing_worker_fails_the_replay(recorded: Store) -> None:
    """A pathway version that no longer loads: every worker raises a DefinitionError, which
    cannot be rebuilt from its message on this side, so it comes back as a RuntimeFailure."""
    with recorded.engine.begin() as conn:
        conn.execute(
            t.pathway_versions.update()
            .where(t.pathway_versions.c.pathway_id == "chf-post-discharge")
            .values(source_text="id: [chf-post-discharge")
        )
    with pytest.raises(RuntimeFailure, match="a replay worker failed: DefinitionError"):
        replay(recorded, jobs=2)


def test_where_ranges_make_no_sense_replay_stays_in_this_process(
    recorded: Store,
    tmp_path: Path,
    pathways: list[Pathway],
    cohort: list[Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_workers(*args: Any) -> ReplayResult:
        raise AssertionError("replay started workers")

    monkeypatch.setattr("engine.replay.replayer._replay_in_workers", no_workers)
    one = replay(recorded, patient_id="p-02", jobs=4)  # jobs only split everyone's history
    assert one.identical and one.inputs > 5
    empty = Store.open(f"sqlite:///{tmp_path / 'empty.db'}")
    single = Store.open(f"sqlite:///{tmp_path / 'single.db'}")
    try:
        assert patient_ranges(empty, 4) == []
        assert replay(empty, jobs=4) == ReplayResult()
        engine = DurableEngine(single, open_registry(single, pathways, cohort[0].occurred_at))
        engine.submit_many([e for e in cohort if e.patient_id == "p-02"])
        assert len(patient_ranges(single, 4)) == 1
        everyone = replay(single, jobs=4)
        assert everyone.identical and everyone.inputs > 5
    finally:
        empty.close()
        single.close()


def test_cli_jobs_gives_the_same_report(
    recorded: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    one = cli("replay", "--db", store_url, "--all", "--jobs", "1", "--json")
    two = cli("replay", "--db", store_url, "--all", "--jobs", "2", "--json")
    assert (one.exit_code, two.exit_code) == (0, 0)
    assert json.loads(one.stdout)["identical"] is True
    assert two.stdout == one.stdout
