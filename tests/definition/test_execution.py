"""The `execution:` section: retries, retry delay and timeout per action type, with family
defaults, and every problem located."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalogue import ACTIONS
from engine.catalogue.execution import ExecutionPolicy, default_execution
from engine.definition.loader import load_pathway, load_text

ROOT = Path(__file__).resolve().parents[2]
CHF = ROOT / "pathways" / "chf-post-discharge.yaml"


def _load(extra: str) -> tuple[object, list[str]]:
    text = CHF.read_text(encoding="utf-8") + extra
    pathway, problems = load_text("chf.yaml", text)
    return pathway, [f"{p.code} {p.location}: {p.message}" for p in problems]


def test_every_action_type_has_family_defaults() -> None:
    assert default_execution("book_follow_up") == ExecutionPolicy(3, 30, 60)
    assert default_execution("escalate") == ExecutionPolicy(5, 10, 30)
    for name in ACTIONS:
        policy = default_execution(name)
        assert policy.retries >= 0 and policy.timeout_seconds >= 1


def test_the_reference_pathways_use_the_defaults() -> None:
    chf = load_pathway(CHF)
    assert chf.execution == {}
    assert chf.execution_for("escalate") == ExecutionPolicy(5, 10, 30)
    assert chf.action_types() == {
        "outreach_call",
        "book_follow_up",
        "schedule_home_visit",
        "patient_education",
        "reconcile_medications",
        "escalate",
        "notify",
    }


def test_declared_values_override_and_gaps_keep_the_default() -> None:
    pathway, problems = _load(
        "execution:\n"
        "  book_follow_up: {retries: 5, retry_delay: 2 minutes, timeout: 90 seconds}\n"
        "  escalate: {retries: 0}\n"
        "  notify: {retry_delay: 0s, timeout: 1h}\n"
    )
    assert problems == []
    assert pathway is not None
    execution = pathway.execution  # type: ignore[attr-defined]
    assert execution == {
        "book_follow_up": ExecutionPolicy(5, 120, 90),
        "escalate": ExecutionPolicy(0, 10, 30),
        "notify": ExecutionPolicy(5, 0, 3600),
    }


def test_a_duration_may_be_a_parameter_and_counts_as_its_use() -> None:
    text = CHF.read_text(encoding="utf-8").replace(
        "  pathway_length: 30d\n", "  pathway_length: 30d\n  booking_pause: 45 seconds\n"
    )
    pathway, problems = load_text(
        "chf.yaml", text + "execution:\n  book_follow_up: {retry_delay: $booking_pause}\n"
    )
    assert problems == []
    assert pathway is not None
    assert pathway.execution_for("book_follow_up") == ExecutionPolicy(3, 45, 60)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "execution:\n  book_folow_up: {retries: 5}\n",
            [
                "unknown-action execution.book_folow_up: 'book_folow_up' is not a known action "
                "type; did you mean 'book_follow_up'?"
            ],
        ),
        (
            "execution:\n  escalate: {retries: -1}\n",
            [
                "bad-value execution.escalate.retries: retries is how many times to try again: "
                "0 or more, not -1"
            ],
        ),
        (
            "execution:\n  escalate: {retries: three}\n",
            ["bad-value execution.escalate.retries: input should be a valid integer"],
        ),
        (
            "execution:\n  escalate: {retry_delay: 3 parsecs}\n",
            [
                "bad-duration execution.escalate.retry_delay: '3 parsecs' is not a duration "
                "here: write a whole number and a unit, such as '30 seconds', '2 minutes' or '1h'"
            ],
        ),
        (
            "execution:\n  escalate: {timeout: 2 business days}\n",
            [
                "bad-duration execution.escalate.timeout: '2 business days' is not a duration "
                "here: write a whole number and a unit, such as '30 seconds', '2 minutes' or '1h'"
            ],
        ),
        (
            "execution:\n  escalate: {timeout: 0 seconds}\n",
            [
                "bad-duration execution.escalate.timeout: a timeout of '0 seconds' would fail "
                "every attempt: give at least 1 second"
            ],
        ),
        (
            "execution:\n  notify: {retrys: 2}\n",
            [
                "unknown-key execution.notify.retrys: 'retrys' is not a key here; did you mean "
                "'retries'? (keys: retries, retry_delay, timeout)"
            ],
        ),
        (
            "execution:\n  escalate: {retry_delay: $nowhere}\n",
            [
                "unknown-parameter execution.escalate.retry_delay: '$nowhere' is not one of "
                "this pathway's parameters"
            ],
        ),
    ],
)
def test_problems_are_located(extra: str, expected: list[str]) -> None:
    pathway, problems = _load(extra)
    assert pathway is None
    assert problems == expected


def test_every_problem_is_reported_at_once() -> None:
    pathway, problems = _load(
        "execution:\n"
        "  book_folow_up: {retries: 5}\n"
        "  escalate: {retries: -1, retry_delay: 3 parsecs, timeout: 0s}\n"
    )
    assert pathway is None
    assert [p.split(" ", 2)[:2] for p in problems] == [
        ["unknown-action", "execution.book_folow_up:"],
        ["bad-value", "execution.escalate.retries:"],
        ["bad-duration", "execution.escalate.retry_delay:"],
        ["bad-duration", "execution.escalate.timeout:"],
    ]
