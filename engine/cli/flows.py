"""`carepath flows`, `carepath deploy`, `carepath dispatch`: the Prefect side, imported lazily
(Prefect costs over a second to import; `validate`, `schema` and `graph` never load it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

PathwaysOption = Annotated[
    Path, typer.Option("--pathways", help="folder (or file) of pathways", show_default=True)
]


def _load(pathways: Path, command: str) -> list[Any]:
    from engine.definition.loader import check_paths

    loaded, problems = check_paths([pathways])
    if problems or not loaded:
        for problem in problems:
            typer.echo(problem.render(), err=True)
        if not loaded:
            typer.echo(f"carepath {command}: no pathways in {pathways}", err=True)
        raise typer.Exit(2)
    return loaded


def flows_command(
    pathways: PathwaysOption = Path("pathways"),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Build each pathway version's Prefect flow; print its tasks with retries and timeouts."""
    from engine.flows import compile_flow

    compiled = [compile_flow(p) for p in _load(pathways, "flows")]
    if as_json:
        typer.echo(json.dumps([c.describe() for c in compiled], indent=2))
        return
    for flow in compiled:
        typer.echo(flow.flow.name)
        for task in flow.tasks.values():
            typer.echo(
                f"  {task.name:<24} retries {task.retries} every {task.retry_delay_seconds} s, "
                f"timeout {task.timeout_seconds:g} s"
            )


def deploy_command(
    pathways: PathwaysOption = Path("pathways"),
    work_pool: Annotated[
        str, typer.Option("--work-pool", help="the work pool workers poll (created if missing)")
    ] = "carepath",
    name: Annotated[str, typer.Option("--name", help="the deployments' name")] = "carepath",
) -> None:
    """Register each pathway version's flow as a deployment on the Prefect server at
    PREFECT_API_URL. Workers run them (`prefect worker start --pool NAME`) with the store
    configured (CAREPATH_DB or CAREPATH_CONFIG)."""
    from engine.flows.deploy import DeployError, deploy

    loaded = _load(pathways, "deploy")
    try:
        names = deploy(loaded, work_pool=work_pool, deployment=name)
    except DeployError as exc:
        typer.echo(f"carepath deploy: {exc}", err=True)
        raise typer.Exit(2) from None
    for deployment in names:
        typer.echo(f"deployed {deployment} (work pool {work_pool})")


def dispatch_command(
    db: Annotated[str, typer.Option("--db", help="the store (SQLAlchemy URL)")],
    pathways: PathwaysOption = Path("pathways"),
    config: Annotated[
        Path | None, typer.Option("--config", help="config file (its adapters: are used)")
    ] = None,
    deployed: Annotated[
        bool,
        typer.Option(
            "--deployed", help="run the deployments on Prefect workers instead of in-process"
        ),
    ] = False,
    deployment: Annotated[str, typer.Option("--deployment", help="the deployments' name")] = (
        "carepath"
    ),
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 500,
    in_flight: Annotated[
        int, typer.Option("--in-flight", min=1, help="batches running at once (--deployed)")
    ] = 1,
    home: Annotated[
        Path, typer.Option("--prefect-home", help="PREFECT_HOME of the embedded server")
    ] = Path("data/prefect"),
) -> None:
    """Carry out every pending action of the store's outbox, then exit.

    This process is the store's single writer while it runs (it records the `action.succeeded`
    and `action.failed` inputs): do not run it beside `carepath serve` on the same store. The
    outcome inputs are recorded at the store's clock (the time of its latest input): dispatch
    carries out what was decided and does not move the history's time on (which would fire
    timers); `carepath serve` does, on the wall clock."""
    from adapters.registry import ports_from_settings
    from engine.errors import CarepathError
    from engine.flows.runners import DeployedFlows, LocalFlows
    from engine.runtime.dispatch import Dispatcher
    from engine.runtime.durable import DurableEngine, open_registry
    from engine.service.settings import load_settings
    from engine.store import Store

    loaded = _load(pathways, "dispatch")
    try:
        ports = ports_from_settings(load_settings(config, db=db))
        store = Store.open(db)
        store.claim_writer()
        # The history's time, read once: outcome inputs are recorded at it (this process is now
        # the only writer, and its own outcome inputs do not move it on).
        history_time = store.clock() or datetime.now(UTC)
        registry = open_registry(store, loaded, history_time)
        engine = DurableEngine(store, registry)
        flows: Any
        if deployed:
            flows = DeployedFlows(store, deployment=deployment)
        else:
            # every version the store has actions of, not only the files given
            flows = LocalFlows([c.pathway for c in registry.by_key.values()], home=home)
        dispatcher = Dispatcher(
            store,
            flows,
            ports,
            engine.submit_many,
            clock=lambda: history_time,
            batch_size=batch_size,
            in_flight=in_flight,
        )
        dispatcher.recover()
        try:
            reports = dispatcher.drain()
        finally:
            if isinstance(flows, LocalFlows):
                flows.close()
            engine.close()
    except CarepathError as exc:
        typer.echo(f"carepath dispatch: {exc}", err=True)
        raise typer.Exit(2) from None
    succeeded = sum(len(r.succeeded) for r in reports)
    failed = sum(len(r.failed) for r in reports)
    runs = sum(r.flow_runs for r in reports)
    typer.echo(
        f"dispatched {succeeded + failed} action(s) in {runs} flow run(s): "
        f"{succeeded} succeeded, {failed} failed",
        err=True,
    )
