"""How an inbound payload is taken in, whatever the channel (HTTP JSON, FHIR, HL7 v2 over HTTP
or MLLP): parsed by its adapter, checked, handed to the single writer, answered. The channels
only render the `Taken` (an HTTP status, an HL7 ACK code).

    parse (adapter)      InputError   -> refused: kept as a dead letter (the bytes received)
    times                too far in the future (clock_skew_seconds) -> refused, kept
    submit               writer full -> busy; stopping -> busy   (nothing recorded: resend)
    commit               accepted, duplicates (exact repeats), conflicts (an id accepted
                         before with another body: not recorded, each kept as a dead letter)

Nothing here logs a payload, an identifier or a value: counts, sources and dead letter ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from engine.catalogue import Event
from engine.errors import InputError
from engine.service.ingest import Busy, Receipt

if TYPE_CHECKING:
    from engine.service.server import Service

log = logging.getLogger("carepath.intake")

T = TypeVar("T")
#: the channel's syntax: the raw payload -> a document (InputError: not well-formed)
Decode = Callable[[bytes], T]
#: the adapter: the document -> the events it stands for (InputError: not acceptable)
Parse = Callable[[T], Sequence[Event]]


@dataclass
class Taken:
    """What came of one payload."""

    outcome: str  # accepted | refused | busy | failed
    reason: str = ""
    #: why it was refused: a payload that is not well-formed (not text, not the syntax) or
    #: one that is well-formed but not acceptable (HTTP 400 or 422)
    malformed: bool = False
    receipt: Receipt = field(default_factory=Receipt)
    dead_letter: int | None = None  # the refused payload's, when refused
    events: list[Event] = field(default_factory=list)


def wall_clock() -> datetime:
    return datetime.now(UTC)


class Intake:
    def overloaded(self) -> bool:
        """Whether the event loop is so far behind that new requests must be turned away."""
        return self.lag > self.service.settings.max_queue_seconds

    def __init__(self, service: Service, clock: Callable[[], datetime] = wall_clock) -> None:
        self.service = service
        self.clock = clock
        #: how late the event loop ran a short sleep, lately (seconds): how long a request that
        #: arrives now waits before it is even read
        self.lag = 0.0

    async def watch_loop(self, every: float = 0.02) -> None:
        """Measure the event loop's lag until cancelled (the service's lifespan runs it)."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(every)
            late = loop.time() - start - every
            # up at once, down gently (over about a tenth of a second: slower, and a flood
            # kept it refusing long after the backlog was gone, bench/service_load.py)
            self.lag = late if late > self.lag else self.lag * 0.8 + late * 0.2

    async def take(
        self, source: str, raw: bytes, decode: Decode[T], parse: Parse[T]
    ) -> Taken:
        """Decode `raw` (not well-formed: refused, 400), parse its events (not acceptable:
        refused, 422) and record them."""
        if self.overloaded():
            # the event loop itself is behind (more requests than it can parse): refusing
            # before any work is what lets it catch up
            self.service.metrics.busy.labels(source).inc()
            return Taken("busy", f"requests wait {self.lag:.1f} s to be read: send again later")
        try:
            document = decode(raw)
        except InputError as exc:
            return await self.refuse(source, str(exc), raw, malformed=True)
        try:
            events = list(parse(document))
            self.check_times(events)
        except InputError as exc:
            return await self.refuse(source, str(exc), raw)
        return await self.record(source, events, raw)

    async def record(self, source: str, events: list[Event], raw: bytes) -> Taken:
        """Hand parsed events to the single writer and wait for the commit."""
        service = self.service
        try:
            future = service.ingestor.submit(events)
        except Busy as exc:
            service.metrics.busy.labels(source).inc()
            return Taken("busy", str(exc), events=events)
        try:
            receipt = await asyncio.wrap_future(future)
        except Busy as exc:  # stopping before it was recorded
            service.metrics.busy.labels(source).inc()
            return Taken("busy", str(exc), events=events)
        except Exception as exc:
            log.error("could not record %d %s event(s): %s", len(events), source,
                      type(exc).__name__)
            return Taken("failed", "could not record the events; send them again", events=events)
        service.metrics.accepted.labels(source).inc(len(receipt.accepted))
        service.metrics.duplicates.labels(source).inc(len(receipt.duplicates))
        taken = Taken("accepted", receipt=receipt, events=events)
        if receipt.conflicts:
            service.metrics.conflicts.labels(source).inc(len(receipt.conflicts))
            taken.dead_letter = await self.keep_conflicts(source, events, receipt, raw)
        log.debug(
            "%s: %d event(s) accepted, %d duplicate(s), %d conflict(s)",
            source, len(receipt.accepted), len(receipt.duplicates), len(receipt.conflicts),
        )
        return taken

    async def keep_conflicts(
        self, source: str, events: list[Event], receipt: Receipt, raw: bytes
    ) -> int:
        """A dead letter for each event refused as a conflict: the event as received (the
        whole payload when it held only that event). Returns the first letter's id."""
        conflicting = set(receipt.conflicts)
        letters = []
        for event in events:
            if event.id not in conflicting:
                continue
            conflicting.discard(event.id)  # the first one sent under that id in the payload
            payload = raw if len(events) == 1 else event.model_dump_json().encode()
            reason = (
                f"event id {event.id!r} was accepted before with a different body (patient, "
                "type, time or data): not recorded; send the change under a new id"
            )
            letters.append(await self.keep(source, reason, payload))
        return letters[0]

    async def refuse(
        self, source: str, reason: str, raw: bytes, *, malformed: bool = False
    ) -> Taken:
        letter = await self.keep(source, reason, raw)
        self.service.metrics.rejected.labels(source).inc()
        log.warning("refused a %s payload: dead letter %d", source, letter)
        return Taken("refused", reason, malformed=malformed, dead_letter=letter)

    async def keep(self, source: str, reason: str, raw: bytes) -> int:
        """A dead letter, written off the event loop (the store call blocks)."""
        store, now = self.service.store, self.clock()
        return await asyncio.to_thread(store.dead_letter, source, reason, raw, now)

    def check_times(self, events: Sequence[Event]) -> None:
        """Refuse events that occurred further in the future than the clock skew allows."""
        limit = self.clock() + timedelta(seconds=self.service.settings.clock_skew_seconds)
        late = [(n, e) for n, e in enumerate(events) if e.occurred_at > limit]
        if not late:
            return
        n, first = late[0]
        where = f"[{n}].occurred_at" if len(events) > 1 else "occurred_at"
        more = f" (and {len(late) - 1} more)" if len(late) > 1 else ""
        raise InputError(
            f"{first.occurred_at.isoformat()} is more than "
            f"{self.service.settings.clock_skew_seconds:g} s ahead of this service's clock "
            f"({self.clock().replace(microsecond=0).isoformat()}): the sender's clock or the "
            f"time is wrong{more}",
            location=where,
        )
