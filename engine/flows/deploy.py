"""`carepath deploy`: register each pathway version's flow as a deployment on a Prefect server.

The deployments run on a work pool (a `process` pool is created if it does not exist) and import
their flow from `engine.flows.entry` (see there), so a worker needs Carepath installed and the
store configured (CAREPATH_DB, or CAREPATH_CONFIG naming a config file), nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.definition.model import Pathway
from engine.errors import RuntimeFailure
from engine.flows.builder import build_flow
from engine.flows.runners import DEFAULT_DEPLOYMENT


class DeployError(RuntimeFailure):
    """Deployments could not be registered (no server, or the server refused)."""


def ensure_work_pool(name: str) -> bool:
    """Create a process work pool called `name` unless it exists. True when created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
            return True


def deploy(
    pathways: Iterable[Pathway],
    *,
    work_pool: str,
    deployment: str = DEFAULT_DEPLOYMENT,
) -> list[str]:
    """Register (or update) one deployment per pathway version; returns 'flow/deployment' names."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.settings import get_current_settings
    from prefect.types.entrypoint import EntrypointType

    if not get_current_settings().api.url:
        raise DeployError(
            "no Prefect server: set PREFECT_API_URL to the server the workers poll "
            "(e.g. http://127.0.0.1:4200/api)"
        )
    try:
        ensure_work_pool(work_pool)
        names = []
        for pathway in pathways:
            flow = build_flow(pathway)
            runner_deployment = flow.to_deployment(
                name=deployment,
                work_pool_name=work_pool,
                entrypoint_type=EntrypointType.MODULE_PATH,
                description=f"{pathway.title} ({pathway.file})",
                tags=[f"pathway:{pathway.key}"],
                version=pathway.source_hash[:12] or None,
            )
            assert isinstance(runner_deployment, RunnerDeployment)  # the sync form
            runner_deployment.apply()
            names.append(f"{flow.name}/{deployment}")
        return names
    except DeployError:
        raise
    except Exception as exc:
        raise DeployError(f"could not register the deployments: {exc}") from exc
