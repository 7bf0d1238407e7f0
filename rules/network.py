"""A model of the alpha network durable-rules builds from a ruleset, to check its fixed limits.

durable-rules walks the alpha network of a message depth-first with a stack of 64 nodes
(events.c `handleAlpha`): when it pops a node it pushes every child that matches. A node with
more than ~64 children that match at once makes the whole evaluation fail with error 303 (seen
here with 65 rules `x > i` on one event type). A node's tests live in a hash set of 512 entries
that is searched until an empty entry: with 512 tests below one node (520 event types, say)
durable-rules loops for ever. Rulesets are also limited to 256 rules ending at the same node
(error 108) and 128 `$or` joins per node (error 107).

The model follows rete.c `createAlpha`: a test is shared with an identical test under the same
parent; each `$or` adds a fresh join node below each of its branches; `$iany`/`$iall` nodes are
never shared. `stack_bound` is an upper bound of the stack: it assumes every test can match
at once, except equality tests on the same slot with different values (at most one matches).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

STACK_LIMIT = 64


@dataclass(eq=False)
class _Node:
    shared: dict[str, _Node] = field(default_factory=dict)
    eq_slot: dict[str, str] = field(default_factory=dict)  # key -> slot, for equality tests
    joins: list[_Node] = field(default_factory=list)  # `$or` join nodes (durable's next list)
    lists: list[_Node] = field(default_factory=list)  # `$iany` / `$iall` tests
    rules_ending: int = 0


@dataclass(frozen=True, slots=True)
class NetworkSize:
    stack: int  # upper bound of durable-rules' alpha stack for any message
    tests_per_node: int  # most tests below one node (hash set of 512)
    rules_per_node: int  # most rules ending at one node (limit 256)
    joins_per_node: int  # most `$or` joins below one node (limit 128)


def measure(expressions: list[dict[str, object]]) -> NetworkSize:
    """Sizes of the network durable-rules would build for these rule expressions."""
    root = _Node()
    for expression in expressions:
        _insert(expression, root).rules_ending += 1
    memo: dict[int, int] = {}
    seen: dict[int, _Node] = {}
    _collect(root, seen)
    return NetworkSize(
        stack=max(1, _bound(root, memo)),
        tests_per_node=max(len(node.shared) + len(node.lists) for node in seen.values()),
        rules_per_node=max(node.rules_ending for node in seen.values()),
        joins_per_node=max(len(node.joins) for node in seen.values()),
    )


def _insert(expression: dict[str, object], parent: _Node) -> _Node:
    ((key, body),) = expression.items()
    if key == "$and":
        assert isinstance(body, list)
        node = parent
        for item in body:
            node = _insert(item, node)
        return node
    if key == "$or":
        assert isinstance(body, list)
        join = _Node()
        for item in body:
            _insert(item, parent).joins.append(join)
        return join
    if key in ("$iany", "$iall"):
        node = _Node()
        parent.lists.append(node)
        return node
    if key.startswith("$"):  # {"$lt": {slot: value}}
        assert isinstance(body, dict)
        ((slot, value),) = body.items()
        identity = json.dumps([key, slot, value])
        eq = False
    else:  # {slot: value}
        slot, value, eq = key, body, True
        identity = json.dumps(["$eq", slot, value])
    if identity not in parent.shared:
        parent.shared[identity] = _Node()
        if eq:
            parent.eq_slot[identity] = slot
    return parent.shared[identity]


def _collect(node: _Node, seen: dict[int, _Node]) -> None:
    if id(node) in seen:
        return
    seen[id(node)] = node
    for child in [*node.shared.values(), *node.joins, *node.lists]:
        _collect(child, seen)


def _bound(node: _Node, memo: dict[int, int]) -> int:
    """Most stack entries in use while the subtree below `node` is walked (node popped)."""
    if id(node) in memo:
        return memo[id(node)]
    children = [*node.shared.values(), *node.joins, *node.lists]
    if not children:
        memo[id(node)] = 0
        return 0
    eq_slots = {node.eq_slot[k] for k in node.shared if k in node.eq_slot}
    at_once = (
        len(node.joins)
        + len(node.lists)
        + len(eq_slots)
        + sum(1 for k in node.shared if k not in node.eq_slot)
    )
    deepest = max(_bound(child, memo) for child in children)
    result = max(at_once, at_once - 1 + deepest)
    memo[id(node)] = result
    return result
