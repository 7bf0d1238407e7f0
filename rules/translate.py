"""One condition -> one negation-free formula over typed slots, equal to `conditions.evaluate`.

Each comparison is first written as a case table: for every tag (the kind of the fact's value,
see `rules.encoding`) the formula that decides it under that tag, or a constant. Tags partition
every possible value, so the comparison is

    OR over tags T of  (t == T  and  case[T])         and its negation is the same with not case[T]

where `not case[T]` is exact because under T every slot case[T] reads is present and typed.
`Not` therefore never reaches durable-rules: it is pushed to the case tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from engine.definition.conditions import All, Any, Compare, Condition, Not, Op
from rules import encoding as enc
from rules.formula import FALSE, TRUE, And, Cmp, Formula, Or, Quant, conj, disj, negate, number

Table = dict[str, Formula]
T = TypeVar("T")
_ORDER = {"lt": "lt", "le": "le", "gt": "gt", "ge": "ge"}


class Untranslatable(Exception):
    """A value durable-rules cannot compare faithfully (the compiler names the rule)."""


class FactSlots:
    """The slots of one fact, recording which ones the rules read (becomes a FactPlan)."""

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.number = self.string = self.list_count = self.list_strings = self.list_numbers = False
        self.prefixes: set[int] = set()
        self.list_prefixes: set[int] = set()

    def plan(self) -> enc.FactPlan:
        return enc.FactPlan(
            name=self.name,
            index=self.index,
            number=self.number,
            string=self.string,
            prefixes=tuple(sorted(self.prefixes)),
            list_count=self.list_count,
            list_strings=self.list_strings,
            list_prefixes=tuple(sorted(self.list_prefixes)),
            list_numbers=self.list_numbers,
        )

    # -- slot names, each marking the slot as needed ---------------------------------------
    def tag(self) -> str:
        return enc.tag_slot(self.index)

    def q(self) -> str:
        self.number = True
        return enc.number_slot(self.index)

    def s(self) -> str:
        self.string = True
        return enc.string_slot(self.index)

    def s_prefix(self, length: int) -> str:
        self.prefixes.add(length)
        return enc.prefix_slot(self.index, length)

    def cs(self) -> str:
        self.list_count = True
        return enc.list_count_slot(self.index)

    def ls(self) -> tuple[str, str]:
        self.list_strings = True
        return enc.list_strings_slot(self.index), enc.list_count_slot(self.index)

    def lp(self, length: int) -> tuple[str, str]:
        self.list_prefixes.add(length)
        return enc.list_prefix_slot(self.index, length), enc.list_count_slot(self.index)

    def lq(self) -> tuple[str, str]:
        self.list_numbers = True
        return enc.list_numbers_slot(self.index), enc.list_numbers_count_slot(self.index)


def translate(condition: Condition, slots: dict[str, FactSlots], positive: bool = True) -> Formula:
    """The formula that is true exactly when `condition` is (or, if not positive, is not)."""
    match condition:
        case All(items=items):
            parts = [translate(item, slots, positive) for item in items]
            return conj(parts) if positive else disj(parts)
        case Any(items=items):
            parts = [translate(item, slots, positive) for item in items]
            return disj(parts) if positive else conj(parts)
        case Not(item=item):
            return translate(item, slots, not positive)
        case Compare(fact=fact, op=op, value=value):
            if fact not in slots:
                slots[fact] = FactSlots(fact, len(slots))
            table = case_table(slots[fact], op, value)
            if not positive:
                table = {tag: negate(table.get(tag, FALSE)) for tag in enc.ALL_TAGS}
            return from_table(slots[fact], table)
    raise TypeError(f"not a condition: {condition!r}")


def from_table(fact: FactSlots, table: Table) -> Formula:
    """OR over tag groups of (tag in group AND formula), the tag test left out where implied."""
    groups: list[tuple[list[str], Formula]] = []
    for tag in enc.ALL_TAGS:
        formula = table.get(tag, FALSE)
        if formula == FALSE:
            continue
        for tags, existing in groups:
            if existing == formula:
                tags.append(tag)
                break
        else:
            groups.append(([tag], formula))
    terms: list[Formula] = []
    for tags, formula in groups:
        if _possible_tags(formula) <= set(tags):
            terms.append(formula)
        else:
            terms.append(conj([_tag_in(fact.tag(), tags), formula]))
    return disj(terms)


def _tag_in(slot: str, tags: list[str]) -> Formula:
    others = [t for t in enc.ALL_TAGS if t not in tags]
    if len(tags) <= len(others):
        return disj([Cmp(slot, "eq", t) for t in tags])
    return conj([Cmp(slot, "ne", t) for t in others])


def _possible_tags(formula: Formula) -> frozenset[str]:
    """Tags under which `formula` can be true, judged by which slots it needs to be present."""
    match formula:
        case Cmp(slot=slot, op="eq", value=value) if slot.startswith("t"):
            return frozenset({str(value)})
        case Cmp(slot=slot) | Quant(slot=slot):
            return enc.presence(slot)
        case And(items=items):
            out = frozenset(enc.ALL_TAGS)
            for item in items:
                out &= _possible_tags(item)
            return out
        case Or(items=items):
            out = frozenset()
            for item in items:
                out |= _possible_tags(item)
            return out
    raise TypeError(f"not a formula: {formula!r}")


# -- the case tables: one per operator, mirroring conditions._compare -------------------------


def case_table(fact: FactSlots, op: Op, value: object) -> Table:
    alternatives: tuple[object, ...] = value if isinstance(value, tuple) else (value,)
    if op in (Op.EQ, Op.NE):
        return _equality(fact, op is Op.NE, value)
    if op in (Op.LT, Op.LE, Op.GT, Op.GE):
        return _order(fact, str(op), value)
    if op in (Op.IN, Op.NOT_IN):
        table = _membership(fact, alternatives)
        if op is Op.IN:
            return table
        scalar = {tag: negate(table.get(tag, FALSE)) for tag in enc.SCALAR_TAGS}
        return scalar
    if op is Op.PREFIX:
        prefixes = [str(p) for p in alternatives]
        return {enc.STRING: disj([_prefix(fact, p) for p in prefixes])}
    if op in (Op.INCLUDES, Op.EXCLUDES):
        includes = _includes(fact, alternatives)
        return {enc.LIST: includes if op is Op.INCLUDES else negate(includes)}
    if op is Op.INCLUDES_PREFIX:
        return {enc.LIST: _includes_prefix(fact, [str(p) for p in alternatives])}
    raise Untranslatable(f"unknown operator {op!r}")


def _equality(fact: FactSlots, negated: bool, value: object) -> Table:
    if isinstance(value, tuple):  # a scalar never equals a tuple
        table: Table = {}
    elif isinstance(value, str):
        table = {enc.STRING: Cmp(fact.s(), "eq", _text(value))}
    else:
        v = _numeric(value)
        table = {
            enc.NUMBER: number(fact.q(), "eq", v),
            enc.TRUE: TRUE if v == 1 else FALSE,
            enc.FALSE: TRUE if v == 0 else FALSE,
        }
    if not negated:
        return table
    return {tag: negate(table.get(tag, FALSE)) for tag in enc.SCALAR_TAGS}


def _order(fact: FactSlots, op: str, value: object) -> Table:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {}  # the reference compares numbers only
    v = _numeric(value)
    return {enc.NUMBER: number(fact.q(), _ORDER[op], v)}


def _membership(fact: FactSlots, alternatives: tuple[object, ...]) -> Table:
    strings = _unique(_text(a) for a in alternatives if isinstance(a, str))
    numbers = _unique(_numeric(a) for a in alternatives if not isinstance(a, str))
    table: Table = {
        enc.TRUE: TRUE if 1 in numbers else FALSE,
        enc.FALSE: TRUE if 0 in numbers else FALSE,
    }
    if strings:
        table[enc.STRING] = disj([Cmp(fact.s(), "eq", s) for s in strings])
    if numbers:
        table[enc.NUMBER] = disj([number(fact.q(), "eq", n) for n in numbers])
    return table


def _prefix(fact: FactSlots, prefix: str) -> Formula:
    if not prefix:
        return TRUE
    return Cmp(fact.s_prefix(len(prefix)), "eq", _text(prefix))


def _includes(fact: FactSlots, alternatives: tuple[object, ...]) -> Formula:
    strings = _unique(_text(a) for a in alternatives if isinstance(a, str))
    numbers = _unique(_numeric(a) for a in alternatives if not isinstance(a, str))
    parts: list[Formula] = []
    if strings:
        slot, count = fact.ls()
        parts.append(Quant("some", slot, count, disj([Cmp("$i", "eq", s) for s in strings])))
    if numbers:
        slot, count = fact.lq()
        canonical = [enc.canonical_number(n) for n in numbers]
        parts.append(Quant("some", slot, count, disj([Cmp("$i", "eq", c) for c in canonical if c])))
    return disj(parts)


def _includes_prefix(fact: FactSlots, prefixes: list[str]) -> Formula:
    by_length: dict[int, list[str]] = {}
    for prefix in _unique(_text(p) for p in prefixes):
        by_length.setdefault(len(prefix), []).append(prefix)
    parts: list[Formula] = []
    for length, group in sorted(by_length.items()):
        if length == 0:  # every string starts with "": is there any string item?
            parts.append(Cmp(fact.cs(), "gt", 0))
            continue
        slot, count = fact.lp(length)
        parts.append(Quant("some", slot, count, disj([Cmp("$i", "eq", p) for p in group])))
    return disj(parts)


# -- values --------------------------------------------------------------------------------


def _numeric(value: object) -> int | float:
    """The value as durable-rules compares it: booleans as 1/0 (as Python's == does)."""
    if isinstance(value, bool):
        return int(value)
    if not enc.is_safe_number(value):
        raise Untranslatable(
            f"value {value!r} is not a number durable-rules compares exactly "
            f"(finite, at most 2**53 in magnitude)"
        )
    assert isinstance(value, int | float)
    return float.__float__(value) if isinstance(value, float) else int.__int__(value)


def _text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Untranslatable(f"string {value!r} cannot be encoded as UTF-8") from exc
    return str.__str__(value)


def _unique(values: Iterable[T]) -> list[T]:
    out: list[T] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out
