"""Pathway versions compile into Prefect flows built from the definition as data: one task per
action type the pathway can fire, with the retries and timeouts it declares or its family's
defaults. (Building a flow needs no Prefect server; running one does: see test_dispatch.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from engine.definition.loader import load_pathway, load_text
from engine.flows import compile_flow, entry_name, task_specs
from engine.flows.builder import ENTRY_MODULE

ROOT = Path(__file__).resolve().parents[2]
CHF = ROOT / "pathways" / "chf-post-discharge.yaml"
FOOT = ROOT / "pathways" / "diabetic-foot-care.yaml"

CHF_TASKS = [
    {"name": "book_follow_up", "retries": 3, "timeout_seconds": 60},
    {"name": "escalate", "retries": 5, "timeout_seconds": 30},
    {"name": "notify", "retries": 5, "timeout_seconds": 30},
    {"name": "outreach_call", "retries": 5, "timeout_seconds": 30},
    {"name": "patient_education", "retries": 3, "timeout_seconds": 60},
    {"name": "reconcile_medications", "retries": 3, "timeout_seconds": 60},
    {"name": "schedule_home_visit", "retries": 3, "timeout_seconds": 60},
]
FOOT_TASKS = [
    {"name": "book_foot_screening", "retries": 3, "timeout_seconds": 60},
    {"name": "escalate", "retries": 5, "timeout_seconds": 30},
    {"name": "outreach_call", "retries": 5, "timeout_seconds": 30},
    {"name": "refer_foot_team", "retries": 3, "timeout_seconds": 60},
    {"name": "refer_podiatry", "retries": 3, "timeout_seconds": 60},
]


def test_both_reference_pathways_compile_with_the_family_defaults() -> None:
    chf, foot = compile_flow(load_pathway(CHF)), compile_flow(load_pathway(FOOT))
    assert chf.describe() == {"flow": "chf-post-discharge@1", "tasks": CHF_TASKS}
    assert foot.describe() == {"flow": "diabetic-foot-care@1", "tasks": FOOT_TASKS}
    book = chf.tasks["book_follow_up"]
    assert (book.retries, book.retry_delay_seconds, book.timeout_seconds) == (3, 30, 60)
    escalate = foot.tasks["escalate"]
    assert (escalate.retries, escalate.retry_delay_seconds, escalate.timeout_seconds) == (5, 10, 30)


def test_declared_execution_reaches_the_prefect_tasks() -> None:
    text = CHF.read_text(encoding="utf-8") + (
        "execution:\n"
        "  book_follow_up: {retries: 7, retry_delay: 2 minutes, timeout: 90 seconds}\n"
        "  escalate: {retries: 0}\n"
    )
    pathway, problems = load_text("chf.yaml", text)
    assert pathway is not None, problems
    compiled = compile_flow(pathway)
    book, escalate = compiled.tasks["book_follow_up"], compiled.tasks["escalate"]
    assert (book.retries, book.retry_delay_seconds, book.timeout_seconds) == (7, 120, 90)
    assert (escalate.retries, escalate.retry_delay_seconds, escalate.timeout_seconds) == (0, 10, 30)
    assert task_specs(pathway)[0].as_dict() == {
        "name": "book_follow_up",
        "retries": 7,
        "retry_delay_seconds": 120,
        "timeout_seconds": 90,
    }


def test_runs_are_named_and_tagged_without_patient_data() -> None:
    compiled = compile_flow(load_pathway(CHF))
    task = compiled.tasks["escalate"]
    assert task.task_run_name == "escalate {action_id}"  # action ids are i-<instance>.<n>
    assert set(task.tags) == {"pathway:chf-post-discharge@1", "action:escalate"}
    flow = compiled.flow
    assert flow.name == "chf-post-discharge@1"
    assert flow.version == load_pathway(CHF).source_hash[:12]
    # deployments import the flow by name from the entry module
    assert (flow.fn.__module__, flow.fn.__name__) == (ENTRY_MODULE, "chf_post_discharge__v1")


def test_untagged_flows_keep_their_tasks_and_names() -> None:
    """What the embedded default runs: no tags (each costs a server call per task run)."""
    tagged, untagged = (
        compile_flow(load_pathway(CHF)),
        compile_flow(load_pathway(CHF), tag_runs=False),
    )
    assert untagged.describe() == tagged.describe()
    assert [set(t.tags) for t in untagged.tasks.values()] == [set()] * len(CHF_TASKS)
    assert untagged.tasks["escalate"].task_run_name == "escalate {action_id}"
    assert untagged.flow.name == "chf-post-discharge@1"


def test_a_pathway_added_while_running_gets_a_flow_like_the_others(tmp_path: Path) -> None:
    from engine.flows.runners import LocalFlows

    flows = LocalFlows([load_pathway(CHF)], home=tmp_path, tag_runs=False)
    newer, problems = load_text(
        "chf.yaml", CHF.read_text(encoding="utf-8").replace("version: 1\n", "version: 2\n", 1)
    )
    assert newer is not None, problems
    flows.add(newer)
    assert sorted(flows.flows) == ["chf-post-discharge@1", "chf-post-discharge@2"]
    assert flows.flows["chf-post-discharge@2"].name == "chf-post-discharge@2"


def test_entry_names_are_python_names() -> None:
    assert entry_name("chf-post-discharge@1") == "chf_post_discharge__v1"
    assert entry_name("wound-check@1.2.0-rc.1") == "wound_check__v1_2_0_rc_1"
    assert entry_name("wound-check@1.2.0-rc.1").isidentifier()


def test_flows_command_prints_the_real_flow_objects_as_json() -> None:
    result = CliRunner().invoke(app, ["flows", "--pathways", str(ROOT / "pathways"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"flow": "chf-post-discharge@1", "tasks": CHF_TASKS},
        {"flow": "diabetic-foot-care@1", "tasks": FOOT_TASKS},
    ]


def test_flows_command_as_text() -> None:
    result = CliRunner().invoke(app, ["flows", "--pathways", str(FOOT)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "diabetic-foot-care@1",
        "  book_foot_screening      retries 3 every 30 s, timeout 60 s",
        "  escalate                 retries 5 every 10 s, timeout 30 s",
        "  outreach_call            retries 5 every 10 s, timeout 30 s",
        "  refer_foot_team          retries 3 every 30 s, timeout 60 s",
        "  refer_podiatry           retries 3 every 30 s, timeout 60 s",
    ]


def test_flows_command_reports_a_bad_pathway(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        CHF.read_text(encoding="utf-8") + "execution:\n  escalate: {retries: -2}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["flows", "--pathways", str(bad)])
    assert result.exit_code == 2
    assert "bad-value execution.escalate.retries" in result.stderr


def test_the_cli_imports_prefect_only_for_its_flow_commands() -> None:
    code = (
        "import sys; import engine.cli.app, engine.runtime.dispatch, adapters.registry; "
        "print(any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"
