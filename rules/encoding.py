"""Facts -> the one JSON message durable-rules sees: typed slots, so its tests never mix types.

durable-rules compares across types by coercion ("1" == 1, true == 1, 1 < "b") and cannot test
for a missing property without hanging (`$nex` alone) or crashing, so each fact the rule book
reads becomes a few slots (i = the fact's index in its event type's plan):

    t{i}     always: a tag for the fact's kind (the TAG_* below)
    q{i}     the number, when the tag is "n" (beyond +-2**53, infinities included: +-2**54)
    s{i}     the string, when the tag is "s";  s{i}_{L}: its first L characters (for prefixes)
    cs{i} ls{i} lp{i}_{L}   for a list: how many strings, the strings, their first L characters
    cq{i} lq{i}             for a list: how many numbers, the numbers as canonical strings
                            (`canonical_number`: 1, 1.0 and True are all "1.0"), so that list
                            membership is string equality and needs no numeric constants
                            inside `$iany`/`$iall`

Only the slots some rule reads are written. Thresholds are bounded by 2**53, so a number beyond
that compares like +-2**54; NaN has its own tag "x" (it equals and orders with nothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import TypeAlias

ABSENT, TRUE, FALSE, NUMBER, STRING, LIST, DICT, NAN = "aTFnsldx"
ALL_TAGS = (ABSENT, TRUE, FALSE, NUMBER, STRING, LIST, DICT, NAN)
#: Tags of values that are neither absent nor containers: the reference's "scalar fact".
SCALAR_TAGS = frozenset({TRUE, FALSE, NUMBER, STRING, NAN})
#: Largest magnitude of a threshold (int and double agree exactly up to here).
SAFE = 2**53
#: What numbers beyond SAFE are written as.
CLAMP = str(2**54)


def tag_slot(i: int) -> str:
    return f"t{i}"


def number_slot(i: int) -> str:
    return f"q{i}"


def string_slot(i: int) -> str:
    return f"s{i}"


def prefix_slot(i: int, length: int) -> str:
    return f"s{i}_{length}"


def list_count_slot(i: int) -> str:
    return f"cs{i}"


def list_strings_slot(i: int) -> str:
    return f"ls{i}"


def list_prefix_slot(i: int, length: int) -> str:
    return f"lp{i}_{length}"


def list_numbers_count_slot(i: int) -> str:
    return f"cq{i}"


def list_numbers_slot(i: int) -> str:
    return f"lq{i}"


def presence(slot: str) -> frozenset[str]:
    """The tags under which a slot is written."""
    if slot.startswith("t"):
        return frozenset(ALL_TAGS)
    if slot.startswith("q"):
        return frozenset({NUMBER})
    if slot.startswith("s"):
        return frozenset({STRING})
    return frozenset({LIST})


@dataclass(frozen=True, slots=True)
class FactPlan:
    """Which slots one fact needs in one event type's messages."""

    name: str
    index: int
    number: bool = False
    string: bool = False
    prefixes: tuple[int, ...] = ()
    list_count: bool = False
    list_strings: bool = False
    list_prefixes: tuple[int, ...] = ()
    list_numbers: bool = False

    @property
    def counts_strings(self) -> bool:
        return self.list_count or self.list_strings or bool(self.list_prefixes)

    @property
    def reads_list(self) -> bool:
        return self.counts_strings or self.list_numbers

    def slots(self) -> list[str]:
        i = self.index
        out = [tag_slot(i)]
        if self.number:
            out.append(number_slot(i))
        if self.string:
            out.append(string_slot(i))
        out += [prefix_slot(i, n) for n in self.prefixes]
        if self.counts_strings:
            out.append(list_count_slot(i))
        if self.list_strings:
            out.append(list_strings_slot(i))
        out += [list_prefix_slot(i, n) for n in self.list_prefixes]
        if self.list_numbers:
            out += [list_numbers_count_slot(i), list_numbers_slot(i)]
        return out


class UnsupportedFact(Exception):
    """Raised by `MessageEncoder.encode`; the rule book turns it into a FactError."""

    def __init__(self, fact: str, message: str) -> None:
        self.fact = fact
        super().__init__(message)


