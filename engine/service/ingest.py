"""The single writer: one thread owns the DurableEngine. HTTP handlers, the MLLP listener and
the dispatcher's outcomes hand it events through a queue and wait for the commit; the thread
takes as many as are waiting (group commit), decides them, commits once, then answers them all.

Timers run on a deadline of their own: every `tick_seconds` of wall-clock time the writer fires
the timers that have fallen due, whatever the input rate and whatever times the events carry
(a backlog of hour-old readings resent without a gap must not hold an escalation back). A timer
that fires late (the service was down, or busy) is decided at the time it actually fires
(MemoryEngine.advance): the record shows how late it was.

Work in flight is bounded: `submit` refuses (`Busy`) once `max_inflight` events are queued or
being decided, or once the requests the writer takes have waited more than `max_queue_seconds`
in its queue, and the caller answers "resend later" (HTTP 503 with Retry-After, an HL7 `AR`), so
that memory and latency stay bounded under overload. `close_intake` refuses everything new
(`Stopping`); `stop` commits what is queued until its deadline, refuses what is left, fires the
timers due, and returns.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

from engine.catalogue import Event
from engine.core import Decision
from engine.errors import RuntimeFailure
from engine.runtime.durable import DurableEngine

log = logging.getLogger("carepath.ingest")


class Busy(RuntimeFailure):
    """The writer has as much work in flight as it may: send again later."""


class Stopping(Busy):
    """The service is stopping: send again later (to it once restarted)."""


@dataclass
class Receipt:
    """What the writer answers once a group is committed."""

    accepted: list[str] = field(default_factory=list)  # event ids newly accepted
    duplicates: list[str] = field(default_factory=list)  # exact repeats of accepted events
    #: ids accepted before (or earlier in the group) with a different body: not recorded
    conflicts: list[str] = field(default_factory=list)
    actions: int = 0


@dataclass
class _Job:
    events: list[Event]
    future: Future[Receipt]
    queued: float  # monotonic


def canonical(event: Event) -> str:
    """An event's body as compared for duplicates: the stored payload's text, with the time it
    occurred as a UTC instant (the same moment written with another offset is the same)."""
    body = event.model_dump(mode="json")
    body["occurred_at"] = event.occurred_at.astimezone(UTC).isoformat()
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def canonical_text(payload: str) -> str:
    """`canonical` of an event as the input log stores it (its payload's JSON text)."""
    return canonical(Event.model_validate_json(payload))


class Ingestor:
    def __init__(
        self,
        engine: DurableEngine,
        clock: Callable[[], datetime],
        batch_size: int = 500,
        tick_seconds: float = 1.0,
        on_decided: Callable[[list[Decision]], None] | None = None,
        max_inflight: int = 10_000,
        max_queue_seconds: float = 0.25,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.batch_size = batch_size
        self.tick_seconds = tick_seconds
        self.on_decided = on_decided
        self.max_inflight = max_inflight
        self.max_queue_seconds = max_queue_seconds
        #: how long the latest group's first request had waited in the queue, seconds
        self.queue_delay = 0.0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="carepath-writer", daemon=True)
        self._lock = threading.Lock()
        self._accepting = True
        self._stopped = False  # nothing more is taken, not even the service's own inputs
        self._inflight = 0  # events submitted and not yet answered
        self._deadline: float | None = None  # monotonic: past it, queued work is refused
        #: the next pending timer's due time, as the writer saw it after its latest tick
        self.next_due: datetime | None = None
        #: how late (seconds) the timers of the latest tick that fired any fired, at most
        self.last_timer_lag = 0.0

    @property
    def inflight(self) -> int:
        return self._inflight

    def start(self) -> None:
        self._thread.start()

    def submit(self, events: Sequence[Event], *, internal: bool = False) -> Future[Receipt]:
        """Queue events for the writer; the future is answered once they are committed.

        Raises `Busy` when `max_inflight` events are already waiting (a group larger than the
        limit is taken only when nothing else is waiting, so that it can ever be), `Stopping`
        once intake is closed. Nothing is queued then: the sender must send again.

        `internal`: the service's own inputs (the dispatcher's outcome events, a bounded
        batch): taken past the limit and after intake closed, until the writer stops."""
        count = len(events)
        with self._lock:
            if self._stopped or (not self._accepting and not internal):
                raise Stopping("the service is stopping: send again later")
            if not internal and self._inflight:
                if self._inflight + count > self.max_inflight:
                    raise Busy(
                        f"{self._inflight} event(s) are waiting to be recorded (the limit is "
                        f"{self.max_inflight}): send again later"
                    )
                if self.queue_delay > self.max_queue_seconds:
                    raise Busy(
                        f"events wait {self.queue_delay:.1f} s to be recorded (the limit is "
                        f"{self.max_queue_seconds:g} s): send again later"
                    )
            self._inflight += count
        future: Future[Receipt] = Future()
        self._queue.put(_Job(list(events), future, time.monotonic()))
        return future

    def close_intake(self, drain_seconds: float | None = None) -> None:
        """Refuse every new submission from now on (SIGTERM: stop intake at once); what is
        queued is still committed, for `drain_seconds` if given, then refused (`Stopping`)."""
        with self._lock:
            self._accepting = False
            if drain_seconds is not None:
                deadline = time.monotonic() + drain_seconds
                self._deadline = min(self._deadline or deadline, deadline)

    def stop(self, grace_seconds: float | None = None) -> None:
        """Close intake, commit what is queued (within `grace_seconds`: what is still queued
        then is refused with `Stopping`), fire the timers due, and return."""
        self.close_intake(grace_seconds)
        with self._lock:
            self._stopped = True
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_seconds
        stopping = False
        while not stopping:
            wait = next_tick - time.monotonic()
            if wait <= 0:
                self._tick()
                next_tick = time.monotonic() + self.tick_seconds
                continue
            try:
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                continue  # the tick is due
            if first is None:
                break
            jobs, stopping = self._gather(first)
            self.queue_delay = time.monotonic() - first.queued
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self._refuse(jobs)
            else:
                self._commit(jobs)
        self._tick()

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """`first` and the jobs waiting behind it, up to a group of `batch_size` events."""
        jobs, count = [first], len(first.events)
        while count < self.batch_size:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return jobs, True
            jobs.append(more)
            count += len(more.events)
        return jobs, False

    def _done(self, jobs: list[_Job]) -> None:
        with self._lock:
            self._inflight -= sum(len(j.events) for j in jobs)

    def _refuse(self, jobs: list[_Job]) -> None:
        self._done(jobs)
        for job in jobs:
            job.future.set_exception(Stopping("the service stopped before recording this"))
        log.warning("stopping: %d queued request(s) refused, to be sent again", len(jobs))

    def _tick(self) -> None:
        now = self.clock()
        due = self.engine.memory.next_due()
        try:
            decided = self.engine.advance(now, at=now)
        except Exception:  # keep the writer alive; the next tick retries
            log.exception("timer tick failed")
            return
        if due is not None and due <= now:  # the earliest that fired was the latest
            self.last_timer_lag = (now - due).total_seconds()
        self.next_due = self.engine.memory.next_due()
        if self.on_decided and decided:
            self.on_decided(decided)

    def _commit(self, jobs: list[_Job]) -> None:
        receipts = [Receipt() for _ in jobs]
        events: list[Event] = []
        try:
            known = self.engine.store.known_events([e.id for j in jobs for e in j.events])
            firsts: dict[str, Event] = {}
            for job, receipt in zip(jobs, receipts, strict=True):
                for event in job.events:
                    if event.id in known:
                        same = canonical(event) == canonical_text(known[event.id])
                    elif event.id in firsts:
                        same = canonical(event) == canonical(firsts[event.id])
                    else:
                        firsts[event.id] = event
                        receipt.accepted.append(event.id)
                        events.append(event)
                        continue
                    # an id seen before: a duplicate if the body is the same (recorded as a
                    # duplicate input), otherwise a conflict (answered, not recorded)
                    if same:
                        receipt.duplicates.append(event.id)
                        events.append(event)
                    else:
                        receipt.conflicts.append(event.id)
            decided = self.engine.submit_many(events, received_at=self.clock(), known=set(known))
        except Exception as exc:
            self._done(jobs)
            log.error("could not commit %d event(s): %s", len(events), type(exc).__name__)
            for job in jobs:
                job.future.set_exception(exc)
            return
        self._done(jobs)
        if self.on_decided:
            self.on_decided(decided)
        actions = sum(len(d.actions) for d in decided)
        for job, receipt in zip(jobs, receipts, strict=True):
            receipt.actions = actions
            job.future.set_result(receipt)
        log.debug("committed %d event(s), %d action(s)", len(events), actions)
