"""Decisions per second through the decision core, in memory, and memory per active instance.

    .venv/bin/python bench/core_speed.py [--instances 1000 10000 100000] [--events 200000]
                                         [--rounds 3] [--digest] [--profile FILE]

For each size (each in a fresh process, so that RSS figures are clean): a seeded population
(bench/workload.py: 90 % CHF, 10 % diabetic foot) enrols on day 0, then a realistic event mix
(about 85 % weights; appointments, symptoms, acknowledgements, foot exams) runs for as many
days as it takes to reach about `--events` events (2 to 25 days). Events go through
`MemoryEngine.submit`, the in-memory engine loop `carepath simulate` runs on: timers due before
each event fire first as inputs of their own, and each input is `route`d and `decide`d by the
core, with rules evaluated by durable-rules (rules.RuleBook). No store. Events are built (and
validated) before the clock starts.

Printed per size, as medians over `--rounds` fresh engines fed the same events:
- steady-state events/s (and inputs/s, counting timer firings), and enrolments/s;
- durable-rules alone on the same messages: RuleBook.evaluate (encode + match) on every
  (event type, facts) the core asked it during the steady phase, and the bare `match` on the
  pre-encoded JSON, so it is clear how much of the time is the rule engine's;
- memory per active instance: the process's RSS growth (VmRSS, first round) / instances, and
  the deep size of our state objects (sys.getsizeof over every object reachable from the
  instance states, each object counted once) / instances; and the same deep size for
  instances that hold a full 14-day window of daily weights (the steady state of a long run).

Targets (issue 3): >= 15,000 events/s at 100,000 instances (the events/s target applies from
100,000 instances up), and <= 4 KiB of our state per instance (both the deep size after the run
and with a full 14-day window). Exits 1 when a target is missed.

`--digest` prints a SHA-256 of every decision (actions and audit, as JSON) and of the final
instance states, so that an optimisation can be checked to decide exactly the same.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import Population, days_for, load_registry, mix
from engine.catalogue import Event
from engine.core import Decision
from engine.runtime.memory import MemoryEngine

#: events/s from this many active instances up; bytes of our state per instance
RATE_TARGET, RATE_FROM, STATE_TARGET = 15_000.0, 100_000, 4096


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def deep_size(roots: Iterable[object], seen: set[int] | None = None) -> int:
    """Bytes of every object reachable from `roots` (each counted once; classes excluded)."""
    seen = set() if seen is None else seen
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        else:
            for slot in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, slot):
                    stack.append(getattr(obj, slot))
    return total


class Recorder:
    """Wraps a pathway's evaluator and keeps what it was asked (for the durable-rules figure)."""

    def __init__(self, inner: Any, calls: list[tuple[Any, str, Mapping[str, Any]]]) -> None:
        self.inner = inner
        self.calls = calls
        self.on = False

    def evaluate(self, event_type: str, facts: Mapping[str, Any]) -> Any:
        if self.on:
            self.calls.append((self.inner, event_type, facts))
        return self.inner.evaluate(event_type, facts)


def run_engine(
    registry: Any, enrol: list[Event], steady: list[Event], recorders: list[Recorder] | None
) -> tuple[MemoryEngine, float, float, float, int]:
    engine = MemoryEngine(registry)
    start = time.perf_counter()
    for event in enrol:
        engine.submit(event)
    enrolled = time.perf_counter() - start
    for r in recorders or ():
        r.on = True
    inputs = 0
    GC_TIME[:] = [0.0, 0.0]
    gc.callbacks.append(_gc_timer)
    start, cpu = time.perf_counter(), time.process_time()
    for event in steady:
        decision = engine.submit(event)
        inputs += 1 + sum(1 for a in decision.audit if a.kind in _TIMER_KINDS)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    gc.callbacks.remove(_gc_timer)
    for r in recorders or ():
        r.on = False
    return engine, enrolled, elapsed, cpu, inputs


#: [seconds spent in the garbage collector, start of the current collection]
GC_TIME = [0.0, 0.0]


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        GC_TIME[1] = time.perf_counter()
    else:
        GC_TIME[0] += time.perf_counter() - GC_TIME[1]


