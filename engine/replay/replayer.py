"""Replay a recorded history through the pinned pathway versions and compare every decision.

The decision core is deterministic, so re-deciding the recorded inputs (events and timer
firings, in their recorded order, each with the `now` it was decided at) must give exactly the
recorded actions and audit records. The first difference is reported side by side.

Actions are never re-run: what they came to was recorded by the dispatcher as inputs of its own
(`action.succeeded` with the outside system's reference, `action.failed` with the error), which
the timeline shows as `outcome` rows beside the decisions.

Replaying everyone is CPU bound, and patients are independent: an input reads and changes only
its patient's instances, and a timer belongs to an instance. So `replay(store, jobs=N)` splits
the patients into N ranges and replays each in a worker process of its own, then merges what
they found. Workers are forked from a server process that imported this module and never opened
a database (`forkserver`): a child forked from the caller would share its open connections, and
a spawned one imports the engine anew, about a second on a slow machine.
"""

from __future__ import annotations

import heapq
import json
import multiprocessing
import os
import pickle
import queue
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

from engine.core import Decision, EventInput, InstanceState, Registry, TimerInput, route
from engine.errors import RuntimeFailure
from engine.replay.history import (
    PatientRange,
    as_input,
    decode_actions,
    decode_audit,
    inputs_of,
    patient_ranges,
    pinned_registry,
    recorded_texts,
    recorded_texts_of,
)
from engine.runtime.heap import tune_collector
from engine.store import Store
from engine.store.reads import Calendar

_AUDIT_KEYS = ("instance_id", "kind", "rule", "action_ids", "facts", "note")


@dataclass(frozen=True, slots=True)
class TimelineRow:
    seq: int
    occurred_at: str
    recorded_at: str
    input: str  # event type or timer key
    input_id: str
    instance_id: str
    kind: str  # audit kind: enrol, fire, exit...
    rule: str
    decision: str  # the actions, e.g. "escalate(hf_nurse, level 1)"
    why: dict[str, Any]
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class Divergence:
    seq: int
    input_id: str
    what: str  # "actions" or "audit"
    recorded: list[dict[str, Any]]
    replayed: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "input_id": self.input_id,
            "what": self.what,
            "recorded": self.recorded,
            "replayed": self.replayed,
        }


@dataclass(slots=True)
class ReplayResult:
    inputs: int = 0
    decisions: int = 0
    timeline: list[TimelineRow] = field(default_factory=list)
    divergence: Divergence | None = None

    @property
    def identical(self) -> bool:
        return self.divergence is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "inputs": self.inputs,
            "decisions": self.decisions,
            "divergence": self.divergence.as_dict() if self.divergence else None,
            "timeline": [row.as_dict() for row in self.timeline],
        }


def replay(
    store: Store,
    *,
    patient_id: str | None = None,
    instance_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_timeline: bool = True,
    jobs: int = 1,
) -> ReplayResult:
    """Re-decide the recorded inputs of one patient, one instance's patient, or everyone.

    Everyone's, with `jobs` over 1, in up to `jobs` worker processes, each replaying a range of
    patients from its own connection to the store (fewer when there are fewer patients; in
    this process when there is only one). When the history is identical the result is the one
    a single process gives. When it is not, each worker stops at the first divergence in its
    own range: the divergence reported is the earliest of those, the one a single process
    stops at, but `inputs`, `decisions` and `timeline` count what every worker re-decided
    before its own stop, so they can include inputs after the divergence reported. `progress`
    is called in this process, in steps of a few thousand inputs.
    """
    everyone = patient_id is None and instance_id is None
    if jobs > 1 and everyone and (url := _worker_url(store)) is not None:
        ranges = patient_ranges(store, jobs)
        if len(ranges) > 1:
            return _replay_in_workers(url, store.schema, ranges, progress, keep_timeline)
    rows = list(store.inputs(patient_id=patient_id, instance_id=instance_id))
    return _replay_rows(
        pinned_registry(store),
        store.calendar(),
        rows,
        recorded_texts(store, [r.seq for r in rows]),
        progress,
        keep_timeline,
    )


