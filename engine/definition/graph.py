"""Draw a loaded pathway as a Mermaid `flowchart TD` a clinical lead can read.

    pathway ─▶ triggers (event, condition, exclusion) ─▶ actions fired on enrolment
            └▶ "on the pathway" ─▶ rules:         event ─▶ condition ─▶ actions
                                   missing data:  "no X for 48h" ─▶ actions
                                   deadlines:     "if no X by 5d after enrolment" ─▶ actions
                                   exits:         reason, by event or after a duration ─▶ actions
    escalation chains: level ─"not acknowledged within 4h"─▶ next level ... ─▶ final level

Every label is quoted and escaped, every node id is sanitised, and the output depends on the
pathway alone: the same pathway always gives the same text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from engine.catalogue import FactKind, event_facts
from engine.definition.conditions import TRUE, All, Any, Compare, Condition, Not, Op, Scalar
from engine.definition.model import ActionTemplate, Anchor, Deadline, DeadlineStart, Due, Pathway

__all__ = ["describe", "mermaid"]

_SYMBOLS = {Op.EQ: "=", Op.NE: "≠", Op.LT: "<", Op.LE: "≤", Op.GT: ">", Op.GE: "≥"}
_WORDS = {
    Op.IN: "is",
    Op.NOT_IN: "is none of",
    Op.PREFIX: "starts with",
    Op.INCLUDES: "includes",
    Op.EXCLUDES: "includes none of",
    Op.INCLUDES_PREFIX: "starts with",
}
_WINDOWED = re.compile(r"^(?P<base>[a-z][a-z0-9_]*)_(?P<seconds>\d+)s$")
_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "`": "#96;", "|": "#124;"}
_SHAPES = {
    "box": ("[", "]"),
    "round": ("([", "])"),
    "diamond": ("{", "}"),
    "hexagon": ("{{", "}}"),
    "final": ("[[", "]]"),
}
_MAX_VALUES = 8


# -- words ---------------------------------------------------------------------------------------


def _seconds(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0 and (unit != "d" or seconds > 86400):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _value(value: Scalar, kind: FactKind | None) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if kind is FactKind.MASS and isinstance(value, (int, float)):
        text = f"{value:g}"
        return f"{text}{'' if '.' in text or 'e' in text else '.0'} kg"
    if kind is FactKind.DURATION and isinstance(value, int):
        return _seconds(value)
    return str(value)


def _alternatives(values: tuple[Scalar, ...], kind: FactKind | None) -> str:
    words = [_value(v, kind) for v in values[:_MAX_VALUES]]
    if len(values) > _MAX_VALUES:
        return f"{', '.join(words)} … ({len(values) - _MAX_VALUES} more)"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _compare(c: Compare, kinds: Mapping[str, FactKind]) -> tuple[str, str]:
    """(the fact as shown, the test): ("weight_gain over 24h", "≥ 1.0 kg")."""
    fact, kind = c.fact, kinds.get(c.fact)
    windowed = _WINDOWED.match(c.fact)
    if kind is None and windowed and windowed["base"] in kinds:
        kind = kinds[windowed["base"]]
        fact = f"{windowed['base']} over {_seconds(int(windowed['seconds']))}"
    if isinstance(c.value, tuple):
        if c.op is Op.EXCLUDES and len(c.value) == 1:
            return fact, f"does not include {_value(c.value[0], kind)}"
        return fact, f"{_WORDS.get(c.op, c.op.value)} {_alternatives(c.value, kind)}"
    return fact, f"{_SYMBOLS.get(c.op, c.op.value)} {_value(c.value, kind)}"


def describe(condition: Condition, kinds: Mapping[str, FactKind] | None = None) -> str:
    """A condition in words: `kind = follow_up`, `weight_gain over 24h ≥ 1.0 kg`, `not (…)`."""
    kinds = kinds or {}
    match condition:
        case Compare():
            return " ".join(_compare(condition, kinds))
        case Not(item=item):
            return f"not ({describe(item, kinds)})"
        case All(items=()):
            return "always"
        case All(items=items) | Any(items=items):
            joiner = " and " if isinstance(condition, All) else " or "
            parts, shown = [], ""
            for item in items:
                if isinstance(item, Compare):  # "diagnoses starts with I50 or includes ..."
                    fact, test = _compare(item, kinds)
                    parts.append(test if fact == shown else f"{fact} {test}")
                    shown = fact
                    continue
                text = describe(item, kinds)
                nested = isinstance(item, (All, Any)) and len(item.items) > 1
                parts.append(f"({text})" if nested else text)
                shown = ""
            return joiner.join(parts)
    raise TypeError(f"not a condition: {condition!r}")


@dataclass(frozen=True, slots=True)
class _Context:
    """What an action or condition is read against: its event's facts and its default anchor."""

    kinds: Mapping[str, FactKind]
    event: str | None
    anchor: Anchor

    @classmethod
    def of(cls, event: str | None, anchor: Anchor = Anchor.EVENT) -> _Context:
        facts = event_facts(event, enrolled=True) if event else {}
        return cls({name: spec.kind for name, spec in facts.items()}, event, anchor)

    def when(self, condition: Condition) -> str:
        return "" if condition == TRUE else describe(condition, self.kinds)

    def due(self, due: Due) -> str:
        def one(duration: str, anchor: Anchor, alone: bool) -> str:
            if alone and anchor is self.anchor:
                return duration
            if anchor is Anchor.ENROLMENT:
                return f"{duration} after enrolment"
            return f"{duration} after {self.event or 'the event'}"

        parts = [one(o.duration.text, o.anchor, len(due.offsets) == 1) for o in due.offsets]
        if len(parts) == 1:
            return parts[0]
        return f"{'later' if due.pick_later else 'earlier'} of {' and '.join(parts)}"

    def action(self, action: ActionTemplate) -> str:
        head = action.type
        extras = []
        for key, value in action.params.items():
            if key == "role":
                head += f" ({value})"
            elif key == "chain":
                head += f" via chain {value}"
            elif isinstance(value, bool):
                extras.append(key if value else f"not {key}")
            else:
                extras.append(f"{key}: {value}")
        lines = [head + (f" due {self.due(action.due)}" if action.due else "")]
        if extras:
            lines.append(", ".join(extras))
        if action.only_if != TRUE:
            lines.append(f"only if {describe(action.only_if, self.kinds)}")
        return "\n".join(lines)