#: audit kinds only a timer firing produces (to count timer inputs without instrumenting)
_TIMER_KINDS = frozenset({"deadline", "missing-data", "escalate"})


def digest(registry: Any, events: list[Event]) -> str:
    engine = MemoryEngine(registry)
    h = hashlib.sha256()

    def add(decision: Decision) -> None:
        for a in decision.actions:
            h.update(json.dumps(a.as_dict(), sort_keys=True).encode())
        for e in decision.audit:
            h.update(json.dumps(e.as_dict(), sort_keys=True, default=str).encode())
        for t in decision.timers:
            h.update(f"{t.instance_id}|{t.timer}|{t.due_at}".encode())

    for event in events:
        add(engine.submit(event))
    for iid in sorted(engine.instances):
        h.update(json.dumps(engine.instances[iid].as_dict(), sort_keys=True).encode())
    return h.hexdigest()


def rules_alone(calls: list[tuple[Any, str, Mapping[str, Any]]]) -> tuple[float, float]:
    """(RuleBook.evaluate calls/s, bare durable-rules match/s) over the recorded calls."""
    start = time.perf_counter()
    for book, event_type, facts in calls:
        book.evaluate(event_type, facts)
    evaluate_rate = len(calls) / (time.perf_counter() - start)
    mid = 10**9 + int(time.time() * 1000) % 10**6 * 10**6
    encoded = []
    for book, event_type, facts in calls:
        mid += 1
        encoded.append((book._host, book._program.encoders[event_type].encode(facts, mid),
                        event_type))
    start = time.perf_counter()
    for host, message, event_type in encoded:
        host.match(message, event_type)
    match_rate = len(encoded) / (time.perf_counter() - start)
    return evaluate_rate, match_rate


def full_window_state_size(registry: Any, instances: int = 1000, days: int = 15) -> float:
    population = Population(instances, seed=11)
    engine = MemoryEngine(registry)
    for event in population.enrolment():
        engine.submit(event)
    for day in population.days(1, days):
        for event in day:
            engine.submit(event)
    active = [s for s in engine.instances.values() if s.active]
    readings = statistics.median(len(s.readings.get("observation.weight", ())) for s in active
                                 if not s.pathway_key.startswith("diabetic"))
    size = deep_size(active) / len(active)
    print(f"  full window: {len(active)} active instances after {days} days of daily weights "
          f"(median {readings:.0f} readings kept): {size:,.0f} B of state per instance")
    return size


