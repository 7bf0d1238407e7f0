"""Compile a pathway version into a Prefect flow, from the definition as data.

    build_flow(pathway) -> Flow named 'chf-post-discharge@1'

The flow takes a batch of outbox actions (`Action.as_dict()` shapes) and carries out each with
the task of its action type: one task per action type the pathway can fire, with the retries,
retry delay and timeout the pathway declares or its action family's defaults. All the actions
of a batch run at once; each calls its port (a blocking call, in a worker thread, at most
`max_workers` at a time) with the action id as idempotency key. Flow and tasks are async so
that a timeout really ends a hung attempt: the attempt is abandoned and retried, and the port's
idempotency key makes the abandoned call harmless. The flow returns one `Outcome` per action,
in order: succeeded with the external reference, or failed after its retries with the error.
One action failing never fails the others, nor the flow run.

Run names carry the pathway version (the flow's name), the action type (the task's name) and the
action id (`i-<instance>.<n>`, so the instance too); with `tag_runs` (the default), task runs are
also tagged `pathway:<key>`, `action:<type>` and `instance:<id>`. Never a patient id, a name or
a payload. Tags cost a server call per task run: Prefect checks every tag of a task run against
its tag concurrency limits (`POST /v2/concurrency_limits/increment-with-lease`, a new client
each time), which on the SQLite-backed embedded server also stalls on 'database is locked'.
The embedded default therefore runs untagged (engine/flows/runners.LocalFlows; docs/prefect.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.to_thread
from prefect import Flow, Task, flow, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import task_run
from prefect.utilities.annotations import quote

from adapters.registry import PortRegistry
from engine.definition.model import Pathway
from engine.errors import AdapterError
from engine.flows.settings import DEFAULT_MAX_WORKERS
from engine.store import Outcome

#: Where results would go: nowhere, as nothing is persisted. Naming a storage spares every flow
#: run a call asking the server for its default storage: without one, Prefect 3.8.8's
#: `prefect.results._aread_server_default_result_storage_block_id` opens a `get_client()` it
#: never closes, and its sockets to the server leak (ResourceWarning: unclosed socket, which the
#: test suite turns into errors). Checked: removing this brings the warnings back.
UNUSED_RESULT_STORAGE = Path("data/prefect/unused-results")

#: the module deployments import flows from (see engine/flows/entry.py)
ENTRY_MODULE = "engine.flows.entry"
_ERROR_LIMIT = 500

OutcomeSink = Callable[[Sequence[Outcome]], None]
BatchFlow = Flow[[list[dict[str, Any]]], Coroutine[Any, Any, list[Outcome]]]
_StateCall = Coroutine[Any, Any, State[Any]]
CarryTask = Task[[str, dict[str, Any]], Coroutine[Any, Any, tuple[str | None, int]]]

_PORTS: ContextVar[PortRegistry | None] = ContextVar("carepath_ports", default=None)
_LIMIT: ContextVar[anyio.CapacityLimiter | None] = ContextVar("carepath_limit", default=None)


@contextlib.contextmanager
def using_ports(ports: PortRegistry) -> Iterator[None]:
    """Flows built without ports call these in this block (and in the threads of its tasks)."""
    token = _PORTS.set(ports)
    try:
        yield
    finally:
        _PORTS.reset(token)


def current_ports() -> PortRegistry:
    ports = _PORTS.get()
    if ports is None:
        raise AdapterError("no ports are configured for this flow run (see using_ports)")
    return ports


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of a pathway's flow: an action type and how it is carried out."""

    name: str  # the action type
    retries: int
    retry_delay_seconds: int
    timeout_seconds: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
        }


def task_specs(pathway: Pathway) -> list[TaskSpec]:
    """The tasks of a pathway's flow, by action type name."""
    out = []
    for action_type in sorted(pathway.action_types()):
        policy = pathway.execution_for(action_type)
        out.append(
            TaskSpec(
                action_type, policy.retries, policy.retry_delay_seconds, policy.timeout_seconds
            )
        )
    return out


def entry_name(pathway_key: str) -> str:
    """A Python name for a pathway version's flow: 'chf-post-discharge@1' ->
    'chf_post_discharge__v1' (deployments import `engine.flows.entry.<that name>`)."""
    pathway_id, _, version = pathway_key.partition("@")
    safe = "".join(c if c.isalnum() else "_" for c in version)
    return f"{pathway_id.replace('-', '_')}__v{safe}"


async def _carry_out(action_id: str, action: dict[str, Any]) -> tuple[str | None, int]:
    """Carry out one action through its port; the attempt number comes back with the reference."""
    port = current_ports().port_for(str(action["action"]))
    reference = await anyio.to_thread.run_sync(
        port.carry_out, action, action_id, abandon_on_cancel=True, limiter=_LIMIT.get()
    )
    return reference, int(task_run.run_count or 1)


