"""`carepath demo` (what `make demo` runs): the shipped pathways validated and drawn; then the
service started on the embedded defaults (SQLite, local Prefect), a bundled synthetic event
stream for a handful of patients posted to it over HTTP (its times shifted so that the stream
ends now), and what fired printed once the dispatcher has carried it out."""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def demo_command(
    pathways_dir: Annotated[Path, typer.Option("--pathways", help="folder of pathways")] = Path(
        "pathways"
    ),
    events: Annotated[Path, typer.Option("--events", help="events to run")] = EXAMPLES
    / "demo-events.jsonl",
    data_dir: Annotated[Path, typer.Option("--data-dir", help="where the demo store goes")] = Path(
        "data/demo"
    ),
    diagrams: Annotated[
        bool, typer.Option("--diagrams/--no-diagrams", help="print each pathway's diagram")
    ] = True,
    port: Annotated[int, typer.Option("--port")] = 8765,
) -> None:
    """Validate and draw the pathways, then run a synthetic stream through the service."""
    import httpx
    from rich.console import Console

    from engine.definition.graph import mermaid
    from engine.definition.loader import check_paths

    console = Console(width=160)
    loaded, problems = check_paths([pathways_dir])
    for problem in problems:
        console.print(problem.render(), markup=False)
    if problems or not loaded:
        raise typer.Exit(1)
    console.rule("Pathways")
    for pathway in loaded:
        console.print(f"[bold]{pathway.key}[/]  {pathway.title} ({pathway.file})")
        if diagrams:  # plain text: rich markup would eat [brackets] and wrap the lines
            typer.echo(f"```mermaid\n{mermaid(pathway)}\n```")

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    for leftover in data_dir.glob("demo.db*"):
        leftover.unlink()
    db = f"sqlite:///{data_dir / 'demo.db'}"
    tokens = {"ingest": secrets.token_urlsafe(16), "clinician": secrets.token_urlsafe(16)}
    config = data_dir / "carepath.yaml"
    config.write_text(json.dumps({
        "db": db, "data_dir": str(data_dir), "pathways": str(pathways_dir.resolve()),
        "port": port, "timer_interval_seconds": 0.5, "dispatch_interval_seconds": 0.5,
        "tokens": [{"name": f"demo-{role}", "role": role,
                    "sha256": hashlib.sha256(token.encode()).hexdigest()}
                   for role, token in tokens.items()],
    }), encoding="utf-8")
    stream = _shifted(events)
    console.rule(f"Starting carepath serve (log: {data_dir / 'serve.log'})")
    log = (data_dir / "serve.log").open("wb")
    service = subprocess.Popen([str(Path(sys.executable).parent / "carepath"), "serve",
                                "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _healthy(base), 120, "the service to start")
        with httpx.Client(base_url=base, timeout=60,
                          headers={"Authorization": f"Bearer {tokens['ingest']}"}) as client:
            reply = client.post("/events", json=stream)
        if reply.status_code != 202:
            console.print(f"[red]the service refused the stream: {reply.text}")
            raise typer.Exit(1)
        console.print(f"posted {len(stream)} events for "
                      f"{len({e['patient_id'] for e in stream})} patients: "
                      f"{len(reply.json()['accepted'])} accepted")
        console.print("waiting for the dispatcher to carry the actions out "
                      "(Prefect's embedded server starts on first use)...")
        _wait(lambda: _settled(db), 300, "the outbox to empty")
    finally:
        service.send_signal(signal.SIGTERM)
        code = service.wait(timeout=120)
        log.close()
    _report(console, db)
    console.print(f"service stopped with exit code {code}. The demo store is {data_dir}/demo.db: "
                  f"try `carepath replay --db {db} --patient pt-001`.", markup=False)
    raise typer.Exit(0 if code == 0 else 1)


def _shifted(events: Path) -> list[dict[str, Any]]:
    """The stream, moved in time so that its last event happened a minute ago."""
    stream = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()
              if line.strip()]
    last = max(datetime.fromisoformat(e["occurred_at"]) for e in stream)
    shift = datetime.now(UTC).replace(microsecond=0) - last
    for event in stream:
        moved = datetime.fromisoformat(event["occurred_at"]) + shift
        event["occurred_at"] = moved.isoformat()
        if "start" in event.get("data", {}):
            event["data"]["start"] = (datetime.fromisoformat(event["data"]["start"])
                                      + shift).isoformat()
    return stream


def _healthy(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _settled(db: str) -> bool:
    from engine.store import Outbox, Store

    store = Store.open(db)
    try:
        counts = Outbox(store).counts()
    finally:
        store.close()
    return counts.get("pending", 0) == 0 and counts.get("running", 0) == 0


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise typer.BadParameter(f"timed out waiting for {what}")
        time.sleep(0.5)


def _report(console: Any, db: str) -> None:
    from rich.table import Table

    from engine.store import Store
    from engine.store.verify import verify

    store = Store.open(db)
    try:
        actions = store.actions()
        statuses = {}
        for instance in {a["instance_id"] for a in actions}:
            for a in store.instance_actions(instance):
                statuses[a["id"]] = (a["status"], (a["outcome"] or {}).get("reference") or "")
        console.rule(f"What fired ({len(actions)} actions)")
        table = Table()
        for column in ("fired at (UTC)", "patient", "pathway", "action", "rule", "params",
                       "status"):
            table.add_column(column)
        for a in actions:
            params = ", ".join(f"{k}={v}" for k, v in a["params"].items())
            status, _ref = statuses.get(a["id"], ("", ""))
            table.add_row(a["fired_at"][:16].replace("T", " "), a["patient_id"], a["pathway"],
                          a["action"], a["rule"], params, status)
        console.print(table)
        for report in verify(store):
            state = "intact" if report.problem is None else report.problem.render()
            console.print(f"audit {report.chain}: {report.records} records, chain {state}")
    finally:
        store.close()
