"""Every problem code the loader can report, each from a small pathway with one mistake in it.

Each case starts from the minimal valid pathway (`factory.pathway`), changes one thing, and
checks the whole answer: no pathway, exactly the expected codes, and for the problem under test
its location path, message, and line and column (those of the `at` text, which is written once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.definition.loader import load_text
from tests.definition.factory import ENROLMENT, HEAD, pathway, position

ROOT = Path(__file__).resolve().parents[2]

#: Every code, as documented in docs/pathway-language.md section 4. Adding a code means adding a
#: case for it here.
CODES = frozenset(
    {
        "bad-condition",
        "bad-duration",
        "bad-exit",
        "bad-key",
        "bad-mass",
        "bad-operator",
        "bad-parameter-name",
        "bad-value",
        "bad-window",
        "chain-without-final",
        "conflicting-action-params",
        "deadline-never-cancelled",
        "duplicate-id",
        "duplicate-key",
        "duplicate-pathway",
        "empty-file",
        "final-level-window",
        "final-not-last",
        "missing-acknowledgement-window",
        "missing-action-param",
        "missing-key",
        "missing-unit",
        "missing-window",
        "not-a-pathway",
        "unknown-action",
        "unknown-action-param",
        "unknown-chain",
        "unknown-deadline",
        "unknown-event",
        "unknown-field",
        "unknown-key",
        "unknown-operator",
        "unknown-parameter",
        "unknown-role",
        "unknown-value",
        "unreachable-rule",
        "unreadable-file",
        "too-deep",
        "unused-parameter",
        "value-out-of-range",
        "yaml-syntax",
    }
)

#: Codes that need more than one file's text; tested in test_files.py.
FILE_CODES = frozenset({"unreadable-file", "duplicate-pathway"})


@dataclass(frozen=True)
class Case:
    id: str
    code: str
    text: str
    location: str
    #: the text the problem points at (its line and column); None for the top of the file
    at: str | None
    #: the whole message, or its opening when it ends with "..."
    message: str
    #: other codes the same mistake also (rightly) causes
    also: tuple[str, ...] = ()
    #: False where the column is PyYAML's reading of broken text rather than ours
    column: bool = True


# -- small pieces the cases are built from ------------------------------------------------------


def rule(when: str, extra: str = "") -> str:
    """A `rules:` section with one rule: `when` (the lines under `when:`) and a notify."""
    body = "\n".join(f"      {line}" for line in when.strip("\n").splitlines())
    more = "\n".join(f"    {line}" for line in extra.strip("\n").splitlines())
    return (
        "rules:\n  - id: the_rule\n    when:\n"
        f"{body}\n"
        f"{more + chr(10) if more else ''}"
        "    then:\n      - action: notify\n        role: care_coordinator\n"
    )


def enrolment_action(lines: str) -> str:
    """The minimal enrolment, its one action replaced by `lines` (under `- `)."""
    action = "\n".join(
        f"        {'- ' if i == 0 else '  '}{line}"
        for i, line in enumerate(lines.strip("\n").splitlines())
    )
    return ENROLMENT.split("        - action:")[0] + action + "\n"


def deadline(body: str) -> str:
    """A `deadlines:` section with one deadline `visit_overdue`, its keys given in `body`."""
    lines = "\n".join(f"    {line}" for line in body.strip("\n").splitlines())
    return f"deadlines:\n  - id: visit_overdue\n{lines}\n"


NOTIFY = "then:\n  - action: notify\n    role: care_coordinator\n"
CHAIN = """
escalations:
  red_flag:
    levels:
      - role: cardiology_on_call
        acknowledge_within: 1h
      - role: medical_director
        final: true
"""
DECEASED = """
exit:
  - reason: deceased
    when:
      event: patient.deceased
