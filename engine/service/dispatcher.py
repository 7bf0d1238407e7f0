"""The outbox dispatcher of `carepath serve`, in a process of its own.

Carrying actions out runs Prefect flows (and, on the embedded server, Prefect's own API server)
in the dispatcher's interpreter. In the service's process that work held the interpreter lock
against the HTTP handlers and the single writer: one-event POSTs fell from ~1,100/s to ~110-340/s
while flows ran (docs/benchmarks.md, "The service under load"). So the service starts the
dispatcher as a child process (multiprocessing, spawned: a fresh interpreter, nothing of the
parent's threads or connections), which:

- claims, runs and completes outbox actions on the store directly (the outbox is not part of
  the hash chains' single writer; engine.runtime.dispatch says what the outbox rows go through);
- hands its outcome events (`action.succeeded` / `action.failed`) to the parent over a pipe; a
  thread of the parent submits them to the single writer, waits for the commit and answers, so
  that every outcome is in the hash-chained log before the outbox row says so;
- learns pathway versions loaded while it runs from the store (the parent records them first).

The parent restarts a child that died (with a pause); on stop it asks the child to finish its
batch and waits up to a deadline, then ends it (what it had claimed goes back to pending on the
next start: every action carries its idempotency key, so nothing takes effect twice).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from engine.catalogue import Event

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event as StopFlag

    from adapters.registry import PortRegistry
    from engine.service.settings import Settings
    from engine.store import OutboxItem, Outcome

log = logging.getLogger("carepath.dispatch")

#: records outcome events through the single writer, once committed; raises if it could not
Record = Callable[[list[Event]], object]

_RESTART_PAUSE_SECONDS = 2.0


class DispatchProcess:
    """The parent's side: starts, feeds, watches and stops the dispatcher process."""

    def __init__(self, settings: Settings, record: Record) -> None:
        self.settings = settings
        self.record = record
        self._context = multiprocessing.get_context("spawn")
        self._stop: StopFlag = self._context.Event()
        self._process: Any = None
        self._conn: Connection | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._serve, name="carepath-outcomes", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        parent, child = self._context.Pipe()
        self._conn = parent
        self._process = self._context.Process(
            target=run_child,
            args=(self.settings, child, self._stop),
            name="carepath-dispatch",
            daemon=True,
        )
        self._process.start()
        child.close()  # the child's end lives in the child now
        log.info("dispatcher process %d started", self._process.pid)

    def _serve(self) -> None:
        """Answer the child's outcome submissions; restart it if it dies."""
        while not self._stopping or (self._process is not None and self._process.is_alive()):
            conn = self._conn
            assert conn is not None
            try:
                if not conn.poll(0.2):
                    if not self._process.is_alive() and not self._stopping:
                        self._restart()
                    continue
                texts = conn.recv()
            except (EOFError, OSError):
                if self._stopping:
                    return
                self._restart()
                continue
            try:
                self.record([Event.model_validate_json(text) for text in texts])
                reply: tuple[str, str] = ("ok", "")
            except Exception as exc:
                reply = ("error", f"{type(exc).__name__}: {exc}")
            try:
                conn.send(reply)
            except (BrokenPipeError, OSError):
                continue

    def _restart(self) -> None:
        code = self._process.exitcode if self._process is not None else None
        log.error("the dispatcher process ended (exit code %s): restarting it", code)
        time.sleep(_RESTART_PAUSE_SECONDS)
        if not self._stopping:
            self._spawn()

    def stop(self, timeout: float) -> None:
        """Ask the child to finish its batch and exit; end it after `timeout` seconds."""
        self._stopping = True
        self._stop.set()
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                log.warning("the dispatcher did not finish in %.0f s: ending it", timeout)
                self._process.terminate()
                self._process.join(5)
        if self._thread is not None:
            self._thread.join(5)


class _OutcomesOverPipe:
    """The child's side of `Record`: send the events, wait for the parent's answer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __call__(self, events: list[Event]) -> None:
        from engine.errors import RuntimeFailure

        self.conn.send([event.model_dump_json() for event in events])
        status, message = self.conn.recv()
        if status != "ok":
            raise RuntimeFailure(f"the service could not record the outcomes: {message}")


class _StoreFlows:
    """LocalFlows that load, from the store, a pathway version they do not know yet (one
    published while the service runs)."""

    def __init__(self, store: Any, home: Any) -> None:
        from engine.flows.runners import LocalFlows

        self.store = store
        self.flows = LocalFlows(self._pathways(set()), home=home)

    def _pathways(self, known: set[str]) -> list[Any]:
        from engine.definition.loader import load_text

        found = []
        for key, file, text in self.store.pathway_sources():
            if key in known:
                continue
            pathway, _problems = load_text(file, text)
            if pathway is not None:
                found.append(pathway)
        return found

    def run_group(
        self, pathway_key: str, items: Sequence[OutboxItem], ports: PortRegistry | None
    ) -> Sequence[Outcome]:
        if pathway_key not in self.flows.flows:
            for pathway in self._pathways(set(self.flows.flows)):
                self.flows.add(pathway)
        return self.flows.run_group(pathway_key, items, ports)


def run_child(settings: Settings, conn: Connection, stop: StopFlag) -> None:
    """The dispatcher process: dispatch until `stop` is set, then finish the batch and exit."""
    import signal

    from adapters.registry import ports_from_settings
    from engine.runtime.dispatch import Dispatcher
    from engine.store import Store

    # the parent decides when this process stops (it is in the service's process group, so a
    # Ctrl-C or a SIGTERM to the group reaches it too)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from engine.service.logs import configure_logging

    configure_logging()
    store = Store.open(settings.store_url)
    flows = _StoreFlows(store, settings.prefect_home or settings.data_dir / "prefect")
    dispatcher = Dispatcher(
        store,
        flows,
        ports_from_settings(settings),
        _OutcomesOverPipe(conn),
        batch_size=settings.dispatch_batch,
        interval_seconds=settings.dispatch_interval_seconds,
    )
    dispatcher.recover()
    try:
        while not stop.is_set():
            try:
                dispatcher.drain_until(stop.is_set)
            except Exception:
                log.exception("dispatch round failed; trying again")
            stop.wait(settings.dispatch_interval_seconds)
    finally:
        flows.flows.close()
        store.close()
