"""`carepath audit verify`: walk the hash chains and name the first record that was edited,
deleted, inserted or reordered."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from engine.store import schema as t
from engine.store.chain import AUDIT_FIELDS, GENESIS, INPUT_FIELDS, hashed, link
from engine.store.store import Store


@dataclass(frozen=True, slots=True)
class ChainProblem:
    chain: str  # inputs | audit
    record: int  # seq (inputs) or id (audit)
    kind: str  # edited | deleted | inserted | reordered | truncated
    message: str

    def render(self) -> str:
        return f"{self.chain} record {self.record}: {self.kind}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "record": self.record,
            "kind": self.kind,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Anchor:
    """A chain's head as seen by an earlier `audit verify`, kept outside the database (a ticket,
    a signed e-mail, a WORM bucket). The chain cannot prove on its own that it was not rewritten
    from the start by someone able to recompute every hash; a head kept elsewhere can."""

    chain: str
    record: int
    hash: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    chain: str
    records: int
    problem: ChainProblem | None
    head: Anchor | None = None  # the last record as it is now (None for an empty chain)

    def as_dict(self) -> dict[str, Any]:
        head = {"record": self.head.record, "hash": self.head.hash} if self.head else None
        problem = self.problem.as_dict() if self.problem else None
        return {"chain": self.chain, "records": self.records, "problem": problem, "head": head}


def anchors_from_reports(reports: Any) -> list[Anchor]:
    """Anchors from the output of an earlier `audit verify --json`; ValueError for anything
    else."""
    if not isinstance(reports, list) or not all(isinstance(r, dict) for r in reports):
        raise ValueError("expected a list of chain reports")
    return [
        Anchor(r["chain"], int(r["head"]["record"]), str(r["head"]["hash"]))
        for r in reports
        if r.get("head")
    ]


def verify(store: Store, anchors: Sequence[Anchor] = ()) -> list[ChainReport]:
    """Walk both chains; with `anchors`, also check that each anchored record is still there with
    the hash it had (history up to an anchor cannot be rewritten, even consistently)."""
    pinned = {a.chain: a for a in anchors}
    with store.engine.connect() as conn:
        heads = {r.chain: (r.last, r.hash) for r in conn.execute(sa.select(t.chain_heads))}
        out = []
        for name, table, key, fields in (
            ("inputs", t.inputs, t.inputs.c.seq, INPUT_FIELDS),
            ("audit", t.audit, t.audit.c.id, AUDIT_FIELDS),
        ):
            rows = list(conn.execute(sa.select(table).order_by(key)))
            ident = "seq" if name == "inputs" else "id"
            head = heads.get(name)
            problem = (
                _walk(name, ident, rows, fields, head[0] if head else None)
                or _check_head(name, ident, rows, head)
                or _check_anchor(name, ident, rows, pinned.get(name))
            )
            now = Anchor(name, getattr(rows[-1], ident), rows[-1].hash) if rows else None
            out.append(ChainReport(name, len(rows), problem, now))
    return out


def _check_anchor(
    chain: str, ident: str, rows: list[Any], anchor: Anchor | None
) -> ChainProblem | None:
    if anchor is None:
        return None
    row = next((r for r in rows if getattr(r, ident) == anchor.record), None)
    if row is None:
        return ChainProblem(
            chain, anchor.record, "deleted", f"the anchored record {anchor.record} is gone"
        )
    if row.hash != anchor.hash:
        return ChainProblem(
            chain,
            anchor.record,
            "edited",
            f"record {anchor.record} no longer has its anchored hash: the chain up to it was "
            "rewritten",
        )
    return None


def _walk(
    chain: str, ident: str, rows: list[Any], fields: tuple[str, ...], last: int | None
) -> ChainProblem | None:
    """Records are numbered 1, 2, 3... by the engine, each linking to the one before; `last` is
    the number of the last one it wrote (the chain's head)."""
    position = {row.hash: i for i, row in enumerate(rows)}
    prev, expected = GENESIS, 1
    for i, row in enumerate(rows):
        number = getattr(row, ident)
        if row.prev_hash != prev:
            linked = position.get(row.prev_hash)
            if i > 0 and rows[i - 1].prev_hash == row.prev_hash:
                before = getattr(rows[i - 1], ident)
                return ChainProblem(
                    chain,
                    before,
                    "inserted",
                    f"record {before} was inserted: record {number} links past "
                    "it to the record before",
                )
            if linked is not None and linked > i:
                return ChainProblem(
                    chain, number, "reordered", f"record {number} is out of its place in the chain"
                )
            if number > expected and last is not None and expected > last:
                return ChainProblem(
                    chain,
                    number,
                    "inserted",
                    f"record {number} was added after {last}, the last record the engine wrote",
                )
            if number > expected:
                return ChainProblem(
                    chain, expected, "deleted", f"record(s) {expected}..{number - 1} were deleted"
                )
            return ChainProblem(
                chain, number, "inserted", f"record {number} does not link to the record before it"
            )
        if link(row.prev_hash, hashed(row._mapping, fields)) != row.hash:
            return ChainProblem(
                chain, number, "edited", f"record {number} was edited after it was written"
            )
        prev, expected = row.hash, number + 1
    return None


def _check_head(
    chain: str, ident: str, rows: list[Any], head: tuple[int, str] | None
) -> ChainProblem | None:
    if head is None:
        if rows:
            return ChainProblem(
                chain,
                getattr(rows[-1], ident),
                "inserted",
                "the chain has records but no recorded head",
            )
        return None
    last, digest = head
    if not rows and digest == GENESIS:
        return None
    if not rows or rows[-1].hash != digest:
        seen = getattr(rows[-1], ident) if rows else 0
        if any(r.hash == digest for r in rows):
            return ChainProblem(
                chain, seen, "inserted", f"records were appended after {last} outside the engine"
            )
        return ChainProblem(
            chain, last, "deleted", f"the chain ends at {seen} but record {last} was written last"
        )
    return None


def iter_problems(reports: list[ChainReport]) -> Iterator[ChainProblem]:
    for report in reports:
        if report.problem:
            yield report.problem
