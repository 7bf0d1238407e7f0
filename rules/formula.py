"""Formulas over message slots: the negation-free form conditions are compiled to before JSON.

durable-rules has no `not` inside a message test, and a test on a missing property is simply
false, so the compiler never negates a durable-rules test directly. It builds formulas from:

    Cmp(slot, op, value)           one comparison; only ever used where `slot` is present and
                                   holds a value of `value`'s kind (number or string), so that its
                                   negation is the comparison with the opposite operator
    Quant(kind, slot, count, p)    "some" / "every" item of a list slot satisfies p (a formula
                                   over the item, slot "$i"); `count` is the slot holding the
                                   list's length. durable-rules' `$iall` is false on an empty
                                   list, so "every" is written (count == 0 or "all"), where
                                   "all" is the bare `$iall` (never negated)
    And(items) / Or(items)

`negate` pushes a negation down to the leaves (De Morgan, eq<->ne, lt<->ge, le<->gt,
some<->every), which is exact under the guard discipline above. `to_json` gives the
durable-rules expression (what `durable.lang`'s `value.define()` produces).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

Const: TypeAlias = str | int | float
Json: TypeAlias = dict[str, object]

_NEGATED = {"eq": "ne", "ne": "eq", "lt": "ge", "ge": "lt", "le": "gt", "gt": "le"}
_OPERATOR = {"ne": "$neq", "lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}


@dataclass(frozen=True, slots=True)
class Cmp:
    slot: str
    op: str  # eq ne lt le gt ge
    value: Const


@dataclass(frozen=True, slots=True)
class Quant:
    kind: str  # some | every | all
    slot: str
    count: str
    pred: Formula


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Formula, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Formula, ...]


Formula: TypeAlias = Cmp | Quant | And | Or

TRUE: Formula = And(())
FALSE: Formula = Or(())


def conj(items: list[Formula] | tuple[Formula, ...]) -> Formula:
    """And, flattened, without TRUE, FALSE if any item is FALSE, duplicates dropped."""
    out: list[Formula] = []
    for item in items:
        parts = item.items if isinstance(item, And) else (item,)
        for part in parts:
            if part == FALSE:
                return FALSE
            if part not in out:
                out.append(part)
    return out[0] if len(out) == 1 else And(tuple(out))


def disj(items: list[Formula] | tuple[Formula, ...]) -> Formula:
    """Or, flattened, without FALSE, TRUE if any item is TRUE, duplicates dropped."""
    out: list[Formula] = []
    for item in items:
        parts = item.items if isinstance(item, Or) else (item,)
        for part in parts:
            if part == TRUE:
                return TRUE
            if part not in out:
                out.append(part)
    return out[0] if len(out) == 1 else Or(tuple(out))


def negate(formula: Formula) -> Formula:
    match formula:
        case Cmp(slot=slot, op=op, value=value):
            return Cmp(slot, _NEGATED[op], value)
        case Quant(kind="some", slot=slot, count=count, pred=pred):
            return Quant("every", slot, count, negate(pred))
        case Quant(kind="every", slot=slot, count=count, pred=pred):
            return Quant("some", slot, count, negate(pred))
        case And(items=items):
            return disj([negate(item) for item in items])
        case Or(items=items):
            return conj([negate(item) for item in items])
    raise TypeError(f"not a formula: {formula!r}")


def number(slot: str, op: str, value: int | float) -> Formula:
    """`slot op value` for a finite number, written so that durable-rules can parse the value.

    durable-rules' JSON reader only accepts an exponent after a fraction ("1.0e-05", not the
    "1e-05" that Python's json writes for small floats), so such a threshold is replaced by its
    neighbouring doubles, which compare the same way against every double:
    x < t  <=>  x <= prev(t);  x <= t  <=>  x < next(t);  x == t  <=>  prev(t) < x < next(t).
    """
    if isinstance(value, int) or _parsable(value):
        return Cmp(slot, op, value)
    below, above = math.nextafter(value, -math.inf), math.nextafter(value, math.inf)
    if not (_parsable(below) and _parsable(above)):  # pragma: no cover - neighbours have 17 digits
        raise ValueError(f"cannot write {value!r} for durable-rules")
    match op:
        case "lt":
            return Cmp(slot, "le", below)
        case "le":
            return Cmp(slot, "lt", above)
        case "gt":
            return Cmp(slot, "ge", above)
        case "ge":
            return Cmp(slot, "gt", below)
        case "eq":
            return And((Cmp(slot, "gt", below), Cmp(slot, "lt", above)))
        case "ne":
            return Or((Cmp(slot, "le", below), Cmp(slot, "ge", above)))
    raise ValueError(f"unknown operator {op!r}")


def _parsable(value: float) -> bool:
    text = repr(value)
    return "e" not in text or "." in text


def expand_every(quant: Quant) -> Or:
    """Every item satisfies p: the list is empty, or (non-empty and) `$iall` holds."""
    return Or((Cmp(quant.count, "eq", 0), Quant("all", quant.slot, quant.count, quant.pred)))


def expand_some(quant: Quant) -> Or:
    """Some item satisfies p1 or p2: some item satisfies p1, or some item satisfies p2.

    durable-rules must never see an `$or` inside `$iany`/`$iall`: the join node an `$or` makes
    has an uninitialised field that rete.c reads right after building it (createAlpha), so such
    a ruleset is refused at random with error 102 (seen once in ~20,000 fuzzed rulesets).
    """
    assert isinstance(quant.pred, Or)
    return Or(tuple(Quant("some", quant.slot, quant.count, p) for p in quant.pred.items))


def to_json(formula: Formula) -> Json:
    """The durable-rules expression for a formula (TRUE and FALSE must have been folded away)."""
    match formula:
        case Cmp(slot=slot, op="eq", value=value):
            return {slot: value}
        case Cmp(slot=slot, op=op, value=value):
            return {_OPERATOR[op]: {slot: value}}
        case Quant(kind="some", pred=Or()):
            return to_json(expand_some(formula))
        case Quant(kind="some", slot=slot, pred=Cmp() as pred):
            return {"$iany": {slot: to_json(pred)}}
        case Quant(kind="every"):
            return to_json(expand_every(formula))
        case Quant(kind="all", slot=slot, pred=Cmp() | And() as pred):
            return {"$iall": {slot: to_json(pred)}}
        case And(items=items) if len(items) > 1:
            return {"$and": [to_json(item) for item in items]}
        case Or(items=items) if len(items) > 1:
            return {"$or": [to_json(item) for item in items]}
    raise ValueError(f"cannot express {formula!r} in durable-rules")


def connectives(expression: object) -> int:
    """How many $and/$or nodes an expression has (durable-rules allows 15 per rule)."""
    if isinstance(expression, dict):
        own = sum(1 for key in expression if key in ("$and", "$or"))
        return own + sum(connectives(value) for value in expression.values())
    if isinstance(expression, list):
        return sum(connectives(item) for item in expression)
    return 0
