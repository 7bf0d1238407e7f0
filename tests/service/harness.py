"""Running `carepath serve` for real, in a subprocess on a free port, for end-to-end tests."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
CAREPATH = Path(sys.executable).parent / "carepath"
TOKENS = {"ingest": "tok-ingest", "clinician": "tok-clinician", "auditor": "tok-auditor",
          "author": "tok-author"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config(tmp: Path, db: str, **extra: Any) -> Path:
    settings: dict[str, Any] = {
        "db": db,
        "data_dir": str(tmp / "data"),
        "pathways": str(ROOT / "pathways"),
        "host": "127.0.0.1",
        "port": free_port(),
        "tokens": [{"name": role, "role": role,
                    "sha256": hashlib.sha256(token.encode()).hexdigest()}
                   for role, token in TOKENS.items()],
        "timer_interval_seconds": 0.2,
        "dispatch_interval_seconds": 0.2,
        **extra,
    }
    path = tmp / "carepath.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


@dataclass
class Served:
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    handle: Any = None
    port: int = 0
    returncodes: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> Served:
        self.port = int(yaml.safe_load(self.config.read_text())["port"])
        self.handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [str(CAREPATH), "serve", "--config", str(self.config)], stdout=self.handle,
            stderr=subprocess.STDOUT, cwd=self.config.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"carepath serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"carepath serve did not start: {self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, and wait: the return code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.returncodes.append(code)
        self.process = None
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        self._close_log()

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {TOKENS[role]}"})


def wait_for(check: Any, timeout: float = 90, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {getattr(check, '__name__', check)}")
        time.sleep(every)
