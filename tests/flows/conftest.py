"""Fixtures for the flow tests: ONE embedded Prefect server per test session (it takes 15-30 s
to start on a fresh database), stores filled by `carepath simulate --db`, and pathways whose
retries do not wait (a retry delay of 0 s) so that retries are exercised in no time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.definition.loader import load_text
from engine.definition.model import Pathway
from engine.store import Store

ROOT = Path(__file__).resolve().parents[2]
PATHWAYS = ROOT / "pathways"
SCENARIOS = ROOT / "tests" / "scenarios"

#: every action type of the reference pathways
ACTION_TYPES = (
    "outreach_call",
    "book_follow_up",
    "schedule_home_visit",
    "patient_education",
    "reconcile_medications",
    "escalate",
    "notify",
    "book_foot_screening",
    "refer_podiatry",
    "refer_foot_team",
)
#: a retry delay of 0 s (and a short timeout), so that retries are exercised in no time
FAST = "{retry_delay: 0 seconds, timeout: 10 seconds}"


def fast_text(name: str, execution: dict[str, str] | None = None, rules: str = "") -> str:
    """A reference pathway's text with retries that do not wait, `execution` overriding some
    action types, and `rules` added at the end of its rules."""
    text = (PATHWAYS / name).read_text(encoding="utf-8")
    if rules:
        text = text.replace("\ndeadlines:\n", "\n" + rules + "\ndeadlines:\n", 1)
    policies = {t: FAST for t in ACTION_TYPES} | (execution or {})
    return text + "execution:\n" + "".join(f"  {t}: {p}\n" for t, p in policies.items())


def fast_pathway(name: str, execution: dict[str, str] | None = None, rules: str = "") -> Pathway:
    file = PATHWAYS / name
    pathway, problems = load_text(str(file), fast_text(name, execution, rules))
    assert pathway is not None, [p.render() for p in problems]
    return pathway


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Start the embedded Prefect server once, with our settings, in a private PREFECT_HOME."""
    from prefect import flow
    from prefect.server.api.server import SubprocessASGIServer

    from engine.flows import prefect_runtime
    from engine.flows.builder import UNUSED_RESULT_STORAGE
    from engine.flows.settings import flush

    home = tmp_path_factory.mktemp("prefect")

    @flow(name="carepath-warm-up", persist_result=False, result_storage=UNUSED_RESULT_STORAGE)
    async def warm_up() -> int:
        return 1

    with prefect_runtime(home):
        assert asyncio.run(warm_up()) == 1
    yield home
    flush()
    SubprocessASGIServer().stop()


def simulate_into(db: str, scenario: str, pathways: Path = PATHWAYS) -> list[dict[str, Any]]:
    """Run a scenario through `carepath simulate --db`; returns the printed actions."""
    folder = SCENARIOS / scenario
    about = json.loads((folder / "scenario.json").read_text(encoding="utf-8"))
    args = ["simulate", "--pathways", str(pathways), "--events", str(folder / "events.jsonl")]
    if about.get("until"):
        args += ["--until", about["until"]]
    for day in about.get("holidays", []):
        args += ["--holiday", day]
    result = CliRunner().invoke(app, [*args, "--db", db])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def store_clock(store: Store) -> datetime:
    clock = store.clock()
    assert clock is not None
    return clock
