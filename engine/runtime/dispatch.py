"""The outbox dispatcher: actions from the store's outbox, carried out by their pathway's flow, in
batches, off the per-event path (ingest and rules never wait for it).

    recover()                    on start: what a dead dispatcher left running goes back to pending
    loop:
      claim a batch              pending -> running (attempts + 1)
      group by pathway version   ONE flow run per group: Prefect's per-run cost is paid per batch
      run each group             its flow carries out every action with its retries and timeout
      outcome events             through `submit`: `action.failed` for each action that failed
                                 after its retries, `action.succeeded` (with the outside
                                 system's reference) for each that was carried out
      write outcomes back        running -> succeeded | failed, with the reference or the error

Where the flows run is the `FlowRegistry`'s business: in-process against the embedded Prefect
server (engine.flows.runners.LocalFlows), or as deployments on Prefect workers (DeployedFlows).
An action the registry gives no outcome for (its flow run crashed or was lost) goes back to
pending for the next claim.

The outcome events put every outcome in the hash-chained input log, so the audit trail and
replay show what each action came to (a pathway may also act on them). Replay re-decides them
like any input; it never re-runs an action.

Nothing runs twice with effect: every action carries its id to the port as idempotency key, so
an action re-run after a restart between claim and write-back finds its first effect. The
outcome events are submitted before the outcomes are written, with stable ids
(`action.failed:<action id>`, `action.succeeded:<action id>`): a crash in between re-runs the
action and submits the same event again, which the engine ignores as a duplicate. An escalation
on a failure is never lost; at worst a failure that a re-run then cures was reported.

This module does not import Prefect: the registries do.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from engine.catalogue import Event
from engine.store import Outbox, OutboxItem, Outcome, Store

if TYPE_CHECKING:
    from adapters.registry import PortRegistry

log = logging.getLogger("carepath.dispatch")

#: decides and commits events (in production the single writer's submit); must be thread-safe
Submit = Callable[[list[Event]], object]


class FlowRegistry(Protocol):
    """Runs one group of actions of one pathway version as one flow run."""

    def run_group(
        self, pathway_key: str, items: Sequence[OutboxItem], ports: PortRegistry | None
    ) -> Sequence[Outcome]:
        """Outcomes of the actions carried out (succeeded, or failed after their retries).
        An item with no outcome was not finished and will be claimed again."""
        ...


@dataclass(slots=True)
class BatchReport:
    claimed: int = 0
    flow_runs: int = 0
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


def wall_clock() -> datetime:
    return datetime.now(UTC)


def outcome_event(action: Mapping[str, Any], outcome: Outcome, now: datetime) -> Event:
    """The input recording what `action` came to: `action.succeeded` with the outside system's
    reference, or `action.failed` (after its retries) with the error. The id is stable, so a
    re-run after a crash submits a duplicate."""
    if outcome.succeeded:
        kind, detail = "action.succeeded", {"reference": outcome.reference or ""}
    else:
        kind, detail = "action.failed", {"error": outcome.error or ""}
    return Event.model_validate(
        {
            "id": f"{kind}:{action['id']}",
            "type": kind,
            "patient_id": action["patient_id"],
            "occurred_at": now,
            "data": {"action_id": action["id"], "action": action["action"], **detail},
        }
    )


class Dispatcher:
    def __init__(
        self,
        store: Store,
        flows: FlowRegistry,
        ports: PortRegistry | None,
        submit: Submit,
        *,
        clock: Callable[[], datetime] = wall_clock,
        batch_size: int = 100,
        in_flight: int = 1,
        interval_seconds: float = 1.0,
    ) -> None:
        self.outbox = Outbox(store)
        self.flows = flows
        self.ports = ports
        self.submit = submit
        self.clock = clock
        self.batch_size = batch_size
        self.in_flight = max(1, in_flight)
        self.interval_seconds = interval_seconds
        self._submit_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one batch ---------------------------------------------------------------------------

    def recover(self) -> int:
        """Put back to pending what a dispatcher that died left running. Call once, on start."""
        count = self.outbox.recover()
        if count:
            log.info("recovered %d action(s) left running by a previous dispatcher", count)
        return count

    def claim(self) -> list[OutboxItem]:
        return self.outbox.claim(self.batch_size, self.clock())

    def process(self, batch: Sequence[OutboxItem]) -> BatchReport:
        """Run a claimed batch, one flow run per pathway version, and write the outcomes back."""
        report = BatchReport(claimed=len(batch))
        groups: dict[str, list[OutboxItem]] = {}
        for item in batch:
            groups.setdefault(item.pathway_key, []).append(item)
        outcomes: list[Outcome] = []
        for key, items in groups.items():
            report.flow_runs += 1
            try:
                outcomes.extend(self.flows.run_group(key, items, self.ports))
            except Exception:
                log.exception("the flow run of %d action(s) of %s failed", len(items), key)
        by_id = {item.action_id: item for item in batch}
        outcomes = [o for o in outcomes if o.action_id in by_id]
        done = {o.action_id for o in outcomes}
        report.released = [i.action_id for i in batch if i.action_id not in done]
        now = self.clock()
        events = [outcome_event(by_id[o.action_id].action, o, now) for o in outcomes]
        try:
            if events:
                with self._submit_lock:
                    self.submit(events)
            self.outbox.complete(outcomes, now)
        except Exception:
            log.exception("could not record the outcomes of %d action(s)", len(outcomes))
            report.released = [i.action_id for i in batch]
            outcomes = []
        if report.released:
            self.outbox.release(report.released)
            log.warning("%d action(s) not finished, back to pending", len(report.released))
        report.succeeded = [o.action_id for o in outcomes if o.succeeded]
        report.failed = [o.action_id for o in outcomes if not o.succeeded]
        return report

    def run_once(self) -> BatchReport:
        """Claim one batch and carry it out."""
        batch = self.claim()
        return self.process(batch) if batch else BatchReport()

    def drain(self) -> list[BatchReport]:
        """Carry out everything pending, up to `in_flight` batches at a time; returns when the
        outbox has nothing pending."""
        return self.drain_until(self._stop.is_set)

    def drain_until(self, stopped: Callable[[], bool]) -> list[BatchReport]:
        """`drain`, claiming no further batch once `stopped()` (or `stop()`) says so."""
        if self.in_flight == 1:
            reports = []
            while not stopped() and not self._stop.is_set():
                report = self.run_once()
                if not report.claimed:
                    break
                reports.append(report)
                if report.released and not report.succeeded and not report.failed:
                    break  # nothing could run: leave it for the next round
            return reports
        return self._drain_concurrently(stopped)

    def _drain_concurrently(self, stopped: Callable[[], bool]) -> list[BatchReport]:
        reports: list[BatchReport] = []
        running: set[concurrent.futures.Future[BatchReport]] = set()
        with concurrent.futures.ThreadPoolExecutor(self.in_flight) as pool:
            exhausted = False
            while True:
                while (
                    not exhausted
                    and not stopped()
                    and not self._stop.is_set()
                    and len(running) < self.in_flight
                ):
                    batch = self.claim()  # claims are made by this thread only
                    if not batch:
                        exhausted = True
                        break
                    running.add(pool.submit(self.process, batch))
                if not running:
                    return reports
                finished, running = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in finished:
                    report = future.result()
                    reports.append(report)
                    if report.released and not report.succeeded and not report.failed:
                        exhausted = True

    # -- the background loop -------------------------------------------------------------------

    def start(self) -> None:
        """Recover, then dispatch in a background thread until `stop()`."""
        self.recover()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="carepath-dispatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batches in flight are written back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain()
            except Exception:
                log.exception("dispatch round failed; trying again")
            self._stop.wait(self.interval_seconds)
