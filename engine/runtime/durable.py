"""The engine loop with the store underneath: every input is journaled and committed in groups.

Nothing is acknowledged before it is committed: `flush()` writes the pending group in one
transaction and only then hands back the decisions, which the caller may then print, answer or
dispatch. A crash before a flush loses only unacknowledged work, which the sender sends again;
event ids make the re-send a no-op for what did commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime

from engine.catalogue import Event
from engine.core import Decision, InstanceState, Registry
from engine.core.inputs import Input
from engine.errors import StoreError
from engine.runtime.memory import MemoryEngine
from engine.store import Recorded, Store


class DurableEngine:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        holidays: Collection[date] = (),
        batch_size: int = 500,
    ) -> None:
        self.store = store
        store.claim_writer()  # before its state is read: the single writer (see Store)
        self.batch_size = batch_size
        self._pending: list[Recorded] = []
        self._decided: list[Decision] = []
        self.memory = MemoryEngine(registry, holidays, journal=self._journal)
        self.memory.restore(store.instances(), store.clock())

    def _journal(
        self,
        input_: Input | Event,
        patient_id: str,
        now: datetime,
        decision: Decision,
        changed: list[InstanceState],
    ) -> None:
        if isinstance(input_, Event):
            self._pending.append(
                Recorded(
                    None,
                    "duplicate",
                    input_.id,
                    input_.patient_id,
                    input_.type,
                    input_.occurred_at,
                    now,
                    now,
                    input_.model_dump(mode="json"),
                )
            )
        else:
            self._pending.append(Recorded.of(input_, now, decision, changed, patient_id))
        self._decided.append(decision)

    def submit_many(
        self,
        events: Sequence[Event],
        received_at: datetime | None = None,
        known: set[str] | None = None,
    ) -> list[Decision]:
        """Decide a group of events and commit it; returns the decisions once durable.

        `known`: the ids of `events` the store already holds, when the caller has just asked
        the store (the service's writer does, to answer duplicates); otherwise asked here."""
        ids = [e.id for e in events]
        self.memory.seen = set(known) if known is not None else self.store.known_event_ids(ids)
        for event in events:
            self.memory.submit(event, received_at)
        return self.flush()

    def advance(self, until: datetime) -> list[Decision]:
        self.memory.advance(until)
        return self.flush()

    def flush(self) -> list[Decision]:
        batch, decided = self._pending, self._decided
        self._pending, self._decided = [], []
        try:
            self.store.write(batch)
        except StoreError:
            # Nothing of the batch was committed: forget what memory decided, and start again
            # from what the store holds. The senders were not acknowledged and will resend.
            self.memory = MemoryEngine(
                self.memory.registry, self.memory.holidays, journal=self._journal
            )
            self.memory.restore(self.store.instances(), self.store.clock())
            raise
        return decided


def open_registry(store: Store, pathways: Sequence[object], now: datetime) -> Registry:
    """The registry for a store: the given pathways (current for new enrolments), recorded in the
    store, plus every version the store has pinned instances to."""
    from engine.definition.loader import load_text
    from engine.definition.model import Pathway
    from engine.errors import DefinitionError

    current = [p for p in pathways if isinstance(p, Pathway)]
    store.save_pathways(current, now)
    registry = Registry.of(current)
    for key, file, text in store.pathway_sources():
        if key in registry.by_key:
            continue
        pathway, problems = load_text(file, text)
        if pathway is None:
            raise DefinitionError(problems)
        from engine.core import compile_pathway

        registry.add(compile_pathway(pathway), current=pathway.id not in registry.current)
    return registry
