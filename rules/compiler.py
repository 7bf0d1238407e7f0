"""A rule book -> one durable-rules ruleset (plain JSON-able dicts) and the message encoders.

The ruleset has one durable-rules rule per conjunction the conditions expand to:

    "r7": {"all": [{"m": {"$and": [{"e": 2}, <test>, <test>, ...]}}], "run": "r7"}

`e` is the event type's code, so a rule never matches another event type's message; the
tests read typed slots (rules.encoding) and are negation-free (rules.translate). A condition
whose formula is an `Or` becomes one rule per branch (`owners` maps every durable-rules rule
back to the rule book's rules; identical conjunctions are shared). durable-rules' limits shape
the rest:

- at most 15 `$and`/`$or` nodes per rule (error 113): wider conjunctions are split by
  distributing an inner `Or` into several rules (so is an `Or` of more than 16 tests on
  different slots, which would fan out on durable-rules' stack);
- its alpha-network walk uses a 64-entry stack and each node holds at most ~510 tests
  (rules.network): rules of an event type are put into buckets behind `{"$neq": {"e": -b}}`
  tests when they would overflow either; at most 500 event types;
- at most 255 properties per message (error 302) and 4,096 rules per ruleset;
- property names are looked up by a 32-bit FNV-1a hash: the slot names are checked to differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.definition.conditions import All, Any, Compare, Condition, Not
from rules import network
from rules.encoding import FactPlan, MessageEncoder
from rules.errors import RuleCompileError
from rules.formula import (
    TRUE,
    And,
    Formula,
    Json,
    Or,
    Quant,
    conj,
    connectives,
    expand_every,
    expand_some,
    to_json,
)
from rules.translate import FactSlots, Untranslatable, translate

MAX_CONNECTIVES = 15  # durable-rules: MAX_SEQUENCE_EXPRESSIONS 32, two entries per $and/$or
MAX_PROPERTIES = 255  # durable-rules: MAX_OBJECT_PROPERTIES
MAX_RULES = 4000  # durable-rules: MAX_ACTIONS 4096
MAX_EVENT_TYPES = 500  # durable-rules: NEXT_BUCKET_LENGTH 512 tests below one node
STACK_BUDGET = network.STACK_LIMIT - 4
RULE_STACK_BUDGET = 16  # a single conjunction fanning out wider than this is split
RESERVED = (
    "sid",
    "id",
    "e",
    "$i",
    "$s",
    "$m",
    "$and",
    "$or",
    "$eq",
    "$neq",
    "$lt",
    "$lte",
    "$gt",
    "$gte",
    "$ex",
    "$nex",
    "$mt",
    "$imt",
    "$iall",
    "$iany",
    "$add",
    "$sub",
    "$mul",
    "$div",
    "$l",
    "$r",
    "$forward",
    "name",
    "time",
    "count",
    "cap",
    "pri",
    "dist",
)


class Spec(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def event_type(self) -> str: ...

    @property
    def condition(self) -> Condition: ...


@dataclass(frozen=True, slots=True)
class Program:
    """What a rule book runs: the ruleset, an encoder per event type, and who owns each rule."""

    ruleset: dict[str, Json]
    encoders: dict[str, MessageEncoder]
    owners: dict[str, tuple[int, ...]]  # durable-rules rule name -> indices of the book's rules


def compile_book(book: str, specs: Sequence[Spec]) -> Program:
    _check_ids(book, specs)
    unmatchable = "\x7f" * (max((len(s) for s in _strings(specs)), default=0) + 1)
    by_type: dict[str, list[int]] = {}
    for index, spec in enumerate(specs):
        by_type.setdefault(spec.event_type, []).append(index)
    ruleset: dict[str, Json] = {}
    owners: dict[str, tuple[int, ...]] = {}
    encoders: dict[str, MessageEncoder] = {}
    for code, event_type in enumerate(sorted(by_type)):
        slots: dict[str, FactSlots] = {}
        conjunctions: dict[str, tuple[Formula, list[int]]] = {}
        for index in by_type[event_type]:
            spec = specs[index]
            try:
                formula = translate(spec.condition, slots)
                pieces = _conjunctions(formula)
            except Untranslatable as exc:
                raise RuleCompileError(
                    str(exc), ruleset=book, rule_id=spec.id, event_type=event_type
                ) from exc
            for piece in pieces:
                key = repr(piece)
                if key not in conjunctions:
                    conjunctions[key] = (piece, [])
                if index not in conjunctions[key][1]:
                    conjunctions[key][1].append(index)
        expressions = _expressions(book, event_type, code, [p for p, _ in conjunctions.values()])
        for expression, (_, indices) in zip(expressions, conjunctions.values(), strict=True):
            name = f"r{len(ruleset)}"
            ruleset[name] = {"all": [{"m": expression}], "run": name}
            owners[name] = tuple(indices)
        plans = tuple(slot.plan() for slot in slots.values())
        _check_message(book, event_type, plans)
        encoders[event_type] = MessageEncoder(code, plans, unmatchable)
    if len(ruleset) > MAX_RULES:
        raise RuleCompileError(
            f"{len(ruleset)} durable-rules rules after expansion (at most {MAX_RULES})",
            ruleset=book,
        )
    if len(encoders) > MAX_EVENT_TYPES:  # one {"e": code} test per event type below the root
        raise RuleCompileError(
            f"{len(encoders)} event types (durable-rules hangs past ~510 tests below one node; "
            f"at most {MAX_EVENT_TYPES})",
            ruleset=book,
        )
    return Program(ruleset=ruleset, encoders=encoders, owners=owners)


def _check_ids(book: str, specs: Sequence[Spec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise RuleCompileError("rule id declared twice", ruleset=book, rule_id=spec.id)
        seen.add(spec.id)


# -- conjunctions small enough for durable-rules --------------------------------------------


def _conjunctions(formula: Formula) -> list[Formula]:
    """The formula as a disjunction of conjunctions that each fit in one durable-rules rule."""
    branches = formula.items if isinstance(formula, Or) else (formula,)
    out: list[Formula] = []
    for branch in branches:
        for piece in _fit(branch, budget=MAX_RULES):
            if piece not in out:
                out.append(piece)
    return out


def _fit(conjunction: Formula, budget: int) -> list[Formula]:
    items = list(conjunction.items) if isinstance(conjunction, And) else [conjunction]
    widths = [connectives(to_json(item)) for item in items]
    # the rule's own $and (joining the event test, bucket tests and these items) is one node
    fits = sum(widths) + 1 <= MAX_CONNECTIVES
    if fits and network.measure([_rule_json(0, (), items)]).stack <= RULE_STACK_BUDGET:
        return [conjunction]
    choices = [i for i, item in enumerate(items) if _alternatives(item) is not None]
    if not choices or budget <= 1:
        raise Untranslatable(
            "condition too large for durable-rules (at most 15 and/or nodes per rule, and "
            f"{len(items)} tests that cannot be split further)"
        )
    widest = max(choices, key=lambda i: (widths[i], _branch_count(items[i])))
    rest = items[:widest] + items[widest + 1 :]
    alternatives = _alternatives(items[widest])
    assert alternatives is not None
    out: list[Formula] = []
    for alternative in alternatives.items:
        out += _fit(conj([*rest, alternative]), budget // len(alternatives.items))
    return out


def _alternatives(item: Formula) -> Or | None:
    """The item as an Or whose branches can become separate rules, if it is one."""
    match item:
        case Or():
            return item
        case Quant(kind="every"):
            return expand_every(item)
        case Quant(kind="some", pred=Or()):
            return expand_some(item)
    return None


def _branch_count(item: Formula) -> int:
    alternatives = _alternatives(item)
    return len(alternatives.items) if alternatives else 1


# -- rule expressions, in buckets if the network would overflow durable-rules' stack ---------


def _rule_json(code: int, buckets: Sequence[int], items: Iterable[Formula]) -> Json:
    tests: list[Json] = [{"e": code}]
    tests += [{"$neq": {"e": -bucket}} for bucket in buckets]  # always true: codes are >= 0
    tests += [to_json(item) for item in items]
    return tests[0] if len(tests) == 1 else {"$and": tests}


def _items(piece: Formula) -> list[Formula]:
    if piece == TRUE:
        return []
    return list(piece.items) if isinstance(piece, And) else [piece]


def _expressions(book: str, event_type: str, code: int, pieces: list[Formula]) -> list[Json]:
    """The rules' expressions, behind 0 to 3 levels of bucket tests, whichever fits first."""
    for levels in range(4):
        width = math.ceil(len(pieces) ** (1 / (levels + 1)))  # buckets per level, rules per bucket
        expressions = [
            _rule_json(code, _buckets(index, levels, width), _items(piece))
            for index, piece in enumerate(pieces)
        ]
        if _fits(network.measure(expressions)):
            return expressions
    raise RuleCompileError(
        f"{len(pieces)} conjunctions are too many for durable-rules' network",
        ruleset=book,
        event_type=event_type,
    )


