"""Every operator at its boundaries: the compiled rule book answers as conditions.evaluate does.

Each row is (operator, condition value, fact value or ABSENT, expected). The expected column is
checked against the reference semantics too, so the table pins both.
"""

from __future__ import annotations

import math
from functools import cache

import pytest

from engine.definition.conditions import All, Any, Compare, Condition, Not, Op, Value, evaluate
from rules import RuleBook, RuleSpec

ABSENT = object()
EVENT = "observation.test"

CASES: list[tuple[Op, Value, object, bool]] = [
    # eq: numbers compare by value across int/float/bool, never with strings
    (Op.EQ, 5, 5, True),
    (Op.EQ, 5, 5.0, True),
    (Op.EQ, 5, 4.999, False),
    (Op.EQ, 5, 5.000001, False),
    (Op.EQ, 5, "5", False),
    (Op.EQ, "5", 5, False),
    (Op.EQ, 1, True, True),
    (Op.EQ, 0, False, True),
    (Op.EQ, True, 1, True),
    (Op.EQ, True, 1.0, True),
    (Op.EQ, False, True, False),
    (Op.EQ, 2.5, 2.5, True),
    (Op.EQ, -0.0, 0, True),
    (Op.EQ, "I50", "I50", True),
    (Op.EQ, "I50", "I50.1", False),
    (Op.EQ, "I50", "i50", False),
    (Op.EQ, "", "", True),
    (Op.EQ, 'a"b\\c', 'a"b\\c', True),
    (Op.EQ, "é", "é", True),
    (Op.EQ, "true", True, False),
    (Op.EQ, 5, ABSENT, False),
    (Op.EQ, 5, None, False),
    (Op.EQ, 5, [5], False),
    (Op.EQ, ("a",), "a", False),
    (Op.EQ, 5, math.nan, False),
    (Op.EQ, 9007199254740992, 9007199254740993, False),
    # ne: true for any present scalar that differs, false for absent and containers
    (Op.NE, 5, 5, False),
    (Op.NE, 5, 5.0, False),
    (Op.NE, 5, 6, True),
    (Op.NE, 5, "5", True),
    (Op.NE, "a", "b", True),
    (Op.NE, "a", "a", False),
    (Op.NE, True, 1, False),
    (Op.NE, True, False, True),
    (Op.NE, 5, ABSENT, False),
    (Op.NE, 5, [5], False),
    (Op.NE, 5, {}, False),
    (Op.NE, 5, math.nan, True),
    (Op.NE, 5, math.inf, True),
    (Op.NE, ("a",), "a", True),
    # lt / le / gt / ge: numbers only (booleans and strings are never ordered)
    (Op.LT, 5, 4.999, True),
    (Op.LT, 5, 5, False),
    (Op.LT, 5, 5.0, False),
    (Op.LT, 5, 5.001, False),
    (Op.LT, 5, -math.inf, True),
    (Op.LT, 5, math.inf, False),
    (Op.LT, 5, -(2**60), True),
    (Op.LT, 5, 2**60, False),
    (Op.LT, 5, True, False),
    (Op.LT, 5, "4", False),
    (Op.LT, True, 0, False),
    (Op.LT, "b", "a", False),
    (Op.LT, 5, ABSENT, False),
    (Op.LT, 5, math.nan, False),
    (Op.LT, 1e-05, 9.99e-06, True),
    (Op.LT, 1e-05, 1e-05, False),
    (Op.LE, 5, 5, True),
    (Op.LE, 5, 5.0, True),
    (Op.LE, 5, 5.0000001, False),
    (Op.LE, 5, 4, True),
    (Op.LE, 0, -0.0, True),
    (Op.LE, 1e-05, 1e-05, True),
    (Op.LE, 1e-05, math.nextafter(1e-05, 1), False),
    (Op.LT, 1e-05, math.nextafter(1e-05, 0), True),
    (Op.GT, 2.0, 2.0, False),
    (Op.GT, 2.0, 2.0000001, True),
    (Op.GT, 2, 3, True),
    (Op.GT, 2, "3", False),
    (Op.GT, 2, math.inf, True),
    (Op.GT, 2, 2**60, True),
    (Op.GT, 9007199254740992, 9007199254740993, True),
    (Op.GE, 1.0, 1.0, True),
    (Op.GE, 1.0, 1, True),
    (Op.GE, 1.0, 0.9999999, False),
    (Op.GE, 1, True, False),
    (Op.GE, 1e-05, 1e-05, True),
    (Op.GE, 1e-05, math.nextafter(1e-05, 0), False),
    (Op.EQ, 1e-05, math.nextafter(1e-05, 1), False),
    (Op.EQ, 1e-05, 1e-05, True),
    (Op.IN, (5e-07, 2), 5e-07, True),
    (Op.GE, -2.5, -2.5, True),
    # in / not_in: equality with any / none of the alternatives; containers never
    (Op.IN, ("a", "b"), "a", True),
    (Op.IN, ("a", "b"), "c", False),
    (Op.IN, (1, 2), 1.0, True),
    (Op.IN, (1,), True, True),
    (Op.IN, (True,), 1, True),
    (Op.IN, (0,), False, True),
    (Op.IN, ("1",), 1, False),
    (Op.IN, (), "a", False),
    (Op.IN, ("a",), ["a"], False),
    (Op.IN, ("a",), ABSENT, False),
    (Op.IN, "a", "a", True),
    (Op.NOT_IN, ("a", "b"), "a", False),
    (Op.NOT_IN, ("a", "b"), "c", True),
    (Op.NOT_IN, (1,), 2, True),
    (Op.NOT_IN, (1,), True, False),
    (Op.NOT_IN, (), "a", True),
    (Op.NOT_IN, ("a",), ABSENT, False),
    (Op.NOT_IN, ("a",), ["x"], False),
    (Op.NOT_IN, (1,), math.nan, True),
    # prefix: a string starting with any alternative (no regex: dots are dots)
    (Op.PREFIX, ("I50",), "I50", True),
    (Op.PREFIX, ("I50",), "I50.9", True),
    (Op.PREFIX, ("I50",), "I5", False),
    (Op.PREFIX, ("I50",), "XI50", False),
    (Op.PREFIX, ("E11.6",), "E11.61", True),
    (Op.PREFIX, ("E11.6",), "E1106", False),
    (Op.PREFIX, ("a.*",), "abc", False),
    (Op.PREFIX, ("a.*",), "a.*b", True),
    (Op.PREFIX, ("I50", "E11"), "E11.9", True),
    (Op.PREFIX, ("",), "abc", True),
    (Op.PREFIX, ("",), "", True),
    (Op.PREFIX, (), "x", False),
    (Op.PREFIX, ("I50",), ["I50"], False),
    (Op.PREFIX, ("I50",), 150, False),
    (Op.PREFIX, (5,), "5x", True),
    (Op.PREFIX, ("é",), "éa", True),
    # includes / excludes: list membership; a non-list is false for both
    (Op.INCLUDES, ("I50",), ["A", "I50"], True),
    (Op.INCLUDES, ("I50",), ["I50.1"], False),
    (Op.INCLUDES, ("I50",), [], False),
    (Op.INCLUDES, ("I50",), "I50", False),
    (Op.INCLUDES, ("I50",), ABSENT, False),
    (Op.INCLUDES, (1,), [True], True),
    (Op.INCLUDES, (1,), [1.0], True),
    (Op.INCLUDES, ("1",), [1], False),
    (Op.INCLUDES, (), ["a"], False),
    (Op.INCLUDES, ("a",), ("a",), True),
    (Op.EXCLUDES, ("I50",), ["A"], True),
    (Op.EXCLUDES, ("I50",), ["I50"], False),
    (Op.EXCLUDES, ("I50",), [], True),
    (Op.EXCLUDES, ("I50",), "x", False),
    (Op.EXCLUDES, ("I50",), ABSENT, False),
    (Op.EXCLUDES, (), [], True),
    (Op.EXCLUDES, ("a", 1), ["b", 2], True),
    (Op.EXCLUDES, ("a", 1), ["b", True], False),
    (Op.EXCLUDES, ("a",), [None, ["a"], {"a": 1}], True),
    # includes_prefix: some string item starts with an alternative
    (Op.INCLUDES_PREFIX, ("I50",), ["I50.1"], True),
    (Op.INCLUDES_PREFIX, ("I50",), ["I5"], False),
    (Op.INCLUDES_PREFIX, ("I50", "E11.6"), ["Z00", "E11.61"], True),
    (Op.INCLUDES_PREFIX, ("E11.6",), ["E1166"], False),
    (Op.INCLUDES_PREFIX, ("",), ["x"], True),
    (Op.INCLUDES_PREFIX, ("",), [], False),
    (Op.INCLUDES_PREFIX, ("",), [1], False),
    (Op.INCLUDES_PREFIX, ("I50",), [150], False),
    (Op.INCLUDES_PREFIX, ("I50",), "I50", False),
    (Op.INCLUDES_PREFIX, ("I50",), ABSENT, False),
]


