"""Any YAML either loads or yields a clean list of located problems: the loader never raises.

Two sources of input (STYLE 14): arbitrary documents (nested mappings, lists and scalars, dumped
as YAML, and arbitrary text), and random mutations of the shipped pathways (a key deleted,
renamed or given another value, a list item duplicated, a number changed, an event type or
action name replaced), optionally with random `--set` overrides. Inputs the fuzzers once broke
the loader with are kept as plain examples at the end.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path as FilePath
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.catalogue import ACTIONS, EVENT_MODELS
from engine.definition.loader import load_text
from engine.errors import Problem
from tests.definition.factory import ENROLMENT, HEAD, pathway
from tests.definition.test_problems import CODES

ROOT = FilePath(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "pathways").glob("*.y*ml"))
DOCUMENTS = {f.name: yaml.safe_load(f.read_text(encoding="utf-8")) for f in SHIPPED}
_BREAKS = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # what YAML counts as a line break

FAST = settings(
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_clean(text: str, overrides: dict[str, Any] | None = None) -> list[Problem]:
    """The property: a pathway and no problems, or no pathway and problems, each one located
    inside the file, with a known code and a message."""
    loaded, problems = load_text("fuzz.yaml", text, overrides)
    assert (loaded is None) == bool(problems)
    lines = len(_BREAKS.split(text))
    for problem in problems:
        assert problem.code in CODES, problem
        assert problem.file == "fuzz.yaml"
        assert 1 <= problem.line <= lines, problem
        assert problem.column >= 1, problem
        assert problem.message.strip(), problem
        assert len(_BREAKS.split(problem.render())) == 1, problem  # one line per problem
        assert isinstance(problem.location, str)
    assert [(p.line, p.column) for p in problems] == sorted((p.line, p.column) for p in problems)
    return problems


# -- the vocabulary random documents are made of ------------------------------------------------

WORDS = [
    *("id", "version", "title", "description", "owner", "parameters", "enrolment", "triggers"),
    *("one_active_per_patient", "rules", "deadlines", "escalations", "exit", "execution"),
    *("when", "unless", "then", "event", "missing", "for", "max_age", "if_stale", "cancels"),
    *("start", "after", "cancelled_by", "levels", "role", "acknowledge_within", "final"),
    *("reason", "action", "due", "only_if", "later_of", "earlier_of", "all", "any", "not"),
    *("over", "at_least", "more_than", "in", "includes", "starts_with", "excludes"),
    *("symptom", "diagnoses", "disposition", "weight_gain", "weight_kg", "iwgdf_risk", "kind"),
    *("chain", "urgent", "retries", "timeout", "retry_delay", "time_since_enrolment"),
    *("booked", "actions_fired", "gangrene", "infection"),
]
VALUES = [
    *EVENT_MODELS,
    *ACTIONS,
    *("care_coordinator", "hf_nurse", "medical_director", "follow_up", "chest_pain", "I50"),
    *("48h", "7d", "2 business days", "3 months", "60m", "1.5d", "1 kg", "2 lb", "1 stone"),
    *("$follow_up_within", "$nope", "$", "enrolment", "enrolment after event", "7d after event"),
    *("", " ", "06", "1.2.0", "chf-post-discharge"),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(VALUES),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
keys = st.one_of(
    st.sampled_from(WORDS), st.text(max_size=8), st.integers(-3, 3), st.booleans(), st.none()
)
structures = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)


def dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=None)


# -- (a) any document ---------------------------------------------------------------------------


@FAST
@given(structures)
def test_any_yaml_document_loads_or_gives_located_problems(document: Any) -> None:
    assert_clean(dump(document))


@FAST
@given(st.dictionaries(st.sampled_from(WORDS), structures, max_size=10))
def test_any_mapping_of_pathway_words_loads_or_gives_located_problems(document: Any) -> None:
    assert_clean(dump(document))


yaml_like_lines = st.lists(
    st.tuples(
        st.integers(0, 8),
        st.sampled_from(["", "- ", "? ", "  - "]),
        st.sampled_from(WORDS),
        st.sampled_from([": ", ":", " ", ": [", ": {", ": &a ", ": *a ", ": !!str ", ": |\n"]),
        st.one_of(st.sampled_from(VALUES), st.text(max_size=6)),
    ).map(lambda t: f"{' ' * t[0]}{t[1]}{t[2]}{t[3]}{t[4]}"),
    max_size=12,
).map("\n".join)


@FAST
@given(st.one_of(st.text(), yaml_like_lines))
def test_any_text_loads_or_gives_located_problems(text: str) -> None:
    assert_clean(text)


# -- (b) mutations of the shipped pathways ------------------------------------------------------


def places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in a document, the root first."""
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += places(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += places(value, (*path, i))
    return out


def at(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


@st.composite
def mutated(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(sorted(DOCUMENTS)))
    document = copy.deepcopy(DOCUMENTS[name])
    for _ in range(draw(st.integers(1, 3))):
        mutate(draw, document)
    return dump(document)


def mutate(draw: st.DrawFn, document: dict[str, Any]) -> None:
    """One random change, in place."""
    paths = places(document)[1:]
    candidates = {
        "delete": paths,
        "replace": paths,
        "rename": [p for p in paths if isinstance(p[-1], str)],
        "duplicate": [p for p in paths if isinstance(at(document, p), list) and at(document, p)],
        "number": [p for p in paths if _has_number(at(document, p))],
        "name": [p for p in paths if p[-1] in ("event", "action", "missing")],
    }
    kind = draw(st.sampled_from(sorted(k for k, found in candidates.items() if found)))
    path = draw(st.sampled_from(candidates[kind]))
    parent, key, value = at(document, path[:-1]), path[-1], at(document, path)
    if kind == "delete":
        del parent[key]
    elif kind == "replace":
        parent[key] = draw(structures)
    elif kind == "rename":
        new = draw(keys)
        if new not in parent:
            parent[new] = parent.pop(key)
    elif kind == "duplicate":
        value.insert(draw(st.integers(0, len(value))), copy.deepcopy(draw(st.sampled_from(value))))
    elif kind == "number":
        number = draw(st.one_of(st.integers(-5, 10**6), st.floats(-5, 1e6)))
        parent[key] = (
            re.sub(r"\d+(\.\d+)?", str(number), value, count=1)
            if isinstance(value, str)
            else number
        )
    else:  # an event type or an action name: a near miss, another one, or anything at all
        text = value if isinstance(value, str) else str(value)
        parent[key] = draw(
            st.one_of(
                st.sampled_from([text[:-1], text.upper(), f"{text}.x", f" {text}"]),
                st.sampled_from([*EVENT_MODELS, *ACTIONS]),
                st.text(max_size=20),
                scalars,
            )
        )


def _has_number(value: Any) -> bool:
    if isinstance(value, str):
        return bool(re.search(r"\d", value))
    return isinstance(value, (int, float)) and not isinstance(value, bool)


overrides = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(
            st.sampled_from(
                sorted({k for d in DOCUMENTS.values() for k in d.get("parameters", {})})
            ),
            st.text(max_size=8),
        ),
        structures,
        max_size=3,
    ),
)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_the_shipped_pathways_load_once_re_dumped(name: str) -> None:
    """The mutations start from documents that load: what breaks is what was changed."""
    assert assert_clean(dump(DOCUMENTS[name])) == []