def _buckets(index: int, levels: int, width: int) -> list[int]:
    """Bucket ids (>= 1, distinct per level) of the rule at `index`, outermost first."""
    return [1 + level + (levels + 1) * (index // width**level) for level in range(levels, 0, -1)]


def _fits(size: network.NetworkSize) -> bool:
    return (
        size.stack <= STACK_BUDGET
        and size.tests_per_node <= 500
        and size.rules_per_node <= 250
        and size.joins_per_node <= 120
    )


# -- message checks -------------------------------------------------------------------------


def _check_message(book: str, event_type: str, plans: tuple[FactPlan, ...]) -> None:
    names = [slot for plan in plans for slot in plan.slots()]
    if len(names) + 3 > MAX_PROPERTIES:
        raise RuleCompileError(
            f"messages would have {len(names) + 3} properties (durable-rules allows "
            f"{MAX_PROPERTIES}): too many facts or prefix lengths",
            ruleset=book,
            event_type=event_type,
        )
    hashes: dict[int, str] = {}
    for name in [*RESERVED, *names]:
        other = hashes.setdefault(fnv1a(name), name)
        if other != name:  # pragma: no cover - slot names are short and do not collide
            raise RuleCompileError(
                f"slot names {other!r} and {name!r} collide in durable-rules' 32-bit hash",
                ruleset=book,
                event_type=event_type,
            )


def fnv1a(name: str) -> int:
    """durable-rules' property-name hash (json.c getStringAndHash)."""
    value = 0x811C9DC5
    for byte in name.encode("utf-8"):
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value


def _strings(specs: Sequence[Spec]) -> Iterable[str]:
    for spec in specs:
        yield from _condition_strings(spec.condition)


def _condition_strings(condition: Condition) -> Iterable[str]:
    match condition:
        case All(items=items) | Any(items=items):
            for item in items:
                yield from _condition_strings(item)
        case Not(item=item):
            yield from _condition_strings(item)
        case Compare(value=value):
            for alternative in value if isinstance(value, tuple) else (value,):
                yield str(alternative)
