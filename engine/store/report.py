"""What `carepath audit verify` reports: for each chain, its records, the first problem found
(if any) and its head; an anchor is a head kept from an earlier report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """What is wrong, and where: `record` is the number of the chain's record the problem is at
    (the seq of an input, the id of an audit record, the `number` of the others' records), or
    0 when it is at none (a row no record vouches for, or a record that others refer to and
    that is missing)."""

    chain: str  # inputs | audit | pathways | outbox | holidays | snapshots | dead_letters
    record: int
    kind: str  # edited | deleted | inserted | reordered
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
    #: what was checked besides the chain itself, when it all holds ("" for the input log and
    #: the audit trail: nothing besides)
    checked: str = ""

    def as_dict(self) -> dict[str, Any]:
        head = {"record": self.head.record, "hash": self.head.hash} if self.head else None
        problem = self.problem.as_dict() if self.problem else None
        return {
            "chain": self.chain,
            "records": self.records,
            "problem": problem,
            "head": head,
            "checked": self.checked,
        }

    def render(self) -> str:
        """The report's line: `ok CHAIN: N records, chain intact[; what else held]`, or
        `BROKEN CHAIN record N: KIND: message`."""
        if self.problem:
            return f"BROKEN {self.problem.render()}"
        also = f"; {self.checked}" if self.checked else ""
        return f"ok {self.chain}: {self.records} records, chain intact{also}"


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


def iter_problems(reports: list[ChainReport]) -> Iterator[ChainProblem]:
    for report in reports:
        if report.problem:
            yield report.problem