@settings(FAST, max_examples=60)
@given(mutated(), overrides)
def test_any_mutation_of_a_shipped_pathway_loads_or_gives_located_problems(
    text: str, extra: dict[str, Any] | None
) -> None:
    assert_clean(text, extra)


# -- what the fuzzers found ---------------------------------------------------------------------

RULE = "rules:\n  - id: the_rule\n    when: {event: patient.transferred}\n"
NOTIFY = "    then:\n      - action: notify\n        role: care_coordinator\n"
DEADLINE = (
    "deadlines:\n  - id: late\n    after: 7d\n    cancelled_by: {event: appointment.attended}\n"
)
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "extra", "expected"),
    [
        pytest.param(
            pathway(rules=RULE + "    cancels: [[a, b]]\n" + NOTIFY, deadlines=DEADLINE + NOTIFY),
            None,
            [("bad-value", "rules[0].cancels[0]")],
            id="a-list-in-cancels",
        ),
        pytest.param(
            pathway(rules=RULE + "    cancels: 5\n" + NOTIFY, deadlines=DEADLINE + NOTIFY),
            None,
            [("bad-value", "rules[0].cancels")],
            id="cancels-not-a-list",
        ),
        pytest.param(
            pathway(
                rules=RULE + "    cancels: [late]\n" + NOTIFY,
                deadlines=DEADLINE.replace("id: late", "id: {a: 1}") + NOTIFY,
            ),
            None,
            [("unknown-deadline", "rules[0].cancels[0]"), ("bad-value", "deadlines[0].id")],
            id="a-mapping-as-a-deadline-id",
        ),
        pytest.param(
            pathway(deadlines=DEADLINE.replace("after: 7d", "start: {action: [notify]}") + NOTIFY),
            None,
            [("unknown-action", "deadlines[0].start.action")],
            id="a-list-as-a-start-action",
        ),
        pytest.param(
            pathway(deadlines=DEADLINE + "    then: 1\n"),
            None,
            [("bad-value", "deadlines[0].then")],
            id="then-not-a-list",
        ),
        pytest.param(
            pathway(enrolment=ENROLMENT + "          due: ''\n"),
            None,
            [("bad-duration", "enrolment.triggers[0].then[0].due")],
            id="an-empty-due",
        ),
        pytest.param(
            pathway(parameters="parameters: 5\n"),
            {"call_within": "2d"},
            [("bad-value", "parameters"), ("unknown-parameter", "parameters")],
            id="an-override-when-parameters-is-not-a-mapping",
        ),
        pytest.param(
            pathway(parameters="parameters:\n  codes: &codes [I50, *codes]\n"),
            None,
            [("yaml-syntax", "")],
            id="an-alias-inside-itself",
        ),
        pytest.param(LAUGHS, None, [("yaml-syntax", "")], id="a-billion-laughs"),
        pytest.param(
            "- null: 1\n  None: 2\n",
            None,
            [("not-a-pathway", ""), ("duplicate-key", "[0].None")],
            id="not-a-pathway-sorted-with-what-parsing-found",
        ),
        pytest.param(
            pathway(head=HEAD + "review_by: 2026-13-45\n"),
            None,
            [("unknown-key", "review_by")],
            id="a-date-that-does-not-exist",
        ),
        pytest.param(
            pathway(parameters="parameters:\n  threshold: !!float one\n"),
            None,
            [("yaml-syntax", "")],
            id="a-tag-its-value-does-not-fit",
        ),
    ],
)
def test_what_once_raised_now_gives_problems(
    text: str, extra: dict[str, Any] | None, expected: list[tuple[str, str]]
) -> None:
    assert [(p.code, p.location) for p in assert_clean(text, extra)] == expected


