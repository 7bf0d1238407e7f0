"""The engine loop with the store underneath: every input is journaled and committed in groups.

Nothing is acknowledged before it is committed: `flush()` writes the pending group in one
transaction and only then hands back the decisions, which the caller may then print, answer or
dispatch. A crash before a flush loses only unacknowledged work, which the sender sends again;
event ids make the re-send a no-op for what did commit.

Instance states are snapshotted every `snapshot_every` inputs and by `close()` (see
engine.store). On start the engine reads the latest snapshot and re-decides every input
recorded after it, in order, exactly as it was decided (nothing is written again), which gives
the states the log says; each re-decided input's actions must be the ones recorded, or the
engine refuses to start (the code or a pathway changed under an unsnapshotted tail).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import date, datetime

from engine.catalogue import Event
from engine.core import Decision, InstanceState, Registry
from engine.core.inputs import Input
from engine.errors import StoreError
from engine.runtime import SNAPSHOT_EVERY
from engine.runtime.memory import MemoryEngine
from engine.store import Recorded, Store
from engine.store.rows import action_text

log = logging.getLogger("carepath.engine")

#: instance states a flush serializes of a periodic snapshot being prepared (about 20-40 ms)
SNAPSHOT_SLICE = 250


class DurableEngine:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        holidays: Collection[date] | None = None,
        batch_size: int = 500,
        snapshot_every: int = SNAPSHOT_EVERY,
    ) -> None:
        """`holidays`: the public holidays to count business days with from now on, recorded
        in the store; None: the ones last recorded (what `carepath dispatch` and `deadletter
        retry` decide with, so that they agree with the service)."""
        self.store = store
        store.claim_writer()  # before its state is read: the single writer (see Store)
        self.batch_size = batch_size
        self.snapshot_every = snapshot_every
        self._pending: list[Recorded] = []
        self._decided: list[Decision] = []
        #: why nothing more may be decided (memory could not be brought back to the store)
        self._broken: str | None = None
        if holidays is None:
            holidays = store.calendar().at(store.last_seq + 1)
        self.memory = self._restore(registry, holidays)
        store.record_holidays(holidays)
        if store.last_seq != store.snapshot_seq:
            store.snapshot()  # so that the next start need not re-decide the same tail

    def _restore(self, registry: Registry, holidays: Collection[date]) -> MemoryEngine:
        """The latest snapshot, brought up to the end of the log by re-deciding the inputs
        after it; each one's actions checked against the recorded ones."""
        from engine.replay.history import as_input

        store = self.store
        memory = MemoryEngine(registry, holidays, journal=self._journal)
        # the clock as the snapshot left it (its UTC offset aside, which the text drops)
        memory.restore(store.instances(), store.clock(through=store.snapshot_seq))
        store.forget_changes()
        recorded = store.action_texts_after(store.snapshot_seq)
        calendar = store.calendar()
        for row in store.inputs_after(store.snapshot_seq):
            input_ = as_input(row)
            if input_ is None:
                continue  # a duplicate decided nothing
            decided_at = datetime.fromisoformat(row.decided_at)
            changed, decision = memory.redo(input_, decided_at, calendar.at(row.seq))
            again = sorted(action_text(a) for a in decision.actions)
            if again != sorted(recorded.get(row.seq, [])):
                raise StoreError(
                    f"input {row.seq} ({row.type}), recorded after the latest snapshot, now "
                    "decides differently from when it was recorded: the engine or a pathway "
                    "version changed since. Start with what recorded it, or see `carepath "
                    f"replay --instance` for the difference ({len(again)} action(s) now, "
                    f"{len(recorded.get(row.seq, []))} recorded)"
                )
            store.changed({s.instance_id: (s, row.seq) for s in changed})
        store.changes_complete()
        return memory  # its clock carried through the tail as it was the first time

    def current(self, state: InstanceState) -> InstanceState:
        """`state` (read from the store, as of its snapshot) as the engine holds it now."""
        return self.memory.instances.get(state.instance_id, state)

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
        self._check()
        ids = [e.id for e in events]
        self.memory.seen = set(known) if known is not None else self.store.known_event_ids(ids)
        for event in events:
            self.memory.submit(event, received_at)
        return self.flush()

    def advance(self, until: datetime, at: datetime | None = None) -> list[Decision]:
        """Fire the timers due by `until` (late ones at `at`: MemoryEngine.advance), commit."""
        self._check()
        self.memory.advance(until, at)
        return self.flush()

    def _check(self) -> None:
        if self._broken is not None:
            raise StoreError(self._broken)

    def flush(self) -> list[Decision]:
        batch, decided = self._pending, self._decided
        self._pending, self._decided = [], []
        try:
            self.store.write(batch)
        except StoreError:
            # Nothing of the batch was committed: forget what memory decided, and start again
            # from what the store holds. The senders were not acknowledged and will resend.
            try:
                self.memory = self._restore(self.memory.registry, self.memory.holidays)
            except Exception as exc:
                # Nor can the store be read back (it is down, or the log no longer decides as
                # recorded): memory still holds the batch that was not committed, so deciding
                # anything more on it could apply a resent event twice. Stop deciding.
                self._broken = (
                    "the engine could not re-read the store after a failed commit "
                    f"({type(exc).__name__}); restart it once the store is back"
                )
                log.error("%s", self._broken)
            raise
        store = self.store
        try:
            # a periodic snapshot is prepared a slice per flush and written once whole, so
            # that no one flush holds the writer (and whoever waits on it) for long
            store.settle_snapshot()  # one written behind, if it is done
            due = store.last_seq - store.snapshot_seq >= self.snapshot_every
            if store.snapshot_staged:
                if store.snapshot_writing:
                    pass  # the thread writing it will be done by a later flush
                elif store.prepare_snapshot(SNAPSHOT_SLICE):
                    self._write_snapshot()
            elif due and store.begin_snapshot() and store.prepare_snapshot(SNAPSHOT_SLICE):
                self._write_snapshot()
        except StoreError as exc:  # the batch is durable; the next flush tries again
            log.warning("snapshot not written, will retry: %s", type(exc).__name__)
        return decided

    def _write_snapshot(self) -> None:
        """A prepared periodic snapshot: written behind the writer where the database lets
        transactions run side by side, at once otherwise (Store.write_snapshot_behind)."""
        if self.store.dialect == "postgresql":
            self.store.write_snapshot_behind()
        else:
            self.store.finish_snapshot()

    def close(self) -> None:
        """Snapshot what changed since the latest snapshot (so the next start re-decides
        nothing), then close the store."""
        try:
            if self._broken is None:
                self.store.snapshot()
        finally:
            self.store.close()


def open_registry(store: Store, pathways: Sequence[object], now: datetime) -> Registry:
    """The registry for a store: the given pathways (current for new enrolments), recorded in the
    store, plus every version the store has pinned instances to."""
    from engine.definition.loader import load_text
    from engine.definition.model import Pathway
    from engine.errors import DefinitionError

    current = [p for p in pathways if isinstance(p, Pathway)]
    store.save_pathways(current, now)
    registry = Registry.of(current)
    recorded = store.pathway_hashes()
    for key, file, text in store.pathway_sources():
        if key in registry.by_key:
            continue
        pathway, problems = load_text(file, text)
        if pathway is None:
            raise DefinitionError(problems)
        if pathway.source_hash != recorded[key]:
            # the text the instances are pinned to is not the text that was recorded: deciding
            # with it would change their decisions silently
            raise StoreError(
                f"the text of {key} in the store does not match the hash recorded with it: it "
                "was edited after it was recorded (`carepath audit verify` says more)"
            )
        from engine.core import compile_pathway

        registry.add(compile_pathway(pathway), current=pathway.id not in registry.current)
    return registry
