"""Every recorded pathway version's flow, importable by name: the entrypoint of deployments.

`carepath deploy` registers each pathway version's flow with the entrypoint
`engine.flows.entry.<name>` (`chf-post-discharge@1` -> `chf_post_discharge__v1`). Flows built
from data have no source line to import, so this module builds them when a Prefect worker's
flow-run process asks for one, from the process's configuration (the service's settings: a YAML
file named by CAREPATH_CONFIG, and CAREPATH_* variables such as CAREPATH_DB):

- the pathway versions are those recorded in the store, exactly as recorded;
- the ports are the configured adapters (`adapters:`; default: the console);
- each flow run writes its outcomes to the store's outbox before it ends, so the dispatcher
  (engine/flows/runners.DeployedFlows) reads them back from the store, which every worker
  shares; Prefect keeps no results.

This is an entry point: it is the one module of the flows that reads the environment.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from engine.flows.builder import BatchFlow, build_flow, entry_name
from engine.store import Outbox, Outcome, Store

if TYPE_CHECKING:
    from engine.service.settings import Settings

log = logging.getLogger("carepath.flows")


def __getattr__(name: str) -> BatchFlow:
    if name.startswith("_"):
        raise AttributeError(name)
    flows = _configured_flows()
    if name not in flows:
        known = ", ".join(sorted(flows)) or "none"
        raise AttributeError(f"no pathway version's flow is named {name!r} (known: {known})")
    return flows[name]


@functools.cache
def _configured_flows() -> dict[str, BatchFlow]:
    from engine.service.settings import load_settings

    config = os.environ.get("CAREPATH_CONFIG")
    return flows_for(load_settings(Path(config) if config else None))


def flows_for(settings: Settings) -> dict[str, BatchFlow]:
    """The flow of every pathway version recorded in the configured store, by entry name."""
    from adapters.registry import ports_from_settings
    from engine.definition.loader import load_text

    store = Store.open(settings.store_url)
    ports = ports_from_settings(settings)
    outbox = Outbox(store)

    def write_back(outcomes: Sequence[Outcome]) -> None:
        outbox.complete(outcomes, datetime.now(UTC))

    flows: dict[str, BatchFlow] = {}
    for key, file, text in store.pathway_sources():
        pathway, problems = load_text(file, text)
        if pathway is None:
            log.error("%s in the store does not load: %s", key, problems[0].render())
            continue
        flows[entry_name(key)] = build_flow(pathway, ports=ports, sink=write_back)
    return flows
