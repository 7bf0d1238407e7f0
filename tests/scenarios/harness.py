"""Event files through `engine.runtime.simulate.simulate`, exactly as `carepath simulate` runs
them, for the scenario, golden-history and determinism tests.

A scenario is a folder under tests/scenarios/ holding

    events.jsonl    the input, one event per line (shared/clinical/PATHWAYS.md)
    expected.jsonl  the exact public output: one action per line, as the CLI prints it
    scenario.json   {"about": [...], "until": ..., "holidays": [...], "bad_lines": [...]}

`about` says, patient by patient, what the file shows and why the expected output is right
(checked by hand against PATHWAYS.md). Regenerate expected files only after reading every
changed line: CAREPATH_UPDATE_SCENARIOS=1 .venv/bin/pytest tests/scenarios
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from engine.core import Action, ReferenceEvaluator, Registry
from engine.core.compiled import ConditionSpec, Evaluator, EvaluatorFactory, rulebook_evaluator
from engine.definition.loader import check_paths
from engine.definition.model import Pathway
from engine.runtime.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]
PATHWAYS = ROOT / "pathways"
SCENARIOS = Path(__file__).resolve().parent

#: The public shape of one output line, in order (engine.core.decisions.Action.as_dict).
PUBLIC_KEYS = (
    "id",
    "action",
    "patient_id",
    "pathway",
    "pathway_version",
    "instance_id",
    "rule",
    "fired_at",
    "due_by",
    "params",
)


def reference_evaluator(name: str, specs: list[ConditionSpec]) -> Evaluator:
    """The reference semantics (engine.definition.conditions.evaluate), for cross-checks."""
    return ReferenceEvaluator(specs)


#: The production evaluator (durable-rules, via rules.RuleBook) and the reference one.
EVALUATORS: dict[str, EvaluatorFactory] = {
    "rulebook": rulebook_evaluator,
    "reference": reference_evaluator,
}


@functools.cache
def load_pathways() -> tuple[Pathway, ...]:
    pathways, problems = check_paths([PATHWAYS])
    assert not problems, "\n".join(p.render() for p in problems)
    return tuple(pathways)


def registry(evaluator: str = "rulebook") -> Registry:
    """A fresh registry of every pathway in pathways/ (the CLI's `--pathways pathways`)."""
    return Registry.of(load_pathways(), EVALUATORS[evaluator])


def render(action: Action) -> str:
    """One output line, byte for byte as `carepath simulate` prints it (without the newline)."""
    return json.dumps(action.as_dict(), separators=(",", ":"))


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Run:
    lines: list[str]
    errors: list[tuple[int, str]]
    bad: int

    @property
    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)

    @property
    def actions(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


def run_lines(
    lines: Iterable[str],
    *,
    until: datetime | None = None,
    holidays: Iterable[date] = (),
    evaluator: str = "rulebook",
) -> Run:
    """Run event lines through `simulate` on a fresh registry and engine."""
    out: list[str] = []
    errors: list[tuple[int, str]] = []
    bad = simulate(
        registry(evaluator),
        lines,
        lambda action: out.append(render(action)),
        lambda number, message: errors.append((number, message)),
        until=until,
        holidays=tuple(holidays),
    )
    return Run(out, errors, bad)


def events_text(*events: dict[str, Any]) -> list[str]:
    """Event dicts as the lines of an events file."""
    return [json.dumps(e, separators=(",", ":")) + "\n" for e in events]


@dataclass(frozen=True)
class Scenario:
    name: str
    folder: Path
    about: str
    until: str | None
    holidays: tuple[str, ...]
    bad_lines: tuple[int, ...]

    @property
    def events(self) -> Path:
        return self.folder / "events.jsonl"

    @property
    def expected(self) -> Path:
        return self.folder / "expected.jsonl"

    def run(self, evaluator: str = "rulebook") -> Run:
        with self.events.open(encoding="utf-8") as handle:
            return run_lines(
                handle,
                until=instant(self.until) if self.until else None,
                holidays=[date.fromisoformat(h) for h in self.holidays],
                evaluator=evaluator,
            )

    def cli_args(self) -> list[str]:
        """The `carepath simulate` arguments for this scenario."""
        args = ["simulate", "--pathways", str(PATHWAYS), "--events", str(self.events)]
        if self.until:
            args += ["--until", self.until]
        for holiday in self.holidays:
            args += ["--holiday", holiday]
        return args


def scenario(name: str) -> Scenario:
    folder = SCENARIOS / name
    meta = json.loads((folder / "scenario.json").read_text(encoding="utf-8"))
    about = meta["about"]
    return Scenario(
        name=name,
        folder=folder,
        about=" ".join(about) if isinstance(about, list) else about,
        until=meta.get("until"),
        holidays=tuple(meta.get("holidays", ())),
        bad_lines=tuple(meta.get("bad_lines", ())),
    )


def scenario_names() -> list[str]:
    return sorted(p.parent.name for p in SCENARIOS.glob("*/events.jsonl"))
