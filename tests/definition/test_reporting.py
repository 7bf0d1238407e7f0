"""How problems are reported: all at once, in file order, rendered one per line, and never with a
half-loaded pathway. Also `--set` overrides, which load_pathway takes as `overrides`."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.definition.conditions import Compare, Op
from engine.definition.loader import load_pathway, load_text
from engine.errors import DefinitionError, Problem
from tests.definition.factory import pathway

ROOT = Path(__file__).resolve().parents[2]
CHF = ROOT / "pathways" / "chf-post-discharge.yaml"

MANY_MISTAKES = """\
id: test-pathway
version: 1
title: Test pathway
description: A pathway with a mistake in every section.
owner: Test lead
parameters:
  call_within: 2 buisness days
  weight_threshold: 1
  unused_window: 7d
enrolment:
  one_active_per_patient: true
  triggers:
    - id: discharged
      when:
        event: encounter.discharged
        diagnoses: {starts_with: [I50]}
      then:
        - action: outreach_call
          role: care_coordinater
          due: $call_within
rules:
  - id: weight_gain
    when:
      event: observation.weight
      weight_gain: {over: 24h, at_least: $weight_threshold}
    notes: from the 2022 guideline
    then:
      - action: escalate
        chain: weight
        reason: weight_gain
        reason: weight_gain_24h
  - id: red_flag
    when:
      event: symptom.reported
      symptom: [chest_pain, syncopy]
    then:
      - action: notify
        role: hf_nurse
        priority: high
deadlines:
  - id: follow_up_overdue
    after: 7d
    then:
      - action: escalate
        role: care_coordinator
        reason: follow_up_overdue
escalations:
  weight:
    levels:
      - role: hf_nurse
      - role: medical_director
        final: true
exit:
  - reason: completed
  - reason: deceased
    when:
      event: patient.deceased
