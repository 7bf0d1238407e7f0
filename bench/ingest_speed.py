"""Durable ingest (persist + rules + audit + outbox) and replay speed, on SQLite and PostgreSQL.

    .venv/bin/python bench/ingest_speed.py [--instances 100000] [--days 2]
        [--stores sqlite postgresql] [--via engine service] [--batch 500]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--dir DIR] [--profile FILE]
        [--no-replay] [--json FILE]

A seeded population (bench/workload.py: 90 % CHF, 10 % diabetic foot; about 87 % of the
steady-state events are weights) enrols on day 0, then `--days` days of the realistic mix follow.
Events are built and validated before any clock starts. For each store and each way in, on a
fresh store (SQLite: a WAL file with synchronous=FULL under `--dir`, default a temporary
directory under data/; PostgreSQL: a schema of its own, dropped afterwards):

- `engine`: `DurableEngine.submit_many` on groups of `--batch` events: each group is decided
  (timers due before an event fire first, as recorded inputs) and committed in one transaction
  (input log, outbox, hash-chained audit, rows for new instances), with a snapshot of the
  instance states and timers every `--snapshot-every` inputs (in the timed phases), as
  `carepath simulate --db` does, garbage-collector settings included (engine.runtime.heap);
- `service`: the service's single writer (`engine.service.ingest.Ingestor`, group commit up to
  `--batch` events per transaction) fed one event per job by a producer thread that keeps at
  most 4 groups in flight, as HTTP clients would; its clock is the latest occurred_at handed in.

Printed: enrolments/s (day 0), then the target figure, steady-state events/s at `--instances`
active instances (and inputs/s counting the timer firings recorded alongside); what a restart
after a crash costs (no final snapshot: a new engine re-decides the inputs after the latest one
and writes a snapshot, the one a clean stop would have written); then replay as `carepath
replay --all` does it, `engine.replay.replay(store, jobs=JOBS)`, over every recorded input
(read back, re-decided through the pinned pathway versions, compared with the recorded actions
and audit), inputs/s. A replay that is not identical is an error.

Targets: >= 10,000 events/s on SQLite, >= 5,000 on PostgreSQL, replay >= 50,000 inputs/s.
Exits 1 when a target is missed (or replay diverges).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import START, Population, load_registry, mix
from engine.catalogue import Event
from engine.replay import replay
from engine.runtime import SNAPSHOT_EVERY, heap
from engine.runtime.durable import DurableEngine, open_registry
from engine.service.ingest import Ingestor, Receipt
from engine.store import Store
from engine.store import schema as t

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"sqlite": 10_000.0, "postgresql": 5_000.0}
REPLAY_TARGET = 50_000.0
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def written() -> int:
    """Bytes this process has handed to write() so far (SQLite's WAL and checkpoints are
    written in-process; PostgreSQL's writes happen in the server and are not counted)."""
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def calibration() -> float:
    """Seconds for ten million additions in a Python loop: how fast this machine runs Python
    today (virtual machines of the same kind differ several-fold), to compare runs by."""
    start = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - start


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


class Opened:
    """A fresh store for one run, and how to get rid of it."""

    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        self.kind = kind
        self.schema: str | None = None
        self.dir: Path | None = None
        if kind == "sqlite":
            base = Path(args.dir) if args.dir else ROOT / "data"
            base.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=base))
            self.url = f"sqlite:///{self.dir / 'carepath.db'}"
            self.store = Store.open(self.url)
        else:
            self.url = args.pg_url
            self.schema = f"bench_ingest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            self.store = Store.open(self.url, schema=self.schema)

    def counts(self) -> dict[str, int]:
        with self.store.engine.connect() as conn:
            return {
                table.name: int(conn.execute(sa.select(sa.func.count()).select_from(table))
                                .scalar() or 0)
                for table in (t.inputs, t.instances, t.timers, t.outbox, t.audit)
            }

    def size(self) -> str:
        if self.dir is not None:
            total = sum(p.stat().st_size for p in self.dir.iterdir())
            return f"{total / 2**20:,.0f} MiB on disk (db + WAL)"
        with self.store.engine.connect() as conn:
            total = conn.execute(sa.text(
                "select sum(pg_total_relation_size(c.oid)) from pg_class c "
                "join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = :s and c.relkind = 'r'"), {"s": self.schema}).scalar()
        return f"{int(total or 0) / 2**20:,.0f} MiB (tables + indexes)"

    def drop(self) -> None:
        self.store.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.schema is not None:
            url = self.url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            admin = sa.create_engine(url)
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            admin.dispose()


