"""Where the dispatcher's flow runs happen (engine.runtime.dispatch.FlowRegistry).

- `LocalFlows`: in this process, against Prefect's embedded ephemeral server (the default, no
  set-up) or the server at PREFECT_API_URL. The dispatcher's ports are used. On the embedded
  server task runs are not tagged (a server call per task run, for a server that records no
  task runs): run names carry the instance and action (engine/flows/builder.py).
- `DeployedFlows`: as runs of the deployments `carepath deploy` registered, executed by Prefect
  workers (scale-out). The workers use their own configured ports and write the outcomes to the
  store themselves (engine/flows/entry.py); this side waits for each flow run and reads the
  outcomes back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from adapters.registry import PortRegistry
from engine.definition.model import Pathway
from engine.flows.builder import BatchFlow, build_flow, using_ports
from engine.flows.settings import (
    DEFAULT_HOME,
    DEFAULT_MAX_WORKERS,
    embedded,
    flush,
    prefect_runtime,
)
from engine.store import Outbox, OutboxItem, Outcome, Store

log = logging.getLogger("carepath.dispatch")

#: the deployment name `carepath deploy` gives every pathway version's flow
DEFAULT_DEPLOYMENT = "carepath"


class LocalFlows:
    """Each pathway version's flow, run in-process."""

    def __init__(
        self,
        pathways: Iterable[Pathway],
        *,
        home: Path | None = DEFAULT_HOME,
        max_workers: int = DEFAULT_MAX_WORKERS,
        tag_runs: bool | None = None,
    ) -> None:
        """`tag_runs`: tag task runs (default: unless the embedded server is used)."""
        from prefect.settings import get_current_settings

        if tag_runs is None:
            tag_runs = not embedded(get_current_settings().api.url)
        self.tag_runs = tag_runs
        self.flows: dict[str, BatchFlow] = {
            p.key: build_flow(p, max_workers=max_workers, tag_runs=tag_runs) for p in pathways
        }
        self.home = home
        self.max_workers = max_workers

    def add(self, pathway: Pathway) -> None:
        """Load one more pathway version's flow (a pathway added while running)."""
        self.flows[pathway.key] = build_flow(
            pathway, max_workers=self.max_workers, tag_runs=self.tag_runs
        )

    def run_group(
        self, pathway_key: str, items: Sequence[OutboxItem], ports: PortRegistry | None
    ) -> list[Outcome]:
        flow = self.flows.get(pathway_key)
        if flow is None:
            error = f"no flow is loaded for {pathway_key}"
            return [Outcome(i.action_id, False, error=error, attempts=0) for i in items]
        if ports is None:
            raise ValueError("in-process flows need ports")
        actions = [item.action for item in items]
        with prefect_runtime(self.home), using_ports(ports):
            return asyncio.run(flow(actions))

    def close(self) -> None:
        """Send Prefect's pending logs and events before the process ends."""
        flush()


def batch_key(pathway_key: str, items: Sequence[OutboxItem], session: str = "") -> str:
    """The flow run's idempotency key: the same claim of the same actions, by the same
    dispatcher (`session`), names the same flow run; a claim after a restart, a new one."""
    digest = hashlib.sha256(f"{session}|{pathway_key}".encode())
    for item in sorted(items, key=lambda i: i.action_id):
        digest.update(f"|{item.action_id}#{item.attempts}".encode())
    return f"carepath:{pathway_key}:{digest.hexdigest()[:32]}"


class DeployedFlows:
    """Each group as a run of its pathway version's deployment, on Prefect workers."""

    def __init__(
        self,
        store: Store,
        *,
        deployment: str = DEFAULT_DEPLOYMENT,
        poll_interval_seconds: float = 0.5,
        timeout_seconds: float = 900,
    ) -> None:
        self.outbox = Outbox(store)
        self.deployment = deployment
        self.poll_interval_seconds = poll_interval_seconds
        self.timeout_seconds = timeout_seconds
        #: this dispatcher's identity in idempotency keys: action ids repeat across stores
        #: (they are derived from the events), flow runs must not
        self.session = uuid.uuid4().hex

    def run_group(
        self, pathway_key: str, items: Sequence[OutboxItem], ports: PortRegistry | None
    ) -> list[Outcome]:
        from prefect.client.schemas.objects import FlowRun
        from prefect.deployments import run_deployment

        flow_run = run_deployment(
            f"{pathway_key}/{self.deployment}",
            parameters={"actions": [item.action for item in items]},
            idempotency_key=batch_key(pathway_key, items, self.session),
            timeout=self.timeout_seconds,
            poll_interval=self.poll_interval_seconds,
            tags=[f"pathway:{pathway_key}"],
        )
        assert isinstance(flow_run, FlowRun)  # the sync form, called from a thread
        state = flow_run.state
        if state is None or not state.is_completed():
            log.warning(
                "flow run %s of %s ended %s",
                flow_run.name,
                pathway_key,
                state.name if state else "without a state",
            )
        return self.outcomes_of(items)

    def outcomes_of(self, items: Sequence[OutboxItem]) -> list[Outcome]:
        """The outcomes the workers wrote to the store for these actions."""
        out = []
        for item in items:
            found = self.outbox.status(item.action_id)
            if found is None or found[0] not in ("succeeded", "failed") or found[1] is None:
                continue
            outcome = found[1]
            out.append(
                Outcome(
                    item.action_id,
                    bool(outcome["succeeded"]),
                    outcome.get("reference"),
                    outcome.get("error"),
                    int(outcome.get("attempts") or 1),
                )
            )
        return out
