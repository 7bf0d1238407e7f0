"""One writer per store: the hash chains grow from heads held in memory, so a second writer
(another `carepath serve`, a `simulate --db` beside it) would fork them. The second is refused,
and the lock goes with the process that held it, even on SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from engine.catalogue import Event
from engine.core import Registry
from engine.definition.model import Pathway
from engine.errors import StoreError
from engine.runtime.durable import DurableEngine
from engine.store import Store
from engine.store.verify import verify
from tests.store.conftest import PATHWAYS

HOLD = """
import sys, time
from engine.store import Store
store = Store.open(sys.argv[1])
store.claim_writer()
print("holding", flush=True)
time.sleep(120)
"""


def test_a_second_writer_is_refused_until_the_first_closes(store_url: str) -> None:
    first, second = Store.open(store_url), Store.open(store_url)
    try:
        first.claim_writer()
        first.claim_writer()  # idempotent for the holder
        with pytest.raises(StoreError, match="another Carepath process is writing"):
            second.claim_writer(wait_seconds=0.3)
        first.close()
        second.claim_writer(wait_seconds=5)
    finally:
        first.close()
        second.close()


def test_a_writer_that_claims_late_extends_the_chains_from_the_real_heads(
    store_url: str, registry: Registry, pathways: list[Pathway], history: list[Event]
) -> None:
    """Opened before another writer appended: claiming re-reads the heads, so the chains stay
    one chain."""
    late = Store.open(store_url)
    early = Store.open(store_url)
    try:
        early.save_pathways(pathways, history[0].occurred_at)
        DurableEngine(early, registry).submit_many(history[:5])
        early.close()
        DurableEngine(late, registry).submit_many(history[5:])
        late.snapshot()
        reports = verify(late)
        assert [r.problem for r in reports] == [None] * len(reports)
        assert [r.chain for r in reports][:2] == ["inputs", "audit"]
        assert reports[0].records == len(history) + sum(
            1 for r in late.inputs() if r.kind == "timer"
        )
    finally:
        early.close()
        late.close()


def test_the_lock_goes_with_a_killed_process_and_the_cli_says_why_it_refuses(
    store_url: str, cli: Callable[..., Result], tmp_path: Path
) -> None:
    Store.open(store_url).close()  # the schema exists before two processes race to create it
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, store_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        events = tmp_path / "events.jsonl"
        events.write_text("", encoding="utf-8")
        refused = cli("simulate", "--pathways", str(PATHWAYS), "--events", str(events),
                      "--db", store_url)
        assert refused.exit_code == 2
        assert "another Carepath process is writing to this store" in refused.stderr
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        store = Store.open(store_url)
        try:
            store.claim_writer(wait_seconds=10)  # a killed session's lock is gone
        finally:
            store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
