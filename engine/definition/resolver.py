"""Resolve the parts of a pathway file that carry meaning: parameters, durations, masses,
conditions, due times and actions. Every problem is reported against the source, located, and
resolution carries on, so one pass finds them all.

The resolver works on the raw YAML data, defensively: a part with the wrong shape is skipped here
(the structural models in `document.py` report it) so that one slip does not hide the rest.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from engine.catalogue import (
    ACTIONS,
    APPOINTMENT_KINDS,
    EVENT_MODELS,
    ROLES,
    FactKind,
    FactSpec,
    ParamKind,
    event_facts,
)
from engine.definition.conditions import TRUE, All, Compare, Condition, Not, Op, Scalar
from engine.definition.conditions import Any as AnyOf
from engine.definition.model import ActionTemplate, Anchor, Due, Offset, Window
from engine.definition.source import Path, Source, render_path
from engine.durations import Duration, DurationKind, parse_duration, parse_mass

WORD = re.compile(r"^[a-z][a-z0-9_]*$")

#: The operator words authors write, and what they compile to.
OPERATORS: dict[str, Op] = {
    "equals": Op.EQ,
    "not_equals": Op.NE,
    "in": Op.IN,
    "not_in": Op.NOT_IN,
    "starts_with": Op.PREFIX,
    "at_least": Op.GE,
    "more_than": Op.GT,
    "at_most": Op.LE,
    "less_than": Op.LT,
    "includes": Op.INCLUDES,
    "excludes": Op.EXCLUDES,
}
_LIST_KINDS = {FactKind.CODES, FactKind.ENUM_LIST}
_ALLOWED: dict[FactKind, frozenset[str]] = {
    FactKind.CODES: frozenset({"includes", "excludes", "starts_with"}),
    FactKind.ENUM_LIST: frozenset({"includes", "excludes"}),
    FactKind.CODE: frozenset({"equals", "not_equals", "in", "not_in", "starts_with"}),
    FactKind.TEXT: frozenset({"equals", "not_equals", "in", "not_in", "starts_with"}),
    FactKind.ENUM: frozenset({"equals", "not_equals", "in", "not_in"}),
    FactKind.INTEGER: frozenset(
        {"equals", "not_equals", "in", "not_in", "at_least", "more_than", "at_most", "less_than"}
    ),
    FactKind.MASS: frozenset({"at_least", "more_than", "at_most", "less_than"}),
    FactKind.DURATION: frozenset({"at_least", "more_than", "at_most", "less_than"}),
    FactKind.BOOL: frozenset({"equals", "not_equals"}),
}
_COMBINATORS = ("all", "any", "not")
_ACTION_KEYS = frozenset({"action", "due", "only_if"})
_OFFSET = re.compile(r"^(?P<duration>.+?)(?:\s+after\s+(?P<anchor>enrolment|event))?$")


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class Resolver:
    """Resolves values against one pathway file's parameters, reporting into its Source."""

    def __init__(self, source: Source, parameters: Mapping[str, Any], chains: Iterable[str]):
        self.source = source
        self.parameters = dict(parameters)
        self.chains = frozenset(chains)
        self.used_parameters: set[str] = set()

    # -- scalars and parameters -------------------------------------------------------------

    def value(self, raw: Any, path: Path) -> tuple[Any, Path] | None:
        """The value at `path`, following a `$parameter` reference to where it is defined."""
        if isinstance(raw, str) and raw.startswith("$"):
            name = raw[1:]
            if name not in self.parameters:
                self.source.report(
                    "unknown-parameter",
                    path,
                    f"'${name}' is not one of this pathway's parameters"
                    + suggest(name, self.parameters),
                )
                return None
            self.used_parameters.add(name)
            return self.parameters[name], ("parameters", name)
        return raw, path

    def _where(self, at: Path, path: Path) -> str:
        return "" if at == path else f" (used at {render_path(path)})"

    def duration(self, raw: Any, path: Path, *, exact: bool = False) -> Duration | None:
        resolved = self.value(raw, path)
        if resolved is None:
            return None
        value, at = resolved
        try:
            duration = parse_duration(value)
        except ValueError as exc:
            self.source.report("bad-duration", at, f"{exc}{self._where(at, path)}")
            return None
        if exact and duration.kind is not DurationKind.EXACT:
            self.source.report(
                "bad-duration",
                at,
                f"'{duration}' is a calendar duration; a window or comparison needs an exact one "
                f"such as '24h' or '7d'{self._where(at, path)}",
            )
            return None
        return duration

    # -- conditions ---------------------------------------------------------------------------

    def condition(
        self,
        raw: Any,
        path: Path,
        event_type: str | None,
        *,
        enrolled: bool,
        windows: list[Window] | None = None,
        skip: Iterable[str] = (),
    ) -> Condition:
        """A condition mapping: fact keys (ANDed), plus `all`, `any` and `not`."""
        if not isinstance(raw, dict):
            self.source.report(
                "bad-condition",
                path,
                "a condition is a mapping of facts to tests, such as 'symptom: chest_pain'",
            )
            return TRUE
        facts = event_facts(event_type, enrolled=enrolled) if event_type else {}
        if "actions_fired" in facts:
            facts["actions_fired"] = FactSpec(
                "actions_fired",
                FactKind.ENUM_LIST,
                facts["actions_fired"].description,
                tuple(ACTIONS),
            )
        items: list[Condition] = []
        for key, value in raw.items():
            here = (*path, key)
            if key in skip:
                continue
            if key in ("all", "any"):
                if not isinstance(value, list) or not value:
                    self.source.report(
                        "bad-condition", here, f"'{key}' takes a list of one or more conditions"
                    )
                    continue
                parts = tuple(
                    self.condition(item, (*here, i), event_type, enrolled=enrolled, windows=windows)
                    for i, item in enumerate(value)
                )
                items.append(All(parts) if key == "all" else AnyOf(parts))
            elif key == "not":
                items.append(
                    Not(self.condition(value, here, event_type, enrolled=enrolled, windows=windows))
                )
            elif key == "event":
                self.source.report(
                    "bad-condition", here, "'event' names the event type once, at the top of 'when'"
                )
            elif key in facts:
                items.extend(self._fact_tests(facts[key], value, here, windows))
            else:
                items.append(TRUE)
                self._unknown_fact(key, here, event_type, facts, enrolled)
        return items[0] if len(items) == 1 else All(tuple(items))

    def _unknown_fact(
        self,
        key: str,
        path: Path,
        event_type: str | None,
        facts: Mapping[str, FactSpec],
        enrolled: bool,
    ) -> None:
        if event_type is None:
            return
        later = event_facts(event_type, enrolled=True)
        if not enrolled and key in later:
            self.source.report(
                "unknown-field",
                path,
                f"'{key}' is a fact about an enrolled patient's instance; it is "
                "not known at enrolment",
            )
            return
        known = ", ".join(sorted(facts)) or "none"
        self.source.report(
            "unknown-field",
            path,
            f"'{key}' is not a field or fact of '{event_type}'{suggest(key, facts)} "
            f"(known: {known})",
        )

    def _fact_tests(
        self,
        fact: FactSpec,
        raw: Any,
        path: Path,
        windows: list[Window] | None,
    ) -> list[Condition]:
        name = fact.name
        tests: dict[str, Any]
        if isinstance(raw, dict):
            tests = dict(raw)
        elif isinstance(raw, list):
            tests = {"includes" if fact.kind in _LIST_KINDS else "in": raw}
        else:
            tests = {"includes" if fact.kind in _LIST_KINDS else "equals": raw}
        if fact.windowed:
            over = tests.pop("over", None)
            if over is None:
                self.source.report(
                    "missing-window",
                    path,
                    f"'{fact.name}' is a change over time: say over what window, e.g. 'over: 24h'",
                )
                return [TRUE]
            window = self.duration(over, (*path, "over"), exact=True)
            if window is None or window.seconds is None:
                return [TRUE]
            name = f"{fact.name}_{window.seconds}s"
            if windows is not None and all(w.fact != name for w in windows):
                windows.append(Window(name, fact.name, window.seconds))
        elif "over" in tests:
            self.source.report(
                "bad-window",
                (*path, "over"),
                f"'{fact.name}' is not a change over time; 'over' does not apply",
            )
            tests.pop("over")
        if not tests:
            self.source.report("bad-condition", path, f"no test given for '{fact.name}'")
            return [TRUE]
        out: list[Condition] = []
        for word, value in tests.items():
            here = (*path, word) if isinstance(raw, dict) else path
            op = OPERATORS.get(word)
            if op is None:
                self.source.report(
                    "unknown-operator",
                    here,
                    f"'{word}' is not a test{suggest(word, OPERATORS)} "
                    f"(tests for {fact.kind} facts: "
                    f"{', '.join(sorted(_ALLOWED[fact.kind]))})",
                )
                continue
            if word not in _ALLOWED[fact.kind]:
                self.source.report(
                    "bad-operator",
                    here,
                    f"'{word}' cannot test '{fact.name}', {_article(fact.kind)} {fact.kind} fact "
                    f"(use: {', '.join(sorted(_ALLOWED[fact.kind]))})",
                )
                continue
            if fact.kind in _LIST_KINDS and op is Op.PREFIX:
                op = Op.INCLUDES_PREFIX
            compared = self._test_value(fact, op, value, here)
            if compared is not None:
                out.append(Compare(name, op, compared))
        return out or [TRUE]

    def _test_value(self, fact: FactSpec, op: Op, raw: Any, path: Path) -> Any:
        multi = op in (Op.IN, Op.NOT_IN, Op.PREFIX, Op.INCLUDES, Op.EXCLUDES, Op.INCLUDES_PREFIX)
        resolved = self.value(raw, path)
        if resolved is None:
            return None
        value, at = resolved
        if multi and isinstance(value, list) and at == path:
            value = self._splice(value, path)
            if value is None:
                return None
        if multi:
            values = value if isinstance(value, list) else [value]
            if not values:
                self.source.report(
                    "unreachable-rule",
                    at,
                    "an empty list can never match: this test is always false",
                )
                return ()
            out = []
            for i, item in enumerate(values):
                one = self._one_value(fact, item, (*at, i) if isinstance(value, list) else at, path)
                if one is None:
                    return None
                out.append(one)
            return tuple(out)
        return self._one_value(fact, value, at, path)

    def _splice(self, items: list[Any], path: Path) -> list[Any] | None:
        """An inline list may name parameters among its items: `[chest_pain, $more_symptoms]`."""
        out: list[Any] = []
        for i, item in enumerate(items):
            if isinstance(item, str) and item.startswith("$"):
                resolved = self.value(item, (*path, i))
                if resolved is None:
                    return None
                found = resolved[0]
                out.extend(found if isinstance(found, list) else [found])
            else:
                out.append(item)
        return out

    def _one_value(self, fact: FactSpec, value: Any, at: Path, path: Path) -> Scalar | None:
        # "(used at ...)" only for a value taken from a parameter, not for an item of a list
        # written in place
        where = self._where(at, path) if at[:1] == ("parameters",) else ""
        kind = fact.kind
        if isinstance(value, str) and value.startswith("$"):
            self.source.report("bad-value", at, "a parameter cannot refer to another parameter")
            return None
        if kind in (FactKind.CODES, FactKind.CODE, FactKind.TEXT):
            if isinstance(value, str) and value:
                return value
            written = self.source.written.get(at, str(value))
            hint = (
                f" (write codes in quotes: '{written}')" if isinstance(value, (int, float)) else ""
            )
            self.source.report(
                "bad-value",
                at,
                f"'{fact.name}' holds codes or text; {value!r} is not one{hint}{where}",
            )
            return None
        if kind in (FactKind.ENUM, FactKind.ENUM_LIST):
            if isinstance(value, str) and value in fact.values:
                return value
            self.source.report(
                "unknown-value",
                at,
                f"{value!r} is not a value of '{fact.name}'"
                f"{suggest(str(value), fact.values)} "
                f"(values: {', '.join(fact.values)}){where}",
            )
            return None
        if kind is FactKind.BOOL:
            if isinstance(value, bool):
                return value
            self.source.report(
                "bad-value", at, f"'{fact.name}' is true or false, not {value!r}{where}"
            )
            return None
        if kind is FactKind.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                self.source.report(
                    "bad-value", at, f"'{fact.name}' is a whole number, not {value!r}{where}"
                )
                return None
            low, high = fact.minimum, fact.maximum
            if (low is not None and value < low) or (high is not None and value > high):
                self.source.report(
                    "value-out-of-range",
                    at,
                    f"'{fact.name}' runs from {low} to {high}; {value} can never occur{where}",
                )
                return None
            return value
        if kind is FactKind.MASS:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.source.report(
                    "missing-unit",
                    at,
                    f"the threshold {value} for '{fact.name}' has no unit: "
                    f"write '{value} kg'{where}",
                )
                return None
            try:
                return parse_mass(value).kg
            except ValueError as exc:
                self.source.report("bad-mass", at, f"{exc}{where}")
                return None
        if kind is FactKind.DURATION:
            duration = self.duration(value, at, exact=True)
            return duration.seconds if duration else None
        raise AssertionError(kind)  # pragma: no cover - every kind is handled above

    # -- when: an event type and its conditions ----------------------------------------------

    def event_type(self, raw: Any, path: Path) -> str | None:
        if not isinstance(raw, str) or raw not in EVENT_MODELS:
            self.source.report(
                "unknown-event",
                path,
                f"{raw!r} is not a known event type{suggest(str(raw), EVENT_MODELS)}",
            )
            return None
        return raw

    def when(
        self,
        raw: Any,
        path: Path,
        *,
        enrolled: bool,
        windows: list[Window] | None = None,
    ) -> tuple[str | None, Condition]:
        """`{event: TYPE, ...conditions}` -> (type, condition)."""
        if not isinstance(raw, dict):
            return None, TRUE
        if "event" not in raw:
            self.source.report(
                "missing-key", path, "'event' is required: name the event type this reacts to"
            )
            return None, TRUE
        event_type = self.event_type(raw["event"], (*path, "event"))
        if event_type is None:
            return None, TRUE
        condition = self.condition(
            raw, path, event_type, enrolled=enrolled, windows=windows, skip=("event",)
        )
        return event_type, condition

    # -- due times and actions ----------------------------------------------------------------

    def due(self, raw: Any, path: Path, default: Anchor) -> Due | None:
        if raw is None:
            return None
        if isinstance(raw, str):
            offset = self._offset(raw, path, default)
            return Due((offset,)) if offset else None
        if isinstance(raw, dict):
            key = "later_of" if "later_of" in raw else "earlier_of"
            items = raw.get(key)
            if not isinstance(items, list):
                return None
            offsets = [self._offset(item, (*path, key, i), default) for i, item in enumerate(items)]
            if any(o is None for o in offsets):
                return None
            return Due(tuple(o for o in offsets if o), pick_later=key == "later_of")
        return None

    def _offset(self, raw: Any, path: Path, default: Anchor) -> Offset | None:
        if not isinstance(raw, str):
            self.source.report(
                "bad-duration",
                path,
                f"expected a due time such as '7d' or '7d after enrolment', got {raw!r}",
            )
            return None
        match = _OFFSET.match(raw.strip())
        # the pattern matches any non-empty text; blank text is refused as a duration
        duration = self.duration(match.group("duration") if match else raw, path)
        if duration is None or match is None:
            return None
        anchor = Anchor(match.group("anchor")) if match.group("anchor") else default
        return Offset(duration, anchor)

    def actions(
        self,
        raw: Any,
        path: Path,
        event_type: str | None,
        *,
        enrolled: bool,
        anchor: Anchor = Anchor.EVENT,
    ) -> tuple[ActionTemplate, ...]:
        if not isinstance(raw, list):
            return ()
        out = []
        for i, item in enumerate(raw):
            action = self.action(item, (*path, i), event_type, enrolled=enrolled, anchor=anchor)
            if action is not None:
                out.append(action)
        return tuple(out)

    def action(
        self,
        raw: Any,
        path: Path,
        event_type: str | None,
        *,
        enrolled: bool,
        anchor: Anchor,
    ) -> ActionTemplate | None:
        if not isinstance(raw, dict) or "action" not in raw:
            return None
        name = raw["action"]
        spec = ACTIONS.get(name) if isinstance(name, str) else None
        if spec is None:
            self.source.report(
                "unknown-action",
                (*path, "action"),
                f"{name!r} is not a known action type{suggest(str(name), ACTIONS)}",
            )
            return None
        params: dict[str, Scalar] = {}
        for key, value in raw.items():
            if key in _ACTION_KEYS:
                continue
            here = (*path, key)
            param = spec.params.get(key)
            if param is None:
                self.source.report(
                    "unknown-action-param",
                    here,
                    f"'{name}' takes no '{key}'{suggest(key, spec.params)} "
                    f"(it takes: {', '.join(sorted(spec.params))})",
                )
                continue
            checked = self._param(param.kind, key, value, here)
            if checked is not None:
                params[key] = checked
        for key in sorted(spec.required - raw.keys()):
            self.source.report("missing-action-param", path, f"'{name}' needs '{key}'")
        if spec.one_of and not spec.one_of & raw.keys():
            self.source.report(
                "missing-action-param",
                path,
                f"'{name}' needs one of: {', '.join(sorted(spec.one_of))}",
            )
        if len(spec.one_of & raw.keys()) > 1:
            self.source.report(
                "conflicting-action-params",
                path,
                f"'{name}' takes one of {', '.join(sorted(spec.one_of))}, "
                "not both: a chain's levels name their own roles",
            )
        due = self.due(raw.get("due"), (*path, "due"), anchor)
        only_if = TRUE
        if raw.get("only_if") is not None and event_type is None:
            self.source.report(
                "bad-condition",
                (*path, "only_if"),
                "'only_if' tests the facts of an event, and this action fires "
                "from a timer (a deadline, a missing-data rule or a timed exit), "
                "where there is no event to test",
            )
        elif raw.get("only_if") is not None:
            only_if = self.condition(
                raw["only_if"], (*path, "only_if"), event_type, enrolled=enrolled
            )
        return ActionTemplate(name, params, due, only_if, render_path(path))

    def _param(self, kind: ParamKind, key: str, raw: Any, path: Path) -> Scalar | None:
        resolved = self.value(raw, path)
        if resolved is None:
            return None
        value, at = resolved
        if kind is ParamKind.BOOL:
            if isinstance(value, bool):
                return value
            self.source.report("bad-value", at, f"'{key}' is true or false, not {value!r}")
            return None
        if not isinstance(value, str) or not WORD.match(value):
            self.source.report(
                "bad-value",
                at,
                f"'{key}' is a lower-case word such as 'care_coordinator', not {value!r}",
            )
            return None
        choices: Iterable[str] | None = {
            ParamKind.ROLE: ROLES,
            ParamKind.KIND: APPOINTMENT_KINDS,
            ParamKind.CHAIN: self.chains,
        }.get(kind)
        if choices is not None and value not in choices:
            code = {
                ParamKind.ROLE: "unknown-role",
                ParamKind.KIND: "unknown-value",
                ParamKind.CHAIN: "unknown-chain",
            }[kind]
            self.source.report(
                code,
                at,
                f"'{value}' is not a known {kind}"
                f"{suggest(value, choices)} (known: {', '.join(sorted(choices))})",
            )
            return None
        return value


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