def via_engine(engine: DurableEngine, events: list[Event], batch: int) -> None:
    for start in range(0, len(events), batch):
        engine.submit_many(events[start : start + batch])


def via_service(engine: DurableEngine, events: list[Event], batch: int) -> None:
    """One event per job, at most 4 groups in flight; the writer's clock follows the events."""
    latest = [events[0].occurred_at if events else START]
    ingestor = Ingestor(engine, clock=lambda: latest[0], batch_size=batch, tick_seconds=60)
    ingestor.start()
    window = threading.BoundedSemaphore(4 * batch)
    failures: list[BaseException] = []

    def done(future: Future[Receipt]) -> None:
        window.release()
        if future.exception() is not None:
            failures.append(future.exception())  # type: ignore[arg-type]

    for event in events:
        window.acquire()
        latest[0] = max(latest[0], event.occurred_at)
        ingestor.submit([event]).add_done_callback(done)
    ingestor.stop()
    if failures:
        raise failures[0]


def timed(run: Callable[[], None], profile: str | None, label: str) -> float:
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    if profile:
        profiler.disable()
        path = f"{profile}.{label}"
        profiler.dump_stats(path)
        print(f"    profile written to {path}")
    return elapsed


def ingest(
    args: argparse.Namespace, opened: Opened, kind: str, via: str, pathways: Any,
    enrol: list[Event], steady: list[Event],
) -> dict[str, Any]:
    registry = open_registry(opened.store, pathways, datetime(2026, 3, 1, tzinfo=UTC))
    engine = DurableEngine(
        opened.store, registry, batch_size=args.batch, snapshot_every=args.snapshot_every
    )
    heap.settle()  # as carepath serve and simulate --db do
    feed = via_engine if via == "engine" else via_service
    print(f"  {kind}, via {via} (load {load()})", flush=True)
    enrolled = timed(lambda: feed(engine, enrol, args.batch), None, "")
    before, wrote, cpu = opened.store.last_seq, written(), time.process_time()
    elapsed = timed(lambda: feed(engine, steady, args.batch), args.profile,
                    f"{kind}.{via}")
    inputs = opened.store.last_seq - before
    wrote, cpu = written() - wrote, time.process_time() - cpu
    active = sum(1 for s in engine.memory.instances.values() if s.active)
    rate = len(steady) / elapsed
    counts = opened.counts()
    print(f"    enrolment: {len(enrol) / enrolled:,.0f} events/s "
          f"({len(enrol):,} in {enrolled:.1f} s)\n"
          f"    steady:    {rate:,.0f} events/s ({len(steady):,} events in {elapsed:.1f} s; "
          f"{inputs / elapsed:,.0f} inputs/s with {inputs - len(steady):,} timer firings), "
          f"{active:,} active instances; {len(steady) / cpu:,.0f} per CPU second of this "
          f"process" + (f"; {wrote / len(steady) / 1024:,.1f} KiB written per event"
                        if kind == "sqlite" else "") + "\n"
          f"    stored: {', '.join(f'{k} {v:,}' for k, v in counts.items())}; "
          f"{opened.size()} (load {load()})", flush=True)
    result: dict[str, Any] = {
        "store": kind, "via": via, "instances": len(engine.memory.instances),
        "active": active, "enrol_events": len(enrol), "steady_events": len(steady),
        "enrolments_per_s": len(enrol) / enrolled, "events_per_s": rate,
        "inputs_per_s": inputs / elapsed, "events_per_cpu_s": len(steady) / cpu,
        "bytes_written_per_event": wrote / len(steady) if kind == "sqlite" else None,
        "counts": counts, "target": TARGETS[kind],
    }
    result.update(restart(args, opened, registry))
    return result


