"""The `execution:` section: how each action type is carried out.

    execution:
      book_follow_up: {retries: 5, retry_delay: 2 minutes, timeout: 90 seconds}
      escalate: {retries: 8}

Keys are action types from the catalogue; every field is optional and what is left out comes
from the action family's defaults (engine/catalogue/execution.py). Durations here are short and
exact: seconds, minutes or hours (`30 seconds`, `30s`, `2 minutes`, `1h`), or a `$parameter`.
"""

from __future__ import annotations

import re
from typing import Any

from engine.catalogue import ACTIONS
from engine.catalogue.execution import ExecutionPolicy, default_execution
from engine.definition.resolver import Resolver, suggest
from engine.definition.source import Path, Source, render_path
from engine.durations import DurationKind, parse_duration

_SECONDS = re.compile(r"^(\d+)\s*(s|sec|secs|second|seconds)$")
_HINT = "write a whole number and a unit, such as '30 seconds', '2 minutes' or '1h'"


def resolve_execution(source: Source, resolver: Resolver, raw: Any) -> dict[str, ExecutionPolicy]:
    """Every declared action type's policy, its gaps filled from the family defaults. Problems
    are reported into `source`; a type with a problem is left out."""
    if not isinstance(raw, dict):
        return {}
    policies: dict[str, ExecutionPolicy] = {}
    for name, item in raw.items():
        path: Path = ("execution", name)
        if name not in ACTIONS:
            source.report(
                "unknown-action",
                path,
                f"{name!r} is not a known action type{suggest(str(name), ACTIONS)}",
            )
            continue
        if not isinstance(item, dict):
            continue  # the structure check reports it
        default = default_execution(name)
        retries = item.get("retries", default.retries)
        if isinstance(retries, int) and not isinstance(retries, bool) and retries < 0:
            source.report(
                "bad-value",
                (*path, "retries"),
                f"retries is how many times to try again: 0 or more, not {retries}",
            )
        delay = _seconds(source, resolver, item, "retry_delay", path, minimum=0)
        timeout = _seconds(source, resolver, item, "timeout", path, minimum=1)
        if not isinstance(retries, int) or retries < 0 or delay is None or timeout is None:
            continue
        policies[name] = ExecutionPolicy(
            retries=retries,
            retry_delay_seconds=default.retry_delay_seconds if delay == -1 else delay,
            timeout_seconds=default.timeout_seconds if timeout == -1 else timeout,
        )
    return policies


def _seconds(
    source: Source,
    resolver: Resolver,
    item: dict[str, Any],
    key: str,
    path: Path,
    *,
    minimum: int,
) -> int | None:
    """Seconds for `key` in `item`; -1 when it is not given; None after reporting a problem."""
    if item.get(key) is None:
        return -1
    here = (*path, key)
    resolved = resolver.value(item[key], here)
    if resolved is None:
        return None  # an unknown $parameter, already reported
    value, at = resolved
    where = "" if at == here else f" (used at {render_path(here)})"
    seconds = _parse_seconds(value)
    if seconds is None:
        source.report("bad-duration", at, f"{value!r} is not a duration here: {_HINT}{where}")
        return None
    if seconds < minimum:
        source.report(
            "bad-duration",
            at,
            f"a timeout of {value!r} would fail every attempt: give at least 1 second{where}",
        )
        return None
    return seconds


def _parse_seconds(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.strip().lower().split())
    match = _SECONDS.match(text)
    if match:
        return int(match.group(1))
    try:
        duration = parse_duration(text)
    except ValueError:
        return None
    return duration.amount if duration.kind is DurationKind.EXACT else None
