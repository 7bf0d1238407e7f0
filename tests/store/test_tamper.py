"""Tamper evidence: `carepath audit verify` passes an intact store and, for a record edited,
deleted, inserted or reordered in either chain, exits 1 naming the record and what was done."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from engine.catalogue import Event
from engine.core import Registry
from engine.definition.model import Pathway
from engine.runtime.durable import DurableEngine
from engine.store import Store
from engine.store import schema as t
from engine.store.chain import AUDIT_FIELDS, INPUT_FIELDS, hashed, link

K = 3  # the record tampered with in the middle of a chain


@pytest.fixture
def recorded(
    store_url: str, registry: Registry, pathways: list[Pathway], history: list[Event]
) -> Iterator[Store]:
    """A store holding the history (two batches), for the test to tamper with."""
    store = Store.open(store_url)
    store.save_pathways(pathways, history[0].occurred_at)
    engine = DurableEngine(store, registry)
    engine.submit_many(history[:5])
    engine.submit_many(history[5:])
    yield store
    store.close()


def verify(cli: Callable[..., Result], url: str) -> tuple[int, dict[str, Any]]:
    result = cli("audit", "verify", "--db", url, "--json")
    return result.exit_code, {r["chain"]: r for r in json.loads(result.stdout)}


class Chain:
    """Raw SQL on one chain's table, as someone with database access could run it."""

    def __init__(self, store: Store, name: str) -> None:
        self.engine = store.engine
        self.table = t.inputs if name == "inputs" else t.audit
        self.key = self.table.c.seq if name == "inputs" else self.table.c.id
        self.fields = INPUT_FIELDS if name == "inputs" else AUDIT_FIELDS
        self.body = "payload" if name == "inputs" else "record"

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = sa.select(self.table).order_by(self.key)
            return [dict(r._mapping) for r in conn.execute(query)]

    def last(self) -> int:
        return int(self.rows()[-1][self.key.name])

    def execute(self, statement: Any, *rows: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement, list(rows) if rows else None)

    def edit(self, number: int) -> None:
        row = next(r for r in self.rows() if r[self.key.name] == number)
        body = json.loads(row[self.body])
        body["tampered"] = True
        self.execute(
            self.table.update()
            .where(self.key == number)
            .values({self.body: json.dumps(body, sort_keys=True, separators=(",", ":"))})
        )

    def delete(self, number: int) -> None:
        self.execute(self.table.delete().where(self.key == number))

    def swap(self, a: int, b: int) -> None:
        for old, new in ((a, -1), (b, a), (-1, b)):
            self.execute(self.table.update().where(self.key == old).values({self.key.name: new}))

    def forge(self, number: int, *, link_it: bool) -> None:
        """Insert a made-up record as `number`, renumbering the records from there on. Linked,
        it carries the previous record's hash and a correctly computed hash of its own."""
        rows = self.rows()
        model = dict(rows[min(number, len(rows) + 1) - 2])
        shift = len(rows) + 10
        for move in (shift, -shift + 1):
            self.execute(
                self.table.update()
                .where(self.key >= (number if move > 0 else number + shift))
                .values({self.key.name: self.key + move})
            )
        model[self.key.name] = number
        model[self.body] = json.dumps({"forged": True})
        if "input_id" in model:
            model["input_id"] = "forged-1"
        if link_it:
            model["prev_hash"] = rows[number - 2]["hash"]
            model["hash"] = link(model["prev_hash"], hashed(model, self.fields))
        else:
            model["prev_hash"] = model["hash"] = "f" * 64
        self.execute(self.table.insert(), model)


def test_verify_passes_an_intact_store(
    recorded: Store, store_url: str, cli: Callable[..., Result]
) -> None:
    result = cli("audit", "verify", "--db", store_url)
    assert result.exit_code == 0, result.stdout
    inputs, audit = Chain(recorded, "inputs").last(), Chain(recorded, "audit").last()
    heads = {c: Chain(recorded, c).rows()[-1]["hash"] for c in ("inputs", "audit")}
    lines = result.stdout.splitlines()
    # the lines of the input log and the audit trail as they always were, the others after
    assert lines[:2] == [
        f"ok inputs: {inputs} records, chain intact",
        f"ok audit: {audit} records, chain intact",
    ]
    assert [line.split(":")[0] for line in lines[2:7]] == [
        "ok pathways", "ok outbox", "ok holidays", "ok snapshots", "ok dead_letters"
    ]  # fmt: skip
    assert lines[7:9] == [
        f"head inputs {inputs} {heads['inputs']}",
        f"head audit {audit} {heads['audit']}",
    ]
    assert [line.split()[1] for line in lines[9:]] == ["pathways", "outbox"]  # no snapshot yet
    code, reports = verify(cli, store_url)
    assert code == 0
    assert {c: (r["records"], r["problem"]) for c, r in reports.items()} == {
        "inputs": (inputs, None),
        "audit": (audit, None),
        "pathways": (2, None),
        "outbox": (len(recorded.actions()), None),
        "holidays": (0, None),
        "snapshots": (0, None),
        "dead_letters": (0, None),
    }


