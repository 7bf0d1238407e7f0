"""The single writer: one thread owns the DurableEngine. HTTP handlers, the MLLP listener and
the dispatcher hand it events through a queue and wait for the commit; the thread takes as many
as are waiting (group commit), decides them, commits once, then answers them all. Between
batches it fires the timers that have fallen due on the wall clock, as recorded inputs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

from engine.catalogue import Event
from engine.core import Decision
from engine.runtime.durable import DurableEngine

log = logging.getLogger("carepath.ingest")


@dataclass
class Receipt:
    """What the writer answers once a group is committed."""

    accepted: list[str] = field(default_factory=list)  # event ids newly accepted
    duplicates: list[str] = field(default_factory=list)
    actions: int = 0


@dataclass
class _Job:
    events: list[Event]
    future: Future[Receipt]


class Ingestor:
    def __init__(
        self,
        engine: DurableEngine,
        clock: Callable[[], datetime],
        batch_size: int = 500,
        tick_seconds: float = 1.0,
        on_decided: Callable[[list[Decision]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.batch_size = batch_size
        self.tick_seconds = tick_seconds
        self.on_decided = on_decided
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="carepath-writer", daemon=True)
        self._accepting = True
        #: the next pending timer's due time, as the writer saw it after its latest tick
        self.next_due: datetime | None = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, events: list[Event]) -> Future[Receipt]:
        future: Future[Receipt] = Future()
        if not self._accepting:
            future.set_exception(RuntimeError("the service is shutting down"))
            return future
        self._queue.put(_Job(events, future))
        return future

    def stop(self) -> None:
        """Stop accepting, finish and commit what is queued, then return."""
        self._accepting = False
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self.tick_seconds)
            except queue.Empty:
                self._tick()
                continue
            jobs: list[_Job] = []
            if first is None:
                stopping = True
            else:
                jobs.append(first)
            count = sum(len(j.events) for j in jobs)
            while count < self.batch_size:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    continue
                jobs.append(more)
                count += len(more.events)
            if jobs:
                self._commit(jobs)
        self._tick()

    def _tick(self) -> None:
        try:
            decided = self.engine.advance(self.clock())
        except Exception:  # keep the writer alive; the next tick retries
            log.exception("timer tick failed")
            return
        self.next_due = self.engine.memory.next_due()
        if self.on_decided and decided:
            self.on_decided(decided)

    def _commit(self, jobs: list[_Job]) -> None:
        events = [e for job in jobs for e in job.events]
        try:
            known = self.engine.store.known_event_ids([e.id for e in events])
            decided = self.engine.submit_many(events, received_at=self.clock(), known=known)
        except Exception as exc:
            log.error("could not commit %d event(s): %s", len(events), type(exc).__name__)
            for job in jobs:
                job.future.set_exception(exc)
            return
        if self.on_decided:
            self.on_decided(decided)
        actions = sum(len(d.actions) for d in decided)
        seen: set[str] = set(known)
        for job in jobs:
            receipt = Receipt(actions=actions)
            for event in job.events:
                if event.id in seen:
                    receipt.duplicates.append(event.id)
                else:
                    seen.add(event.id)
                    receipt.accepted.append(event.id)
            job.future.set_result(receipt)
        log.info("committed %d event(s), %d action(s)", len(events), actions)