class MessageEncoder:
    """Writes the message for one event type. `unmatchable` equals no string in any rule."""

    def __init__(self, code: int, plans: tuple[FactPlan, ...], unmatchable: str) -> None:
        self.code = code
        self.plans = plans
        self._head = f'{{"sid":"0","id":%d,"e":{code}'
        self._writers = tuple((plan.name, _writer(plan, unmatchable)) for plan in plans)

    def encode(self, facts: Mapping[str, object], mid: int) -> str:
        parts = [self._head % mid]
        get = facts.get
        for name, write in self._writers:
            write(get(name), parts)
        parts.append("}")
        return "".join(parts)


Writer: TypeAlias = Callable[[object, list[str]], None]


def _writer(plan: FactPlan, unmatchable: str) -> Writer:
    """The function that appends one fact's slots (specialised to the plan: this is hot)."""
    i, name = plan.index, plan.name
    absent, true, false = f',"t{i}":"{ABSENT}"', f',"t{i}":"{TRUE}"', f',"t{i}":"{FALSE}"'
    nan, dict_, list_tag = f',"t{i}":"{NAN}"', f',"t{i}":"{DICT}"', f',"t{i}":"{LIST}"'
    number_tag = f',"t{i}":"{NUMBER}"' + (f',"q{i}":' if plan.number else "")
    string_tag = f',"t{i}":"{STRING}"'
    string_head = f',"s{i}":' if plan.string else None
    prefix_heads = tuple((n, f',"s{i}_{n}":') for n in plan.prefixes)
    reads_list, number = plan.reads_list, plan.number
    text = _text_function(encode_basestring(unmatchable))

    def write_list(items: list[object] | tuple[object, ...], parts: list[str]) -> None:
        strings: list[str] = []
        numbers: list[str] = []
        for item in items:
            if isinstance(item, str):
                strings.append(item)
            elif isinstance(item, int | float):
                number = canonical_number(item)
                if number is not None:  # NaN and huge numbers equal no (bounded) value
                    numbers.append(f'"{number}"')
            elif item is not None and not isinstance(item, list | tuple | dict):
                raise UnsupportedFact(name, f"unsupported item type {type(item).__name__}")
        if plan.counts_strings:
            parts.append(f',"cs{i}":{len(strings)}')
        if plan.list_strings:
            parts.append(f',"ls{i}":[{",".join(map(text, strings))}]')
        for n in plan.list_prefixes:
            parts.append(f',"lp{i}_{n}":[{",".join(text(s[:n]) for s in strings)}]')
        if plan.list_numbers:
            parts.append(f',"cq{i}":{len(numbers)},"lq{i}":[{",".join(numbers)}]')

    def write(value: object, parts: list[str]) -> None:
        if value is None:
            parts.append(absent)
        elif isinstance(value, bool):
            parts.append(true if value else false)
        elif isinstance(value, int | float):
            if value != value:
                parts.append(nan)
            elif number:
                parts.append(number_tag + _number(value))
            else:
                parts.append(number_tag)
        elif isinstance(value, str):
            parts.append(string_tag)
            if string_head is not None:
                parts.append(string_head + text(value))
            for n, head in prefix_heads:
                parts.append(head + text(value[:n]))
        elif isinstance(value, list | tuple):
            parts.append(list_tag)
            if reads_list:
                write_list(value, parts)
        elif isinstance(value, dict):
            parts.append(dict_)
        else:
            raise UnsupportedFact(name, f"unsupported type {type(value).__name__}")

    return write


def _text_function(unmatchable: str) -> Callable[[str], str]:
    def text(value: str) -> str:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: no rule string contains one
                return unmatchable
        return str(encode_basestring(value))

    return text


def _number(value: int | float) -> str:
    """JSON text durable-rules reads back as the same number (not NaN).

    Numbers beyond +-2**53 (and infinities) are written as +-2**54: every threshold is within
    +-2**53, so they compare the same way, and int and double agree exactly on both.
    """
    if value > SAFE:
        return CLAMP
    if value < -SAFE:
        return "-" + CLAMP
    if isinstance(value, int):
        return int.__repr__(value)
    text = float.__repr__(value)
    if "e" in text and "." not in text:  # "1e-05": durable-rules needs "1.0e-05"
        return text.replace("e", ".0e")
    return text


def canonical_number(value: int | float) -> str | None:
    """One string per number value (booleans as 1/0), None for NaN and beyond +-2**53."""
    if not (-SAFE <= value <= SAFE):  # also NaN
        return None
    number = float(value)  # exact up to 2**53
    return "0.0" if number == 0 else float.__repr__(number)


def is_safe_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -SAFE <= value <= SAFE
    )
