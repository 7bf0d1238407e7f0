"""Load pathway files: structure, then meaning, every problem collected before failing.

    load_pathway(path)        -> Pathway, or DefinitionError listing every problem
    check_paths(paths)        -> (pathways, problems) for files and folders, for `validate`

A pathway never half-loads: it is built only from a file with no problems at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path as FilePath
from typing import Any

from pydantic import ValidationError

from engine.catalogue import ACTIONS, ROLES
from engine.definition.conditions import TRUE, Condition
from engine.definition.document import PathwayDoc
from engine.definition.execution import resolve_execution
from engine.definition.model import (
    Anchor,
    Chain,
    Deadline,
    DeadlineStart,
    Exit,
    Level,
    MissingDataRule,
    Pathway,
    Rule,
    Trigger,
    Window,
)
from engine.definition.resolver import WORD, Resolver, suggest
from engine.definition.satisfiable import satisfiable
from engine.definition.source import Path, Source, parse
from engine.errors import DefinitionError, Problem

PATHWAY_SUFFIXES = (".yaml", ".yml")


def load_pathway(path: str | FilePath, overrides: Mapping[str, Any] | None = None) -> Pathway:
    """Load one pathway file, or raise DefinitionError with every problem in it."""
    file = FilePath(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Problem("unreadable-file", str(exc), str(file), 1, 1, "")]) from exc
    pathway, problems = load_text(str(file), text, overrides)
    if pathway is None:
        raise DefinitionError(problems)
    return pathway


def load_text(
    file: str, text: str, overrides: Mapping[str, Any] | None = None
) -> tuple[Pathway | None, list[Problem]]:
    """Load a pathway from its text; never raises on bad input."""
    source = parse(file, text)
    if source.problems and source.data is None:
        return None, _unique(source.problems)
    data = source.data
    if not isinstance(data, dict):
        source.report(
            "not-a-pathway",
            (),
            "a pathway file is a mapping with id, version, title, "
            "description, owner, enrolment, rules...",
        )
        return None, _unique(source.problems)
    _check_structure(source, data)
    pathway = _Builder(source, data, overrides or {}).build()
    if source.problems:
        return None, _unique(source.problems)
    return pathway, []


def check_paths(
    paths: Iterable[str | FilePath], overrides: Mapping[str, Any] | None = None
) -> tuple[list[Pathway], list[Problem]]:
    """Load every pathway file under `paths` (files or folders). Reports duplicate versions."""
    pathways: list[Pathway] = []
    problems: list[Problem] = []
    for file in pathway_files(paths):
        try:
            pathways.append(load_pathway(file, overrides))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    seen: dict[str, Pathway] = {}
    for pathway in pathways:
        other = seen.setdefault(pathway.key, pathway)
        if other is not pathway:
            line, column = parse(pathway.file, pathway.source_text).position(("id",))
            problems.append(
                Problem(
                    "duplicate-pathway",
                    f"{pathway.key} is also defined in {other.file}",
                    pathway.file,
                    line,
                    column,
                    "id",
                )
            )
    return pathways, problems


def pathway_files(paths: Iterable[str | FilePath]) -> list[FilePath]:
    files: list[FilePath] = []
    for path in map(FilePath, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in PATHWAY_SUFFIXES))
        else:
            files.append(path)
    return files


def _listed(raw: Any) -> list[Any]:
    """A list from the file, or nothing when it is not one (the structure check reports it)."""
    return raw if isinstance(raw, list) else []


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for p in sorted(problems, key=lambda p: (p.line, p.column, p.code, p.message)):
        key = (p.code, p.location, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# -- structure ---------------------------------------------------------------------------------

_TYPE_CODES = {"missing": "missing-key", "extra_forbidden": "unknown-key"}


def _check_structure(source: Source, data: dict[str, Any]) -> None:
    try:
        PathwayDoc.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        located = [(_data_path(data, e["loc"], e["type"]), e) for e in errors]
        # a value that fits no member of a union: a pattern's hint says most (version: v1)
        located.sort(key=lambda item: item[1]["type"] != "string_pattern_mismatch")
        deeper = {path[:-1] for path, _ in located if path}
        reported: set[Path] = set()
        for path, error in located:
            if error["type"].endswith("_type") and any(
                d[: len(path)] == path and d != path[:-1] for d in deeper if len(d) >= len(path)
            ):
                continue  # a deeper problem explains it better
            if path in reported and error["type"] not in _TYPE_CODES:
                continue  # one message per place, not one per member of a union
            reported.add(path)
            code = _TYPE_CODES.get(error["type"], "bad-value")
            source.report(code, path, _message(source, data, path, error))


def _data_path(data: Any, loc: tuple[Any, ...], error_type: str) -> Path:
    """Drop the parts of a pydantic `loc` that name union members rather than places."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if (isinstance(current, dict) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and part < len(current)
        ):
            path.append(part)
            current = current[part]
        elif last and error_type == "missing" and isinstance(part, str):
            path.append(part)
    return tuple(path)