def _event(event: str, condition: Condition, context: _Context) -> str:
    when = context.when(condition)
    return f"{event} [{when}]" if when else event


# -- the diagram ---------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """A label's text, safe inside Mermaid's quotes; each line of it on a line of the label."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "<br/>".join("".join(_ESCAPES.get(ch, ch) for ch in line) for line in lines if line)


class _Diagram:
    def __init__(self) -> None:
        self.lines = ["flowchart TD"]
        self.links: list[str] = []  # cross-links, drawn last, once every node exists
        self.ids: set[str] = set()
        self.depth = 1

    def id(self, *parts: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts)).strip("_") or "node"
        base = base if base[0].isalpha() else f"n_{base}"
        new, n = base, 1
        while new in self.ids:
            n += 1
            new = f"{base}_{n}"
        self.ids.add(new)
        return new

    def node(self, node: str, label: str, shape: str = "box") -> str:
        start, end = _SHAPES[shape]
        self.lines.append(f'{"    " * self.depth}{node}{start}"{_escape(label)}"{end}')
        return node

    def edge(
        self, a: str, b: str, label: str = "", *, dotted: bool = False, late: bool = False
    ) -> None:
        arrow = "-.->" if dotted else "-->"
        text = f'{a} {arrow}|"{_escape(label)}"| {b}' if label else f"{a} {arrow} {b}"
        (self.links if late else self.lines).append(f"{'    ' * (1 if late else self.depth)}{text}")

    def open(self, name: str, title: str) -> str:
        sub = self.id(name)
        self.lines.append(f'{"    " * self.depth}subgraph {sub}["{_escape(title)}"]')
        self.depth += 1
        return sub

    def close(self) -> None:
        self.depth -= 1
        self.lines.append(f"{'    ' * self.depth}end")


