"""Editing recorded JSON in a store behind the engine's back, as a tamperer would: replay must
then find the divergence."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from engine.store import Store


def alter(store: Store, table: sa.Table, key: sa.Column[Any], value: Any, column: str,
          change: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
    """Decode the JSON in `column` of the row whose `key` is `value`, `change` it, store it."""
    with store.engine.begin() as conn:
        text = conn.execute(sa.select(table.c[column]).where(key == value)).scalar_one()
        data = json.loads(text)
        change(data)
        conn.execute(table.update().where(key == value).values({column: json.dumps(data)}))