"""


def test_a_file_with_many_mistakes_reports_every_one_at_once() -> None:
    loaded, problems = load_text("many.yaml", MANY_MISTAKES)

    assert loaded is None
    assert [(p.code, p.line, p.column, p.location) for p in problems] == [
        ("bad-duration", 7, 3, "parameters.call_within"),
        ("missing-unit", 8, 3, "parameters.weight_threshold"),
        ("unused-parameter", 9, 3, "parameters.unused_window"),
        ("unknown-role", 19, 11, "enrolment.triggers[0].then[0].role"),
        ("unknown-key", 26, 5, "rules[0].notes"),
        ("duplicate-key", 31, 9, "rules[0].then[0].reason"),
        ("unknown-value", 35, 29, "rules[1].when.symptom[1]"),
        ("unknown-action-param", 39, 9, "rules[1].then[0].priority"),
        ("deadline-never-cancelled", 41, 5, "deadlines[0]"),
        ("missing-acknowledgement-window", 50, 9, "escalations.weight.levels[0]"),
        ("bad-exit", 54, 5, "exit[0]"),
    ]


def test_problems_come_in_file_order_whatever_order_they_are_found_in() -> None:
    _, problems = load_text("many.yaml", MANY_MISTAKES)
    positions = [(p.line, p.column) for p in problems]
    assert positions == sorted(positions)

    shuffled = [problems[5], problems[0], problems[9], problems[2]]
    error = DefinitionError(shuffled)
    assert error.problems == sorted(shuffled, key=lambda p: (p.line, p.column))


def test_load_pathway_raises_one_error_holding_every_problem(tmp_path: Path) -> None:
    file = tmp_path / "many.yaml"
    file.write_text(MANY_MISTAKES, encoding="utf-8")

    with pytest.raises(DefinitionError) as caught:
        load_pathway(file)

    assert len(caught.value.problems) == 11
    assert {p.file for p in caught.value.problems} == {str(file)}
    lines = str(caught.value).splitlines()
    assert lines[0] == "11 problems in pathway definition:"
    assert lines[1:] == [p.render() for p in caught.value.problems]


def test_a_problem_renders_as_file_line_column_code_location_message() -> None:
    _, problems = load_text("pathways/many.yaml", MANY_MISTAKES)
    assert problems[3].render() == (
        "pathways/many.yaml:19:11: unknown-role enrolment.triggers[0].then[0].role: "
        "'care_coordinater' is not a known role; did you mean 'care_coordinator'? (known: "
        "acute_vascular_on_call, cardiology_on_call, care_coordinator, diabetes_nurse, foot_team, "
        "hf_nurse, home_health_agency, medical_director, pharmacist, podiatrist, primary_care)"
    )


def test_a_problem_about_the_whole_file_renders_without_a_location() -> None:
    _, problems = load_text("empty.yaml", "\n# nothing\n")
    assert [p.render() for p in problems] == ["empty.yaml:1:1: empty-file the file is empty"]
    assert Problem("x-code", "said", "f.yaml", 2, 3, "").render() == "f.yaml:2:3: x-code said"


def test_as_dict_has_the_keys_tools_read() -> None:
    problem = Problem("bad-exit", "msg", "f.yaml", 4, 5, "exit[0]")
    assert problem.as_dict() == {
        "file": "f.yaml",
        "line": 4,
        "column": 5,
        "code": "bad-exit",
        "location": "exit[0]",
        "message": "msg",
    }


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            pathway(parameters="parameters:\n  spare: 7d\n"), id="only-an-unused-parameter"
        ),
        pytest.param(
            pathway(head="id: test-pathway\nversion: 1\ntitle: T\ndescription: D\n"),
            id="only-a-missing-owner",
        ),
        pytest.param(pathway() + "paramaters: {}\n", id="only-an-unknown-key"),
    ],
)
def test_a_pathway_with_any_problem_is_never_returned(text: str, tmp_path: Path) -> None:
    loaded, problems = load_text("one.yaml", text)
    assert loaded is None
    assert len(problems) == 1

    file = tmp_path / "one.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError):
        load_pathway(file)


# -- --set overrides ----------------------------------------------------------------------------


def _rule(pathway_id: str, rule_id: str, overrides: dict[str, object]) -> Compare:
    loaded = load_pathway(CHF, overrides=overrides)
    assert loaded.id == pathway_id
    (rule,) = [r for r in loaded.rules if r.id == rule_id]
    assert isinstance(rule.condition, Compare)
    return rule.condition


def test_an_override_replaces_the_parameter_everywhere_it_is_used() -> None:
    assert _rule("chf-post-discharge", "weight_gain_24h", {}) == Compare(
        "weight_gain_86400s", Op.GE, 1.0
    )
    assert _rule(
        "chf-post-discharge", "weight_gain_24h", {"weight_gain_24h_threshold": "3 lb"}
    ) == Compare("weight_gain_86400s", Op.GE, 1.36077711)

    loaded = load_pathway(CHF, overrides={"hf_icd10_prefixes": ["I50", "I11.0"]})
    assert loaded.parameters["hf_icd10_prefixes"] == ["I50", "I11.0"]
    assert Compare("diagnoses", Op.INCLUDES_PREFIX, ("I50", "I11.0")) in (
        loaded.triggers[0].condition.items  # type: ignore[union-attr]
    )


def test_an_unknown_override_is_reported_at_the_parameters_section() -> None:
    text = CHF.read_text(encoding="utf-8")
    loaded, problems = load_text("chf.yaml", text, {"weight_gain_24_threshold": "2 kg"})

    assert loaded is None
    assert [(p.code, p.line, p.column, p.location, p.message) for p in problems] == [
        (
            "unknown-parameter",
            text.splitlines().index("parameters:") + 1,
            1,
            "parameters",
            "override 'weight_gain_24_threshold' is not a parameter of this pathway; did you "
            "mean 'weight_gain_24h_threshold'?",
        )
    ]


def test_a_bad_override_value_is_reported_at_the_parameter_it_replaces() -> None:
    text = CHF.read_text(encoding="utf-8")
    loaded, problems = load_text("chf.yaml", text, {"weight_gain_7d_threshold": 2})

    assert loaded is None
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "weight_gain_7d_threshold:" in s)
    assert [(p.code, p.line, p.location) for p in problems] == [
        ("missing-unit", line, "parameters.weight_gain_7d_threshold")
    ]
    assert problems[0].message == (
        "the threshold 2 for 'weight_gain' has no unit: write '2 kg' "
        "(used at rules[2].when.weight_gain.at_least)"
    )