def restart(args: argparse.Namespace, opened: Opened, registry: Any) -> dict[str, Any]:
    """After a crash (no final snapshot): a new engine re-decides the inputs after the latest
    snapshot, then writes one. And what a clean stop's snapshot costs, measured on the same
    states: the restart's snapshot is the one a clean stop would have written."""
    store = opened.store
    tail = store.last_seq - store.snapshot_seq
    store.close()  # the crash: nothing more written
    opened.store = store = Store.open(opened.url, schema=opened.schema)
    gc.collect()
    start = time.perf_counter()
    engine = DurableEngine(store, registry, snapshot_every=args.snapshot_every)
    took = time.perf_counter() - start
    instances = len(engine.memory.instances)
    del engine
    print(f"    restart after a crash: {took:.1f} s for {instances:,} instances, re-deciding the "
          f"{tail:,} inputs after the latest snapshot and writing a new one "
          f"(load {load()})", flush=True)
    return {"restart_s": took, "restart_tail": tail}


def one_run(
    args: argparse.Namespace, kind: str, via: str, pathways: Any, enrol: list[Event],
    steady: list[Event],
) -> dict[str, Any]:
    opened = Opened(kind, args)
    try:
        result = ingest(args, opened, kind, via, pathways, enrol, steady)
        gc.collect()  # the engine's in-memory instances are gone: replay starts from the store
        if not args.no_replay:
            total = result["counts"]["inputs"]
            # like `carepath replay --all`, without the timeline the terminal would print
            start = time.perf_counter()
            replayed = replay(opened.store, keep_timeline=False, jobs=args.jobs)
            took = time.perf_counter() - start
            print(f"    replay:    {replayed.inputs / took:,.0f} inputs/s ({replayed.inputs:,} "
                  f"inputs of {total:,} recorded, {replayed.decisions:,} decisions, in "
                  f"{took:.1f} s, {args.jobs} worker process(es)): "
                  f"{'identical' if replayed.identical else 'DIVERGED'} "
                  f"(load {load()})", flush=True)
            result.update(replay_per_s=replayed.inputs / took, replay_inputs=replayed.inputs,
                          replay_identical=replayed.identical)
        return result
    finally:
        opened.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=2, help="steady-state days after enrolment")
    parser.add_argument("--stores", nargs="+", choices=("sqlite", "postgresql"),
                        default=["sqlite", "postgresql"])
    parser.add_argument("--via", nargs="+", choices=("engine", "service"),
                        default=["engine", "service"])
    parser.add_argument("--batch", type=int, default=500, help="events per transaction, at most")
    parser.add_argument("--snapshot-every", type=int, default=SNAPSHOT_EVERY,
                        help="inputs between snapshots (the engine's default)")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--dir", help="where the SQLite file goes (default: a temp dir in data/)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", help="write a cProfile of each steady phase to FILE.<run>")
    parser.add_argument("--no-replay", action="store_true")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="replay's worker processes (carepath replay --all's default: one "
                        "per core)")
    parser.add_argument("--json", help="append the figures as JSON lines here")
    args = parser.parse_args()
    print(f"load: {load()} on {os.cpu_count()} cores; 10M Python additions in "
          f"{calibration():.2f} s", flush=True)
    pathways, _ = load_registry()
    population = Population(args.instances, seed=args.seed)
    enrol = population.enrolment()
    steady = [e for day in population.days(1, args.days) for e in day]
    print(f"{args.instances:,} instances: {len(enrol):,} enrolments, then {args.days} days: "
          f"{len(steady):,} events ({mix(steady)})", flush=True)
    heap.tune_collector()  # as the carepath console script does
    gc.collect()
    gc.freeze()  # the pre-built events are the harness's input, not the engine's state
    results = [
        one_run(args, kind, via, pathways, enrol, steady)
        for kind in args.stores
        for via in args.via
    ]
    missed = []
    print("summary:")
    for r in results:
        ok = r["events_per_s"] >= r["target"]
        print(f"  {r['store']:10} via {r['via']:7}: {r['events_per_s']:>8,.0f} events/s "
              f"(target {r['target']:,.0f}: {'met' if ok else 'MISSED'})")
        if not ok:
            missed.append(f"{r['store']} via {r['via']}")
    replays = [r["replay_per_s"] for r in results if "replay_per_s" in r]
    if replays:
        best = statistics.median(replays)
        ok = best >= REPLAY_TARGET and all(r["replay_identical"] for r in results)
        print(f"  replay: median {best:,.0f} inputs/s over {len(replays)} run(s) "
              f"(target {REPLAY_TARGET:,.0f}: {'met' if ok else 'MISSED'})")
        if not ok:
            missed.append("replay")
    if args.json:
        with open(args.json, "a") as out:
            for r in results:
                out.write(json.dumps({**r, "load": load()}) + "\n")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
