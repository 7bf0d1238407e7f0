"""The shape of a pathway file, as pydantic models.

These models check structure only: which keys exist, which are required, what is a list. They
are also the source of `carepath schema` (JSON Schema for editors). Meaning (known event types,
facts, units, parameters, references between sections) is checked by `engine.definition.checks`
once the structure is sound. Conditions are kept as plain mappings here: their keys are facts,
which depend on the event type, so the checker reads them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Word = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9_]*$", description="a lower-case word: letters, digits, _"),
]
PathwayId = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9-]*$", description="lower-case letters, digits and dashes"),
]
SemVer = Annotated[
    str,
    Field(pattern=r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$", description="a semantic version"),
]
Text = Annotated[str, Field(min_length=1)]
#: a duration ('48h', '7 days', '2 business days', '3 months') or a `$parameter`
DurationText = Annotated[str, Field(description="a duration such as '48h' or a $parameter")]
ConditionDoc = dict[str, Any]
ParamValue = str | int | float | bool | list[str | int | float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DueDoc(_Strict):
    """`later_of` / `earlier_of`: several due times, the later (earlier) wins."""

    later_of: list[str] | None = Field(None, min_length=1)
    earlier_of: list[str] | None = Field(None, min_length=1)


class ActionDoc(BaseModel):
    """One action. Keys other than these three are the action's parameters (role, reason...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    action: Word = Field(description="the action type, from the catalogue")
    due: str | DueDoc | None = Field(
        None, description="when it is due: '7d', '2 business days after enrolment', later_of..."
    )
    only_if: ConditionDoc | None = Field(None, description="fire only when this holds")


class TriggerDoc(_Strict):
    id: Word
    description: str | None = None
    when: ConditionDoc = Field(description="event: <type> and the conditions that enrol")
    unless: ConditionDoc | None = Field(
        None, description="exclusions: do not enrol when this holds"
    )
    then: list[ActionDoc] = Field(default_factory=list)


class EnrolmentDoc(_Strict):
    one_active_per_patient: Literal[True] = Field(
        True, description="a patient has at most one active instance of this pathway (required)"
    )
    triggers: list[TriggerDoc] = Field(min_length=1)


class RuleDoc(_Strict):
    id: Word
    description: str | None = None
    when: ConditionDoc = Field(
        description="event: <type> plus conditions, or missing: <type> with for: <duration>"
    )
    max_age: DurationText | None = Field(
        None, description="data currency: an event older than this when it arrives is stale"
    )
    if_stale: list[ActionDoc] = Field(
        default_factory=list, description="what to do instead when the event is stale"
    )
    cancels: list[Word] = Field(default_factory=list, description="deadlines this rule cancels")
    then: list[ActionDoc] = Field(min_length=1)


class DeadlineDoc(_Strict):
    id: Word
    description: str | None = None
    start: Literal["enrolment"] | ConditionDoc = Field(
        "enrolment",
        description="enrolment, {event: <type>, ...conditions} or {action: <type>} (its due time)",
    )
    after: DurationText | None = Field(None, description="how long after the start it falls due")
    cancelled_by: ConditionDoc | None = Field(
        None, description="event: <type> plus conditions that mean it was done in time"
    )
    then: list[ActionDoc] = Field(min_length=1)


class LevelDoc(_Strict):
    role: Word
    acknowledge_within: DurationText | None = None
    final: bool = False


class ChainDoc(_Strict):
    description: str | None = None
    levels: list[LevelDoc] = Field(min_length=1)


class ExitDoc(_Strict):
    reason: Word
    description: str | None = None
    when: ConditionDoc | None = Field(None, description="event: <type> plus conditions")
    after: DurationText | None = Field(None, description="time after enrolment")
    then: list[ActionDoc] = Field(default_factory=list)


class ExecutionDoc(_Strict):
    """How one action type is carried out (Prefect's retries, backoff and timeout for it)."""

    retries: int | None = Field(
        None, strict=True, description="how many times to try again after a failed attempt (0+)"
    )
    retry_delay: DurationText | None = Field(
        None, description="the pause before each retry: '30 seconds', '2 minutes'"
    )
    timeout: DurationText | None = Field(
        None, description="how long one attempt may take before it counts as failed: '60 seconds'"
    )


class PathwayDoc(_Strict):
    """A care pathway."""

    id: PathwayId
    version: int | SemVer
    title: Text
    description: Text
    owner: Text
    parameters: dict[str, ParamValue] = Field(default_factory=dict)
    enrolment: EnrolmentDoc
    rules: list[RuleDoc] = Field(default_factory=list)
    deadlines: list[DeadlineDoc] = Field(default_factory=list)
    escalations: dict[str, ChainDoc] = Field(default_factory=dict)
    exit: list[ExitDoc] = Field(default_factory=list)
    execution: dict[str, ExecutionDoc] = Field(
        default_factory=dict,
        description="per action type: retries, retry_delay, timeout (defaults by action family)",
    )