def _replay_rows(
    registry: Registry,
    calendar: Calendar,
    rows: Sequence[Any],
    recorded: tuple[dict[int, list[str]], dict[int, list[str]]],
    progress: Callable[[int, int], None] | None,
    keep_timeline: bool,
) -> ReplayResult:
    """Re-decide `rows` (inputs of whole patient histories, in recorded order), each with the
    holidays it was decided with, and compare each input's decisions with `recorded` (actions,
    audit), up to the first difference."""
    recorded_actions, recorded_audit = recorded
    result = ReplayResult()
    instances: dict[str, InstanceState] = {}
    latest: dict[tuple[str, str], str] = {}
    for done, row in enumerate(rows, start=1):
        if progress:
            progress(done, len(rows))
        input_ = as_input(row)
        if input_ is None:
            continue
        now = datetime.fromisoformat(row.decided_at)
        if isinstance(input_, TimerInput):
            state = instances.get(input_.instance_id)
            scope = {state.pathway_key: state} if state else {}
        else:
            assert isinstance(input_, EventInput)
            scope = {
                pid: instances[iid]
                for pid in registry.pathway_ids()
                if (iid := latest.get((input_.event.patient_id, pid))) is not None
            }
        changed, decision = route(registry, scope, input_, now, calendar.at(row.seq))
        for state in changed:
            instances[state.instance_id] = state
            latest[(state.patient_id, state.pathway_key.split("@", 1)[0])] = state.instance_id
        result.inputs += 1
        if not _compare(
            result,
            row,
            decision,
            decode_actions(recorded_actions.get(row.seq, [])),
            decode_audit(recorded_audit.get(row.seq, [])),
            keep_timeline,
        ):
            break
    return result


#: a worker reports its progress every this many inputs, and when done
_REPORT_EVERY = 2_000
#: how often, in seconds, the parent looks for a worker that died without a word
_POLL_SECONDS = 0.5


def _worker_url(store: Store) -> str | None:
    """The URL a worker process opens the store by (None for an SQLite database in memory,
    which no other process sees). An SQLite path is made absolute: a worker starts in the
    directory the fork server started in."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return None
        url = url.set(database=os.path.abspath(url.database))
    return url.render_as_string(hide_password=False)


def _replay_in_workers(
    url: str,
    schema: str | None,
    ranges: list[PatientRange],
    progress: Callable[[int, int], None] | None,
    keep_timeline: bool,
) -> ReplayResult:
    """Replay each range of patients in a worker process and merge the results.

    Workers put on one queue their progress (a count of inputs) and, last, (their index, their
    result or what they raised). The first failure is raised here, after the other workers are
    stopped."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # once the server runs, this changes nothing
    reports: multiprocessing.Queue[Any] = context.Queue()
    workers = [
        context.Process(
            target=_replay_patients,
            args=(index, url, schema, patients, keep_timeline, reports),
            name=f"carepath-replay-{index}",
            daemon=True,
        )
        for index, patients in enumerate(ranges)
    ]
    total = sum(patients.inputs for patients in ranges)
    results: dict[int, ReplayResult] = {}
    done = 0
    try:
        for worker in workers:
            worker.start()
        while len(results) < len(workers):
            # Workers that had exited before the queue was found empty: whatever they put on
            # it was in the pipe by then (a process flushes its queue before it exits).
            exited = [
                index
                for index, worker in enumerate(workers)
                if worker.exitcode is not None and index not in results
            ]
            try:
                message = reports.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if exited:
                    patients, code = ranges[exited[0]], workers[exited[0]].exitcode
                    raise RuntimeFailure(
                        f"the replay worker for patients {patients.first} to {patients.last} "
                        f"exited with code {code} without a result"
                    ) from None
                continue
            if isinstance(message, int):
                done += message
                if progress:
                    progress(done, total)
                continue
            index, outcome = message
            if isinstance(outcome, BaseException):
                raise outcome
            results[index] = outcome
    finally:
        for worker in workers:
            if worker.pid is None:  # never started
                continue
            if worker.is_alive():  # only after a failure (or an interrupt) here
                worker.terminate()
            worker.join()
        reports.close()
    return _merged([results[index] for index in range(len(workers))])


