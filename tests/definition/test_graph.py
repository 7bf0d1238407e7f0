"""`mermaid()`: every part of every shipped pathway is drawn, readably, as well-formed Mermaid.

Well-formed is checked structurally here (every line a header, node, edge, subgraph or `end`;
labels quoted with no raw quote inside; every edge between defined nodes). The output of the
shipped pathways was also checked once with Mermaid's own parser (mermaid 12 under Node with
jsdom); that toolchain is 180 MB, so it is not a test dependency.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.catalogue import FactKind, event_facts
from engine.definition.conditions import TRUE, All, Any, Compare, Condition, Not, Op
from engine.definition.graph import describe, mermaid
from engine.definition.loader import load_pathway, load_text
from engine.definition.model import (
    ActionTemplate,
    Chain,
    Deadline,
    DeadlineStart,
    Exit,
    Level,
    Pathway,
    Rule,
    Trigger,
)
from engine.durations import parse_duration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [*sorted((ROOT / "pathways").glob("*.yaml")),
           *sorted((ROOT / "docs/examples").glob("*.yaml"))]

# -- a structural reading of Mermaid flowchart text -------------------------------------------

_ID = r"[A-Za-z][A-Za-z0-9_]*"
_LABEL = r'"(?P<label>[^"]*)"'
_SHAPES = {"([": "])", "[[": "]]", "{{": "}}", "[": "]", "{": "}"}  # opening -> closing
_NODE = re.compile(
    rf"^(?P<id>{_ID})(?P<open>\(\[|\[\[|\{{\{{|\[|\{{){_LABEL}(?P<close>[\]\)\}}]+)$"
)
_EDGE = re.compile(rf"^(?P<a>{_ID}) (?P<arrow>-->|-\.->)(?:\|{_LABEL}\|)? (?P<b>{_ID})$")
_SUBGRAPH = re.compile(rf"^subgraph (?P<id>{_ID})\[{_LABEL}\]$")
_ENTITIES = {"#quot;": '"', "#lt;": "<", "#gt;": ">", "#96;": "`", "#124;": "|", "#35;": "#"}


@dataclass
class Flowchart:
    nodes: dict[str, str] = field(default_factory=dict)  # id -> label (decoded)
    shapes: dict[str, str] = field(default_factory=dict)  # id -> raw shape text
    edges: list[tuple[str, str, str, bool]] = field(default_factory=list)  # a, b, label, dotted
    subgraphs: dict[str, str] = field(default_factory=dict)


def _decode(label: str) -> str:
    assert '"' not in label
    assert "<" not in label.replace("<br/>", "") and ">" not in label.replace("<br/>", ""), label
    for entity, char in _ENTITIES.items():
        label = label.replace(entity, char)
    return label.replace("<br/>", "\n")


def parse(text: str) -> Flowchart:
    """Read Mermaid text as nodes, edges and subgraphs, failing on any line that is none."""
    lines = text.split("\n")
    assert lines[0] == "flowchart TD"
    chart, depth = Flowchart(), 0
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        assert raw == raw.rstrip() and line, f"line {number}: blank or trailing space"
        assert line.count('"') % 2 == 0, f"line {number}: unbalanced quotes: {line}"
        if line == "end":
            depth -= 1
            assert depth >= 0, f"line {number}: 'end' without 'subgraph'"
        elif match := _SUBGRAPH.match(line):
            assert match["id"] not in chart.subgraphs and match["id"] not in chart.nodes
            chart.subgraphs[match["id"]] = _decode(match["label"])
            depth += 1
        elif (match := _NODE.match(line)) and _SHAPES[match["open"]] == match["close"]:
            assert match["id"] not in chart.nodes, f"line {number}: {match['id']} drawn twice"
            assert match["id"] != "end" and match["id"] not in chart.subgraphs
            chart.nodes[match["id"]] = _decode(match["label"])
            chart.shapes[match["id"]] = match["open"]
        elif match := _EDGE.match(line):
            label = _decode(match["label"]) if match["label"] is not None else ""
            chart.edges.append((match["a"], match["b"], label, match["arrow"] == "-.->"))
        else:
            raise AssertionError(f"line {number} is not Mermaid this drawing uses: {line!r}")
    assert depth == 0, "a subgraph is not closed"
    known = chart.nodes.keys() | chart.subgraphs.keys()
    for a, b, _, _ in chart.edges:
        assert a in known and b in known, f"edge {a} -> {b} names an undrawn node"
    return chart


def _labelled(chart: Flowchart, first_line: str) -> str:
    found = [n for n, label in chart.nodes.items() if label.split("\n")[0] == first_line]
    assert len(found) == 1, f"no single node headed {first_line!r}: {found}"
    return found[0]


# -- every shipped pathway, drawn whole ------------------------------------------------------


@pytest.fixture(params=SHIPPED, ids=lambda p: p.name)
def shipped(request: pytest.FixtureRequest) -> Pathway:
    return load_pathway(request.param)


def test_there_are_pathways_to_draw() -> None:
    assert len(SHIPPED) >= 2


def test_drawing_is_structurally_valid_and_deterministic(shipped: Pathway) -> None:
    text = mermaid(shipped)
    parse(text)
    assert mermaid(load_pathway(shipped.file)) == text


def test_drawing_has_every_trigger_rule_and_deadline(shipped: Pathway) -> None:
    chart = parse(mermaid(shipped))
    for item in (*shipped.triggers, *shipped.rules, *shipped.missing_data, *shipped.deadlines):
        node = _labelled(chart, item.id)
        actions = [b for a, b, _, _ in chart.edges if a == node and b != "enrolled"]
        if isinstance(item, Trigger):
            assert (node, "enrolled", "enrols", False) in chart.edges
            assert all(label == "on enrolment" for a, _, label, _ in chart.edges
                       if a == node and label != "enrols")
        if isinstance(item, Rule) and item.condition != TRUE:
            (test,) = actions  # event -> condition -> actions
            actions = [b for a, b, _, _ in chart.edges if a == test]
        assert len(actions) == len(item.actions), item.id
        for target, action in zip(actions, item.actions, strict=True):
            assert chart.nodes[target].startswith(action.type)
    for missing in shipped.missing_data:
        label = chart.nodes[_labelled(chart, missing.id)]
        assert f"no {missing.event_type} for {missing.silence.text}" in label
    for deadline in shipped.deadlines:
        assert f"if no {deadline.cancel_event}" in chart.nodes[_labelled(chart, deadline.id)]


def test_drawing_has_every_chain_level_in_order(shipped: Pathway) -> None:
    chart = parse(mermaid(shipped))
    for chain in shipped.chains.values():
        assert f"Escalation chain: {chain.name}" in chart.subgraphs.values()
        nodes = [_labelled(chart, f"{i}. {level.role}" + (" (final)" if i == len(chain.levels)
                                                          else ""))
                 for i, level in enumerate(chain.levels, start=1)]
        assert chart.shapes[nodes[-1]] == "[["  # the final level is drawn apart
        for (a, b), level in zip(itertools.pairwise(nodes), chain.levels, strict=False):
            assert level.acknowledge_within is not None
            assert (a, b, f"not acknowledged within {level.acknowledge_within.text}", False) \
                in chart.edges
        escalating = sum(1 for r in shipped.rules for a in r.actions
                         if a.type == "escalate" and a.params.get("chain") == chain.name)
        assert sum(1 for _, b, _, dotted in chart.edges if b == nodes[0] and dotted) == escalating


def test_drawing_has_every_exit(shipped: Pathway) -> None:
    chart = parse(mermaid(shipped))
    for exit_ in shipped.exits:
        node = _labelled(chart, f"exit: {exit_.reason}")
        how = f"on {exit_.event_type}" if exit_.event_type else "after enrolment"
        assert how in chart.nodes[node]
        assert len([a for a, *_ in chart.edges if a == node]) == len(exit_.actions)


def test_chf_reads_as_a_clinical_lead_would_say_it() -> None:
    chart = parse(mermaid(load_pathway(ROOT / "pathways/chf-post-discharge.yaml")))
    text = "\n".join([*chart.nodes.values(), *chart.subgraphs.values()])
    for phrase in (
        "if diagnoses starts with I50 or includes 84114007, 42343007 or 88805009",
        "unless disposition is 02, 03, 20, 50 or 51",
        "outreach_call (care_coordinator) due 2 business days",
        "schedule_home_visit due 48h\nonly if disposition = 06",
        "book_follow_up (care_coordinator) due later of 7d after enrolment and 3d after "
        "appointment.missed",
        "weight_gain over 24h ≥ 1.0 kg",
        "weight_gain over 7d ≥ 2.0 kg",
        "symptom is dyspnea_at_rest, chest_pain or syncope",
        "no observation.weight for 48h",
        "if no appointment.booked [kind = follow_up] by 5d after enrolment",
        "escalate via chain red_flag\nreason: red_flag_symptom, urgent",
        "exit: completed\n30d after enrolment",
        "3. medical_director (final)",
    ):
        assert phrase in text


# -- conditions in words -------------------------------------------------------------------------

WEIGHT = {n: spec.kind for n, spec in event_facts("observation.weight", enrolled=True).items()}
CODES = ("84114007", "42343007", "88805009")


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        (Compare("kind", Op.EQ, "follow_up"), "kind = follow_up"),
        (Compare("kind", Op.NE, "follow_up"), "kind ≠ follow_up"),
        (Compare("weight_gain_86400s", Op.GE, 1.0), "weight_gain over 24h ≥ 1.0 kg"),
        (Compare("weight_gain_604800s", Op.GT, 2.5), "weight_gain over 7d > 2.5 kg"),
        (Compare("weight_gain_7200s", Op.LT, 0.90718474), "weight_gain over 2h < 0.907185 kg"),
        (Compare("weight_kg", Op.LE, 80), "weight_kg ≤ 80.0 kg"),
        (Compare("time_since_enrolment", Op.GE, 259200), "time_since_enrolment ≥ 3d"),
        (Compare("time_since_enrolment", Op.LT, 5400), "time_since_enrolment < 90min"),
        (Compare("time_since_enrolment", Op.LT, 86400), "time_since_enrolment < 24h"),
        (Compare("active_ulcer", Op.EQ, True), "active_ulcer = true"),
        (Any((Compare("diagnoses", Op.INCLUDES_PREFIX, ("I50",)),
              Compare("diagnoses", Op.INCLUDES, CODES))),
         "diagnoses starts with I50 or includes 84114007, 42343007 or 88805009"),
        (Compare("disposition", Op.NOT_IN, ("02", "20")), "disposition is none of 02 or 20"),
        (Compare("actions_fired", Op.EXCLUDES, ("refer_podiatry",)),
         "actions_fired does not include refer_podiatry"),
        (Compare("code", Op.PREFIX, tuple(f"E{n:02}" for n in range(10))),
         "code starts with E00, E01, E02, E03, E04, E05, E06, E07 … (2 more)"),
        (Not(Compare("symptom", Op.IN, ("chest_pain", "syncope"))),
         "not (symptom is chest_pain or syncope)"),
        (All((Compare("iwgdf_risk", Op.GE, 2),
              Any((Compare("ischemia", Op.EQ, True), Compare("gangrene", Op.EQ, True))))),
         "iwgdf_risk ≥ 2 and (ischemia = true or gangrene = true)"),
        (Any((All((Compare("a", Op.EQ, 1), Compare("b", Op.EQ, 2))), Compare("c", Op.EQ, 3))),
         "(a = 1 and b = 2) or c = 3"),
        (TRUE, "always"),
    ],
)
def test_describe(condition: Condition, words: str) -> None:
    kinds = {**WEIGHT, "time_since_enrolment": FactKind.DURATION}
    assert describe(condition, kinds) == words


# -- whatever the names and text, the Mermaid stays well-formed ----------------------------------

AWKWARD = 'St "Mary" (north) [ward 3] {b} <i>x</i> #1; a|b `c`'


def _action(kind: str = "notify", **params: str) -> ActionTemplate:
    return ActionTemplate(kind, params or {"role": "care_coordinator"})


def test_awkward_text_is_escaped_and_reads_back() -> None:
    text = (ROOT / "docs/examples/wound-check.yaml").read_text(encoding="utf-8")
    text = text.replace("title: Post-operative wound check",
                        "title: '" + AWKWARD.replace("'", "''") + "'")
    text = text.replace("diagnoses: {starts_with: $aftercare_codes}",
                        "diagnoses: {starts_with: $aftercare_codes}\n"
                        "        facility: {not_equals: '" + AWKWARD + "'}")
    pathway, problems = load_text("awkward.yaml", text)
    assert problems == []
    assert pathway is not None
    chart = parse(mermaid(pathway))
    assert chart.nodes["pathway"] == f"{AWKWARD}\npost-op-wound-check@1"
    assert f"facility ≠ {AWKWARD}" in chart.nodes["trigger_surgical_discharge"]


def test_odd_ids_become_valid_distinct_node_ids() -> None:
    hours = parse_duration("4h")
    rules = tuple(
        Rule(rule_id, "symptom.reported", TRUE, (_action(),))
        for rule_id in ("a-b", "a_b", "a b", "2nd (rule)", "", "end", "x--o", "o")
    )
    pathway = Pathway(
        id="odd", version="1", title="Odd", description="", owner="", parameters={},
        triggers=(Trigger("t[1]", "encounter.discharged", TRUE, None, ()),),
        rules=rules, missing_data=(),
        deadlines=(Deadline("d{1}", DeadlineStart.ACTION, None, "appointment.booked", TRUE,
                            (_action(),), start_action="book_follow_up"),),
        chains={"c-1": Chain("c-1", (Level("hf_nurse", hours), Level("medical_director", None)))},
        exits=(Exit("end", None, TRUE, parse_duration("30d"), ()),
               Exit("end\"2", "patient.deceased", TRUE, None, (_action(),))),
    )
    chart = parse(mermaid(pathway))
    assert len(chart.nodes) == 2 + 1 + 2 * len(rules) + 2 + 2 + 3
    labels = "\n".join(chart.nodes.values())
    for rule in rules:
        assert f"{rule.id}\non symptom.reported" in labels
    assert "d{1}\nif no appointment.booked by the time book_follow_up is due" in labels
    assert 'exit: end"2\non patient.deceased' in labels
