"""`carepath`: the command-line entry point."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.runtime import SNAPSHOT_EVERY

app = typer.Typer(
    name="carepath",
    help="Carepath: rules-driven care pathways. Validate, draw, simulate and run them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _overrides(values: list[str]) -> dict[str, object]:
    """NAME=VALUE pairs; VALUE is read as a YAML scalar or flow list, as in a pathway file
    (`--set min_risk=2`, `--set prefixes=[E10, E11]`, `--set window='2 business days'`)."""
    import yaml

    out: dict[str, object] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"'{item}' is not NAME=VALUE", param_hint="--set")
        try:
            out[name.strip()] = yaml.safe_load(value.strip()) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise typer.BadParameter(f"'{item}': {exc}", param_hint="--set") from None
    return out


SetOption = Annotated[
    list[str],
    typer.Option(
        "--set", help="override a parameter: NAME=VALUE (repeatable)", metavar="NAME=VALUE"
    ),
]


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="pathway files or folders")],
    as_json: Annotated[bool, typer.Option("--json", help="print the problems as JSON")] = False,
    overrides: SetOption = [],  # noqa: B006 - typer reads the default
) -> None:
    """Check pathway files; print every problem as FILE:LINE:COL: CODE location: message."""
    from engine.definition.loader import check_paths

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        typer.echo(f"carepath validate: no such file or folder: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    pathways, problems = check_paths(paths, _overrides(overrides))
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in problems], indent=2))
    else:
        for problem in problems:
            typer.echo(problem.render())
        for pathway in pathways:
            typer.echo(_summary(pathway))
        if problems:
            files = len({p.file for p in problems})
            typer.echo(
                f"{len(problems)} problem{'s' * (len(problems) != 1)} in {files} "
                f"file{'s' * (files != 1)}",
                err=True,
            )
    if not pathways and not problems:
        typer.echo("carepath validate: no pathway files (*.yaml, *.yml) found", err=True)
        raise typer.Exit(1)
    raise typer.Exit(1 if problems else 0)


def _summary(pathway: object) -> str:
    from engine.definition.model import Pathway

    assert isinstance(pathway, Pathway)
    counts = [
        (len(pathway.triggers), "trigger"),
        (len(pathway.rules) + len(pathway.missing_data), "rule"),
        (len(pathway.deadlines), "deadline"),
        (len(pathway.chains), "escalation chain"),
        (len(pathway.exits), "exit"),
    ]
    parts = ", ".join(f"{n} {word}{'s' * (n != 1)}" for n, word in counts)
    return f"ok {pathway.key} ({pathway.file}): {parts}"


@app.command()
def schema() -> None:
    """Print the JSON Schema of the pathway language (for editors' YAML support)."""
    from engine.definition.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def graph(
    file: Annotated[Path, typer.Argument(help="a pathway file")],
) -> None:
    """Print a Mermaid diagram of a pathway."""
    from engine.definition.graph import mermaid
    from engine.definition.loader import load_pathway
    from engine.errors import DefinitionError

    try:
        pathway = load_pathway(file)
    except DefinitionError as exc:
        for problem in exc.problems:
            typer.echo(problem.render(), err=True)
        raise typer.Exit(1) from None
    typer.echo(mermaid(pathway))


def _instant(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"'{text}' is not an ISO 8601 instant", param_hint=option
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(
            f"'{text}' has no UTC offset: add one, e.g. '{text}Z'", param_hint=option
        )
    return moment


def _holidays(values: list[str]) -> list[date]:
    try:
        return [date.fromisoformat(v) for v in values]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--holiday") from None


@app.command()
def simulate(
    pathways: Annotated[Path, typer.Option("--pathways", help="folder (or file) of pathways")],
    events: Annotated[Path, typer.Option("--events", help="events, one JSON object per line")],
    until: Annotated[
        str | None, typer.Option("--until", help="after the last event, fire timers up to this")
    ] = None,
    holiday: Annotated[
        list[str], typer.Option("--holiday", help="a public holiday (YYYY-MM-DD), repeatable")
    ] = [],  # noqa: B006 - typer reads the default
    db: Annotated[
        str | None, typer.Option("--db", help="keep state in this store (SQLAlchemy URL)")
    ] = None,
    snapshot_every: Annotated[
        int,
        typer.Option(
            "--snapshot-every",
            min=1,
            help="with --db: inputs between snapshots of the instance states (a restart "
            "re-decides at most this many); one is always taken at the end",
        ),
    ] = SNAPSHOT_EVERY,
) -> None:
    """Run events through the engine on a virtual clock; print every action as a JSON line.

    With --db, every input, decision, timer, action and audit record is committed to the store,
    and a run on the same store carries on where the last one stopped."""
    from engine.core import Registry
    from engine.definition.loader import check_paths
    from engine.runtime.simulate import simulate as run

    end = _instant(until, "--until") if until else None
    loaded, problems = check_paths([pathways])
    if problems or not loaded:
        for problem in problems:
            typer.echo(problem.render(), err=True)
        if not loaded:
            typer.echo(f"carepath simulate: no pathways in {pathways}", err=True)
        raise typer.Exit(2)
    out = sys.stdout

    def emit(action: object) -> None:
        from engine.core import Action

        assert isinstance(action, Action)
        out.write(json.dumps(action.as_dict(), separators=(",", ":")) + "\n")

    def report(number: int, message: str) -> None:
        typer.echo(f"{events}:{number}: {message}", err=True)

    try:
        handle = events.open(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"carepath simulate: {exc}", err=True)
        raise typer.Exit(2) from None
    with handle:
        if db is None:
            bad = run(
                Registry.of(loaded), handle, emit, report, until=end, holidays=_holidays(holiday)
            )
        else:
            bad = _simulate_on_store(
                db, loaded, handle, emit, report, end, _holidays(holiday), snapshot_every
            )
    out.flush()
    raise typer.Exit(1 if bad else 0)


def _simulate_on_store(
    db: str,
    loaded: list[Any],
    lines: Any,
    emit: Any,
    report: Any,
    end: datetime | None,
    holidays: list[date],
    snapshot_every: int,
) -> int:
    from engine.errors import CarepathError
    from engine.runtime import heap
    from engine.runtime.durable import DurableEngine, open_registry
    from engine.runtime.simulate import simulate_durable
    from engine.store import Store

    try:
        store = Store.open(db)
    except CarepathError as exc:
        typer.echo(f"carepath simulate: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        clock = store.clock() or datetime.now(UTC)
        registry = open_registry(store, loaded, clock)
        # no --holiday: the ones the store last recorded (given ones are recorded from here on)
        engine = DurableEngine(store, registry, holidays or None, snapshot_every=snapshot_every)
        heap.settle()  # the restored states live on
        try:
            return simulate_durable(engine, lines, emit, report, until=end)
        finally:
            store.snapshot()  # what was committed: the next start re-decides nothing
    except CarepathError as exc:
        typer.echo(f"carepath simulate: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()


from engine.cli.demo import demo_command  # noqa: E402
from engine.cli.flows import deploy_command, dispatch_command, flows_command  # noqa: E402
from engine.cli.replay import audit_app, replay_command  # noqa: E402 - after app exists
from engine.cli.service import deadletter_app, serve_command, token_command  # noqa: E402

app.command("replay")(replay_command)
app.add_typer(audit_app, name="audit")
app.command("serve")(serve_command)
app.command("demo")(demo_command)
app.command("token")(token_command)
app.add_typer(deadletter_app, name="deadletter")
app.command("flows")(flows_command)
app.command("deploy")(deploy_command)
app.command("dispatch")(dispatch_command)


def main() -> None:
    """The `carepath` console script: a process of its own, so the garbage collector is set
    for it (engine.runtime.heap); tests invoke `app` in their own process and leave it be."""
    from engine.runtime import heap

    heap.tune_collector()
    app(prog_name="carepath")


if __name__ == "__main__":  # pragma: no cover
    main()
