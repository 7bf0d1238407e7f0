"""Every scenario folder through `simulate` (with the durable-rules rule book, and again with the
reference evaluator: both must give the same actions), and a few through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from tests.scenarios.harness import PUBLIC_KEYS, Scenario, scenario, scenario_names

NAMES = scenario_names()
UPDATE = os.environ.get("CAREPATH_UPDATE_SCENARIOS") == "1"
CAREPATH = Path(sys.executable).with_name("carepath")

#: Run through `carepath simulate` too: --until, --holiday, bad lines, both pathways.
CLI_NAMES = [
    "bad-lines",
    "business-days-holiday",
    "both-pathways",
    "chf-escalation-chain",
    "foot-intervals",
]


def test_there_are_scenarios() -> None:
    assert len(NAMES) >= 20
    assert set(CLI_NAMES) <= set(NAMES)


@pytest.mark.parametrize("evaluator", ["rulebook", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_scenario_gives_the_expected_actions(name: str, evaluator: str) -> None:
    s = scenario(name)
    run = s.run(evaluator)
    if UPDATE and evaluator == "rulebook":
        s.expected.write_text(run.text, encoding="utf-8")
    assert run.lines == s.expected.read_text(encoding="utf-8").splitlines()
    assert [number for number, _ in run.errors] == list(s.bad_lines)
    assert run.bad == len(s.bad_lines)


@pytest.mark.parametrize("name", NAMES)
def test_expected_file_is_the_public_shape(name: str) -> None:
    s = scenario(name)
    assert s.about
    actions = [json.loads(line) for line in s.expected.read_text(encoding="utf-8").splitlines()]
    assert actions, "an expected file with no action shows nothing"
    for action in actions:
        assert tuple(action) == PUBLIC_KEYS
    ids = [a["id"] for a in actions]
    assert len(ids) == len(set(ids))
    counters: dict[str, list[int]] = {}
    for a in actions:
        instance, _, number = a["id"].rpartition(".")
        assert instance == a["instance_id"]
        counters.setdefault(instance, []).append(int(number))
        assert a["fired_at"].endswith("Z")
        assert a["due_by"] is None or a["due_by"].endswith("Z")
    # every action an instance fired is printed, in the order it fired, starting with enrol
    for instance, numbers in counters.items():
        assert numbers == list(range(1, len(numbers) + 1)), instance
    first = {a["instance_id"]: a["action"] for a in reversed(actions)}
    assert set(first.values()) == {"enrol"}


@pytest.mark.parametrize("name", NAMES)
def test_the_virtual_clock_never_runs_backwards(name: str) -> None:
    """Actions come out in the order they fired, and no input is decided before an earlier one."""
    fired = [
        datetime.fromisoformat(json.loads(line)["fired_at"].replace("Z", "+00:00"))
        for line in scenario(name).expected.read_text(encoding="utf-8").splitlines()
    ]
    assert fired == sorted(fired)


def _check_cli(s: Scenario, code: int, stdout: str, stderr: str) -> None:
    assert stdout == s.expected.read_text(encoding="utf-8")
    assert code == (1 if s.bad_lines else 0), stderr
    reported = [line for line in stderr.splitlines() if line]
    assert [int(line.split(":")[1]) for line in reported] == list(s.bad_lines)
    for line in reported:
        assert line.startswith(f"{s.events}:")


@pytest.mark.parametrize("name", CLI_NAMES)
def test_cli_simulate_prints_the_expected_actions(name: str) -> None:
    s = scenario(name)
    result = CliRunner().invoke(app, s.cli_args())
    _check_cli(s, result.exit_code, result.stdout, result.stderr)


def test_cli_simulate_in_a_subprocess() -> None:
    s = scenario("bad-lines")
    command = [str(CAREPATH)] if CAREPATH.exists() else [sys.executable, "-m", "engine.cli.app"]
    done = subprocess.run(
        [*command, *s.cli_args()], capture_output=True, text=True, timeout=60, check=False
    )
    _check_cli(s, done.returncode, done.stdout, done.stderr)


def test_bad_lines_name_the_problem() -> None:
    s = scenario("bad-lines")
    messages = dict(s.run("reference").errors)
    assert messages[2].startswith("not valid JSON")
    assert messages[4] == "an event is a JSON object"
    assert "unknown event type 'observation.height'" in messages[5]
    assert messages[6].startswith("occurred_at:")
    assert messages[7].startswith("data.unit:")
    assert "give either task_id, or both pathway and escalation" in messages[8]
    assert messages[10].startswith("patient_id:")