def _replay_patients(
    index: int,
    url: str,
    schema: str | None,
    patients: PatientRange,
    keep_timeline: bool,
    reports: multiprocessing.Queue[Any],
) -> None:
    """A worker process: replay one range of patients and put the result on `reports`, or
    what was raised (see `_portable`)."""
    tune_collector()
    reported = 0

    def report(done: int, total: int) -> None:
        nonlocal reported
        if done - reported >= _REPORT_EVERY or done == total:
            reports.put(done - reported)
            reported = done

    try:
        store = Store.open(url, schema=schema)
        try:
            outcome: ReplayResult | Exception = _replay_rows(
                pinned_registry(store),
                store.calendar(),
                inputs_of(store, patients),
                recorded_texts_of(store, patients),
                report,
                keep_timeline,
            )
        finally:
            store.close()
    except Exception as exc:
        outcome = _portable(exc)
    reports.put((index, outcome))


def _portable(exc: Exception) -> Exception:
    """`exc` with the worker's traceback added as a note, if it comes through pickling (which
    rebuilds it from its args: not every error class allows that); otherwise a RuntimeFailure
    that names it."""
    note = "raised in a replay worker process:\n" + "".join(traceback.format_exception(exc))
    exc.add_note(note)
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        failure = RuntimeFailure(f"a replay worker failed: {type(exc).__name__}: {exc}")
        failure.add_note(note)
        return failure
    return exc


def _merged(results: list[ReplayResult]) -> ReplayResult:
    """One result from the workers': counts summed, the earliest divergence, the timelines
    merged in input order (the rows of one input all come from one worker, in their order)."""
    divergences = [r.divergence for r in results if r.divergence is not None]
    return ReplayResult(
        inputs=sum(r.inputs for r in results),
        decisions=sum(r.decisions for r in results),
        timeline=list(heapq.merge(*(r.timeline for r in results), key=attrgetter("seq"))),
        divergence=min(divergences, key=attrgetter("seq"), default=None),
    )


def _compare(
    result: ReplayResult,
    row: Any,
    decision: Decision,
    recorded_actions: list[dict[str, Any]],
    recorded_audit: list[dict[str, Any]],
    keep_timeline: bool,
) -> bool:
    """Compare one input's decisions with the record; extend the timeline when they agree."""
    replayed_actions = [a.as_dict() for a in decision.actions]
    if replayed_actions != recorded_actions:
        result.divergence = Divergence(
            row.seq, row.input_id, "actions", recorded_actions, replayed_actions
        )
        return False
    replayed_audit = [e.as_dict() for e in decision.audit]
    recorded = [{k: r.get(k) for k in _AUDIT_KEYS} for r in recorded_audit]
    if replayed_audit != recorded:
        result.divergence = Divergence(row.seq, row.input_id, "audit", recorded, replayed_audit)
        return False
    result.decisions += len(decision.audit)
    if keep_timeline:
        if row.type in OUTCOME_TYPES:
            result.timeline.append(_outcome_row(row))
        by_id = {a["id"]: a for a in replayed_actions}
        for entry in decision.audit:
            result.timeline.append(
                TimelineRow(
                    seq=row.seq,
                    occurred_at=row.occurred_at,
                    recorded_at=row.recorded_at,
                    input=row.type,
                    input_id=row.input_id,
                    instance_id=entry.instance_id,
                    kind=entry.kind,
                    rule=entry.rule,
                    decision=", ".join(_describe(by_id[i]) for i in entry.action_ids if i in by_id),
                    why=dict(entry.facts),
                    note=entry.note,
                )
            )
    return True


#: inputs the dispatcher records: what an action came to (replay never re-runs actions)
OUTCOME_TYPES = frozenset({"action.succeeded", "action.failed"})


def _outcome_row(row: Any) -> TimelineRow:
    """A timeline row for a recorded outcome: the action, and the outside system's reference
    or the error."""
    data = json.loads(row.payload).get("data", {})
    action_id = str(data.get("action_id", ""))
    succeeded = row.type == "action.succeeded"
    detail = data.get("reference") if succeeded else data.get("error")
    return TimelineRow(
        seq=row.seq,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        input=row.type,
        input_id=row.input_id,
        instance_id=action_id.rsplit(".", 1)[0],
        kind="outcome",
        rule=action_id,
        decision=f"{data.get('action', '')} {'succeeded' if succeeded else 'failed'}",
        why={"reference" if succeeded else "error": detail or ""},
        note="",
    )


def _describe(action: dict[str, Any]) -> str:
    params = action.get("params") or {}
    bits = [str(params[k]) for k in ("role", "kind", "reason", "topic") if k in params]
    if "level" in params:
        bits.append(f"level {params['level']}")
    return f"{action['action']}({', '.join(bits)})" if bits else str(action["action"])
