"""Pathway versions compiled into Prefect flows that carry out their actions.

Importing this package imports Prefect (over a second): the CLI's `validate`, `schema` and
`graph`, and the decision loop, never do.
"""

from engine.flows.builder import (
    BatchFlow,
    CompiledFlow,
    TaskSpec,
    build_flow,
    compile_flow,
    current_ports,
    entry_name,
    task_specs,
    using_ports,
)
from engine.flows.settings import prefect_runtime

__all__ = [
    "BatchFlow",
    "CompiledFlow",
    "TaskSpec",
    "build_flow",
    "compile_flow",
    "current_ports",
    "entry_name",
    "prefect_runtime",
    "task_specs",
    "using_ports",
]