def _task(pathway: Pathway, spec: TaskSpec, tag_runs: bool) -> CarryTask:
    return task(
        name=spec.name,
        task_run_name=f"{spec.name} {{action_id}}",
        description=f"{spec.name} for {pathway.key}",
        tags=[f"pathway:{pathway.key}", f"action:{spec.name}"] if tag_runs else None,
        retries=spec.retries,
        retry_delay_seconds=spec.retry_delay_seconds,
        timeout_seconds=spec.timeout_seconds,
        cache_policy=NO_CACHE,
        persist_result=False,
        log_prints=False,
    )(_carry_out)


def _run_name() -> str:
    from prefect.runtime import flow_run

    actions = flow_run.parameters.get("actions") or []
    first = actions[0]["id"] if actions else "-"
    return f"{len(actions)} action{'s' * (len(actions) != 1)} from {first}"


@dataclass(frozen=True, slots=True)
class CompiledFlow:
    """A pathway version's flow and its tasks (the real Prefect objects), by action type."""

    flow: BatchFlow
    tasks: Mapping[str, CarryTask]

    def describe(self) -> dict[str, Any]:
        """`{"flow": name, "tasks": [{"name", "retries", "timeout_seconds"}]}`, read from the
        Prefect objects."""
        return {
            "flow": self.flow.name,
            "tasks": [
                {
                    "name": t.name,
                    "retries": t.retries,
                    "timeout_seconds": _whole(t.timeout_seconds),
                }
                for t in self.tasks.values()
            ],
        }


def _whole(value: float | None) -> float | int | None:
    return int(value) if value is not None and float(value).is_integer() else value


def build_flow(
    pathway: Pathway,
    *,
    ports: PortRegistry | None = None,
    sink: OutcomeSink | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
    tag_runs: bool = True,
) -> BatchFlow:
    """The flow of one pathway version. `ports`: the ports to call (default: those given by
    `using_ports` around the call). `sink`: called with the outcomes before the flow returns
    (a deployed flow writes them to the store this way). `tag_runs`: tag each task run with
    its pathway, action type and instance (a server call per task run; see above)."""
    return compile_flow(
        pathway, ports=ports, sink=sink, max_workers=max_workers, tag_runs=tag_runs
    ).flow


def compile_flow(
    pathway: Pathway,
    *,
    ports: PortRegistry | None = None,
    sink: OutcomeSink | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
    tag_runs: bool = True,
) -> CompiledFlow:
    """As `build_flow`, with the tasks."""
    specs = task_specs(pathway)
    tasks = {spec.name: _task(pathway, spec, tag_runs) for spec in specs}
    attempts = {spec.name: spec.retries + 1 for spec in specs}
    key = pathway.key

    async def carry_out_batch(actions: list[dict[str, Any]]) -> list[Outcome]:
        registry = ports or current_ports()
        outcomes: list[Outcome | None] = [None] * len(actions)
        running: list[tuple[int, str, asyncio.Task[State[Any]]]] = []
        with using_ports(registry):
            limit = _LIMIT.set(anyio.CapacityLimiter(max_workers))
            try:
                for i, action in enumerate(actions):
                    action_type = str(action["action"])
                    carry = tasks.get(action_type)
                    if carry is None:
                        outcomes[i] = Outcome(
                            str(action["id"]),
                            False,
                            error=f"the flow of {key} has no task for '{action_type}'",
                            attempts=0,
                        )
                        continue
                    instance = f"instance:{action['instance_id']}"
                    with tags(*([instance] if tag_runs else [])):
                        # A Task copies the context now: ports, limiter and tags go with it.
                        # `quote`: Prefect does not walk the action's contents looking for
                        # futures to resolve (a measurable share of a task run's cost).
                        call = carry(str(action["id"]), quote(action), return_state=True)
                        run = asyncio.ensure_future(cast(_StateCall, call))
                    running.append((i, action_type, run))
                states = await asyncio.gather(*(run for _, _, run in running))
            finally:
                _LIMIT.reset(limit)
        for (i, action_type, _), state in zip(running, states, strict=True):
            outcomes[i] = await _outcome(str(actions[i]["id"]), state, attempts[action_type])
        done = [o for o in outcomes if o is not None]
        if sink is not None:
            sink(done)
        return done

    name = entry_name(key)
    carry_out_batch.__name__ = carry_out_batch.__qualname__ = name
    carry_out_batch.__module__ = ENTRY_MODULE
    batch_flow = flow(
        name=key,
        version=pathway.source_hash[:12] or None,
        description=f"Carry out the actions of {key}: {pathway.title}",
        flow_run_name=_run_name,
        persist_result=False,
        result_storage=UNUSED_RESULT_STORAGE,
        log_prints=False,
    )(carry_out_batch)
    return CompiledFlow(batch_flow, tasks)


async def _outcome(action_id: str, state: State[Any], attempts: int) -> Outcome:
    if state.is_completed():
        reference, attempt = await state.aresult()
        return Outcome(action_id, True, reference, None, attempt)
    error: object = await state.aresult(raise_on_failure=False)
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
    else:
        text = state.message or state.name or "failed"
    return Outcome(action_id, False, None, text[:_ERROR_LIMIT], attempts)
