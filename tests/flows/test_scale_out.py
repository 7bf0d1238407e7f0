"""The scale-out set-up of examples/scale_out.py, for real: a `prefect server` backed by
PostgreSQL (a database of its own on the local server, dropped afterwards; no UI) on a free
port, `carepath deploy`, two process workers, a scenario's events decided into a PostgreSQL
store, and `carepath dispatch --deployed` handing the outbox to the deployments in batches.

It checks what an operator would: every action's outcome is in the store, written by the
workers' flow runs; every flow run completed, each run by one worker, both workers used; and
the flow and task runs Prefect recorded are named and tagged by instance, pathway and action,
never by patient.

Skipped when no PostgreSQL server answers (failed instead under CAREPATH_REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

import importlib.util
import subprocess
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from engine.store import Outbox, Store
from tests.conftest import PG_URL
from tests.flows.conftest import PATHWAYS, simulate_into

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
BATCH_SIZE = 4  # the scenario's 14 actions: 5 flow runs, 2 at a time


def _example() -> ModuleType:
    """examples/scale_out.py (not a package) as a module."""
    spec = importlib.util.spec_from_file_location("scale_out", ROOT / "examples" / "scale_out.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pg_server() -> str:
    """The PostgreSQL server of CAREPATH_PG_URL, as ScaleOut names it (no driver, no database)."""
    url = sa.make_url(PG_URL)
    user = quote(url.username or "postgres", safe="")
    if url.password:
        user += ":" + quote(str(url.password), safe="")
    return f"postgresql://{user}@{url.host or '127.0.0.1'}:{url.port or 5432}"


def _drop_database(pg_server: str, name: str) -> None:
    url = pg_server.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(f"{url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _wait_for_workers(scale_out: Any, timeout: float = 60) -> None:
    """Until both workers have started polling (so that the first runs can go to either)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all("started!" in scale_out.worker_log(n) for n in (1, 2)):
            return
        for process in scale_out.workers:
            assert process.poll() is None, "a worker exited:\n" + scale_out.worker_log(1)
        time.sleep(0.25)
    pytest.fail("the workers did not start in time")


def _filter(api_url: str, what: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{api_url}/{what}/filter", json={"limit": 200}, timeout=10)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


def test_the_scale_out_set_up_carries_out_a_scenario_on_two_workers(
    tmp_path: Path, pg_url: str
) -> None:
    example = _example()
    pg_server = _pg_server()
    prefect_database = f"carepath_prefect_t_{uuid.uuid4().hex[:12]}"
    printed = simulate_into(pg_url, "both-pathways")  # events in: decided and committed
    actions = [a for a in printed if a["action"] not in ("enrol", "exit")]
    assert {a["pathway"] for a in actions} == {"chf-post-discharge", "diabetic-foot-care"}
    patients = {a["patient_id"] for a in printed}

    scale_out = example.ScaleOut(
        tmp_path / "scale-out",
        pg_server=pg_server,
        prefect_database=prefect_database,
        store_url=pg_url,
        port=example.free_port(),
        ui=False,
    )
    try:
        with scale_out:
            _wait_for_workers(scale_out)
            dispatch = subprocess.run(
                [
                    str(example.BIN / "carepath"),
                    "dispatch",
                    "--db",
                    pg_url,
                    "--pathways",
                    str(PATHWAYS),
                    "--deployed",
                    "--batch-size",
                    str(BATCH_SIZE),
                    "--in-flight",
                    "2",
                ],
                env=scale_out.client_env(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert dispatch.returncode == 0, dispatch.stderr
            flow_runs = _filter(scale_out.api_url, "flow_runs")
            # task runs reach the server's database through its task-run recorder, shortly after
            task_runs: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while len(task_runs) < len(actions) and time.monotonic() < deadline:
                time.sleep(0.5)
                task_runs = _filter(scale_out.api_url, "task_runs")
            by_worker = [scale_out.flow_runs_of(n) for n in (1, 2)]
    finally:
        _drop_database(pg_server, prefect_database)

    expected_runs = -(-len(actions) // BATCH_SIZE)  # one per claimed batch and pathway, at least
    assert f"dispatched {len(actions)} action(s)" in dispatch.stderr
    assert f"{len(actions)} succeeded, 0 failed" in dispatch.stderr

    # every action's outcome was written to the store by a worker's flow run (console port)
    store = Store.open(pg_url)
    try:
        outbox = Outbox(store)
        for action in actions:
            found = outbox.status(action["id"])
            assert found == (
                "succeeded",
                {
                    "succeeded": True,
                    "reference": f"console:{action['id']}",
                    "error": None,
                    "attempts": 1,
                },
            ), action["id"]
        assert outbox.counts().get("pending", 0) == 0
    finally:
        store.close()

    # every flow run completed; each was run by exactly one worker, and both workers ran some
    assert len(flow_runs) >= expected_runs
    assert {r["state_type"] for r in flow_runs} == {"COMPLETED"}
    run_ids = {r["id"] for r in flow_runs}
    assert by_worker[0] | by_worker[1] == run_ids
    assert not by_worker[0] & by_worker[1]
    assert by_worker[0] and by_worker[1], [len(w) for w in by_worker]

    # Prefect recorded one task run per action: named by action, tagged by instance, pathway
    # and action type; nothing Prefect shows names a patient
    by_name = {t["name"]: t for t in task_runs}
    assert len(task_runs) == len(actions)
    for action in actions:
        run = by_name[f"{action['action']} {action['id']}"]
        assert run["state_type"] == "COMPLETED"
        key = f"{action['pathway']}@{action['pathway_version']}"
        assert {
            f"instance:{action['instance_id']}",
            f"pathway:{key}",
            f"action:{action['action']}",
        } <= set(run["tags"])
    shown = [r["name"] for r in [*flow_runs, *task_runs]]
    shown += [tag for r in [*flow_runs, *task_runs] for tag in r["tags"]]
    assert not [text for text in shown for p in patients if p in text]