def mermaid(pathway: Pathway) -> str:
    """The pathway as Mermaid `flowchart TD` text (no surrounding code fence)."""
    g = _Diagram()
    chains: dict[str, str] = {}  # chain name -> its first level's node
    deadlines: dict[str, str] = {}  # deadline id -> its node
    escalations: list[tuple[str, str]] = []  # (action node, chain name)
    cancels: list[tuple[str, str]] = []  # (rule node, deadline id)

    def actions(
        source: str, items: tuple[ActionTemplate, ...], context: _Context, label: str = ""
    ) -> None:
        for i, action in enumerate(items):
            node = g.node(g.id(source, "a", str(i)), context.action(action))
            g.edge(source, node, label)
            if action.type == "escalate" and "chain" in action.params:
                escalations.append((node, str(action.params["chain"])))

    root = g.node(g.id("pathway"), f"{pathway.title}\n{pathway.key}", "round")
    enrolled = g.node(g.id("enrolled"), f"on the pathway {pathway.key}", "round")
    g.open("sec_enrolment", "Enrolment")
    for trigger in pathway.triggers:
        context = _Context.of(trigger.event_type, Anchor.ENROLMENT)
        lines = [trigger.id, f"on {trigger.event_type}"]
        if trigger.condition != TRUE:
            lines.append(f"if {context.when(trigger.condition)}")
        if trigger.exclusion is not None and trigger.exclusion != TRUE:
            lines.append(f"unless {context.when(trigger.exclusion)}")
        node = g.node(g.id("trigger", trigger.id), "\n".join(lines))
        g.edge(root, node, late=True)  # an edge inside a subgraph pulls both ends into it
        actions(node, trigger.actions, context, "on enrolment")
        g.edge(node, enrolled, "enrols", late=True)
    g.close()

    if pathway.rules or pathway.missing_data:
        section = g.open("sec_rules", "Rules")
        for rule in pathway.rules:
            context = _Context.of(rule.event_type)
            event = g.node(g.id("rule", rule.id), f"{rule.id}\non {rule.event_type}", "round")
            test = event
            if rule.condition != TRUE:
                test = g.node(g.id("rule", rule.id, "if"), context.when(rule.condition), "diamond")
                g.edge(event, test)
            fresh = f"yes, within {rule.max_age.text}" if rule.max_age else ""
            actions(test, rule.actions, context, fresh)
            if rule.max_age:
                actions(test, rule.if_stale, context, f"yes, older than {rule.max_age.text}")
            for name in rule.cancels:
                cancels.append((test, name))
        for missing in pathway.missing_data:
            node = g.node(
                g.id("missing", missing.id),
                f"{missing.id}\nno {missing.event_type} for {missing.silence.text}",
                "round",
            )
            actions(node, missing.actions, _Context.of(None))
        g.close()
        g.edge(enrolled, section, late=True)

    if pathway.deadlines:
        section = g.open("sec_deadlines", "Deadlines")
        for deadline in pathway.deadlines:
            node = g.node(g.id("deadline", deadline.id), _deadline(deadline), "hexagon")
            deadlines[deadline.id] = node
            actions(node, deadline.actions, _Context.of(None), "not met")
        g.close()
        g.edge(enrolled, section, late=True)

    if pathway.exits:
        section = g.open("sec_exits", "Exits")
        for exit_ in pathway.exits:
            context = _Context.of(exit_.event_type)
            if exit_.event_type:
                how = f"on {_event(exit_.event_type, exit_.condition, context)}"
            else:
                how = f"{exit_.after.text if exit_.after else ''} after enrolment"
            node = g.node(g.id("exit", exit_.reason), f"exit: {exit_.reason}\n{how}", "round")
            actions(node, exit_.actions, context)
        g.close()
        g.edge(enrolled, section, late=True)

    for chain in pathway.chains.values():
        g.open(f"sec_chain_{chain.name}", f"Escalation chain: {chain.name}")
        previous: tuple[str, str] | None = None
        for i, level in enumerate(chain.levels, start=1):
            final = level.acknowledge_within is None
            label = f"{i}. {level.role}" + (" (final)" if final else "")
            node = g.node(g.id("chain", chain.name, str(i)), label, "final" if final else "box")
            chains.setdefault(chain.name, node)
            if previous:
                g.edge(previous[0], node, f"not acknowledged within {previous[1]}")
            if level.acknowledge_within is not None:
                previous = (node, level.acknowledge_within.text)
        g.close()

    for source, name in escalations:
        if name in chains:
            g.edge(source, chains[name], dotted=True, late=True)
    for source, name in cancels:
        if name in deadlines:
            g.edge(source, deadlines[name], "cancels", dotted=True, late=True)
    return "\n".join(g.lines + g.links)


def _deadline(deadline: Deadline) -> str:
    cancel = _event(
        deadline.cancel_event, deadline.cancel_condition, _Context.of(deadline.cancel_event)
    )
    after = deadline.after.text if deadline.after else ""
    if deadline.start is DeadlineStart.ACTION:
        due = f"{deadline.start_action} is due"
        when = f"{after} after {due}" if after else f"the time {due}"
    elif deadline.start is DeadlineStart.EVENT and deadline.start_event:
        start = _event(
            deadline.start_event, deadline.start_condition, _Context.of(deadline.start_event)
        )
        when = f"{after} after {start}"
    else:
        when = f"{after} after enrolment"
    return f"{deadline.id}\nif no {cancel} by {when}"