def test_a_value_written_over_several_lines_is_quoted_on_one() -> None:
    text = pathway(enrolment=ENROLMENT + "          due: |\n            7d\n            x\n")
    (problem,) = assert_clean(text)
    assert problem.message.startswith("'7d\\nx\\n' has an unknown unit 'd x'")


@pytest.mark.parametrize(
    ("text", "message", "at"),
    [
        (
            "a: &x [1, *x]\n",
            "not valid YAML: an alias (*name) refers to a mapping or list it is part of",
            (1, 4),
        ),
        ("a: !!int 0x\n", "not valid YAML: '0x' cannot be read as int", (1, 4)),
        (
            "a:\n  b: !!python/name:os.system\n",
            "not valid YAML: could not determine a "
            "constructor for the tag 'tag:yaml.org,2002:python/name:os.system'",
            (2, 6),
        ),
        (
            LAUGHS,
            "not valid YAML: the file expands to more than 100000 values through its "
            "aliases (*name)",
            None,
        ),
        (
            "id: x\ntitle: Heart\x01failure\n",
            "not valid YAML: unacceptable character #x0001: special characters are not allowed",
            (2, 13),
        ),
    ],
    ids=["alias-loop", "bad-tag-value", "unknown-tag", "billion-laughs", "control-character"],
)
def test_yaml_that_cannot_be_built_is_one_located_line(
    text: str, message: str, at: tuple[int, int] | None
) -> None:
    (problem,) = assert_clean(text)
    assert problem.code == "yaml-syntax"
    assert problem.message == message
    assert "\n" not in problem.render()
    if at is not None:
        assert (problem.line, problem.column) == at