@cache
def book_for(op: Op, value: Value) -> RuleBook:
    compare = Compare("x", op, value)
    return RuleBook(
        name=f"ops-{op}",
        rules=[RuleSpec("holds", EVENT, compare), RuleSpec("fails", EVENT, Not(compare))],
    )


def _facts(actual: object) -> dict[str, object]:
    return {} if actual is ABSENT else {"x": actual, "unrelated": 1}


@pytest.mark.parametrize(("op", "value", "actual", "expected"), CASES)
def test_operator_at_boundary(op: Op, value: Value, actual: object, expected: bool) -> None:
    facts = _facts(actual)
    assert evaluate(Compare("x", op, value), facts) is expected  # the table is the reference's
    want = ("holds",) if expected else ("fails",)
    assert book_for(op, value).evaluate(EVENT, facts) == want


def test_every_operator_has_cases() -> None:
    assert {op for op, *_ in CASES} == set(Op)


A = Compare("a", Op.GE, 2)
B = Compare("b", Op.EQ, "yes")
C = Compare("c", Op.INCLUDES, ("x",))

NESTED: list[tuple[str, Condition]] = [
    ("all", All((A, B, C))),
    ("any", Any((A, B, C))),
    ("not_all", Not(All((A, B)))),
    ("not_any", Not(Any((A, B)))),
    ("not_not", Not(Not(A))),
    ("mixed", All((Any((A, Not(B))), Not(Any((C, Not(A))))))),
    ("deep", Not(All((Not(Any((A, Not(All((B, C)))))), Any((Not(C), B)))))),
    ("empty_all", All(())),
    ("empty_any", Any(())),
    ("not_empty_any", Not(Any(()))),
]

FACT_SETS: list[dict[str, object]] = [
    {},
    {"a": 2},
    {"a": 1.99, "b": "yes"},
    {"a": 2.0, "b": "yes", "c": ["x"]},
    {"a": "2", "b": "no", "c": []},
    {"b": "yes", "c": ["y", "x"]},
    {"a": None, "b": None, "c": None},
    {"a": True, "b": ["yes"], "c": "x"},
]


@pytest.fixture(scope="module")
def nested_book() -> RuleBook:
    return RuleBook(name="nested", rules=[RuleSpec(i, EVENT, c) for i, c in NESTED])


@pytest.mark.parametrize("facts", FACT_SETS, ids=[str(sorted(f.items())) for f in FACT_SETS])
def test_nested_all_any_not_with_absent_facts(
    nested_book: RuleBook, facts: dict[str, object]
) -> None:
    want = tuple(i for i, c in NESTED if evaluate(c, facts))
    assert nested_book.evaluate(EVENT, facts) == want