def one_size(args: argparse.Namespace, size: int) -> dict[str, Any]:
    _pathways, registry = load_registry()
    population = Population(size, foot_share=args.foot_share, seed=args.seed)
    days = days_for(size, args.events)
    enrol = population.enrolment()
    steady = [e for day in population.days(1, days) for e in day]
    print(f"{size:,} instances: {len(enrol):,} enrolments, then {days} days: {len(steady):,} "
          f"events ({mix(steady)})", flush=True)
    if args.digest:
        print(f"  digest {digest(registry, enrol + steady)}", flush=True)
        registry = load_registry()[1]
    calls: list[tuple[Any, str, Mapping[str, Any]]] = []
    recorders = []
    for compiled in registry.by_key.values():
        recorder = Recorder(compiled.evaluator, calls)
        compiled.evaluator = recorder
        recorders.append(recorder)
    # The pre-built events are the harness's input, not the engine's state: keep the garbage
    # collector from walking them (a service receives an event, decides it and drops it).
    gc.collect()
    gc.freeze()
    before = rss_bytes()
    rates, cpu_rates, enrol_rates, input_rates = [], [], [], []
    rss_per = state_per = 0.0
    for round_ in range(args.rounds):
        if args.profile and round_ == 0:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        engine, enrolled, elapsed, cpu, inputs = run_engine(
            registry, enrol, steady, recorders if round_ == 0 else None
        )
        if args.profile and round_ == 0:
            profiler.disable()
            profiler.dump_stats(args.profile)
            print(f"  profile of round 1 written to {args.profile}")
        rates.append(len(steady) / elapsed)
        cpu_rates.append(len(steady) / cpu)
        input_rates.append(inputs / elapsed)
        enrol_rates.append(len(enrol) / enrolled)
        active = sum(1 for s in engine.instances.values() if s.active)
        if round_ == 0:
            gc.collect()
            rss_per = (rss_bytes() - before) / len(engine.instances)
            state_per = deep_size(engine.instances.values()) / len(engine.instances)
        print(f"  round {round_ + 1}: enrolment {enrol_rates[-1]:,.0f}/s, steady "
              f"{rates[-1]:,.0f} events/s ({cpu_rates[-1]:,.0f} per CPU second; "
              f"{input_rates[-1]:,.0f} inputs/s with timers; {100 * GC_TIME[0] / elapsed:.0f} % "
              f"of the time in the garbage collector), "
              f"{active:,} active of {len(engine.instances):,}", flush=True)
        del engine
        gc.collect()
    evaluations = len(calls) / len(steady)
    evaluate_rate, match_rate = rules_alone(calls)
    full = full_window_state_size(registry)
    result = {
        "instances": size,
        "events": len(steady),
        "days": days,
        "events_per_s": statistics.median(rates),
        "events_per_cpu_s": statistics.median(cpu_rates),
        "inputs_per_s": statistics.median(input_rates),
        "enrolments_per_s": statistics.median(enrol_rates),
        "evaluations_per_event": evaluations,
        "rulebook_evaluate_per_s": evaluate_rate,
        "bare_match_per_s": match_rate,
        "rss_per_instance": rss_per,
        "state_per_instance": state_per,
        "state_per_instance_full_window": full,
        "rounds": rates,
    }
    share = statistics.median(rates) * evaluations / evaluate_rate
    print(
        f"  => {result['events_per_s']:,.0f} events/s (median of {args.rounds}: "
        f"{', '.join(f'{r:,.0f}' for r in rates)}); {result['events_per_cpu_s']:,.0f} per CPU "
        f"second; enrolment {result['enrolments_per_s']:,.0f}/s\n"
        f"     durable-rules alone on the same {len(calls):,} messages ({evaluations:.2f} per "
        f"event): RuleBook.evaluate {evaluate_rate:,.0f}/s, bare match {match_rate:,.0f}/s "
        f"(so rules take ~{100 * share:.0f} % of the core's time)\n"
        f"     memory: RSS {rss_per:,.0f} B per instance; our state {state_per:,.0f} B per "
        f"instance ({days} days of history), {full:,.0f} B with a full 14-day window",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--events", type=int, default=200_000,
                        help="steady-state events to aim for (2 to 25 days of the mix)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--foot-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--digest", action="store_true", help="print a digest of the decisions")
    parser.add_argument("--profile", help="write a cProfile of the first round here")
    parser.add_argument("--json", help="append each size's figures as a JSON line here")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"on {os.cpu_count()} cores", flush=True)
    if len(args.instances) > 1:
        failed = False
        for size in args.instances:
            argv = [a for a in sys.argv[1:]]
            i = argv.index("--instances") if "--instances" in argv else None
            if i is not None:
                j = i + 1
                while j < len(argv) and not argv[j].startswith("--"):
                    j += 1
                del argv[i:j]
            code = subprocess.call([sys.executable, __file__, *argv, "--instances", str(size)])
            failed = failed or code != 0
        return 1 if failed else 0
    result = one_size(args, args.instances[0])
    result["load"] = os.getloadavg()
    if args.json:
        with open(args.json, "a") as out:
            out.write(json.dumps(result) + "\n")
    missed = []
    if result["instances"] >= RATE_FROM and result["events_per_s"] < RATE_TARGET:
        missed.append(f"{result['events_per_s']:,.0f} events/s < {RATE_TARGET:,.0f}")
    for name in ("state_per_instance", "state_per_instance_full_window"):
        if result[name] > STATE_TARGET:
            missed.append(f"{name} {result[name]:,.0f} B > {STATE_TARGET:,} B")
    print(f"  targets: {'MISSED: ' + '; '.join(missed) if missed else 'met'} (load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