def _message(source: Source, data: Any, path: Path, error: Any) -> str:
    error_type = error["type"]
    key = path[-1] if path else ""
    if error_type == "missing":
        return f"'{key}' is required here"
    if error_type == "extra_forbidden":
        parent = _model_fields_at(path)
        return f"'{key}' is not a key here{suggest(str(key), parent)}" + (
            f" (keys: {', '.join(parent)})" if parent else ""
        )
    if error_type == "string_pattern_mismatch":
        return f"{error['input']!r} is not allowed here: {_pattern_hint(path)}"
    msg = str(error["msg"])
    return msg[0].lower() + msg[1:] if msg else msg


def _pattern_hint(path: Path) -> str:
    if path == ("id",):
        return "a pathway id is lower-case letters, digits and dashes, e.g. 'chf-post-discharge'"
    if path == ("version",):
        return "a version is a whole number (3) or a semantic version ('1.2.0')"
    return "write a lower-case word: letters, digits and underscores, e.g. 'follow_up_overdue'"


def _model_fields_at(path: Path) -> list[str]:
    """The keys allowed at the mapping that contains `path`, for suggestions."""
    from engine.definition import document as d

    sections: dict[str, Any] = {
        "enrolment": d.EnrolmentDoc,
        "rules": d.RuleDoc,
        "deadlines": d.DeadlineDoc,
        "exit": d.ExitDoc,
        "escalations": d.ChainDoc,
        "execution": d.ExecutionDoc,
    }
    parent = path[:-1]
    model: Any = d.PathwayDoc
    if parent:
        model = sections.get(str(parent[0]))
        if parent[0] == "enrolment" and len(parent) >= 3:
            model = d.TriggerDoc
        if parent[0] == "escalations" and len(parent) >= 4:
            model = d.LevelDoc
        if parent[-1] == "due":
            model = d.DueDoc
    return list(model.model_fields) if model else []


# -- meaning -----------------------------------------------------------------------------------


