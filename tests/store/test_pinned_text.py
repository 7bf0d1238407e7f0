"""A restart loads the pathway versions its instances are pinned to from the store, when the
folder no longer has them: a text edited there after it was recorded is refused, not used."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.definition.loader import check_paths
from engine.errors import StoreError
from engine.runtime.durable import open_registry
from engine.store import Store
from engine.store import schema as t

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 20, tzinfo=UTC)


def test_an_edited_pinned_text_is_refused_at_start(store_url: str) -> None:
    pathways, problems = check_paths([ROOT / "pathways"])
    assert not problems
    store = Store.open(store_url)
    open_registry(store, pathways, NOW)
    # a start with the folder's versions only: the store's are read back and trusted
    assert open_registry(store, [], NOW).by_key.keys() == {p.key for p in pathways}
    key = "chf-post-discharge@1"
    with store.engine.begin() as conn:
        text = conn.execute(sa.select(t.pathway_versions.c.source_text)
                            .where(t.pathway_versions.c.key == key)).scalar_one()
        edited = text.replace("threshold: 1.0 kg", "threshold: 9.0 kg")
        assert edited != text
        conn.execute(t.pathway_versions.update().where(t.pathway_versions.c.key == key)
                     .values(source_text=edited))
    with pytest.raises(StoreError, match=r"chf-post-discharge@1 .* does not match the hash"):
        open_registry(store, [], NOW)
    store.close()
