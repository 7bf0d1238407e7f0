"""Conditions: the reference semantics (`evaluate`) at every operator's boundary and for absent
facts, and what the loader compiles YAML conditions into (shorthands, lists, windows,
parameters, units)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.definition.conditions import (
    TRUE,
    All,
    Any,
    Compare,
    Condition,
    Not,
    Op,
    evaluate,
    facts_used,
)
from engine.definition.loader import load_pathway, load_text
from engine.definition.model import Pathway, Rule, Window
from tests.definition.factory import ENROLMENT, pathway

CHF = Path(__file__).resolve().parents[2] / "pathways" / "chf-post-discharge.yaml"

# -- evaluate: each operator at and either side of its boundary ---------------------------------


@pytest.mark.parametrize(
    ("op", "value", "actual", "holds"),
    [
        # at_least is inclusive: a gain of exactly the threshold counts
        (Op.GE, 1.0, 0.999, False),
        (Op.GE, 1.0, 1.0, True),
        (Op.GE, 1.0, 1.001, True),
        (Op.GE, 2, 2, True),
        (Op.GE, 2, 1, False),
        # more_than is exclusive
        (Op.GT, 1.0, 1.0, False),
        (Op.GT, 1.0, 1.001, True),
        (Op.GT, 1.0, 0.999, False),
        # at_most is inclusive
        (Op.LE, 1.0, 1.0, True),
        (Op.LE, 1.0, 0.999, True),
        (Op.LE, 1.0, 1.001, False),
        # less_than is exclusive
        (Op.LT, 1.0, 1.0, False),
        (Op.LT, 1.0, 0.999, True),
        (Op.LT, 1.0, 1.001, False),
        # ints and floats compare as numbers
        (Op.GE, 1.0, 1, True),
        (Op.LT, 3, 2.5, True),
        # equals / not_equals
        (Op.EQ, "chest_pain", "chest_pain", True),
        (Op.EQ, "chest_pain", "syncope", False),
        (Op.EQ, True, True, True),
        (Op.EQ, True, False, False),
        (Op.EQ, 2, 2, True),
        (Op.NE, "chest_pain", "syncope", True),
        (Op.NE, "chest_pain", "chest_pain", False),
        # in / not_in: one of the alternatives
        (Op.IN, ("02", "03"), "03", True),
        (Op.IN, ("02", "03"), "01", False),
        (Op.NOT_IN, ("02", "03"), "01", True),
        (Op.NOT_IN, ("02", "03"), "02", False),
        # starts_with on one code: a prefix of it, not the code inside it
        (Op.PREFIX, ("I50",), "I50.9", True),
        (Op.PREFIX, ("I50",), "I50", True),
        (Op.PREFIX, ("I50",), "XI50", False),
        (Op.PREFIX, ("E10", "E11"), "E119", True),
        # list facts
        (Op.INCLUDES, ("follow_up",), ["home_visit", "follow_up"], True),
        (Op.INCLUDES, ("follow_up",), ["home_visit"], False),
        (Op.INCLUDES, ("follow_up",), [], False),
        (Op.EXCLUDES, ("refer_podiatry",), ["notify"], True),
        (Op.EXCLUDES, ("refer_podiatry",), [], True),
        (Op.EXCLUDES, ("refer_podiatry",), ["notify", "refer_podiatry"], False),
        (Op.INCLUDES_PREFIX, ("I50",), ["E11.9", "I50.22"], True),
        (Op.INCLUDES_PREFIX, ("I50",), ["E11.9", "I5"], False),
        (Op.INCLUDES, ("84114007",), ("84114007",), True),  # a tuple is a list too
    ],
)
def test_each_operator_at_its_boundary(op: Op, value: object, actual: object, holds: bool) -> None:
    condition = Compare("fact", op, value)  # type: ignore[arg-type]
    assert evaluate(condition, {"fact": actual}) is holds


@pytest.mark.parametrize("op", list(Op))
def test_a_comparison_on_an_absent_fact_is_false_and_its_negation_true(op: Op) -> None:
    value: object = ("x",) if op not in (Op.GE, Op.GT, Op.LE, Op.LT, Op.EQ, Op.NE) else 1
    condition = Compare("weight_gain_86400s", op, value)  # type: ignore[arg-type]
    for facts in ({}, {"weight_gain_86400s": None}, {"other": 1}):
        assert evaluate(condition, facts) is False
        assert evaluate(Not(condition), facts) is True


@pytest.mark.parametrize(
    ("op", "value", "actual"),
    [
        (Op.GE, 1.0, True),  # a boolean is not a number
        (Op.GE, 1.0, "2"),  # nor is text
        (Op.GE, True, 1),
        (Op.EQ, "I50", ["I50"]),  # a list is not one code
        (Op.IN, ("I50",), ["I50"]),
        (Op.PREFIX, ("I50",), ["I50.9"]),
        (Op.INCLUDES, ("I50",), "I50"),  # one code is not a list
        (Op.EXCLUDES, ("I50",), "E11"),
        (Op.INCLUDES_PREFIX, ("I50",), "I50.9"),
        (Op.PREFIX, ("1",), 10),
    ],
)
def test_a_fact_of_the_wrong_type_never_matches(op: Op, value: object, actual: object) -> None:
    assert evaluate(Compare("fact", op, value), {"fact": actual}) is False  # type: ignore[arg-type]


def test_all_any_and_not() -> None:
    gain = Compare("gain", Op.GE, 1.0)
    symptom = Compare("symptom", Op.EQ, "chest_pain")
    facts = {"gain": 1.0, "symptom": "syncope"}

    assert evaluate(All((gain, symptom)), facts) is False
    assert evaluate(Any((gain, symptom)), facts) is True
    assert evaluate(All((gain, Not(symptom))), facts) is True
    assert evaluate(Not(Any((gain, symptom))), facts) is False
    assert evaluate(TRUE, {}) is True
    assert evaluate(Any(()), {}) is False
    assert facts_used(All((gain, Not(Any((symptom,)))))) == {"gain", "symptom"}
    assert facts_used(TRUE) == frozenset()


# -- what the loader compiles -------------------------------------------------------------------


def loaded(**sections: str) -> Pathway:
    result, problems = load_text("pathway.yaml", pathway(**sections))
    assert [p.render() for p in problems] == []
    assert result is not None
    return result


def compiled(when: str, parameters: str = "") -> Rule:
    """The one rule of a pathway whose rule has these lines under `when:`."""
    body = "\n".join(f"      {line}" for line in when.strip("\n").splitlines())
    rules = (
        f"rules:\n  - id: the_rule\n    when:\n{body}\n"
        "    then:\n      - action: notify\n        role: care_coordinator\n"
    )
    (rule,) = loaded(rules=rules, parameters=parameters).rules
    return rule


@pytest.mark.parametrize(
    ("when", "condition"),
    [
        pytest.param(
            "event: symptom.reported\nsymptom: chest_pain",
            Compare("symptom", Op.EQ, "chest_pain"),
            id="fact-value-means-equals",
        ),
        pytest.param(
            "event: symptom.reported\nsymptom: [chest_pain, syncope]",
            Compare("symptom", Op.IN, ("chest_pain", "syncope")),
            id="fact-list-means-in",
        ),
        pytest.param(
            "event: symptom.reported\nsymptom: {not_in: [fatigue]}",
            Compare("symptom", Op.NOT_IN, ("fatigue",)),
            id="not-in",
        ),
        pytest.param(
            "event: encounter.discharged\ndiagnoses: I50.9",
            Compare("diagnoses", Op.INCLUDES, ("I50.9",)),
            id="list-fact-value-means-includes",
        ),
        pytest.param(
            "event: encounter.discharged\ndiagnoses: [I50.9, '84114007']",
            Compare("diagnoses", Op.INCLUDES, ("I50.9", "84114007")),
            id="list-fact-list-means-includes-any",
        ),
        pytest.param(
            "event: encounter.discharged\ndiagnoses: {starts_with: [I50, I11]}",
            Compare("diagnoses", Op.INCLUDES_PREFIX, ("I50", "I11")),
            id="starts-with-on-a-list-fact",
        ),
        pytest.param(
            "event: encounter.discharged\ndisposition: {starts_with: '0'}",
            Compare("disposition", Op.PREFIX, ("0",)),
            id="starts-with-on-one-code",
        ),
        pytest.param(
            "event: encounter.discharged\ndiagnoses: {excludes: [Z51.5]}",
            Compare("diagnoses", Op.EXCLUDES, ("Z51.5",)),
            id="excludes",
        ),
        pytest.param(
            "event: foot_exam.completed\ngangrene: true",
            Compare("gangrene", Op.EQ, True),
            id="bool",
        ),
        pytest.param(
            "event: foot_exam.completed\niwgdf_risk: {more_than: 1, at_most: 3}",
            All((Compare("iwgdf_risk", Op.GT, 1), Compare("iwgdf_risk", Op.LE, 3))),
            id="two-tests-on-one-fact",
        ),
        pytest.param(
            "event: observation.weight\nweight_kg: {at_least: 2 lb}",
            Compare("weight_kg", Op.GE, 0.90718474),
            id="pounds-to-kg",
        ),
        pytest.param(
            "event: observation.weight\nweight_kg: {less_than: 500 g}",
            Compare("weight_kg", Op.LT, 0.5),
            id="grams-to-kg",
        ),
        pytest.param(
            "event: observation.weight\ntime_since_enrolment: {at_least: 7d}",
            Compare("time_since_enrolment", Op.GE, 604800),
            id="duration-to-seconds",
        ),
        pytest.param(
            "event: appointment.attended\nbooked: home_visit",
            Compare("booked", Op.INCLUDES, ("home_visit",)),
            id="instance-fact",
        ),
        pytest.param(
            "event: foot_exam.completed\nactions_fired: {excludes: refer_podiatry}",
            Compare("actions_fired", Op.EXCLUDES, ("refer_podiatry",)),
            id="actions-fired",
        ),
        pytest.param(
            "event: foot_exam.completed\nany:\n  - infection: severe\n  - ischemia: true",
            Any((Compare("infection", Op.EQ, "severe"), Compare("ischemia", Op.EQ, True))),
            id="any",
        ),
        pytest.param(
            "event: foot_exam.completed\nactive_ulcer: true\nnot: {infection: [none, mild]}",
            All(
                (
                    Compare("active_ulcer", Op.EQ, True),
                    Not(Compare("infection", Op.IN, ("none", "mild"))),
                )
            ),
            id="facts-are-anded-and-not",
        ),
        pytest.param(
            "event: foot_exam.completed\nall:\n  - iwgdf_risk: 3\n  - any: [{gangrene: true}]",
            All((Compare("iwgdf_risk", Op.EQ, 3), Any((Compare("gangrene", Op.EQ, True),)))),
            id="nested",
        ),
        pytest.param("event: patient.transferred", TRUE, id="no-conditions"),
    ],
)
def test_yaml_conditions_compile_to_the_tree(when: str, condition: Condition) -> None:
    assert compiled(when).condition == condition


def test_a_windowed_fact_becomes_one_fact_per_window_length() -> None:
    rule = compiled(
        "event: observation.weight\n"
        "any:\n"
        "  - weight_gain: {over: 24h, at_least: 1 kg}\n"
        "  - weight_gain: {over: 1 day, more_than: 0.5 kg}\n"
        "  - weight_gain: {over: 7d, at_least: 2 kg}\n"
    )
    assert rule.condition == Any(
        (
            Compare("weight_gain_86400s", Op.GE, 1.0),
            Compare("weight_gain_86400s", Op.GT, 0.5),
            Compare("weight_gain_604800s", Op.GE, 2.0),
        )
    )
    assert rule.windows == (
        Window("weight_gain_86400s", "weight_gain", 86400),
        Window("weight_gain_604800s", "weight_gain", 604800),
    )


def test_parameters_are_substituted_and_converted() -> None:
    rule = compiled(
        "event: observation.weight\nweight_gain: {over: $window, at_least: $threshold}\n",
        parameters="parameters:\n  window: 48h\n  threshold: 3 lb\n",
    )
    assert rule.condition == Compare("weight_gain_172800s", Op.GE, 1.36077711)
    assert rule.windows == (Window("weight_gain_172800s", "weight_gain", 172800),)


def test_parameters_are_spliced_into_inline_lists() -> None:
    rule = compiled(
        "event: symptom.reported\nsymptom: [chest_pain, $more_symptoms]\n",
        parameters="parameters:\n  more_symptoms: [syncope, orthopnea]\n",
    )
    assert rule.condition == Compare("symptom", Op.IN, ("chest_pain", "syncope", "orthopnea"))


def test_a_list_parameter_is_the_list_of_alternatives() -> None:
    rule = compiled(
        "event: foot_exam.completed\niwgdf_risk: {in: $high_risks}\n",
        parameters="parameters:\n  high_risks: [2, 3]\n",
    )
    assert rule.condition == Compare("iwgdf_risk", Op.IN, (2, 3))


def test_trigger_exclusions_only_if_and_deadline_conditions_compile_too() -> None:
    enrolment = ENROLMENT.replace(
        "      then:",
        "      unless:\n        disposition: {in: ['02', '20']}\n      then:",
    ) + ("          only_if:\n            disposition: '06'\n")
    deadlines = """
        deadlines:
          - id: visit_overdue
            after: 7d
            cancelled_by:
              event: appointment.attended
              kind: [follow_up, home_visit]
            then:
              - action: notify
                role: care_coordinator
    """
    result = loaded(enrolment=enrolment, deadlines=deadlines)

    (trigger,) = result.triggers
    assert trigger.condition == TRUE
    assert trigger.exclusion == Compare("disposition", Op.IN, ("02", "20"))
    assert trigger.actions[0].only_if == Compare("disposition", Op.EQ, "06")
    (deadline,) = result.deadlines
    assert deadline.cancel_event == "appointment.attended"
    assert deadline.cancel_condition == Compare("kind", Op.IN, ("follow_up", "home_visit"))


def test_the_reference_pathway_compiles_its_thresholds_as_written() -> None:
    chf = load_pathway(CHF)
    rules = {r.id: r for r in chf.rules}
    assert rules["weight_gain_24h"].condition == Compare("weight_gain_86400s", Op.GE, 1.0)
    assert rules["weight_gain_7d"].condition == Compare("weight_gain_604800s", Op.GE, 2.0)
    assert rules["red_flag_symptom"].condition == Compare(
        "symptom", Op.IN, ("dyspnea_at_rest", "chest_pain", "syncope")
    )
    # at_least is inclusive: a gain of exactly 1.0 kg in 24 h escalates, 0.99 kg does not
    assert evaluate(rules["weight_gain_24h"].condition, {"weight_gain_86400s": 1.0})
    assert not evaluate(rules["weight_gain_24h"].condition, {"weight_gain_86400s": 0.99})
