"""Rich output for replay and what-if."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from engine.replay.replayer import ReplayResult
from engine.replay.whatif import WhatIfResult


@contextmanager
def progress_bar(console: Console, *, disable: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress callback that shows a bar for long runs (over 1,000 steps) only."""
    with Progress(console=console, transient=True, disable=disable) as progress:
        task = None
        shown = 0

        def update(done: int, total: int) -> None:
            # every 500 steps or more: parallel replay reports in steps of a few thousand
            nonlocal task, shown
            if total < 1000:
                return
            if task is None:
                task = progress.add_task("replaying", total=total)
            if done - shown >= 500 or done == total:
                progress.update(task, completed=done)
                shown = done

        yield update


def print_replay(console: Console, result: ReplayResult) -> None:
    table = Table(title="Replay timeline", show_lines=False)
    for column in ("occurred (recorded)", "input", "rule", "decision", "why"):
        table.add_column(column)
    for row in result.timeline:
        when = row.occurred_at[:19]
        if row.recorded_at[:19] != when:
            when += f"\n({row.recorded_at[:19]})"
        why = ", ".join(f"{k}={v}" for k, v in row.why.items()) or row.note
        table.add_row(when, row.input, f"{row.kind}: {row.rule}", row.decision, why)
    console.print(table)
    if result.divergence is None:
        console.print(
            f"[green]identical[/]: {result.inputs} inputs, {result.decisions} decisions "
            "re-decided exactly as recorded"
        )
        return
    d = result.divergence
    console.print(f"[red]DIVERGED[/] at input {d.seq} ({d.input_id}): {d.what} differ")
    side = Table(show_lines=True)
    side.add_column("recorded")
    side.add_column("replayed")
    side.add_row(json.dumps(d.recorded, indent=1), json.dumps(d.replayed, indent=1))
    console.print(side)


def print_what_if(console: Console, result: WhatIfResult) -> None:
    table = Table(title=f"What if: {result.pathway}")
    for column in ("patient", "added", "removed", "moved"):
        table.add_column(column)
    for diff in result.diffs:
        if not diff.differs:
            continue
        table.add_row(
            diff.patient_id,
            "\n".join(f"{a['action']} {a['fired_at']}" for a in diff.added),
            "\n".join(f"{a['action']} {a['fired_at']}" for a in diff.removed),
            "\n".join(
                f"{m['after']['action']} {m['shift_seconds'] / 3600:+.1f} h" for m in diff.moved
            ),
        )
    console.print(table)
    for line in result.sentences():
        console.print(line)
