"""Conditions as data: the resolved form a pathway's `when` clauses compile to.

A clinical lead writes conditions in YAML (see docs/pathway-language.md); the loader resolves
parameters and units and produces this small tree. Nothing here is ever evaluated with `eval`:
`rules/` compiles the tree into durable-rules rulesets, and `evaluate` below is the reference
semantics the compiled rulesets are tested against.

    Condition := All(items) | Any(items) | Not(item) | Compare(fact, op, value)

Facts are flat names in one self-contained message (``disposition``, ``diagnoses``,
``weight_gain_24h_kg``, ``days_since_enrolment``). A fact that is absent from the message makes
every comparison on it false (and ``Not`` of that comparison true).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

Scalar: TypeAlias = str | int | float | bool
Value: TypeAlias = Scalar | tuple[Scalar, ...]


class Op(StrEnum):
    """Comparison operators. The YAML words are in brackets."""

    EQ = "eq"  # equals
    NE = "ne"  # not_equals
    LT = "lt"  # less_than (exclusive)
    LE = "le"  # at_most (inclusive)
    GT = "gt"  # more_than (exclusive)
    GE = "ge"  # at_least (inclusive)
    IN = "in"  # in: scalar fact equals one of the values
    NOT_IN = "not_in"  # not_in: scalar fact equals none of the values
    PREFIX = "prefix"  # starts_with: scalar string fact starts with one of the values
    INCLUDES = "includes"  # includes: list fact has an element equal to one of the values
    EXCLUDES = "excludes"  # excludes: list fact has no element equal to any of the values
    INCLUDES_PREFIX = "includes_prefix"  # list fact has an element starting with one of the values


#: Operators whose value is a tuple of alternatives.
MULTI_VALUE_OPS = frozenset(
    {Op.IN, Op.NOT_IN, Op.PREFIX, Op.INCLUDES, Op.EXCLUDES, Op.INCLUDES_PREFIX}
)


@dataclass(frozen=True, slots=True)
class Compare:
    fact: str
    op: Op
    value: Value


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Any:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


Condition: TypeAlias = Compare | All | Any | Not

TRUE: Condition = All(())


def facts_used(condition: Condition) -> frozenset[str]:
    """Every fact name the condition reads."""
    match condition:
        case Compare(fact=fact):
            return frozenset({fact})
        case All(items=items) | Any(items=items):
            out: frozenset[str] = frozenset()
            for item in items:
                out |= facts_used(item)
            return out
        case Not(item=item):
            return facts_used(item)
    raise TypeError(f"not a condition: {condition!r}")


def evaluate(condition: Condition, facts: Mapping[str, object]) -> bool:
    """Reference semantics of a condition over one message's facts."""
    match condition:
        case All(items=items):
            return all(evaluate(item, facts) for item in items)
        case Any(items=items):
            return any(evaluate(item, facts) for item in items)
        case Not(item=item):
            return not evaluate(item, facts)
        case Compare(fact=fact, op=op, value=value):
            if fact not in facts or facts[fact] is None:
                return False
            return _compare(facts[fact], op, value)
    raise TypeError(f"not a condition: {condition!r}")


def _compare(actual: object, op: Op, value: Value) -> bool:
    alternatives = value if isinstance(value, tuple) else (value,)
    if op in (Op.INCLUDES, Op.EXCLUDES, Op.INCLUDES_PREFIX):
        if not isinstance(actual, (list, tuple)):
            return False
        if op is Op.INCLUDES:
            return any(item in alternatives for item in actual)
        if op is Op.EXCLUDES:
            return not any(item in alternatives for item in actual)
        return any(
            isinstance(item, str) and any(item.startswith(str(p)) for p in alternatives)
            for item in actual
        )
    if isinstance(actual, (list, tuple, dict)):
        return False
    if op is Op.IN:
        return actual in alternatives
    if op is Op.NOT_IN:
        return actual not in alternatives
    if op is Op.PREFIX:
        return isinstance(actual, str) and any(actual.startswith(str(p)) for p in alternatives)
    if op is Op.EQ:
        return actual == value
    if op is Op.NE:
        return actual != value
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if op is Op.LT:
        return actual < value
    if op is Op.LE:
        return actual <= value
    if op is Op.GT:
        return actual > value
    return actual >= value  # Op.GE