"""


CASES = [
    # -- the file itself --------------------------------------------------------------------
    Case(
        "yaml-syntax-indentation",
        "yaml-syntax",
        HEAD + "enrolment:\n  triggers:\n    - id: discharged\n   when: {}\n",
        "",
        "when: {}",
        "not valid YAML: expected <block end>, but found '<block mapping start>'",
    ),
    Case(
        "yaml-syntax-unclosed-list",
        "yaml-syntax",
        pathway(parameters="parameters:\n  codes: [I50, I11\n"),
        "",
        "enrolment:",
        "not valid YAML: ...",
        column=False,
    ),
    Case(
        "yaml-syntax-tab",
        "yaml-syntax",
        HEAD + "enrolment:\n\ttriggers: []\n",
        "",
        "\ttriggers",
        "not valid YAML: found character '\\t' that cannot start any token",
    ),
    Case(
        "too-deep",
        "too-deep",
        pathway(parameters="parameters:\n  codes: " + "[" * 62 + "[x]" + "]" * 62 + "\n"),
        "",
        "[x]",  # the 63rd list, 65 levels down with the file and `parameters`
        "lists and mappings are nested more than 64 levels deep here; a pathway needs about ten",
    ),
    Case("empty-file", "empty-file", "# nothing but a comment\n\n", "", None, "the file is empty"),
    Case(
        "not-a-pathway",
        "not-a-pathway",
        "- id: test-pathway\n- version: 1\n",
        "",
        None,
        "a pathway file is a mapping with id, version, title, description, owner, enrolment, "
        "rules...",
    ),
    Case(
        "not-a-pathway-scalar",
        "not-a-pathway",
        "just some words\n",
        "",
        None,
        "a pathway file is a mapping with ...",
    ),
    Case(
        "duplicate-key",
        "duplicate-key",
        pathway(head=HEAD + "title: Again\n"),
        "title",
        "title: Again",
        "'title' is written twice in the same mapping; only one can be meant",
    ),
    Case(
        "bad-key",
        "bad-key",
        pathway(parameters="parameters:\n  [a, b]: 7d\n"),
        "parameters",
        "[a, b]: 7d",
        "a mapping key must be a plain word",
    ),
    # -- structure ---------------------------------------------------------------------------
    Case(
        "missing-key-owner",
        "missing-key",
        pathway(head=HEAD.replace("owner: Test lead\n", "")),
        "owner",
        None,
        "'owner' is required here",
    ),
    Case(
        "missing-key-event",
        "missing-key",
        pathway(enrolment=ENROLMENT.replace("event: encounter.discharged", "diagnoses: [I50]")),
        "enrolment.triggers[0].when",
        "when:\n        diagnoses",
        "'event' is required: name the event type this reacts to",
    ),
    Case(
        "missing-key-deadline-after",
        "missing-key",
        pathway(deadlines=deadline("cancelled_by: {event: appointment.attended}\n" + NOTIFY)),
        "deadlines[0]",
        "id: visit_overdue",
        "say when the deadline falls due: 'after: 5d'",
    ),
    Case(
        "missing-key-missing-for",
        "missing-key",
        pathway(rules=rule("missing: observation.weight")),
        "rules[0].when",
        "when:\n      missing",
        "say how long a silence counts as missing: 'for: 48h'",
    ),
    Case(
        "unknown-key",
        "unknown-key",
        pathway(exit=DECEASED + "    notes: quiet\n"),
        "exit[0].notes",
        "notes: quiet",
        "'notes' is not a key here (keys: reason, description, when, after, then)",
    ),
    Case(
        "unknown-key-suggests",
        "unknown-key",
        pathway(head=HEAD + "paramaters: {}\n"),
        "paramaters",
        "paramaters:",
        "'paramaters' is not a key here; did you mean 'parameters'? (keys: id, version, ...",
    ),
    Case(
        "bad-value-pathway-id",
        "bad-value",
        pathway(head=HEAD.replace("id: test-pathway", "id: Test Pathway")),
        "id",
        "id: Test Pathway",
        "'Test Pathway' is not allowed here: a pathway id is lower-case letters, digits and "
        "dashes, e.g. 'chf-post-discharge'",
    ),
    Case(
        "bad-value-version-fraction",
        "bad-value",
        pathway(head=HEAD.replace("version: 1", "version: 1.5")),
        "version",
        "version: 1.5",
        "input should be a valid integer, got a number with a fractional part",
    ),
    Case(
        "bad-value-version-word",
        "bad-value",
        pathway(head=HEAD.replace("version: 1", "version: v1")),
        "version",
        "version: v1",
        "'v1' is not allowed here: a version is a whole number (3) or a semantic version ('1.2.0')",
    ),
    Case(
        "bad-value-empty-title",
        "bad-value",
        pathway(head=HEAD.replace("title: Test pathway", "title: ''")),
        "title",
        "title: ''",
        "string should have at least 1 character",
    ),
    Case(
        "bad-value-trigger-id",
        "bad-value",
        pathway(enrolment=ENROLMENT.replace("id: discharged", "id: Discharged")),
        "enrolment.triggers[0].id",
        "id: Discharged",
        "'Discharged' is not allowed here: write a lower-case word: letters, digits and "
        "underscores, e.g. 'follow_up_overdue'",
    ),
    Case(
        "bad-value-no-triggers",
        "bad-value",
        pathway(enrolment="enrolment:\n  triggers: []\n"),
        "enrolment.triggers",
        "triggers: []",
        "list should have at least 1 item after validation, not 0",
    ),
    Case(
        "bad-value-one-active-false",
        "bad-value",
        pathway(enrolment=ENROLMENT.replace("per_patient: true", "per_patient: false")),
        "enrolment.one_active_per_patient",
        "one_active_per_patient: false",
        "input should be True",
    ),
    Case(
        "bad-value-then-not-a-list",
        "bad-value",
        pathway(
            rules=rule("event: patient.transferred").replace(
                "    then:\n      - action: notify\n        role: care_coordinator\n",
                "    then: notify\n",
            )
        ),
        "rules[0].then",
        "then: notify",
        "input should be a valid list",
    ),
    Case(
        "bad-value-reason-not-a-word",
        "bad-value",
        pathway(enrolment=ENROLMENT + "          reason: Post-op call\n"),
        "enrolment.triggers[0].then[0].reason",
        "reason: Post-op call",
        "'reason' is a lower-case word such as 'care_coordinator', not 'Post-op call'",
    ),
    Case(
        "bad-value-urgent-not-bool",
        "bad-value",
        pathway(enrolment=enrolment_action("action: refer_podiatry\nurgent: yes please")),
        "enrolment.triggers[0].then[0].urgent",
        "urgent: yes please",
        "'urgent' is true or false, not 'yes please'",
    ),
    Case(
        "bad-value-chain-name",
        "bad-value",
        pathway(escalations=CHAIN.replace("red_flag:", "Red-Flag:")),
        "escalations.Red-Flag",
        "Red-Flag:",
        "'Red-Flag' is not a chain name: use a lower-case word",
    ),
    Case(
        "bad-value-code-unquoted",
        "bad-value",
        pathway(
            parameters='parameters:\n  excluded: [20, "50"]\n',
            enrolment=ENROLMENT.replace(
                "      then:", "      unless:\n        disposition: {in: $excluded}\n      then:"
            ),
        ),
        "parameters.excluded[0]",
        '20, "50"',
        "'disposition' holds codes or text; 20 is not one (write codes in quotes: '20') "
        "(used at enrolment.triggers[0].unless.disposition.in)",
    ),
    Case(
        "bad-value-code-unquoted-keeps-zero",
        "bad-value",
        pathway(rules=rule("event: encounter.discharged\ndisposition: 06")),
        "rules[0].when.disposition",
        "disposition: 06",
        "'disposition' holds codes or text; 6 is not one (write codes in quotes: '06')",
    ),
    Case(
        "bad-value-bool-fact",
        "bad-value",
        pathway(rules=rule("event: foot_exam.completed\ngangrene: present")),
        "rules[0].when.gangrene",
        "gangrene: present",
        "'gangrene' is true or false, not 'present'",
    ),
    Case(
        "bad-value-integer-fact",
        "bad-value",
        pathway(rules=rule("event: foot_exam.completed\niwgdf_risk: high")),
        "rules[0].when.iwgdf_risk",
        "iwgdf_risk: high",
        "'iwgdf_risk' is a whole number, not 'high'",
    ),
    Case(
        "bad-value-execution-retries",
        "bad-value",
        pathway(execution="execution:\n  outreach_call: {retries: -1}\n"),
        "execution.outreach_call.retries",
        "retries: -1",
        "retries is how many times to try again: 0 or more, not -1",
    ),
    Case(
        "bad-parameter-name",
        "bad-parameter-name",
        pathway(
            parameters="parameters:\n  Call-Within: 2d\n",
            enrolment=ENROLMENT + "          due: $Call-Within\n",
        ),
        "parameters.Call-Within",
        "Call-Within: 2d",
        "'Call-Within' is not a parameter name: use a lower-case word",
    ),
    Case(
        "duplicate-id",
        "duplicate-id",
        pathway(rules=rule("event: patient.transferred").replace("id: the_rule", "id: discharged")),
        "rules[0].id",
        "id: discharged\n    when:\n      event: patient",
        "'discharged' is already the id of another rule, trigger or deadline (line 9); ids "
        "must be unique in a pathway",
    ),
    Case(
        "duplicate-id-exit-reason",
        "duplicate-id",
        pathway(exit=DECEASED + "  - reason: deceased\n    after: 30d\n"),
        "exit[1].reason",
        "reason: deceased\n    after",
        "exit reason 'deceased' is given twice",
    ),
    # -- parameters, durations and masses ----------------------------------------------------
    Case(
        "unknown-parameter",
        "unknown-parameter",
        pathway(
            parameters="parameters:\n  call_within: 2d\n",
            enrolment=ENROLMENT + "          due: $call_in\n",
        ),
        "enrolment.triggers[0].then[0].due",
        "due: $call_in",
        "'$call_in' is not one of this pathway's parameters; did you mean 'call_within'?",
        also=("unused-parameter",),
    ),
    Case(
        "unknown-parameter-in-list",
        "unknown-parameter",
        pathway(rules=rule("event: symptom.reported\nsymptom: [chest_pain, $more_symptoms]")),
        "rules[0].when.symptom[1]",
        "$more_symptoms",
        "'$more_symptoms' is not one of this pathway's parameters",
    ),
    Case(
        "unused-parameter",
        "unused-parameter",
        pathway(parameters="parameters:\n  call_within: 2d\n"),
        "parameters.call_within",
        "call_within: 2d",
        "parameter 'call_within' is never used: remove it, or refer to it as $call_within",
    ),
    Case(
        "bad-duration-unit",
        "bad-duration",
        pathway(enrolment=ENROLMENT + "          due: 1 fortnight\n"),
        "enrolment.triggers[0].then[0].due",
        "due: 1 fortnight",
        "'1 fortnight' has an unknown unit 'fortnight': use minutes, h/hours, d/days, weeks, "
        "business days, months or years",
    ),
    Case(
        "bad-duration-ambiguous-m-in-parameter",
        "bad-duration",
        pathway(
            parameters="parameters:\n  silence: 60m\n",
            rules=rule("missing: observation.weight\nfor: $silence"),
        ),
        "parameters.silence",
        "silence: 60m",
        "'60m' is ambiguous: write 'minutes' or 'months' (used at rules[0].when.for)",
    ),
    Case(
        "bad-duration-calendar-window",
        "bad-duration",
        pathway(
            rules=rule("event: observation.weight\nweight_gain: {over: 1 month, at_least: 1 kg}")
        ),
        "rules[0].when.weight_gain.over",
        "over: 1 month",
        "'1 month' is a calendar duration; a window or comparison needs an exact one such as "
        "'24h' or '7d'",
    ),
    Case(
        "bad-duration-not-text",
        "bad-duration",
        pathway(
            deadlines=deadline("after: 7\ncancelled_by: {event: appointment.attended}\n" + NOTIFY)
        ),
        "deadlines[0].after",
        "after: 7",
        "expected a duration such as '48h', '7 days' or '2 business days', got 7",
        also=("bad-value",),  # the structure check: "input should be a valid string"
    ),
    Case(
        "bad-duration-blank-due",
        "bad-duration",
        pathway(enrolment=ENROLMENT + "          due: '  '\n"),
        "enrolment.triggers[0].then[0].due",
        "due: '  '",
        "'  ' is not a duration: write a whole number and a unit, such as '48h', '7 days', "
        "'2 business days' or '3 months'",
    ),
    Case(
        "bad-duration-later-of",
        "bad-duration",
        pathway(enrolment=ENROLMENT + "          due: {later_of: [2d, 1.5d after enrolment]}\n"),
        "enrolment.triggers[0].then[0].due.later_of[1]",
        "1.5d after enrolment",
        "'1.5d' is not a duration: ...",
    ),
    Case(
        "bad-mass",
        "bad-mass",
        pathway(rules=rule("event: observation.weight\nweight_kg: {more_than: 150 stone}")),
        "rules[0].when.weight_kg.more_than",
        "more_than: 150 stone",
        "'150 stone' has an unknown mass unit 'stone': use kg, g or lb",
    ),
    Case(
        "missing-unit",
        "missing-unit",
        pathway(rules=rule("event: observation.weight\nweight_gain: {over: 24h, at_least: 1}")),
        "rules[0].when.weight_gain.at_least",
        "at_least: 1}",
        "the threshold 1 for 'weight_gain' has no unit: write '1 kg'",
    ),
    Case(
        "missing-unit-in-parameter",
        "missing-unit",
        pathway(
            parameters="parameters:\n  threshold: 1.5\n",
            rules=rule("event: observation.weight\nweight_gain: {over: 24h, at_least: $threshold}"),
        ),
        "parameters.threshold",
        "threshold: 1.5",
        "the threshold 1.5 for 'weight_gain' has no unit: write '1.5 kg' "
        "(used at rules[0].when.weight_gain.at_least)",
    ),
    # -- events, facts and tests -------------------------------------------------------------
    Case(
        "unknown-event",
        "unknown-event",
        pathway(rules=rule("event: observation.wieght")),
        "rules[0].when.event",
        "event: observation.wieght",
        "'observation.wieght' is not a known event type; did you mean 'observation.weight'?",
    ),
    Case(
        "unknown-event-missing-data",
        "unknown-event",
        pathway(rules=rule("missing: weights\nfor: 48h")),
        "rules[0].when.missing",
        "missing: weights",
        "'weights' is not a known event type",
    ),
    Case(
        "unknown-field",
        "unknown-field",
        pathway(rules=rule("event: symptom.reported\nseverity: high")),
        "rules[0].when.severity",
        "severity: high",
        "'severity' is not a field or fact of 'symptom.reported' (known: actions_fired, "
        "attended, booked, symptom, time_since_enrolment)",
    ),
    Case(
        "unknown-field-instance-fact-at-enrolment",
        "unknown-field",
        pathway(
            enrolment=ENROLMENT.replace(
                "event: encounter.discharged",
                "event: encounter.discharged\n        attended: follow_up",
            )
        ),
        "enrolment.triggers[0].when.attended",
        "attended: follow_up",
        "'attended' is a fact about an enrolled patient's instance; it is not known at enrolment",
    ),
    Case(
        "unknown-operator",
        "unknown-operator",
        pathway(rules=rule("event: observation.weight\nweight_kg: {greater_than: 100 kg}")),
        "rules[0].when.weight_kg.greater_than",
        "greater_than: 100 kg",
        "'greater_than' is not a test; did you mean 'more_than'? (tests for mass facts: "
        "at_least, at_most, less_than, more_than)",
    ),
    Case(
        "bad-operator",
        "bad-operator",
        pathway(rules=rule("event: symptom.reported\nsymptom: {at_least: chest_pain}")),
        "rules[0].when.symptom.at_least",
        "at_least: chest_pain",
        "'at_least' cannot test 'symptom', an enum fact (use: equals, in, not_equals, not_in)",
    ),
    Case(
        "unknown-value",
        "unknown-value",
        pathway(rules=rule("event: symptom.reported\nsymptom: chest_pian")),
        "rules[0].when.symptom",
        "symptom: chest_pian",
        "'chest_pian' is not a value of 'symptom'; did you mean 'chest_pain'? (values: ...",
    ),
    Case(
        "unknown-value-in-list",
        "unknown-value",
        pathway(rules=rule("event: symptom.reported\nsymptom:\n  - chest_pain\n  - dyspnoea")),
        "rules[0].when.symptom[1]",
        "dyspnoea",
        "'dyspnoea' is not a value of 'symptom'; did you mean 'dyspnea_at_rest'? (values: "
        "dyspnea_at_rest, dyspnea_on_exertion, orthopnea, paroxysmal_nocturnal_dyspnea, "
        "chest_pain, syncope, presyncope, palpitations, edema, fatigue, cough, confusion, "
        "reduced_urine_output)",
    ),
    Case(
        "unknown-value-appointment-kind",
        "unknown-value",
        pathway(enrolment=enrolment_action("action: book_follow_up\nkind: wound_clinic")),
        "enrolment.triggers[0].then[0].kind",
        "kind: wound_clinic",
        "'wound_clinic' is not a known kind (known: follow_up, foot_screening, foot_team, "
        "home_visit, podiatry)",
    ),
    Case(
        "value-out-of-range",
        "value-out-of-range",
        pathway(rules=rule("event: foot_exam.completed\niwgdf_risk: {at_least: 4}")),
        "rules[0].when.iwgdf_risk.at_least",
        "at_least: 4",
        "'iwgdf_risk' runs from 0 to 3; 4 can never occur",
    ),
    Case(
        "missing-window",
        "missing-window",
        pathway(rules=rule("event: observation.weight\nweight_gain: {at_least: 1 kg}")),
        "rules[0].when.weight_gain",
        "weight_gain: {",
        "'weight_gain' is a change over time: say over what window, e.g. 'over: 24h'",
    ),
    Case(
        "bad-window",
        "bad-window",
        pathway(rules=rule("event: observation.weight\nweight_kg: {over: 24h, at_least: 90 kg}")),
        "rules[0].when.weight_kg.over",
        "over: 24h",
        "'weight_kg' is not a change over time; 'over' does not apply",
    ),
    Case(
        "bad-condition-any-not-a-list",
        "bad-condition",
        pathway(rules=rule("event: symptom.reported\nany: chest_pain")),
        "rules[0].when.any",
        "any: chest_pain",
        "'any' takes a list of one or more conditions",
    ),
    Case(
        "bad-condition-not-not-a-mapping",
        "bad-condition",
        pathway(rules=rule("event: symptom.reported\nnot: chest_pain")),
        "rules[0].when.not",
        "not: chest_pain",
        "a condition is a mapping of facts to tests, such as 'symptom: chest_pain'",
    ),
    Case(
        "bad-condition-event-inside-any",
        "bad-condition",
        pathway(rules=rule("event: symptom.reported\nany:\n  - event: symptom.reported")),
        "rules[0].when.any[0].event",
        "event: symptom.reported\n    then",
        "'event' names the event type once, at the top of 'when'",
    ),
    Case(
        "bad-condition-no-test",
        "bad-condition",
        pathway(rules=rule("event: symptom.reported\nsymptom: {}")),
        "rules[0].when.symptom",
        "symptom: {}",
        "no test given for 'symptom'",
    ),
    Case(
        "bad-condition-missing-data-extra-key",
        "bad-condition",
        pathway(rules=rule("missing: observation.weight\nfor: 48h\nunit: kg")),
        "rules[0].when.unit",
        "unit: kg",
        "a missing-data rule takes only 'missing: <event type>' and 'for: <duration>'",
    ),
    Case(
        "bad-condition-missing-data-max-age",
        "bad-condition",
        pathway(rules=rule("missing: observation.weight\nfor: 48h", "max_age: 1d")),
        "rules[0].max_age",
        "max_age: 1d",
        "'max_age' does not apply to a missing-data rule",
    ),
    Case(
        "bad-condition-start-action-extra",
        "bad-condition",
        pathway(
            deadlines=deadline(
                "start: {action: outreach_call, kind: follow_up}\n"
                "cancelled_by: {event: appointment.attended}\n" + NOTIFY
            )
        ),
        "deadlines[0].start",
        "start: {action",
        "'start: {action: ...}' takes nothing else",
    ),
    Case(
        "bad-condition-only-if-on-a-timer",
        "bad-condition",
        pathway(
            deadlines=deadline(
                "after: 7d\ncancelled_by: {event: appointment.attended}\n"
                + NOTIFY
                + "    only_if: {kind: follow_up}\n"
            )
        ),
        "deadlines[0].then[0].only_if",
        "only_if: {kind",
        "'only_if' tests the facts of an event, and this action fires from a timer (a deadline, "
        "a missing-data rule or a timed exit), where there is no event to test",
    ),
    Case(
        "unreachable-rule-contradiction",
        "unreachable-rule",
        pathway(rules=rule("event: foot_exam.completed\niwgdf_risk: {at_least: 3, less_than: 2}")),
        "rules[0].when",
        "when:\n      event: foot_exam",
        "these conditions contradict each other: the rule can never fire",
    ),
    Case(
        "unreachable-rule-trigger-contradiction",
        "unreachable-rule",
        pathway(
            enrolment=ENROLMENT.replace(
                "event: encounter.discharged",
                "event: encounter.discharged\n        disposition: {equals: '01', not_in: ['01']}",
            )
        ),
        "enrolment.triggers[0].when",
        "when:",
        "these conditions contradict each other: nobody can enrol",
    ),
    Case(
        "unreachable-rule-empty-list",
        "unreachable-rule",
        pathway(rules=rule("event: symptom.reported\nsymptom: []")),
        "rules[0].when.symptom",
        "symptom: []",
        "an empty list can never match: this test is always false",
        also=("unreachable-rule",),  # and so the rule as a whole can never fire
    ),
    Case(
        "unreachable-rule-exit-event",
        "unreachable-rule",
        pathway(rules=rule("event: patient.deceased"), exit=DECEASED),
        "rules[0].when.event",
        "event: patient.deceased\n    then",
        "'patient.deceased' always ends the instance (exit 'deceased'), so this rule can "
        "never fire",
    ),
    Case(
        "unreachable-rule-if-stale-without-max-age",
        "unreachable-rule",
        pathway(
            rules=rule(
                "event: observation.weight",
                "if_stale:\n  - action: notify\n    role: hf_nurse",
            )
        ),
        "rules[0].if_stale",
        "if_stale:",
        "'if_stale' needs 'max_age': without it no event is stale",
    ),
    Case(
        "unreachable-rule-start-action-never-fired",
        "unreachable-rule",
        pathway(
            deadlines=deadline(
                "start: {action: schedule_home_visit}\n"
                "cancelled_by: {event: appointment.attended}\n" + NOTIFY
            )
        ),
        "deadlines[0].start.action",
        "action: schedule_home_visit",
        "no trigger or rule of this pathway fires 'schedule_home_visit', so this deadline "
        "never starts",
    ),
    # -- actions -----------------------------------------------------------------------------
    Case(
        "unknown-action",
        "unknown-action",
        pathway(enrolment=ENROLMENT.replace("action: outreach_call", "action: phone_patient")),
        "enrolment.triggers[0].then[0].action",
        "action: phone_patient",
        "'phone_patient' is not a known action type",
    ),
    Case(
        "unknown-action-deadline-start",
        "unknown-action",
        pathway(
            deadlines=deadline(
                "start: {action: home_visit}\ncancelled_by: {event: appointment.attended}\n"
                + NOTIFY
            )
        ),
        "deadlines[0].start.action",
        "action: home_visit",
        "'home_visit' is not a known action type; did you mean 'schedule_home_visit'?",
    ),
    Case(
        "unknown-action-execution",
        "unknown-action",
        pathway(execution="execution:\n  outreach: {retries: 2}\n"),
        "execution.outreach",
        "outreach: {",
        "'outreach' is not a known action type; did you mean 'outreach_call'?",
    ),
    Case(
        "unknown-action-param",
        "unknown-action-param",
        pathway(enrolment=ENROLMENT + "          priority: high\n"),
        "enrolment.triggers[0].then[0].priority",
        "priority: high",
        "'outreach_call' takes no 'priority' (it takes: reason, role)",
    ),
    Case(
        "missing-action-param",
        "missing-action-param",
        pathway(enrolment=ENROLMENT.replace("          role: care_coordinator\n", "")),
        "enrolment.triggers[0].then[0]",
        "action: outreach_call",
        "'outreach_call' needs 'role'",
    ),
    Case(
        "missing-action-param-one-of",
        "missing-action-param",
        pathway(enrolment=enrolment_action("action: escalate\nreason: no_contact")),
        "enrolment.triggers[0].then[0]",
        "action: escalate",
        "'escalate' needs one of: chain, role",
    ),
    Case(
        "conflicting-action-params",
        "conflicting-action-params",
        pathway(
            enrolment=enrolment_action(
                "action: escalate\nrole: hf_nurse\nchain: red_flag\nreason: red_flag"
            ),
            escalations=CHAIN,
        ),
        "enrolment.triggers[0].then[0]",
        "action: escalate",
        "'escalate' takes one of chain, role, not both: a chain's levels name their own roles",
    ),
    Case(
        "unknown-role",
        "unknown-role",
        pathway(enrolment=ENROLMENT.replace("role: care_coordinator", "role: ward_nurse")),
        "enrolment.triggers[0].then[0].role",
        "role: ward_nurse",
        "'ward_nurse' is not a known role; did you mean 'hf_nurse'? (known: "
        "acute_vascular_on_call, cardiology_on_call, care_coordinator, ...",
    ),
    Case(
        "unknown-role-in-chain",
        "unknown-role",
        pathway(escalations=CHAIN.replace("role: medical_director", "role: director")),
        "escalations.red_flag.levels[1].role",
        "role: director",
        "'director' is not a known role; did you mean 'medical_director'? (known: ...",
    ),
    Case(
        "unknown-chain",
        "unknown-chain",
        pathway(
            enrolment=enrolment_action("action: escalate\nchain: red_flags\nreason: red_flag"),
            escalations=CHAIN,
        ),
        "enrolment.triggers[0].then[0].chain",
        "chain: red_flags",
        "'red_flags' is not a known chain; did you mean 'red_flag'? (known: red_flag)",
    ),
    # -- deadlines, chains and exits ---------------------------------------------------------
    Case(
        "unknown-deadline",
        "unknown-deadline",
        pathway(
            rules=rule("event: appointment.attended", "cancels: [visit_late]"),
            deadlines=deadline("after: 7d\ncancelled_by: {event: appointment.attended}\n" + NOTIFY),
        ),
        "rules[0].cancels[0]",
        "visit_late",
        "'visit_late' is not one of this pathway's deadlines; did you mean 'visit_overdue'?",
    ),
    Case(
        "deadline-never-cancelled",
        "deadline-never-cancelled",
        pathway(deadlines=deadline("after: 7d\n" + NOTIFY)),
        "deadlines[0]",
        "id: visit_overdue",
        "nothing cancels this deadline, so it always fires: say what event means it was met "
        "('cancelled_by: {event: ...}')",
    ),
    Case(
        "deadline-never-cancelled-contradiction",
        "deadline-never-cancelled",
        pathway(
            deadlines=deadline(
                "after: 7d\ncancelled_by:\n  event: appointment.attended\n"
                "  kind: {in: [follow_up], not_in: [follow_up]}\n" + NOTIFY
            )
        ),
        "deadlines[0].cancelled_by",
        "cancelled_by:",
        "these conditions contradict each other, so nothing can ever cancel this deadline",
    ),
    Case(
        "missing-acknowledgement-window",
        "missing-acknowledgement-window",
        pathway(escalations=CHAIN.replace("        acknowledge_within: 1h\n", "")),
        "escalations.red_flag.levels[0]",
        "role: cardiology_on_call",
        "say how long this level has to acknowledge before the next level: "
        "'acknowledge_within: 4h'",
    ),
    Case(
        "chain-without-final",
        "chain-without-final",
        pathway(escalations=CHAIN.replace("final: true", "acknowledge_within: 4h")),
        "escalations.red_flag.levels[1]",
        "role: medical_director",
        "escalation chain 'red_flag' has no final level: mark its last level 'final: true' "
        "(who holds it when nobody acknowledges?)",
    ),
    Case(
        "final-not-last",
        "final-not-last",
        pathway(escalations=CHAIN.replace("acknowledge_within: 1h", "final: true")),
        "escalations.red_flag.levels[0]",
        "role: cardiology_on_call",
        "a level marked final must be the last: the levels after it could never be reached",
    ),
    Case(
        "final-level-window",
        "final-level-window",
        pathway(escalations=CHAIN + "        acknowledge_within: 4h\n"),
        "escalations.red_flag.levels[1].acknowledge_within",
        "acknowledge_within: 4h",
        "the final level has no next level to escalate to: remove 'acknowledge_within' or add "
        "a level after it",
    ),
    Case(
        "bad-exit-neither",
        "bad-exit",
        pathway(exit="exit:\n  - reason: completed\n"),
        "exit[0]",
        "reason: completed",
        "an exit needs exactly one of 'when: {event: ...}' or 'after: <duration after enrolment>'",
    ),
    Case(
        "bad-exit-both",
        "bad-exit",
        pathway(exit=DECEASED + "    after: 30d\n"),
        "exit[0]",
        "reason: deceased",
        "an exit needs exactly one of ...",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_mistake_is_reported_with_its_code_place_and_message(case: Case) -> None:
    pathway_, problems = load_text("pathway.yaml", case.text)

    assert pathway_ is None
    assert sorted(p.code for p in problems) == sorted([case.code, *case.also])
    found = [p for p in problems if (p.code, p.location) == (case.code, case.location)]
    assert len(found) == 1, [p.render() for p in problems]
    (problem,) = found
    if case.message.endswith("..."):
        assert problem.message.startswith(case.message[:-3])
    else:
        assert problem.message == case.message
    line, column = position(case.text, case.at) if case.at is not None else (1, 1)
    assert problem.line == line
    if case.column:
        assert problem.column == column
    assert problem.file == "pathway.yaml"


def test_every_code_has_a_case() -> None:
    assert {c.code for c in CASES} | FILE_CODES == CODES


def test_the_loader_reports_no_code_missing_from_the_list() -> None:
    """Codes are string literals such as "bad-value" in engine/definition; all must be known."""
    written = set()
    for module in (ROOT / "engine" / "definition").glob("*.py"):
        written |= set(re.findall(r'"([a-z]+(?:-[a-z]+)+)"', module.read_text(encoding="utf-8")))
    assert written == CODES


def test_every_code_is_explained_in_the_guide() -> None:
    """docs/pathway-language.md section 4 explains each code as **`code`**, for clinical leads."""
    guide = (ROOT / "docs" / "pathway-language.md").read_text(encoding="utf-8")
    explained = guide[guide.index("## 4. Error codes") :]
    assert {code for code in CODES if f"**`{code}`**" not in explained} == set()


def test_the_minimal_pathway_loads() -> None:
    """The base every case changes is itself valid, so each case's problems are its own."""
    loaded, problems = load_text("pathway.yaml", pathway())
    assert problems == []
    assert loaded is not None
    assert [t.id for t in loaded.triggers] == ["discharged"]
