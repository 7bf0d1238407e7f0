"""The service process: store, pathways, the single writer (events and timers), the outbox
dispatcher, the HTTP API and, if configured, the MLLP listener, all in one process.

SIGTERM (or Ctrl-C): stop accepting, finish and commit what is in flight, stop the dispatcher
after its current batch, exit 0. A restart resumes timers and dispatch from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from engine.core import Decision, Registry, compile_pathway
from engine.definition.loader import check_paths, load_text
from engine.errors import InputError
from engine.runtime import heap
from engine.runtime.durable import DurableEngine, open_registry
from engine.service.api import create_app
from engine.service.ingest import Ingestor
from engine.service.metrics import Metrics
from engine.service.settings import Settings
from engine.store import Store
from engine.store import schema as t

log = logging.getLogger("carepath.service")


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
        )
        self.dispatcher: Any = self._dispatcher() if settings.dispatch else None
        self._mllp: asyncio.Server | None = None

    def _dispatcher(self) -> Any:
        """The outbox dispatcher: flows run in-process on Prefect's embedded server under our
        data directory (engine.flows), actions carried out through the configured ports."""
        from adapters.registry import ports_from_settings
        from engine.flows.runners import LocalFlows
        from engine.runtime.dispatch import Dispatcher

        flows = LocalFlows([c.pathway for c in self.registry.by_key.values()],
                           home=self.settings.prefect_home or self.settings.data_dir / "prefect")
        return Dispatcher(self.store, flows, ports_from_settings(self.settings),
                          self._submit_and_wait, batch_size=self.settings.dispatch_batch,
                          interval_seconds=self.settings.dispatch_interval_seconds)

    def _submit_and_wait(self, events: list[Any]) -> Any:
        """For the dispatcher's action.failed events: through the single writer, committed."""
        return self.ingestor.submit(events).result(timeout=120)

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

    def add_pathway(self, text: str) -> list[dict[str, Any]]:
        """Load a new pathway version (the author role). Problems, or [] when loaded."""
        pathway, problems = load_text("<posted>", text)
        if pathway is None:
            return [p.as_dict() for p in problems]
        if pathway.key in self.registry.by_key:
            return [
                {
                    "code": "duplicate-pathway",
                    "message": f"{pathway.key} is already loaded: "
                    "give the changed pathway a new version",
                    "line": 1,
                    "column": 1,
                    "file": "<posted>",
                    "location": "version",
                }
            ]
        self.store.save_pathways([pathway], wall_clock())
        self.registry.add(compile_pathway(pathway))
        if self.dispatcher is not None:
            self.dispatcher.flows.add(pathway)
        return []

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
        self.metrics.timer_lag.set(
            (now - overdue).total_seconds() if overdue is not None and overdue <= now else 0
        )

    async def handle_hl7(self, message: bytes) -> str:
        from adapters.inbound import ack, events_from_hl7

        text = message.decode("utf-8", errors="replace")
        try:
            events = events_from_hl7(message, default_tz=self.settings.zone)
        except InputError as exc:
            self.store.dead_letter("mllp", str(exc), text, wall_clock())
            self.metrics.rejected.labels("mllp").inc()
            return str(ack(text, "AE", str(exc)))
        try:
            receipt = await asyncio.wrap_future(self.ingestor.submit(events))
        except Exception:
            return str(ack(text, "AR", "could not record; resend"))
        self.metrics.accepted.labels("mllp").inc(len(receipt.accepted))
        return str(ack(text, "AA", ""))

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        self.ingestor.start()
        if self.dispatcher is not None:
            self.dispatcher.start()
        if self.settings.mllp is not None:
            from engine.service.mllp import serve_mllp

            self._mllp = await serve_mllp(
                self.settings.mllp.host, self.settings.mllp.port, self.handle_hl7
            )
        log.info("carepath serving %s", ", ".join(sorted(self.registry.by_key)))
        try:
            yield
        finally:
            log.info("shutting down: finishing in-flight work")
            if self._mllp is not None:
                self._mllp.close()
                await self._mllp.wait_closed()
            if self.dispatcher is not None:  # first: it may still hand action.failed events in
                await asyncio.to_thread(self.dispatcher.stop)
            await asyncio.to_thread(self.ingestor.stop)
            self.engine.close()  # a snapshot: the next start re-decides nothing
            log.info("stopped cleanly")


def build_app(settings: Settings) -> tuple[Service, FastAPI]:
    service = Service(settings)
    app = create_app(service)
    app.router.lifespan_context = service.lifespan
    return service, app


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _service, app = build_app(settings)
    heap.settle()  # the restored states live on
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal to the handler it
    # found: make that a no-op, so that a clean shutdown exits 0 (as operators' tools expect).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=30
    )
