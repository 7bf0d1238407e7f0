"""`carepath serve`, `carepath deadletter list|retry`, `carepath token`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

deadletter_app = typer.Typer(
    help="Review and re-submit refused inbound payloads.", no_args_is_help=True
)


def serve_command(
    config: Annotated[Path | None, typer.Option("--config", help="YAML config file")] = None,
    db: Annotated[str | None, typer.Option("--db", help="the store (SQLAlchemy URL)")] = None,
    pathways: Annotated[Path | None, typer.Option("--pathways", help="pathway folder")] = None,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    insecure_dev: Annotated[
        bool, typer.Option("--insecure-dev", help="allow running with no tokens (development)")
    ] = False,
) -> None:
    """Run the engine as a service: HTTP API, timers and outbox dispatch in one process."""
    from engine.errors import CarepathError
    from engine.service.server import serve
    from engine.service.settings import load_settings

    try:
        settings = load_settings(
            config,
            db=db,
            pathways=pathways,
            host=host,
            port=port,
            insecure_dev=insecure_dev or None,
        )
    except CarepathError as exc:
        typer.echo(f"carepath serve: {exc}", err=True)
        raise typer.Exit(2) from None
    if settings.insecure_dev and not insecure_dev:
        typer.echo(
            "carepath serve: insecure_dev is set in the config file or the environment, but "
            "running without authentication takes --insecure-dev on the command line too "
            "(so that nobody turns it on in a deployment's configuration by mistake).",
            err=True,
        )
        raise typer.Exit(2)
    if not settings.tokens:
        if not settings.insecure_dev:
            typer.echo(
                "carepath serve: no API tokens are configured, so nobody could be "
                "authenticated. Add tokens to the config file (see `carepath token`), or "
                "pass --insecure-dev to run WITHOUT authentication on a development "
                "machine.",
                err=True,
            )
            raise typer.Exit(2)
        banner = "!" * 72
        typer.echo(
            f"{banner}\n!! INSECURE DEV MODE: the API accepts requests WITHOUT any "
            f"token.\n!! Never run like this with real patient data.\n{banner}",
            err=True,
        )
    try:
        serve(settings)
    except CarepathError as exc:
        typer.echo(f"carepath serve: {exc}", err=True)
        raise typer.Exit(2) from None


def token_command(
    role: Annotated[str, typer.Argument(help="ingest, clinician, author or auditor")],
    name: Annotated[str, typer.Option("--name", help="a label for the token")] = "client",
) -> None:
    """Make a new random API token and print it with the config entry (its sha256) to add."""
    import secrets

    from engine.service.settings import Role, hash_token

    if role not in {r.value for r in Role}:
        typer.echo(f"carepath token: unknown role '{role}'", err=True)
        raise typer.Exit(2)
    token = secrets.token_urlsafe(32)
    typer.echo(f"token (give to the client, shown once): {token}")
    typer.echo(
        "config entry:\ntokens:\n"
        f"  - name: {name}\n    role: {role}\n    sha256: {hash_token(token)}"
    )


def _store(db: str) -> Any:
    from engine.store import Store

    return Store.open(db)


@deadletter_app.command("list")
def deadletter_list(
    db: Annotated[str, typer.Option("--db", help="the store (SQLAlchemy URL)")],
    every: Annotated[bool, typer.Option("--all", help="include accepted ones")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List refused payloads held for review (id, when, source, status, reason).

    --json adds each payload: as text, or, when it is not UTF-8 text, `payload` null and
    `payload_base64` its bytes exactly as received."""
    store = _store(db)
    try:
        letters = store.dead_letters(None if every else "held")
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([_letter_json(letter) for letter in letters], indent=2))
        return
    for letter in letters:
        typer.echo(
            f"{letter['id']}\t{letter['received_at'][:19]}\t{letter['source']}\t"
            f"{letter['status']}\t{letter['reason']}"
        )
    typer.echo(f"{len(letters)} dead letter(s)", err=True)


def _letter_json(letter: dict[str, Any]) -> dict[str, Any]:
    import base64

    payload = letter["payload"]
    if isinstance(payload, bytes):
        return {**letter, "payload": None, "payload_base64": base64.b64encode(payload).decode()}
    return letter


def _not_text(raw: bytes, exc: UnicodeDecodeError) -> str:
    return (
        f"the payload is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
        "retry with a corrected one (--payload)"
    )


@deadletter_app.command("retry")
def deadletter_retry(
    letter_id: Annotated[int, typer.Argument(help="the dead letter's id")],
    db: Annotated[str, typer.Option("--db", help="the store (SQLAlchemy URL)")],
    pathways: Annotated[Path, typer.Option("--pathways")] = Path("pathways"),
    payload: Annotated[
        Path | None, typer.Option("--payload", help="a corrected payload to submit instead")
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone")] = "UTC",
) -> None:
    """Re-submit a held payload (optionally corrected) while the service is STOPPED (the
    service is the store's only writer). Exit 1 if it is refused again (a payload that is
    not UTF-8 text is: give a corrected one with --payload)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from engine.definition.loader import check_paths
    from engine.errors import InputError
    from engine.runtime.durable import DurableEngine, open_registry
    from engine.service.inbound import parse_payload

    if payload is not None:
        try:
            raw = payload.read_bytes()
            corrected = raw.decode("utf-8")
        except OSError as exc:
            typer.echo(f"carepath deadletter retry: {exc}", err=True)
            raise typer.Exit(2) from None
        except UnicodeDecodeError as exc:
            typer.echo(f"carepath deadletter retry: {payload}: {_not_text(raw, exc)}", err=True)
            raise typer.Exit(2) from None
    store = _store(db)
    try:
        letter = next((x for x in store.dead_letters(None) if x["id"] == letter_id), None)
        if letter is None:
            typer.echo(f"carepath deadletter retry: no dead letter {letter_id}", err=True)
            raise typer.Exit(2)
        now = datetime.now(UTC)
        kept = letter["payload"]
        try:
            if payload is not None:
                text = corrected
            elif isinstance(kept, bytes):
                try:
                    text = kept.decode("utf-8")  # bytes kept for a NUL: text all the same
                except UnicodeDecodeError as exc:
                    raise InputError(_not_text(kept, exc)) from None
            else:
                text = kept
            events = parse_payload(letter["source"], text, ZoneInfo(timezone))
        except InputError as exc:
            store.set_dead_letter_status(
                letter_id, "held", f"retried and refused again: {exc}", now
            )
            typer.echo(f"refused again: {exc}", err=True)
            raise typer.Exit(1) from None
        loaded, problems = check_paths([pathways])
        if problems:
            for problem in problems:
                typer.echo(problem.render(), err=True)
            raise typer.Exit(2)
        engine = DurableEngine(store, open_registry(store, loaded, now))
        engine.submit_many(events, received_at=now)
        store.set_dead_letter_status(letter_id, "accepted", None, now)
        engine.close()
    finally:
        store.close()
    typer.echo(f"dead letter {letter_id}: {len(events)} event(s) accepted")
