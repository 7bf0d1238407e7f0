"""Action types a pathway may fire, the parameters each takes, and the roles that act.

Outbound ports (adapters/) serve action families: scheduling, home health, escalation and
notification, clinical tasks. The engine adds `level` and `chain` to escalations itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from engine.catalogue.events import APPOINTMENT_KINDS

#: Who must act. Deployments map each role to a person, queue or address.
ROLES: dict[str, str] = {
    "care_coordinator": "transitional-care / care coordinator",
    "hf_nurse": "heart-failure specialist nurse",
    "cardiology_on_call": "on-call cardiologist",
    "medical_director": "medical director (final escalation level)",
    "acute_vascular_on_call": "on-call acute vascular service",
    "foot_team": "multidisciplinary diabetic foot-care service",
    "podiatrist": "podiatry",
    "home_health_agency": "home-health agency",
    "pharmacist": "clinical pharmacist",
    "primary_care": "primary-care physician or practice",
    "diabetes_nurse": "diabetes specialist nurse",
}


class ParamKind(StrEnum):
    ROLE = "role"
    WORD = "word"  # a snake_case identifier, such as a reason or a topic
    KIND = "kind"  # an appointment kind
    BOOL = "bool"
    CHAIN = "chain"  # the name of one of the pathway's escalation chains


@dataclass(frozen=True, slots=True)
class ParamSpec:
    kind: ParamKind
    description: str


_ROLE = ParamSpec(ParamKind.ROLE, "who must act")
_REASON = ParamSpec(ParamKind.WORD, "why, as a stable word (e.g. missing_weights)")
_KIND = ParamSpec(ParamKind.KIND, f"appointment kind: {', '.join(APPOINTMENT_KINDS)}")
_URGENT = ParamSpec(ParamKind.BOOL, "act at once")
_TOPIC = ParamSpec(ParamKind.WORD, "education topic")
_CHAIN = ParamSpec(ParamKind.CHAIN, "escalation chain to start (its levels give the roles)")


class Family(StrEnum):
    SCHEDULING = "scheduling"
    HOME_HEALTH = "home_health"
    ESCALATION = "escalation"
    CLINICAL_TASK = "clinical_task"


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    family: Family
    description: str
    params: dict[str, ParamSpec]
    required: frozenset[str] = frozenset()
    #: at least one of these must be given (escalate: a chain or a role)
    one_of: frozenset[str] = field(default_factory=frozenset)


def _spec(
    name: str,
    family: Family,
    description: str,
    params: dict[str, ParamSpec],
    required: tuple[str, ...] = (),
    one_of: tuple[str, ...] = (),
) -> ActionSpec:
    return ActionSpec(name, family, description, params, frozenset(required), frozenset(one_of))


ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "outreach_call",
            Family.ESCALATION,
            "telephone the patient",
            {"role": _ROLE, "reason": _REASON},
            required=("role",),
        ),
        _spec(
            "book_follow_up",
            Family.SCHEDULING,
            "book a follow-up appointment",
            {"kind": _KIND, "role": _ROLE, "reason": _REASON},
            required=("kind",),
        ),
        _spec(
            "schedule_home_visit",
            Family.HOME_HEALTH,
            "request a home-health visit",
            {"role": _ROLE, "reason": _REASON},
        ),
        _spec(
            "patient_education",
            Family.CLINICAL_TASK,
            "educate the patient on a topic",
            {"topic": _TOPIC, "role": _ROLE},
            required=("topic",),
        ),
        _spec(
            "reconcile_medications",
            Family.CLINICAL_TASK,
            "medication reconciliation",
            {"role": _ROLE, "reason": _REASON},
        ),
        _spec(
            "escalate",
            Family.ESCALATION,
            "escalate to a role, or start an escalation chain that needs acknowledgement",
            {"chain": _CHAIN, "role": _ROLE, "reason": _REASON, "urgent": _URGENT},
            required=("reason",),
            one_of=("chain", "role"),
        ),
        _spec(
            "notify",
            Family.ESCALATION,
            "tell a role something (no acknowledgement needed)",
            {"role": _ROLE, "reason": _REASON},
            required=("role",),
        ),
        _spec(
            "book_foot_screening",
            Family.SCHEDULING,
            "book a diabetic foot screening",
            {"role": _ROLE, "reason": _REASON},
        ),
        _spec(
            "refer_podiatry",
            Family.SCHEDULING,
            "refer to podiatry",
            {"role": _ROLE, "reason": _REASON, "urgent": _URGENT},
        ),
        _spec(
            "refer_foot_team",
            Family.SCHEDULING,
            "refer to the multidisciplinary foot-care service",
            {"role": _ROLE, "reason": _REASON, "urgent": _URGENT},
        ),
        _spec(
            "refer_home_health",
            Family.HOME_HEALTH,
            "refer to a home-health agency",
            {"role": _ROLE, "reason": _REASON},
        ),
    )
}
