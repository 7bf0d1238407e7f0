"""Actions per second through Prefect dispatch, batched, against one flow run per action.

    .venv/bin/python bench/dispatch_speed.py [--instances 400] [--batch 500]
        [--baseline-instances 20] [--latency 0] [--tag-runs] [--dir DIR] [--json FILE]

A seeded population (bench/workload.py: 90 % CHF, 10 % diabetic foot) enrols in a fresh SQLite
store (`DurableEngine.submit_many`, as `carepath simulate --db` does): the outbox fills with the
actions their enrolments fire (outreach calls, bookings, home visits, education, medication
reconciliation, foot screenings...). Then, on Prefect's embedded ephemeral server (a fresh
PREFECT_HOME under `--dir`, started and warmed up before any clock starts), with the settings
`carepath dispatch` uses (engine/flows/settings.py) and a recording port that answers at once
(`--latency` seconds per call otherwise), so that the figures are Prefect's and the
dispatcher's cost, not an adapter's:

- batched: `Dispatcher(batch_size=--batch)` with `LocalFlows` drains the outbox: one flow run
  per pathway version per claimed batch, one task run per action;
- baseline, measured in the same run: the same dispatcher, flows, settings and port with
  `batch_size=1`, i.e. one flow run per action (the naive way), on the actions of
  `--baseline-instances` patients (it is slow).

`--tag-runs` tags the task runs as on a real server (what that costs on the embedded server:
docs/prefect.md). Each rate is actions carried out / wall time of `Dispatcher.drain()` (claim,
flow runs, write-back). Every action must succeed, with one effect each.

Targets: batched >= 50 actions/s and >= 50x the baseline. Exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.registry import PortRegistry
from adapters.testing import RecordingPort
from bench.workload import Population, load_registry
from engine.runtime.dispatch import Dispatcher
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import Outbox, Store

ROOT = Path(__file__).resolve().parent.parent
RATE_TARGET = 50.0
SPEEDUP_TARGET = 50.0


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


class SlowPort(RecordingPort):
    """The recording port, `latency` seconds per call (an external system's answer time)."""

    def __init__(self, latency: float) -> None:
        super().__init__("bench")
        self.latency = latency

    def carry_out(self, action: Mapping[str, Any], idempotency_key: str) -> str | None:
        if self.latency:
            time.sleep(self.latency)
        return super().carry_out(action, idempotency_key)


def filled_store(path: Path, instances: int, seed: int) -> tuple[Store, DurableEngine, int]:
    """A fresh store whose outbox holds the enrolment actions of `instances` patients."""
    store = Store.open(f"sqlite:///{path}")
    pathways, _ = load_registry()
    registry = open_registry(store, pathways, datetime(2026, 3, 1, tzinfo=UTC))
    engine = DurableEngine(store, registry)
    engine.submit_many(Population(instances, seed=seed).enrolment())
    return store, engine, Outbox(store).counts().get("pending", 0)


def warm_up(flows: Any, home: Path) -> float:
    """Start the embedded server (and import what the first flow run imports); seconds."""
    from prefect import flow

    from engine.flows import prefect_runtime
    from engine.flows.builder import UNUSED_RESULT_STORAGE

    @flow(name="carepath-warm-up", persist_result=False, result_storage=UNUSED_RESULT_STORAGE)
    async def started() -> int:
        return 1

    began = time.perf_counter()
    with prefect_runtime(home):
        asyncio.run(started())
    return time.perf_counter() - began


def measure(
    label: str, store: Store, engine: DurableEngine, flows: Any, port: RecordingPort, batch: int
) -> dict[str, Any]:
    # the outcome inputs at the store's clock, as `carepath dispatch` records them
    clock = store.clock()
    assert clock is not None
    dispatcher = Dispatcher(
        store,
        flows,
        PortRegistry.single(port),
        engine.submit_many,
        clock=lambda: clock,
        batch_size=batch,
    )
    pending = Outbox(store).counts().get("pending", 0)
    began = time.perf_counter()
    reports = dispatcher.drain()
    seconds = time.perf_counter() - began
    succeeded = sum(len(r.succeeded) for r in reports)
    failed = sum(len(r.failed) for r in reports)
    runs = sum(r.flow_runs for r in reports)
    counts = Outbox(store).counts()
    if failed or succeeded != pending or counts.get("pending") or counts.get("running"):
        raise SystemExit(f"{label}: not every action succeeded: {counts}, {failed} failed")
    if max(port.effect_counts.values(), default=1) != 1:
        raise SystemExit(f"{label}: an action had more than one effect")
    return {
        "actions": succeeded,
        "flow_runs": runs,
        "seconds": seconds,
        "actions_per_s": succeeded / seconds,
        "seconds_per_flow_run": seconds / runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=400, help="patients (batched run)")
    parser.add_argument("--batch", type=int, default=500, help="actions claimed per batch")
    parser.add_argument("--baseline-instances", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per port call")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--tag-runs", action="store_true", help="tag task runs (the embedded default does not)"
    )
    parser.add_argument("--dir", type=Path, help="where stores and PREFECT_HOME go")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    base = args.dir or ROOT / "data"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-", dir=base))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    from engine.flows.runners import LocalFlows
    from engine.flows.settings import DEFAULT_MAX_WORKERS

    print(f"load average before: {load()} ({os.cpu_count()} cores)", flush=True)
    batched_store, batched_engine, actions = filled_store(
        work / "batched.db", args.instances, args.seed
    )
    base_store, base_engine, base_actions = filled_store(
        work / "baseline.db", args.baseline_instances, args.seed
    )
    pathways, _ = load_registry()
    home = work / "prefect"
    flows = LocalFlows(pathways, home=home, tag_runs=True if args.tag_runs else None)
    started = warm_up(flows, home)
    print(
        f"embedded Prefect server started in {started:.1f} s (fresh PREFECT_HOME); "
        f"task runs tagged: {flows.tag_runs}; port latency {args.latency:g} s, "
        f"{DEFAULT_MAX_WORKERS} calls at once per flow run",
        flush=True,
    )
    try:
        print(f"baseline: {base_actions} actions, one flow run each...", flush=True)
        baseline = measure(
            "baseline", base_store, base_engine, flows, SlowPort(args.latency), batch=1
        )
        print(f"batched: {actions} actions, batches of {args.batch}...", flush=True)
        batched = measure(
            "batched", batched_store, batched_engine, flows, SlowPort(args.latency), args.batch
        )
    finally:
        flows.close()
        batched_store.close()
        base_store.close()
    speedup = batched["actions_per_s"] / baseline["actions_per_s"]
    after = load()
    for label, figures in (("baseline (1 action per flow run)", baseline), ("batched", batched)):
        print(
            f"  {label:<33} {figures['actions']:>5} actions, {figures['flow_runs']:>4} flow "
            f"runs, {figures['seconds']:6.2f} s: {figures['actions_per_s']:7.1f} actions/s "
            f"({figures['seconds_per_flow_run'] * 1000:.0f} ms per flow run)"
        )
    print(f"  speed-up: {speedup:.1f}x")
    print(f"load average after: {after}")
    rate_ok = batched["actions_per_s"] >= RATE_TARGET
    speedup_ok = speedup >= SPEEDUP_TARGET
    print(
        f"targets: >= {RATE_TARGET:g} actions/s: {'met' if rate_ok else 'MISSED'}; "
        f">= {SPEEDUP_TARGET:g}x the baseline: {'met' if speedup_ok else 'MISSED'}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "baseline": baseline,
                    "batched": batched,
                    "speedup": speedup,
                    "batch": args.batch,
                    "latency": args.latency,
                    "tag_runs": flows.tag_runs,
                    "load_after": after,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0 if rate_ok and speedup_ok else 1


if __name__ == "__main__":
    sys.exit(main())