CASES: list[tuple[str, Callable[[Chain], None], Callable[[Chain], int], str]] = [
    ("edit a payload", lambda c: c.edit(K), lambda c: K, "edited"),
    ("delete a middle record", lambda c: c.delete(K), lambda c: K, "deleted"),
    ("delete the first record", lambda c: c.delete(1), lambda c: 1, "deleted"),
    ("delete the last record", lambda c: c.delete(c.last()), lambda c: c.last() + 1, "deleted"),
    ("append a forged record", lambda c: c.forge(c.last() + 1, link_it=True), Chain.last,
     "inserted"),
    ("insert a forged record, linked", lambda c: c.forge(K, link_it=True), lambda c: K,
     "inserted"),
    ("insert a forged record, unlinked", lambda c: c.forge(K, link_it=False), lambda c: K,
     "inserted"),
    ("append a forged record after a gap", lambda c: c.forge(c.last() + 5, link_it=False),
     Chain.last, "inserted"),
    ("swap two records", lambda c: c.swap(K, K + 1), lambda c: K, "reordered"),
    ("move a record back", lambda c: c.swap(K, K + 3), lambda c: K, "reordered"),
]  # fmt: skip


@pytest.mark.parametrize("chain", ["inputs", "audit"])
@pytest.mark.parametrize(
    ("tamper", "expected_record", "kind"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_verify_names_the_tampered_record_and_what_was_done(
    recorded: Store,
    store_url: str,
    cli: Callable[..., Result],
    chain: str,
    tamper: Callable[[Chain], None],
    expected_record: Callable[[Chain], int],
    kind: str,
) -> None:
    target = Chain(recorded, chain)
    assert target.last() > K + 3
    tamper(target)
    record = expected_record(target)

    code, reports = verify(cli, store_url)
    assert code == 1
    assert reports[chain]["problem"] is not None
    assert (reports[chain]["problem"]["record"], reports[chain]["problem"]["kind"]) == (
        record,
        kind,
    ), reports[chain]["problem"]["message"]
    other = "audit" if chain == "inputs" else "inputs"
    assert reports[other]["problem"] is None

    text = cli("audit", "verify", "--db", store_url)
    assert text.exit_code == 1
    assert f"BROKEN {chain} record {record}: {kind}: " in text.stdout
    assert f"ok {other}: " in text.stdout


def rewrite(chain: Chain, number: int) -> None:
    """Edit record `number` and recompute every hash from there on, and the chain's recorded head:
    what someone with write access to the whole database and our source code could do."""
    chain.edit(number)
    prev = None
    for row in chain.rows():
        if row[chain.key.name] >= number:
            row["prev_hash"] = prev
            row["hash"] = link(prev, hashed(row, chain.fields))
            chain.execute(
                chain.table.update()
                .where(chain.key == row[chain.key.name])
                .values(prev_hash=row["prev_hash"], hash=row["hash"])
            )
        prev = row["hash"]
    chain.execute(
        t.chain_heads.update().where(t.chain_heads.c.chain == chain.table.name).values(hash=prev)
    )


@pytest.mark.parametrize("chain", ["inputs", "audit"])
def test_an_anchor_kept_elsewhere_catches_a_consistent_rewrite(
    recorded: Store,
    store_url: str,
    cli: Callable[..., Result],
    history: list[Event],
    registry: Registry,
    tmp_path: Any,
    chain: str,
) -> None:
    saved = cli("audit", "verify", "--db", store_url, "--json")
    assert saved.exit_code == 0
    anchor = tmp_path / "anchor.json"
    anchor.write_text(saved.stdout, encoding="utf-8")
    anchored = {r["chain"]: r["head"]["record"] for r in json.loads(saved.stdout) if r["head"]}

    # history goes on after the anchor was taken: still verified
    DurableEngine(recorded, registry).submit_many(
        [e.model_copy(update={"id": f"{e.id}-later"}) for e in history[-3:]]
    )
    later = cli("audit", "verify", "--db", store_url, "--anchor", str(anchor))
    assert later.exit_code == 0, later.stdout

    target = Chain(recorded, chain)
    rewrite(target, 2)
    # the chain alone cannot tell: every hash was recomputed
    assert cli("audit", "verify", "--db", store_url).exit_code == 0
    code = cli("audit", "verify", "--db", store_url, "--anchor", str(anchor), "--json")
    problem = {r["chain"]: r["problem"] for r in json.loads(code.stdout)}[chain]
    assert code.exit_code == 1
    assert problem["record"] == anchored[chain]
    assert problem["kind"] == "edited"
    assert "rewritten" in problem["message"]


def test_an_anchor_that_is_not_verify_output_is_refused(
    recorded: Store, store_url: str, cli: Callable[..., Result], tmp_path: Any
) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"head": 1}', encoding="utf-8")
    result = cli("audit", "verify", "--db", store_url, "--anchor", str(bogus))
    assert result.exit_code == 2
    assert "not an `audit verify --json` output" in result.stderr