class _Builder:
    def __init__(self, source: Source, data: dict[str, Any], overrides: Mapping[str, Any]):
        self.source = source
        self.data = data
        raw_parameters = data.get("parameters")
        parameters: dict[str, Any] = raw_parameters if isinstance(raw_parameters, dict) else {}
        for name in parameters:
            if not WORD.match(str(name)):
                source.report(
                    "bad-parameter-name",
                    ("parameters", name),
                    f"'{name}' is not a parameter name: use a lower-case word",
                )
        merged = dict(parameters)
        for name, value in overrides.items():
            if name not in parameters:
                source.report(
                    "unknown-parameter",
                    ("parameters",),
                    f"override '{name}' is not a parameter of this pathway"
                    f"{suggest(name, parameters)}",
                )
            merged[name] = value
        raw_chains = data.get("escalations")
        chains: dict[str, Any] = raw_chains if isinstance(raw_chains, dict) else {}
        self.r = Resolver(source, merged, chains)
        self.declared = parameters
        self.ids: dict[str, Path] = {}

    def _section(self, key: str) -> list[tuple[Path, dict[str, Any]]]:
        items = self.data.get(key)
        if not isinstance(items, list):
            return []
        return [((key, i), item) for i, item in enumerate(items) if isinstance(item, dict)]

    def _claim_id(self, raw: Any, path: Path) -> str:
        if not isinstance(raw, str):
            return ""
        if raw in self.ids:
            first = self.ids[raw]
            line, _ = self.source.position(first)
            self.source.report(
                "duplicate-id",
                path,
                f"'{raw}' is already the id of another rule, trigger or deadline "
                f"(line {line}); ids must be unique in a pathway",
            )
        else:
            self.ids[raw] = path
        return raw

    def build(self) -> Pathway | None:
        chains = self._chains()
        triggers = self._triggers()
        exits = self._exits()
        unconditional_exits = {
            e.event_type: e.reason for e in exits if e.event_type and e.condition == TRUE
        }
        rules, missing = self._rules(unconditional_exits)
        deadlines = self._deadlines(unconditional_exits, rules, triggers, exits, missing)
        execution = resolve_execution(self.source, self.r, self.data.get("execution"))
        for name in self.r.parameters.keys() - self.r.used_parameters:
            if name in self.declared:
                self.source.report(
                    "unused-parameter",
                    ("parameters", name),
                    f"parameter '{name}' is never used: remove it, or refer to it as ${name}",
                )
        if self.source.problems:
            return None
        version = self.data["version"]
        text = self.source.text
        return Pathway(
            id=self.data["id"],
            version=str(version),
            title=self.data["title"],
            description=self.data["description"],
            owner=self.data["owner"],
            parameters=dict(self.r.parameters),
            triggers=triggers,
            rules=rules,
            missing_data=missing,
            deadlines=deadlines,
            chains=chains,
            exits=exits,
            execution=execution,
            file=self.source.file,
            source_text=text,
            source_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        )

    def _chains(self) -> dict[str, Chain]:
        raw = self.data.get("escalations")
        chains: dict[str, Chain] = {}
        if not isinstance(raw, dict):
            return chains
        for name, chain in raw.items():
            path: Path = ("escalations", name)
            if not WORD.match(str(name)):
                self.source.report(
                    "bad-value", path, f"'{name}' is not a chain name: use a lower-case word"
                )
            levels_raw = chain.get("levels") if isinstance(chain, dict) else None
            if not isinstance(levels_raw, list) or not levels_raw:
                continue
            levels = []
            for i, level in enumerate(levels_raw):
                here = (*path, "levels", i)
                if not isinstance(level, dict):
                    continue
                last = i == len(levels_raw) - 1
                role = level.get("role")
                if isinstance(role, str) and role not in ROLES:
                    self.source.report(
                        "unknown-role",
                        (*here, "role"),
                        f"'{role}' is not a known role{suggest(role, ROLES)} "
                        f"(known: {', '.join(sorted(ROLES))})",
                    )
                final = level.get("final") is True
                window = None
                if level.get("acknowledge_within") is not None:
                    window = self.r.duration(
                        level["acknowledge_within"], (*here, "acknowledge_within")
                    )
                    if final:
                        self.source.report(
                            "final-level-window",
                            (*here, "acknowledge_within"),
                            "the final level has no next level to escalate to: "
                            "remove 'acknowledge_within' or add a level after it",
                        )
                elif not final:
                    self.source.report(
                        "missing-acknowledgement-window",
                        here,
                        "say how long this level has to acknowledge before the "
                        "next level: 'acknowledge_within: 4h'",
                    )
                if final and not last:
                    self.source.report(
                        "final-not-last",
                        here,
                        "a level marked final must be the last: the levels after "
                        "it could never be reached",
                    )
                if last and not final:
                    self.source.report(
                        "chain-without-final",
                        here,
                        f"escalation chain '{name}' has no final level: mark its "
                        "last level 'final: true' (who holds it when nobody "
                        "acknowledges?)",
                    )
                levels.append(Level(str(role), window))
            chains[str(name)] = Chain(str(name), tuple(levels))
        return chains

    def _triggers(self) -> tuple[Trigger, ...]:
        enrolment = self.data.get("enrolment")
        raw = enrolment.get("triggers") if isinstance(enrolment, dict) else None
        if not isinstance(raw, list):
            return ()
        out = []
        for i, trigger in enumerate(raw):
            path: Path = ("enrolment", "triggers", i)
            if not isinstance(trigger, dict):
                continue
            trigger_id = self._claim_id(trigger.get("id"), (*path, "id"))
            event_type, condition = self.r.when(
                trigger.get("when"), (*path, "when"), enrolled=False
            )
            exclusion = None
            if trigger.get("unless") is not None:
                exclusion = self.r.condition(
                    trigger["unless"], (*path, "unless"), event_type, enrolled=False
                )
            actions = self.r.actions(
                trigger.get("then"),
                (*path, "then"),
                event_type,
                enrolled=False,
                anchor=Anchor.ENROLMENT,
            )
            if event_type and not satisfiable(condition):
                self.source.report(
                    "unreachable-rule",
                    (*path, "when"),
                    "these conditions contradict each other: nobody can enrol",
                )
            if event_type:
                out.append(Trigger(trigger_id, event_type, condition, exclusion, actions))
        return tuple(out)

    def _rules(
        self, exits: Mapping[str, str]
    ) -> tuple[tuple[Rule, ...], tuple[MissingDataRule, ...]]:
        rules: list[Rule] = []
        missing: list[MissingDataRule] = []
        for path, rule in self._section("rules"):
            rule_id = self._claim_id(rule.get("id"), (*path, "id"))
            when = rule.get("when")
            if isinstance(when, dict) and "missing" in when:
                item = self._missing_rule(rule_id, rule, path)
                if item:
                    missing.append(item)
                continue
            windows: list[Window] = []
            event_type, condition = self.r.when(
                when, (*path, "when"), enrolled=True, windows=windows
            )
            actions = self.r.actions(rule.get("then"), (*path, "then"), event_type, enrolled=True)
            max_age = None
            if rule.get("max_age") is not None:
                max_age = self.r.duration(rule["max_age"], (*path, "max_age"))
            if_stale = self.r.actions(
                rule.get("if_stale"), (*path, "if_stale"), event_type, enrolled=True
            )
            if rule.get("if_stale") and rule.get("max_age") is None:
                self.source.report(
                    "unreachable-rule",
                    (*path, "if_stale"),
                    "'if_stale' needs 'max_age': without it no event is stale",
                )
            cancels = tuple(c for c in _listed(rule.get("cancels")) if isinstance(c, str))
            if event_type is None:
                continue
            if event_type in exits:
                self.source.report(
                    "unreachable-rule",
                    (*path, "when", "event"),
                    f"'{event_type}' always ends the instance (exit "
                    f"'{exits[event_type]}'), so this rule can never fire",
                )
            elif not satisfiable(condition):
                self.source.report(
                    "unreachable-rule",
                    (*path, "when"),
                    "these conditions contradict each other: the rule can never fire",
                )
            rules.append(
                Rule(
                    rule_id,
                    event_type,
                    condition,
                    actions,
                    tuple(windows),
                    max_age,
                    if_stale,
                    cancels,
                )
            )
        known = {d["id"] for _, d in self._section("deadlines") if isinstance(d.get("id"), str)}
        for path, rule in self._section("rules"):
            for j, name in enumerate(_listed(rule.get("cancels"))):
                if isinstance(name, str) and name not in known:
                    self.source.report(
                        "unknown-deadline",
                        (*path, "cancels", j),
                        f"'{name}' is not one of this pathway's deadlines"
                        f"{suggest(str(name), [str(k) for k in known if k])}",
                    )
        return tuple(rules), tuple(missing)

    def _missing_rule(
        self, rule_id: str, rule: dict[str, Any], path: Path
    ) -> MissingDataRule | None:
        when = rule["when"]
        here: Path = (*path, "when")
        for key in when:
            if key not in ("missing", "for"):
                self.source.report(
                    "bad-condition",
                    (*here, key),
                    "a missing-data rule takes only 'missing: <event type>' and 'for: <duration>'",
                )
        for key in ("max_age", "if_stale", "cancels"):
            if rule.get(key):
                self.source.report(
                    "bad-condition", (*path, key), f"'{key}' does not apply to a missing-data rule"
                )
        event_type = self.r.event_type(when["missing"], (*here, "missing"))
        if "for" not in when:
            self.source.report(
                "missing-key", here, "say how long a silence counts as missing: 'for: 48h'"
            )
            return None
        silence = self.r.duration(when["for"], (*here, "for"))
        actions = self.r.actions(rule.get("then"), (*path, "then"), None, enrolled=True)
        if event_type is None or silence is None:
            return None
        return MissingDataRule(rule_id, event_type, silence, actions)

    def _deadlines(
        self,
        exits: Mapping[str, str],
        rules: tuple[Rule, ...],
        triggers: tuple[Trigger, ...],
        exit_list: tuple[Exit, ...],
        missing: tuple[MissingDataRule, ...],
    ) -> tuple[Deadline, ...]:
        fired = {a.type for r in rules for a in (*r.actions, *r.if_stale)}
        fired |= {a.type for t in triggers for a in t.actions}
        fired |= {a.type for e in exit_list for a in e.actions}
        fired |= {a.type for m in missing for a in m.actions}
        for _, deadline in self._section("deadlines"):
            for item in _listed(deadline.get("then")):
                if isinstance(item, dict) and isinstance(item.get("action"), str):
                    fired.add(item["action"])
        out = []
        for path, raw in self._section("deadlines"):
            deadline_id = self._claim_id(raw.get("id"), (*path, "id"))
            start_raw = raw.get("start", "enrolment")
            start = DeadlineStart.ENROLMENT
            start_event: str | None = None
            start_condition: Condition = TRUE
            start_action: str | None = None
            if isinstance(start_raw, dict) and "action" in start_raw:
                start = DeadlineStart.ACTION
                start_action = start_raw["action"]
                if len(start_raw) > 1:
                    self.source.report(
                        "bad-condition",
                        (*path, "start"),
                        "'start: {action: ...}' takes nothing else",
                    )
                if not isinstance(start_action, str) or start_action not in ACTIONS:
                    self.source.report(
                        "unknown-action",
                        (*path, "start", "action"),
                        f"{start_action!r} is not a known action type"
                        f"{suggest(str(start_action), ACTIONS)}",
                    )
                elif start_action not in fired:
                    self.source.report(
                        "unreachable-rule",
                        (*path, "start", "action"),
                        f"no trigger or rule of this pathway fires "
                        f"'{start_action}', so this deadline never starts",
                    )
            elif isinstance(start_raw, dict):
                start = DeadlineStart.EVENT
                start_event, start_condition = self.r.when(
                    start_raw, (*path, "start"), enrolled=True
                )
            after = None
            if raw.get("after") is not None:
                after = self.r.duration(raw["after"], (*path, "after"))
            elif start is not DeadlineStart.ACTION:
                self.source.report(
                    "missing-key", path, "say when the deadline falls due: 'after: 5d'"
                )
            actions = self.r.actions(raw.get("then"), (*path, "then"), None, enrolled=True)
            cancel = raw.get("cancelled_by")
            if cancel is None:
                self.source.report(
                    "deadline-never-cancelled",
                    path,
                    "nothing cancels this deadline, so it always fires: say what "
                    "event means it was met ('cancelled_by: {event: ...}')",
                )
                continue
            cancel_event, cancel_condition = self.r.when(
                cancel, (*path, "cancelled_by"), enrolled=True
            )
            if cancel_event is None:
                continue
            if not satisfiable(cancel_condition):
                self.source.report(
                    "deadline-never-cancelled",
                    (*path, "cancelled_by"),
                    "these conditions contradict each other, so nothing can ever "
                    "cancel this deadline",
                )
            if start is DeadlineStart.EVENT and start_event is None:
                continue
            out.append(
                Deadline(
                    deadline_id,
                    start,
                    after,
                    cancel_event,
                    cancel_condition,
                    actions,
                    start_event,
                    start_condition,
                    start_action,
                )
            )
        return tuple(out)

    def _exits(self) -> tuple[Exit, ...]:
        out = []
        reasons: dict[str, Path] = {}
        for path, raw in self._section("exit"):
            reason = raw.get("reason")
            if isinstance(reason, str):
                if reason in reasons:
                    self.source.report(
                        "duplicate-id", (*path, "reason"), f"exit reason '{reason}' is given twice"
                    )
                reasons.setdefault(reason, path)
            has_when, has_after = raw.get("when") is not None, raw.get("after") is not None
            if has_when == has_after:
                self.source.report(
                    "bad-exit",
                    path,
                    "an exit needs exactly one of 'when: {event: ...}' or "
                    "'after: <duration after enrolment>'",
                )
                continue
            event_type, condition, after = None, TRUE, None
            if has_when:
                event_type, condition = self.r.when(raw["when"], (*path, "when"), enrolled=True)
                if event_type is None:
                    continue
            else:
                after = self.r.duration(raw["after"], (*path, "after"))
            actions = self.r.actions(raw.get("then"), (*path, "then"), event_type, enrolled=True)
            out.append(Exit(str(reason), event_type, condition, after, actions))
        return tuple(out)
