"""Every Prefect setting Carepath changes, in one place. docs/prefect.md says what each trades.

Two groups:

- `RUN_SETTINGS` apply wherever our flows run in-process (the embedded dispatcher, the bench):
  no flow-run heartbeat (it costs ~1 s at the end of every sync flow run), no result
  persistence (outcomes live in our store).
- `EMBEDDED_SERVER_SETTINGS` apply to the ephemeral server Prefect starts on first use when no
  PREFECT_API_URL is configured: SQLite-backed, private to this process, no UI. Its background
  services that write to SQLite while flows run (the task-run recorder, the event persister) make
  the client stall on 'database is locked'; services that serve deployments, schedules and
  automations have nothing to do here. All of them are off; flow runs are still recorded, and
  old ones vacuumed.
- Against that embedded server, the client emits no events (`quiet_events`): with the task-run
  recorder and the event persister off, nothing on the server reads them, and building and
  sending three events per task run was over half of a task run's cost.

`prefect_runtime()` applies them for the duration of a block (Prefect's `temporary_settings`,
which the ephemeral server inherits when it starts inside the block). Nothing here reads or
writes `os.environ`; an operator's own PREFECT_* variables still apply where we set nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.store.connect import DEFAULT_DATA_DIR

#: PREFECT_HOME of the embedded default: the ephemeral server's SQLite database lives here
DEFAULT_HOME = DEFAULT_DATA_DIR / "prefect"

#: how many actions of one flow run are carried out at once (threads; adapters mostly wait)
DEFAULT_MAX_WORKERS = 8

RUN_SETTINGS: dict[str, Any] = {
    # The flow-run heartbeat lets a server notice a crashed flow run. A sync flow run waits up
    # to 1 s for the heartbeat thread at its end. In-process runs are watched by the dispatcher,
    # whose outbox recovery re-runs what a crash left unfinished.
    "flows.heartbeat_frequency": None,
    # Results (the outcomes) are returned in-process and written to our store, not Prefect's.
    "results.persist_by_default": False,
    "tasks.default_persist_result": False,
}

EMBEDDED_SERVER_SETTINGS: dict[str, Any] = {
    "server.analytics_enabled": False,  # no network calls home
    "server.ephemeral.startup_timeout_seconds": 90,  # a fresh database takes ~15 s here
    # Writers to SQLite that stall the client ('database is locked', ~2 s a time):
    "server.services.task_run_recorder.enabled": False,  # task runs are not recorded
    "server.services.event_persister.enabled": False,  # events are not stored
    # Nothing to do on a private server with no deployments, workers or automations:
    "server.services.scheduler.enabled": False,
    "server.services.late_runs.enabled": False,
    "server.services.foreman.enabled": False,
    "server.services.triggers.enabled": False,
    "server.services.cancellation_cleanup.enabled": False,
    "server.services.pause_expirations.enabled": False,
    "server.services.repossessor.enabled": False,
    # Keep the database small: flow runs older than a week are deleted (hourly).
    "server.services.db_vacuum.enabled": "flow_runs",
    "server.services.db_vacuum.retention_period": 7 * 86400,
}

#: run-log lines dropped: one per task run and flow run, at INFO, repeating the run's state
_NOISE = ("Finished in state Completed", "Beginning flow run", "Created task run")
_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


class _DropRoutine(logging.Filter):
    """Drops the per-run 'Finished in state Completed()' lines; keeps retries and failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = str(record.msg)
        return not message.startswith(_NOISE)


_FILTER = _DropRoutine()


def embedded(api_url: str | None) -> bool:
    """Whether flows run against Prefect's ephemeral server (no API URL configured)."""
    return not api_url


def settings_for(home: Path | None, *, api_url: str | None) -> dict[str, Any]:
    """The Prefect settings to apply: ours, plus the embedded server's when there is no API URL."""
    updates = dict(RUN_SETTINGS)
    if home is not None:
        updates["home"] = str(home.resolve())
    if embedded(api_url):
        updates.update(EMBEDDED_SERVER_SETTINGS)
    return updates


_QUIET_LOCK = threading.Lock()
_quiet_blocks = 0


@contextlib.contextmanager
def quiet_events() -> Iterator[None]:
    """No Prefect events from this process in this block (nested and concurrent blocks share one
    switch: events resume when the last block ends). Prefect has no setting for this; its
    `EventsWorker.set_client_override` (what its own test utilities use) with the
    `NullEventsClient` makes `emit_event` return before building the event."""
    from prefect.events.clients import NullEventsClient
    from prefect.events.worker import EventsWorker

    global _quiet_blocks
    with _QUIET_LOCK:
        if _quiet_blocks == 0:
            EventsWorker.set_client_override(NullEventsClient)
        _quiet_blocks += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_blocks -= 1
            if _quiet_blocks == 0:
                EventsWorker.set_client_override(None)


@contextlib.contextmanager
def prefect_runtime(home: Path | None = DEFAULT_HOME) -> Iterator[None]:
    """Run flows in this block with our settings. With no PREFECT_API_URL, Prefect starts its
    ephemeral server on first use, its database under `home` (created if missing): no set-up
    step, and no events are emitted (nothing there would read them). `home=None` keeps
    Prefect's own PREFECT_HOME."""
    from prefect.settings import get_current_settings, temporary_settings

    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
    api_url = get_current_settings().api.url
    updates = settings_for(home, api_url=api_url)
    events = quiet_events() if embedded(api_url) else contextlib.nullcontext()
    with temporary_settings(updates=updates), events:
        for name in _RUN_LOGGERS:
            logging.getLogger(name).addFilter(_FILTER)
        try:
            yield
        finally:
            for name in _RUN_LOGGERS:
                logging.getLogger(name).removeFilter(_FILTER)


def flush() -> None:
    """Send what Prefect still holds (run logs, events) to the server: before stopping the
    embedded server, or at exit, so that nothing is reported lost."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            logs: object = APILogWorker.instance().drain()
            if inspect.isawaitable(logs):
                await logs
        except RuntimeError:
            pass  # never started
        events: object = EventsWorker.drain_all()
        if inspect.isawaitable(events):
            await events

    run_coro_as_sync(drain())
