"""Fuzz: random condition trees and random messages, the rule book against conditions.evaluate.

Conditions draw every operator with values from small pools that collide on purpose (1, 1.0,
True; "I50", "I50.1"; thresholds equal to fact values; floats durable-rules cannot read as
written, like 1e-05), over five facts that hold any kind of value: numbers, strings, booleans,
lists of strings (and mixed lists), None, NaN, infinities, huge ints, dicts, absent.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.definition.conditions import All, Any, Compare, Condition, Not, Op, evaluate
from rules import RuleBook, RuleSpec

FACTS = ["weight_gain_kg", "days", "code", "flag", "diagnoses"]
NUMBERS = [-1, 0, 1, 2, 5, 0.0, -0.0, 0.5, 1.0, 2.0, 2.5, -1.5, 1e-05, 1.5e-07]
STRINGS = ["", "I50", "I50.1", "I5", "E11.6", "E11.61", 'a"b', "é", "1", "True", "\\", "I50\\"]
scalars = st.sampled_from([*NUMBERS, *STRINGS, True, False])
values = st.one_of(scalars, st.lists(scalars, max_size=3).map(tuple))
compares = st.builds(Compare, st.sampled_from(FACTS), st.sampled_from(list(Op)), values)


def _trees(children: st.SearchStrategy[Condition]) -> st.SearchStrategy[Condition]:
    return st.one_of(
        st.lists(children, max_size=3).map(lambda items: All(tuple(items))),
        st.lists(children, max_size=3).map(lambda items: Any(tuple(items))),
        children.map(Not),
    )


conditions = st.recursive(compares, _trees, max_leaves=10)
odd_values = st.sampled_from(
    [math.nan, math.inf, -math.inf, 2**60, -(2**60), 2**53 + 1, {}, {"a": 1}, (), ("I50",)]
)
fact_values = st.one_of(
    st.none(),
    scalars,
    st.lists(st.sampled_from(STRINGS), max_size=4),
    st.lists(st.one_of(scalars, st.none()), max_size=4),
    odd_values,
)
messages = st.tuples(
    st.sampled_from(["a", "b", "c"]), st.dictionaries(st.sampled_from(FACTS), fact_values)
)
books = st.lists(st.tuples(st.sampled_from(["a", "b"]), conditions), min_size=1, max_size=6)


def assert_no_hazards(expression: object, in_list_test: bool = False) -> None:
    """Constructs durable-rules mishandles never appear in a compiled ruleset.

    `$nex`/`$ex` (a test for a missing property) hang or crash it; an `$or` inside
    `$iany`/`$iall` makes it read an uninitialised field (random error 102 at creation);
    `$mt` (regex) is not needed: prefixes are compared as truncated strings.
    """
    if isinstance(expression, dict):
        for key, value in expression.items():
            assert key not in ("$nex", "$ex", "$mt", "$imt")
            assert not (in_list_test and key == "$or")
            assert_no_hazards(value, in_list_test or key in ("$iany", "$iall"))
    elif isinstance(expression, list):
        for item in expression:
            assert_no_hazards(item, in_list_test)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books, st.lists(messages, min_size=1, max_size=8))
def test_rule_book_agrees_with_reference(
    rules: list[tuple[str, Condition]], inputs: list[tuple[str, dict[str, object]]]
) -> None:
    book = RuleBook(
        name="fuzz", rules=[RuleSpec(f"r{i}", et, c) for i, (et, c) in enumerate(rules)]
    )
    for rule in book.ruleset.values():
        assert_no_hazards(rule["all"][0]["m"])
    try:
        for event_type, facts in inputs:
            want = tuple(
                s.id
                for s in book.rules
                if s.event_type == event_type and evaluate(s.condition, facts)
            )
            assert book.evaluate(event_type, facts) == want
    finally:
        book.close()
