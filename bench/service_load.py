"""`carepath serve` under open-loop load over HTTP, on SQLite and PostgreSQL.

    .venv/bin/python bench/service_load.py [--stores sqlite postgresql] [--instances 10000]
        [--rates 250 500 1000 2000 4000] [--batch-rates 1000 2000 4000 8000] [--seconds 20]
        [--modes single batch] [--settle 15]
        [--timer-seconds 60] [--dispatch] [--source DIR] [--json FILE]

For each store: a fresh store, and `carepath serve` started on it as a separate process (with
the outbox dispatcher off unless `--dispatch`: its cost is measured apart, see
docs/benchmarks.md). `--instances` patients enrol through POST /events (batches of 500), then:

1. Open-loop phases. For each mode (`single`: one event per POST; `batch`: 100 events per POST)
   and each offered rate (events/s), requests are sent on schedule whatever the answers do
   (keep-alive connections from a pool that grows as needed, up to 4,096: a request never waits
   for an earlier one's answer), for `--seconds`. Each is timed from when it was due to be sent
   to its answer (so a client held back by a slow server is counted, not hidden), and a 202
   means the events are decided and committed: POST-to-decision. Printed per phase: achieved
   events/s (accepted, over the phase and its tail), p50/p99/max of the accepted requests'
   times, how many were answered 503 (resend later) and anything else.
2. Capacity: the best achieved rate of the `single` phases; after `--settle` seconds of quiet
   (what the overload phases left, a snapshot being written, the database's checkpoint and
   vacuum, is not what half the capacity costs), one more `single` phase at half of it, whose
   p99 is the figure the target is about.
3. Timers under a stream with no gap: for `--timer-seconds`, one-event POSTs of weights an hour
   old at half the capacity, while missing-weights timers of 40 extra patients (enrolled with a
   discharge back-dated so that each timer falls due during the phase) come due. Read back from
   the store afterwards: how late each timer fired (decided_at - due), max and p99; the target is
   within one tick (`timer_interval_seconds`, 1 s) plus a commit.
4. The engine path in the same run: the same steady events through the service's own writer
   (engine.service.ingest.Ingestor) on a fresh store in this process, events/s.

Targets (issue 10; within one series): one-event POSTs >= 5x the rate before (100-226
events/s, aim 1,000); batches of 100 >= half the writer's own rate; p99 <= 25 ms at half the
capacity; beyond capacity p99 of accepted requests < 1 s (the excess gets 503); every timer
within one tick. Exits 1 when one is missed. `--source DIR` runs the service from another
checkout (the same venv), for a before/after in one series.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import Population, load_registry
from engine.catalogue import Event

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TOKEN = "bench-ingest-token"
BATCH = 100
MAX_CONNECTIONS = 4096
TIMER_PATIENTS = 40
TICK_SECONDS = 1.0
BEFORE = (100.0, 226.0)  # one-event POSTs/s before this issue (issue 10's figures)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def calibration() -> float:
    start = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - start


# -- the store and the service -------------------------------------------------------------------


class Fresh:
    """A fresh store: a SQLite file in a temporary directory, or a PostgreSQL schema."""

    def __init__(self, kind: str, pg_url: str) -> None:
        self.kind = kind
        self.dir = Path(tempfile.mkdtemp(prefix="bench-load-", dir=ROOT / "data"))
        self.schema: str | None = None
        if kind == "sqlite":
            self.url = f"sqlite:///{self.dir / 'carepath.db'}"
        else:
            self.schema = f"bench_load_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            self.admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
            with self.admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
            self.url = f"{pg_url}?options=-csearch_path%3D{self.schema}"

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://"))

    def drop(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.schema is not None:
            with self.admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            self.admin.dispose()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Service:
    """`carepath serve` in a process of its own."""

    def __init__(self, store: Fresh, args: argparse.Namespace) -> None:
        self.port = free_port()
        config = {
            "db": store.url,
            "data_dir": str(store.dir / "data"),
            "pathways": str(ROOT / "pathways"),
            "port": self.port,
            "dispatch": bool(args.dispatch),
            "timer_interval_seconds": TICK_SECONDS,
            "tokens": [
                {"name": "bench", "role": "ingest",
                 "sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}
            ],
        }
        path = store.dir / "carepath.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        source = Path(args.source).resolve() if args.source else ROOT
        env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
        self.log = (store.dir / "serve.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main())",
             "serve", "--config", str(path)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=store.dir, env=env,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"carepath serve exited: see {store.dir / 'serve.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("carepath serve did not start")

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(120)
        finally:
            self.log.close()


# -- events --------------------------------------------------------------------------------------


def as_json(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="json")


def enrolments(population: Population, now: datetime) -> list[dict[str, Any]]:
    """Day 0 of the population, moved to two hours ago (the order kept)."""
    events = population.enrolment()
    shift = now - timedelta(hours=2) - events[-1].occurred_at
    return [{**as_json(e), "occurred_at": (e.occurred_at + shift).isoformat()} for e in events]


class Steady:
    """An endless supply of steady-state events (the population's days), each re-timed to an
    hour before the moment it is taken and given a fresh id."""

    def __init__(self, population: Population) -> None:
        self.population = population
        self.day = 1
        self.buffer: list[dict[str, Any]] = []
        self.serial = 0

    def take(self, count: int, now: datetime) -> list[dict[str, Any]]:
        while len(self.buffer) < count:
            self.buffer.extend(as_json(e) for e in self.population.day(self.day))
            self.day += 1
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        at = (now - timedelta(hours=1)).isoformat()
        out = []
        for event in taken:
            self.serial += 1
            out.append({**event, "id": f"load-{self.serial:09d}", "occurred_at": at})
        return out


# -- the open-loop client ----------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    offered: float  # events/s
    seconds: float
    events: int = 0  # sent
    accepted: int = 0  # events answered 202
    busy: int = 0  # requests answered 503
    other: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # accepted requests, seconds
    busy_latencies: list[float] = field(default_factory=list)
    took: float = 0.0
    timer_lag: float = float("nan")

    def row(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else float("nan")

        return {
            "phase": self.label,
            "offered": self.offered,
            "achieved": self.accepted / self.took if self.took else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": lat[-1] * 1000 if lat else float("nan"),
            "accepted_events": self.accepted,
            "busy_requests": self.busy,
            "other": self.other,
        }


class Pool:
    """Keep-alive HTTP/1.1 connections to the service, opened as needed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0
        self.freed = asyncio.Condition()
        self.used: set[int] = set()  # connections that have answered a request

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with self.freed:
            while not self.idle and self.open >= MAX_CONNECTIONS:
                await self.freed.wait()
            if self.idle:
                return self.idle.pop()
            self.open += 1
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        async with self.freed:
            if conn is None:
                self.open -= 1
            else:
                self.idle.append(conn)
            self.freed.notify()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        status, answer = await self._post(body, await self.get())
        if status == -2:  # the server had closed an idle kept-alive connection: a new one
            self.open += 1
            conn = await asyncio.open_connection("127.0.0.1", self.port)
            status, answer = await self._post(body, conn)
        return status, answer

    async def _post(
        self, body: bytes, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    ) -> tuple[int, bytes]:
        """(-2, b"") when nothing came back on a connection that had served before."""
        reader, writer = conn
        served = id(conn) in self.used
        try:
            writer.write(
                b"POST /events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "
                + TOKEN.encode()
                + b"\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"connection" and value.strip().lower() == b"close":
                    close = True
            answer = await reader.readexactly(length)
            status = int(head.split(b" ", 2)[1])
        except (OSError, asyncio.IncompleteReadError) as exc:
            writer.close()
            await self.put(None)
            if served and isinstance(exc, asyncio.IncompleteReadError) and not exc.partial:
                return -2, b""
            return -1, type(exc).__name__.encode()
        self.used.add(id(conn))
        if close:
            writer.close()
            await self.put(None)
        else:
            await self.put(conn)
        return status, answer


async def open_loop(port: int, phase: Phase, bodies: list[bytes], per_request: int) -> None:
    pool = Pool(port)
    tasks = []
    interval = per_request / phase.offered
    start = time.perf_counter()

    async def send(due: float, body: bytes) -> None:
        status, answer = await pool.post(body)
        took = time.perf_counter() - due
        if status == 202:
            phase.accepted += per_request
            phase.latencies.append(took)
        elif status == 503:
            phase.busy += 1
            phase.busy_latencies.append(took)
        else:
            key = str(status) if status > 0 else answer.decode()
            phase.other[key] = phase.other.get(key, 0) + 1

    for n, body in enumerate(bodies):
        due = start + n * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(send(due, body)))
        phase.events += per_request
    await asyncio.gather(*tasks)
    phase.took = time.perf_counter() - start
    for reader_writer in pool.idle:
        reader_writer[1].close()


def run_phase(
    port: int, steady: Steady, label: str, offered: float, seconds: float, per_request: int
) -> Phase:
    phase = Phase(label, offered, seconds)
    requests = max(1, int(offered * seconds / per_request))
    now = datetime.now(UTC)
    bodies = []
    for _ in range(requests):
        events = steady.take(per_request, now)
        bodies.append(json.dumps(events[0] if per_request == 1 else events).encode())
    # the client's own collector must not pause the schedule (its pauses would count as the
    # service's latency): what exists now is frozen, and nothing is collected during the phase
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        asyncio.run(open_loop(port, phase, bodies, per_request))
    finally:
        gc.enable()
        gc.unfreeze()
    row = phase.row()
    row["timer_lag_s"] = phase.timer_lag = timer_lag(port)
    print(f"    {label:>16} offered {offered:>6,.0f}/s: achieved {row['achieved']:>7,.0f} "
          f"events/s, p50 {row['p50_ms']:>7.1f} ms, p99 {row['p99_ms']:>7.1f} ms, max "
          f"{row['max_ms']:>7.1f} ms, {phase.busy} x 503, other {phase.other or 'none'}, "
          f"timer lag {row['timer_lag_s']:.2f} s (load {load()})", flush=True)
    return phase


def timer_lag(port: int) -> float:
    """carepath_timer_lag_seconds as the service reports it now (how late its latest timers
    fired, or how overdue the next one is)."""
    reply = httpx.get(f"http://127.0.0.1:{port}/metrics",
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    for line in reply.text.splitlines():
        if line.startswith("carepath_timer_lag_seconds "):
            return float(line.split()[1])
    return float("nan")


# -- timers under a stream with no gap ------------------------------------------------------------


def timer_phase(
    port: int, store: Fresh, steady: Steady, rate: float, seconds: float
) -> dict[str, Any]:
    """Missing-weights timers coming due while hour-old weights stream in without a gap."""
    now = datetime.now(UTC)
    # the CHF pathway's missing-weights timer is due 48 h after the discharge (no weight
    # since): back-dated discharges put each one a few seconds into the phase
    spread = max(1.0, seconds - 10)
    discharges = []
    for n in range(TIMER_PATIENTS):
        due = now + timedelta(seconds=5 + spread * n / TIMER_PATIENTS)
        discharges.append({
            "id": f"timer-enrol-{n}", "type": "encounter.discharged",
            "patient_id": f"pt-timer-{n:03d}",
            "occurred_at": (due - timedelta(hours=48)).isoformat(),
            "data": {"encounter_id": f"enc-timer-{n}", "diagnoses": ["I50.9"],
                     "disposition": "01"},
        })
    reply = httpx.post(f"http://127.0.0.1:{port}/events", json=discharges,
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    reply.raise_for_status()
    phase = run_phase(port, steady, "timers (stream)", rate, seconds, 1)
    time.sleep(TICK_SECONDS * 2)
    engine = store.engine()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select occurred_at, decided_at from inputs where kind = 'timer' "
            "and type = 'missing:missing_weights' and patient_id like 'pt-timer-%'")).all()
    engine.dispose()
    lags = sorted(
        (datetime.fromisoformat(r.decided_at) - datetime.fromisoformat(r.occurred_at))
        .total_seconds()
        for r in rows
    )
    result = {
        "timers": len(lags),
        "expected": TIMER_PATIENTS,
        "lag_max_s": lags[-1] if lags else float("nan"),
        "lag_p50_s": statistics.median(lags) if lags else float("nan"),
        "stream": phase.row(),
    }
    print(f"    timers: {len(lags)} of {TIMER_PATIENTS} missing-weights timers fired during the "
          f"stream; lateness median {result['lag_p50_s']:.2f} s, max {result['lag_max_s']:.2f} "
          f"s (tick {TICK_SECONDS:g} s)", flush=True)
    return result


# -- the engine path -----------------------------------------------------------------------------


def writer_rate(kind: str, args: argparse.Namespace, population_size: int) -> float:
    """The steady events through the service's writer on a fresh store, in this process."""
    from engine.runtime.durable import DurableEngine, open_registry
    from engine.service.ingest import Ingestor, Receipt
    from engine.store import Store

    store_dir = Fresh(kind, args.pg_url)
    try:
        population = Population(population_size, seed=args.seed)
        enrol = population.enrolment()
        steady = [e for day in population.days(1, 2) for e in day][: args.writer_events]
        pathways, _ = load_registry()
        store = Store.open(store_dir.url)
        engine = DurableEngine(store, open_registry(store, pathways, datetime.now(UTC)))
        engine.submit_many(enrol)
        clock: list[datetime] = [steady[0].occurred_at]
        # no admission limits: this measures how fast the writer goes when kept busy
        ingestor = Ingestor(engine, lambda: clock[0], tick_seconds=3600, max_inflight=10**9,
                            max_queue_seconds=3600)
        ingestor.start()
        slots = threading.Semaphore(2_000)
        done = threading.Event()
        left = [len(steady)]
        lock = threading.Lock()

        def finished(_future: Future[Receipt]) -> None:
            slots.release()
            with lock:
                left[0] -= 1
                if left[0] == 0:
                    done.set()

        start = time.perf_counter()
        for event in steady:
            slots.acquire()
            clock[0] = event.occurred_at
            ingestor.submit([event]).add_done_callback(finished)
        done.wait()
        took = time.perf_counter() - start
        ingestor.stop()
        engine.close()
        rate = len(steady) / took
        print(f"    engine path (the service's writer, in-process): {rate:,.0f} events/s "
              f"({len(steady):,} events at {population_size:,} instances)", flush=True)
        return rate
    finally:
        store_dir.drop()


# -- a run ---------------------------------------------------------------------------------------


def one_store(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"== {kind} (load {load()})", flush=True)
    store = Fresh(kind, args.pg_url)
    population = Population(args.instances, seed=args.seed)
    result: dict[str, Any] = {"store": kind, "instances": args.instances, "phases": []}
    service = Service(store, args)
    try:
        now = datetime.now(UTC)
        enrol = enrolments(population, now)
        start = time.perf_counter()
        with httpx.Client(base_url=f"http://127.0.0.1:{service.port}", timeout=300,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for first in range(0, len(enrol), 500):
                client.post("/events", json=enrol[first : first + 500]).raise_for_status()
        print(f"    enrolled {len(enrol):,} patients in {time.perf_counter() - start:.1f} s",
              flush=True)
        steady = Steady(population)
        singles = []
        for mode in args.modes:
            per_request = 1 if mode == "single" else BATCH
            for rate in args.rates if mode == "single" else args.batch_rates:
                phase = run_phase(service.port, steady, f"{mode} x{per_request}", rate,
                                  args.seconds, per_request)
                result["phases"].append(phase.row())
                if mode == "single":
                    singles.append(phase)
        if singles:
            capacity = max(p.row()["achieved"] for p in singles)
            # after the overload phases, a pause: what they left (a snapshot being written,
            # the database's own checkpoint and vacuum) is not what half the capacity costs
            time.sleep(args.settle)
            half = run_phase(service.port, steady, "single at half", capacity / 2,
                             args.seconds, 1)
            result["capacity"] = capacity
            result["half"] = half.row()
            beyond = [p.row() for p in singles if p.offered > capacity * 1.1]
            result["beyond_p99_ms"] = max((b["p99_ms"] for b in beyond), default=None)
            if args.timer_seconds:
                result["timers"] = timer_phase(service.port, store, steady, capacity / 2,
                                               args.timer_seconds)
    finally:
        code = service.stop()
        print(f"    service stopped, exit code {code}", flush=True)
        store.drop()
    result["writer"] = writer_rate(kind, args, args.instances)
    return result


def verdict(result: dict[str, Any]) -> list[str]:
    missed = []
    capacity = result.get("capacity")
    if capacity is not None:
        if capacity < 5 * BEFORE[1]:
            missed.append(f"one-event POSTs {capacity:,.0f}/s < 5x {BEFORE[1]:.0f}")
        p99 = result["half"]["p99_ms"]
        if p99 > 25:
            missed.append(f"p99 at half the capacity {p99:.1f} ms > 25 ms")
        beyond = result.get("beyond_p99_ms")
        if beyond is not None and beyond > 1000:
            missed.append(f"p99 beyond capacity {beyond:.0f} ms > 1 s")
    batches = [p for p in result["phases"] if p["phase"].startswith("batch")]
    if batches:
        best = max(p["achieved"] for p in batches)
        if best < result["writer"] / 2:
            missed.append(f"batches of {BATCH} {best:,.0f}/s < half the writer's "
                          f"{result['writer']:,.0f}/s")
    timers = result.get("timers")
    if timers is not None and (
        timers["timers"] < timers["expected"] or timers["lag_max_s"] > TICK_SECONDS + 0.5
    ):
        missed.append(f"timers: {timers['timers']} of {timers['expected']} fired, max lateness "
                      f"{timers['lag_max_s']:.2f} s")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stores", nargs="+", choices=("sqlite", "postgresql"),
                        default=["sqlite", "postgresql"])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--rates", nargs="+", type=float, default=[250, 500, 1000, 2000, 4000],
                        help="events/s offered in one-event POSTs")
    parser.add_argument("--batch-rates", nargs="+", type=float,
                        default=[1000, 2000, 4000, 8000], help="events/s offered in batches")
    parser.add_argument("--modes", nargs="+", choices=("single", "batch"),
                        default=["single", "batch"])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--timer-seconds", type=float, default=60)
    parser.add_argument("--settle", type=float, default=15,
                        help="seconds of quiet before the phase at half the capacity")
    parser.add_argument("--writer-events", type=int, default=20_000)
    parser.add_argument("--dispatch", action="store_true", help="run the outbox dispatcher too")
    parser.add_argument("--source", help="run the service from this checkout (before/after)")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="append the figures as JSON lines here")
    args = parser.parse_args()
    (ROOT / "data").mkdir(exist_ok=True)
    print(f"load: {load()} on {os.cpu_count()} cores; 10M Python additions in "
          f"{calibration():.2f} s; service from {args.source or ROOT}", flush=True)
    results = [one_store(kind, args) for kind in args.stores]
    failed = False
    print("summary:")
    for r in results:
        missed = verdict(r)
        failed |= bool(missed)
        print(f"  {r['store']}: capacity {r.get('capacity', 0):,.0f} one-event POSTs/s, writer "
              f"{r['writer']:,.0f} events/s: {'; '.join(missed) if missed else 'targets met'}")
    if args.json:
        with open(args.json, "a") as out:
            for r in results:
                out.write(json.dumps({**r, "load": load(), "source": args.source}) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
