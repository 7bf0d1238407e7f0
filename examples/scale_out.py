#!/usr/bin/env python
"""The whole scale-out set-up on one machine, for real:

    1. a Prefect server backed by PostgreSQL (its own database on the local server)
    2. Carepath's deployments on it (`carepath deploy`: one per pathway version)
    3. a process work pool and two Prefect workers, each with the store configured
    4. events flowing in (`carepath simulate --db`: decided and committed to the store)
    5. the dispatcher handing the outbox to the deployments in batches
       (`carepath dispatch --deployed`: run_deployment with an idempotency key per batch)

Run it from the repository (after `make install`):

    .venv/bin/python examples/scale_out.py                  # the demo events, then stop
    .venv/bin/python examples/scale_out.py --keep           # leave server and workers running

Needs a PostgreSQL server (default postgresql://postgres@127.0.0.1:5432, trust auth): it creates
the databases `carepath_prefect` (Prefect's) and `carepath_scale_out` (the store) if missing.
The Prefect UI is at http://127.0.0.1:4200 while it runs (with --keep, until you stop it).
Logs of the server and the workers are written under data/scale-out/.

tests/flows/test_scale_out.py runs the same set-up (`ScaleOut`) on a free port.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_database(server_url: str, name: str) -> None:
    """CREATE DATABASE `name` on the PostgreSQL server unless it exists."""
    url = server_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(f"{url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).scalar()
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def fresh_store(server_url: str, database: str) -> str:
    """A store URL in a new schema (one per run) of `database`, created if missing."""
    ensure_database(server_url, database)
    url = server_url.replace("postgresql://", "postgresql+psycopg://", 1) + f"/{database}"
    schema = time.strftime("run_%Y%m%d_%H%M%S")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine.dispose()
    return f"{url}?options=-csearch_path%3D{schema}"


class ScaleOut:
    """A PostgreSQL-backed Prefect server, the deployments and N workers; stopped on exit."""

    def __init__(
        self,
        workdir: Path,
        *,
        pg_server: str = "postgresql://postgres@127.0.0.1:5432",
        prefect_database: str = "carepath_prefect",
        store_url: str,
        pathways: Path = ROOT / "pathways",
        port: int = 4200,
        workers: int = 2,
        pool: str = "carepath",
        ui: bool = True,
    ) -> None:
        self.workdir = workdir
        self.pg_server = pg_server
        self.prefect_database = prefect_database
        self.store_url = store_url
        self.pathways = pathways
        self.port = port
        self.worker_count = workers
        self.pool = pool
        self.ui = ui
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    # -- environments ----------------------------------------------------------------------

    def _base_env(self, home: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CAREPATH_"))}
        env["PREFECT_HOME"] = str(self.workdir / home)
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        return env

    def client_env(self) -> dict[str, str]:
        """For Carepath commands talking to this server (deploy, dispatch)."""
        env = self._base_env("client")
        env["PREFECT_API_URL"] = self.api_url
        return env

    def worker_env(self) -> dict[str, str]:
        env = self.client_env()
        env["PREFECT_HOME"] = str(self.workdir / "worker")
        env["CAREPATH_DB"] = self.store_url  # the flows write their outcomes to the store
        env["PREFECT_WORKER_QUERY_SECONDS"] = "1"  # poll for flow runs every second (default 10)
        return env

    # -- start and stop ----------------------------------------------------------------------

    def _log(self, name: str) -> IO[bytes]:
        handle = (self.workdir / name).open("wb")
        self._logs.append(handle)
        return handle

    def start_server(self, timeout: float = 180) -> None:
        user_db = f"{self.pg_server}/{self.prefect_database}".replace("postgresql://", "", 1)
        ensure_database(self.pg_server, self.prefect_database)
        env = self._base_env("server")
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"postgresql+asyncpg://{user_db}"
        env["PREFECT_UI_ENABLED"] = "true" if self.ui else "false"
        self.server = subprocess.Popen(
            [
                str(BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self._log("server.log"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"prefect server exited; see {self.workdir / 'server.log'}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"prefect server did not answer in {timeout:.0f} s")

    def deploy(self) -> str:
        out = subprocess.run(
            [
                str(BIN / "carepath"),
                "deploy",
                "--pathways",
                str(self.pathways),
                "--work-pool",
                self.pool,
            ],
            env=self.client_env(),
            capture_output=True,
            text=True,
            check=True,
            cwd=self.workdir,
        )
        return out.stdout

    def start_workers(self) -> None:
        for n in range(1, self.worker_count + 1):
            self.workers.append(
                subprocess.Popen(
                    [
                        str(BIN / "prefect"),
                        "worker",
                        "start",
                        "--pool",
                        self.pool,
                        "--type",
                        "process",
                        "--name",
                        f"worker-{n}",
                        "--limit",
                        "1",
                    ],
                    env=self.worker_env(),
                    stdout=self._log(f"worker-{n}.log"),
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    start_new_session=True,
                )
            )

    def worker_log(self, n: int) -> str:
        return (self.workdir / f"worker-{n}.log").read_text(encoding="utf-8", errors="replace")

    def flow_runs_of(self, n: int) -> set[str]:
        """Ids of the flow runs worker `n` ran. (Both workers may log "submitting" for the same
        run: the server aborts the second. The flow-run process a worker starts logs the run's
        URL into that worker's log.)"""
        return set(re.findall(r"/runs/flow-run/([0-9a-f-]+)", self.worker_log(n)))

    def stop(self) -> None:
        for process in [*self.workers, *([self.server] if self.server else [])]:
            _stop(process)
        self.workers, self.server = [], None
        for handle in self._logs:
            handle.close()
        self._logs = []

    def __enter__(self) -> ScaleOut:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_server()
            self.deploy()
            self.start_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (the workers and the server shut down cleanly on it), then SIGKILL after 20 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--events", type=Path, default=ROOT / "examples" / "demo-events.jsonl")
    parser.add_argument("--keep", action="store_true", help="leave server and workers running")
    args = parser.parse_args(argv)

    workdir = ROOT / "data" / "scale-out"
    store_url = fresh_store(args.pg, "carepath_scale_out")
    scale_out = ScaleOut(workdir, pg_server=args.pg, store_url=store_url, port=args.port)
    with scale_out:
        print(f"prefect server on {scale_out.api_url} (PostgreSQL), 2 workers on pool 'carepath'")
        simulate = subprocess.run(
            [
                str(BIN / "carepath"),
                "simulate",
                "--pathways",
                str(ROOT / "pathways"),
                "--events",
                str(args.events),
                "--db",
                store_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"events in: {len(simulate.stdout.splitlines())} action(s) decided")
        dispatch = subprocess.run(
            [
                str(BIN / "carepath"),
                "dispatch",
                "--db",
                store_url,
                "--pathways",
                str(ROOT / "pathways"),
                "--deployed",
                "--batch-size",
                "10",
                "--in-flight",
                "2",
            ],
            env=scale_out.client_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        print(dispatch.stderr.strip().splitlines()[-1])
        for n in (1, 2):
            print(f"worker-{n} ran {len(scale_out.flow_runs_of(n))} flow run(s)")
        if args.keep:
            print("running; Ctrl-C stops the server and the workers")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
