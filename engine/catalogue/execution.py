"""How each action type is carried out: retries, the pause between tries, a time limit.

A pathway may declare these per action type (its `execution:` section); anything it leaves out
comes from the defaults of the action's family below. Prefect applies them to the task that
carries out the action (engine/flows).

    family          retries  retry delay  timeout
    scheduling      3        30 s         60 s     booking systems are slow, rarely urgent
    home_health     3        30 s         60 s
    clinical_task   3        30 s         60 s
    escalation      5        10 s         30 s     someone must hear of it: try more, sooner
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.catalogue.actions import ACTIONS, Family


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    """Retries after the first attempt, seconds between attempts, and seconds one attempt may
    take."""

    retries: int
    retry_delay_seconds: int
    timeout_seconds: int

    def as_dict(self) -> dict[str, int]:
        return {
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
        }


FAMILY_DEFAULTS: dict[Family, ExecutionPolicy] = {
    Family.SCHEDULING: ExecutionPolicy(retries=3, retry_delay_seconds=30, timeout_seconds=60),
    Family.HOME_HEALTH: ExecutionPolicy(retries=3, retry_delay_seconds=30, timeout_seconds=60),
    Family.CLINICAL_TASK: ExecutionPolicy(retries=3, retry_delay_seconds=30, timeout_seconds=60),
    Family.ESCALATION: ExecutionPolicy(retries=5, retry_delay_seconds=10, timeout_seconds=30),
}


def default_execution(action_type: str) -> ExecutionPolicy:
    """The execution defaults of an action type's family."""
    return FAMILY_DEFAULTS[ACTIONS[action_type].family]
