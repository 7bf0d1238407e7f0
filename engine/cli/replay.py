"""`carepath replay` and `carepath audit verify`: the auditor's commands."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

audit_app = typer.Typer(help="Check the audit trail.", no_args_is_help=True)

DbOption = Annotated[str, typer.Option("--db", help="the store (SQLAlchemy URL)")]


def _open(db: str) -> Any:
    from engine.errors import StoreError
    from engine.store import Store

    try:
        return Store.open(db)
    except StoreError as exc:
        typer.echo(f"carepath: {exc}", err=True)
        raise typer.Exit(2) from None


def replay_command(
    db: DbOption,
    patient: Annotated[str | None, typer.Option("--patient", help="one patient's history")] = None,
    instance: Annotated[
        str | None, typer.Option("--instance", help="the history of one instance's patient")
    ] = None,
    everyone: Annotated[bool, typer.Option("--all", help="every patient's history")] = False,
    pathway: Annotated[
        Path | None,
        typer.Option("--pathway", help="what-if: replay under this pathway version instead"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            min=0,
            help="worker processes for --all (0: one per CPU core; 1: in this process)",
        ),
    ] = 0,
) -> None:
    """Re-run recorded inputs through their pinned pathway versions and compare every decision.
    Exit 0 when identical, 1 at the first divergence (shown side by side)."""
    if sum((patient is not None, instance is not None, everyone)) != 1:
        typer.echo("carepath replay: give exactly one of --patient, --instance or --all", err=True)
        raise typer.Exit(2)
    store = _open(db)
    if instance is not None:
        state = store.instance(instance)
        if state is None:
            store.close()
            typer.echo(f"carepath replay: no instance {instance} in the store", err=True)
            raise typer.Exit(2)
        if pathway is not None:
            patient = state.patient_id  # what-if works on whole patient histories
    if pathway is not None:
        try:
            _what_if(store, pathway, patient, as_json)
        finally:
            store.close()
        return
    from rich.console import Console

    from engine.replay import replay
    from engine.replay.render import print_replay, progress_bar

    console = Console()
    try:
        with progress_bar(console, disable=as_json) as progress:
            result = replay(
                store,
                patient_id=patient,
                instance_id=instance,
                progress=progress,
                jobs=jobs or os.cpu_count() or 1,
            )
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        print_replay(console, result)
    raise typer.Exit(0 if result.identical else 1)


def _what_if(store: Any, file: Path, patient: str | None, as_json: bool) -> None:
    from rich.console import Console

    from engine.definition.loader import load_pathway
    from engine.errors import DefinitionError
    from engine.replay import what_if
    from engine.replay.render import print_what_if, progress_bar

    try:
        candidate = load_pathway(file)
    except DefinitionError as exc:
        for problem in exc.problems:
            typer.echo(problem.render(), err=True)
        raise typer.Exit(2) from None
    console = Console()
    with progress_bar(console, disable=as_json) as progress:
        result = what_if(store, candidate, patient_id=patient, progress=progress)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        print_what_if(console, result)


@audit_app.command("verify")
def verify_command(
    db: DbOption,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor",
            help="the saved output of an earlier `audit verify --json`: its heads must still be "
            "in the chains, unchanged",
        ),
    ] = None,
) -> None:
    """Check the hash chains (input log, audit trail, pathway versions, outbox, holidays,
    snapshots, dead letters) and what they vouch for (pathway texts, outbox statuses, instance
    states and timers, dead letters). Exit 1 if anything was edited, deleted, inserted or
    reordered, naming the first thing in each chain.

    Each chain's head (its last record and hash) is printed: keep it outside the database and
    pass it back with --anchor to prove that history up to it was not rewritten wholesale."""
    from engine.store.verify import anchors_from_reports, verify

    anchors = []
    if anchor is not None:
        try:
            anchors = anchors_from_reports(json.loads(anchor.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            typer.echo(f"carepath audit verify: {anchor}: not an `audit verify --json` output "
                       f"({type(exc).__name__}: {exc})", err=True)
            raise typer.Exit(2) from None
    store = _open(db)
    try:
        reports = verify(store, anchors)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        for report in reports:
            typer.echo(report.render())
        for report in reports:
            if report.head and not report.problem:
                typer.echo(f"head {report.chain} {report.head.record} {report.head.hash}")
    raise typer.Exit(1 if any(r.problem for r in reports) else 0)
