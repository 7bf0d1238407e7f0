"""A conservative check that a condition can ever hold.

Used to find unreachable rules and deadlines that can never be cancelled. It only says "never"
when it is sure: contradictory bounds or values on one fact inside an `all`, or an empty list.
"""

from __future__ import annotations

import math
from collections import defaultdict

from engine.definition.conditions import All, Any, Compare, Condition, Not, Op


def satisfiable(condition: Condition) -> bool:
    match condition:
        case Any(items=items):
            return any(satisfiable(item) for item in items)
        case Not():
            return True
        case Compare():
            return _compares_satisfiable([condition])
        case All(items=items):
            if not all(satisfiable(item) for item in items):
                return False
            by_fact: dict[str, list[Compare]] = defaultdict(list)
            for item in items:
                if isinstance(item, Compare):
                    by_fact[item.fact].append(item)
            return all(_compares_satisfiable(compares) for compares in by_fact.values())


def _compares_satisfiable(compares: list[Compare]) -> bool:
    low, low_open = -math.inf, False
    high, high_open = math.inf, False
    allowed: set[object] | None = None
    excluded: set[object] = set()
    for c in compares:
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        if c.op in (Op.IN, Op.PREFIX, Op.INCLUDES, Op.INCLUDES_PREFIX) and not values:
            return False
        if c.op is Op.EQ:
            allowed = {c.value} if allowed is None else allowed & {c.value}
        elif c.op is Op.IN:
            allowed = set(values) if allowed is None else allowed & set(values)
        elif c.op in (Op.NE, Op.NOT_IN):
            excluded |= set(values)
        elif isinstance(c.value, (int, float)) and not isinstance(c.value, bool):
            bound = float(c.value)
            if c.op in (Op.GE, Op.GT) and (bound > low or (bound == low and c.op is Op.GT)):
                low, low_open = bound, c.op is Op.GT
            if c.op in (Op.LE, Op.LT) and (bound < high or (bound == high and c.op is Op.LT)):
                high, high_open = bound, c.op is Op.LT
    if low > high or (low == high and (low_open or high_open)):
        return False
    if allowed is not None:
        remaining = allowed - excluded
        numeric = [v for v in remaining if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not remaining:
            return False
        if numeric and len(numeric) == len(remaining):
            return any(
                (low < v or (low == v and not low_open))
                and (v < high or (v == high and not high_open))
                for v in numeric
            )
    return True
