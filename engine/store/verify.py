"""`carepath audit verify`: walk every hash chain and name the first record that was edited,
deleted, inserted or reordered; then check what the chains vouch for (engine.store.crosscheck):
each pathway text against its hash, each outbox status against the outcomes in the input log,
the instance states and timers against the latest snapshot's digest, each dead letter against
its log.

    inputs, audit         the input log and the decisions (the chains alone)
    pathways              + every text against its hash; every version named is there
    outbox                + every status against the outcomes the input log records
    holidays              (the chain alone)
    snapshots             + the instances and timers tables against the latest snapshot
    dead_letters          + every dead letter against its latest log entry
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from engine.store import crosscheck
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
from engine.store.report import (
    Anchor,
    ChainProblem,
    ChainReport,
    anchors_from_reports,
    iter_problems,
)
from engine.store.store import Store

__all__ = [
    "Anchor",
    "ChainProblem",
    "ChainReport",
    "anchors_from_reports",
    "iter_problems",
    "verify",
]

Check = Callable[[crosscheck.Tables], tuple[ChainProblem | None, str]]


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    table: sa.Table
    ident: str  # the column numbering its records 1, 2, 3...
    fields: tuple[str, ...]
    check: Check | None = None  # what else it vouches for


CHAINS = (
    Chain("inputs", t.inputs, "seq", INPUT_FIELDS),
    Chain("audit", t.audit, "id", AUDIT_FIELDS),
    Chain("pathways", t.pathway_versions, "number", PATHWAY_FIELDS, crosscheck.pathways),
    Chain("outbox", t.outbox, "number", OUTBOX_FIELDS, crosscheck.outbox),
    Chain("holidays", t.holidays, "number", HOLIDAY_FIELDS),
    Chain("snapshots", t.snapshots, "number", SNAPSHOT_FIELDS, crosscheck.snapshots),
    Chain("dead_letters", t.dead_letter_log, "number", LETTER_FIELDS, crosscheck.dead_letters),
)


def verify(store: Store, anchors: Sequence[Anchor] = ()) -> list[ChainReport]:
    """Walk every chain and check what it vouches for; with `anchors`, also check that each
    anchored record is still there with the hash it had (history up to an anchor cannot be
    rewritten, even consistently). One report per chain, in the order of CHAINS."""
    pinned = {a.chain: a for a in anchors}
    with store.engine.connect() as conn:
        heads = {r.chain: (r.last, r.hash) for r in conn.execute(sa.select(t.chain_heads))}
        chained = {
            chain.name: list(
                conn.execute(sa.select(chain.table).order_by(chain.table.c[chain.ident]))
            )
            for chain in CHAINS
        }
        tables = crosscheck.Tables.read(conn, chained)
    out = []
    for chain in CHAINS:
        name, ident, rows = chain.name, chain.ident, chained[chain.name]
        head = heads.get(name)
        problem = (
            _walk(name, ident, rows, chain.fields, head[0] if head else None)
            or _check_head(name, ident, rows, head)
            or _check_anchor(name, ident, rows, pinned.get(name))
        )
        checked = ""
        if problem is None and chain.check is not None:
            problem, checked = chain.check(tables)
        now = Anchor(name, getattr(rows[-1], ident), rows[-1].hash) if rows else None
        out.append(ChainReport(name, len(rows), problem, now, checked))
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
        if seen == last:
            return ChainProblem(
                chain,
                last,
                "edited",
                f"record {last}, the last, does not have the hash the chain's recorded head "
                "holds for it: the record and its hash, or the head, were rewritten",
            )
        return ChainProblem(
            chain, last, "deleted", f"the chain ends at {seen} but record {last} was written last"
        )
    seen = getattr(rows[-1], ident)
    if seen != last:
        return ChainProblem(
            chain,
            seen,
            "edited",
            f"the chain's recorded head was edited: it says record {last}, with the hash of "
            f"record {seen}",
        )
    return None
