"""The service: store, pathways, the single writer (events and timers), the HTTP API and, if
configured, the MLLP listener, in one process; the outbox dispatcher in a child process of its
own (engine.service.dispatcher), so that carrying actions out never competes with intake.

SIGTERM (or Ctrl-C) stops intake at once: new requests are answered 503 (HL7: `AR`), what is
queued is committed while the grace allows and refused after; the dispatcher finishes its batch;
a snapshot is written; the process exits 0, all within `shutdown_grace_seconds`. A restart
resumes timers and dispatch from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from engine.catalogue import Event
from engine.core import Decision, Registry, compile_pathway
from engine.definition.loader import check_paths, load_text
from engine.errors import InputError
from engine.runtime import heap
from engine.runtime.durable import DurableEngine, open_registry
from engine.service.api import create_app
from engine.service.dispatcher import DispatchProcess
from engine.service.ingest import Busy, Ingestor, Receipt
from engine.service.intake import Intake
from engine.service.logs import configure_logging
from engine.service.metrics import Metrics
from engine.service.settings import ConfigError, Settings
from engine.store import Store
from engine.store import schema as t

log = logging.getLogger("carepath.service")

#: shares of `shutdown_grace_seconds`: committing what was queued at the signal, then the
#: dispatcher's last batch; the rest is the snapshot's
_DRAIN_SHARE, _DISPATCH_SHARE = 0.4, 0.3


def wall_clock() -> datetime:
    return datetime.now(UTC)


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store = Store.open(settings.store_url)
        pathways, problems = check_paths([settings.pathways])
        if problems:
            from engine.errors import DefinitionError

            raise DefinitionError(problems)
        self.registry: Registry = open_registry(self.store, pathways, wall_clock())
        self.engine = DurableEngine(
            self.store,
            self.registry,
            settings.holidays,
            batch_size=settings.batch_size,
            snapshot_every=settings.snapshot_every,
        )
        self.ingestor = Ingestor(
            self.engine,
            wall_clock,
            settings.batch_size,
            settings.timer_interval_seconds,
            on_decided=self._decided,
            max_inflight=settings.max_inflight_events,
            max_queue_seconds=settings.max_queue_seconds,
        )
        self.intake = Intake(self)
        self.dispatcher: DispatchProcess | None = (
            DispatchProcess(settings, self._record_outcomes) if settings.dispatch else None
        )
        self._mllp: Any = None
        self._stop_started: float | None = None  # monotonic, when SIGTERM came

    def _record_outcomes(self, events: list[Event]) -> Receipt:
        """The dispatcher's outcome events, through the single writer, committed. They are
        the service's own inputs: taken past the in-flight limit and while stopping."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return self.ingestor.submit(events, internal=True).result(timeout=120)
            except Busy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _decided(self, decisions: list[Decision]) -> None:
        self.metrics.decided(decisions)
        for decision in decisions:
            for action in decision.actions:
                log.info(
                    "action %s %s instance=%s rule=%s",
                    action.id,
                    action.action,
                    action.instance_id,
                    action.rule,
                )

    def add_pathway(self, raw: bytes) -> list[dict[str, Any]]:
        """Load a new pathway version (the author role). Problems, or [] when loaded."""
        from adapters.inbound import decode_text

        def problem(code: str, message: str, location: str = "") -> list[dict[str, Any]]:
            return [
                {
                    "code": code,
                    "message": message,
                    "line": 1,
                    "column": 1,
                    "file": "<posted>",
                    "location": location,
                }
            ]

        try:
            text = decode_text(raw)
        except InputError as exc:
            return problem("not-text", str(exc))
        pathway, problems = load_text("<posted>", text)
        if pathway is None:
            return [p.as_dict() for p in problems]
        if pathway.key in self.registry.by_key:
            return problem(
                "duplicate-pathway",
                f"{pathway.key} is already loaded: give the changed pathway a new version",
                "version",
            )
        self.store.save_pathways([pathway], wall_clock())
        self.registry.add(compile_pathway(pathway))
        # the dispatcher process reads versions it does not know from the store
        return []

    async def take_hl7(self, source: str, raw: bytes) -> tuple[str, str, int]:
        """An HL7 v2 message in: (ACK code, ACK text, HTTP status)."""
        from adapters.inbound import ack, events_from_hl7

        zone = self.settings.zone
        taken = await self.intake.take(  # the adapter reads the bytes (MSH-18's character set)
            source, raw, _as_is, lambda message: events_from_hl7(message, default_tz=zone)
        )
        if taken.outcome == "refused":
            return "AE", str(ack(raw, "AE", taken.reason)), 400
        if taken.outcome != "accepted":
            return "AR", str(ack(raw, "AR", "could not record now; send again later")), 503
        if taken.receipt.conflicts:
            reason = (
                "this control id was accepted before for a different message: not recorded "
                f"(dead letter {taken.dead_letter}); send the change under a new control id"
            )
            return "AE", str(ack(raw, "AE", reason)), 409
        return "AA", str(ack(raw, "AA", "")), 200

    def refresh_gauges(self) -> None:
        now = wall_clock()
        with self.store.engine.connect() as conn:
            oldest = conn.execute(
                sa.select(sa.func.min(t.inputs.c.decided_at))
                .select_from(t.outbox.join(t.inputs, t.outbox.c.seq == t.inputs.c.seq))
                .where(t.outbox.c.status == "pending")
            ).scalar()
        overdue = self.ingestor.next_due  # the writer's, after its latest tick
        self.metrics.dispatch_lag.set(
            (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0
        )
        lag = (now - overdue).total_seconds() if overdue is not None and overdue <= now else 0
        self.metrics.timer_lag.set(max(lag, self.ingestor.last_timer_lag))
        self.metrics.inflight.set(self.ingestor.inflight)

    # -- starting and stopping -----------------------------------------------------------------

    def begin_stop(self) -> None:
        """SIGTERM: refuse new work at once; commit what is queued while the grace allows."""
        if self._stop_started is not None:
            return
        self._stop_started = time.monotonic()
        grace = self.settings.shutdown_grace_seconds
        self.ingestor.close_intake(drain_seconds=grace * _DRAIN_SHARE)
        log.info("stopping: intake closed, finishing in-flight work (grace %.0f s)", grace)

    def _remaining(self) -> float:
        started = self._stop_started if self._stop_started is not None else time.monotonic()
        return max(0.5, started + self.settings.shutdown_grace_seconds - time.monotonic())

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        self.ingestor.start()
        if self.dispatcher is not None:
            self.dispatcher.start()
        if self.settings.mllp is not None:
            from engine.service.mllp import MllpServer

            self._mllp = MllpServer(
                self.take_hl7,
                max_frame_bytes=self.settings.mllp_max_frame_bytes,
                idle_timeout_seconds=self.settings.mllp_idle_timeout_seconds,
                max_connections=self.settings.mllp_max_connections,
                on_refused=self._mllp_refused,
            )
            await self._mllp.start(self.settings.mllp.host, self.settings.mllp.port)
        watch = asyncio.create_task(self.intake.watch_loop())
        log.info("carepath serving %s", ", ".join(sorted(self.registry.by_key)))
        try:
            yield
        finally:
            watch.cancel()
            self.begin_stop()
            if self._mllp is not None:
                await self._mllp.close()
            if self.dispatcher is not None:  # first: it may still hand outcome events in
                await asyncio.to_thread(
                    self.dispatcher.stop, self._remaining() * _DISPATCH_SHARE / (1 - _DRAIN_SHARE)
                )
            await asyncio.to_thread(self.ingestor.stop, self._remaining() / 2)
            self.engine.close()  # a snapshot: the next start re-decides nothing
            log.info("stopped cleanly")

    async def _mllp_refused(self, reason: str) -> None:
        """A frame the listener refused before reading it whole (over the size limit)."""
        await self.intake.keep("mllp", reason, b"")
        self.metrics.rejected.labels("mllp").inc()


def _as_is(raw: bytes) -> bytes:
    return raw


def build_app(settings: Settings) -> tuple[Service, FastAPI]:
    service = Service(settings)
    app = create_app(service)
    app.router.lifespan_context = service.lifespan
    return service, app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_insecure_dev(settings: Settings) -> None:
    """Insecure development mode (no tokens) serves loopback addresses only."""
    if not settings.insecure_dev:
        return
    hosts = [settings.host] + ([settings.mllp.host] if settings.mllp is not None else [])
    exposed = [h for h in hosts if not is_loopback(h)]
    if exposed:
        raise ConfigError(
            f"--insecure-dev serves loopback addresses only (127.0.0.1, ::1, localhost), not "
            f"{', '.join(exposed)}: without tokens anyone who can reach it could read and "
            "write patient data"
        )


class _Server(uvicorn.Server):
    """uvicorn, telling the service the moment a signal to stop arrives (uvicorn itself only
    stops listening, then waits for the requests in flight)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


def serve(settings: Settings) -> None:
    import signal

    configure_logging()
    check_insecure_dev(settings)
    service, app = build_app(settings)
    heap.settle()  # the restored states live on
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal to the handler it
    # found: make that a no-op, so that a clean shutdown exits 0 (as operators' tools expect).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # ours (engine.service.logs)
        access_log=False,  # ours, with route templates (engine.service.api.AccessLog)
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds * _DRAIN_SHARE)),
    )
    _Server(config, service.begin_stop).run()
