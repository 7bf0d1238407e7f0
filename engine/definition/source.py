"""YAML in, plain data out, with the line and column of every key and item kept.

PyYAML's composer gives nodes with marks; we build plain Python data from them ourselves so that
we can (a) remember where each location path came from, for errors a clinical lead can find, and
(b) refuse a key written twice in one mapping, which PyYAML would silently resolve to the last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.errors import Problem

Path = tuple[str | int, ...]
Mark = tuple[int, int]  # line and column, 1-based

#: what YAML counts as a line break
_BREAKS = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with its line breaks escaped, so that each problem renders as one line."""
    return _BREAKS.sub(lambda m: repr(m.group())[1:-1], text)


def render_path(path: Path) -> str:
    """('rules', 2, 'when', 'weight_gain') -> 'rules[2].when.weight_gain'"""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Source:
    """A parsed YAML document and where each of its parts was written."""

    file: str
    text: str
    data: Any = None
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    #: numbers as the author wrote them ('06' loads as 6; a message should say '06')
    written: dict[Path, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def position(self, path: Path) -> tuple[int, int]:
        """Line and column (1-based) of the deepest part of `path` that exists in the file."""
        for end in range(len(path), -1, -1):
            mark = self.marks.get(tuple(path[:end]))
            if mark is not None:
                return mark
        return (1, 1)

    def problem(self, code: str, path: Path, message: str, mark: Mark | None = None) -> Problem:
        """A problem at `path`, placed at `mark` or else where `path` is written."""
        line, column = mark or self.position(path)
        return Problem(
            code, one_line(message), self.file, line, column, one_line(render_path(path))
        )

    def report(self, code: str, path: Path, message: str, mark: Mark | None = None) -> None:
        self.problems.append(self.problem(code, path, message, mark))


def parse(file: str, text: str) -> Source:
    """Parse one YAML document. YAML errors become `yaml-syntax` problems, never exceptions."""
    source = Source(file=file, text=text)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "not valid YAML"
        source.report("yaml-syntax", (), f"not valid YAML: {reason}", (line, column))
        return source
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, at exc.position
        before = text[: exc.position]
        where = (before.count("\n") + 1, exc.position - before.rfind("\n"))
        source.report("yaml-syntax", (), f"not valid YAML: {str(exc).splitlines()[0]}", where)
        return source
    except yaml.YAMLError as exc:
        source.report("yaml-syntax", (), f"not valid YAML: {exc}")
        return source
    if node is None:
        source.report("empty-file", (), "the file is empty")
        return source
    source.marks[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
    builder = _Builder(source)
    try:
        source.data = builder.build(node, ())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = getattr(exc, "problem", None) or str(exc)  # one line, not PyYAML's excerpt
        source.report("yaml-syntax", (), f"not valid YAML: {reason}", (line, column))
    return source


#: Far more values than any pathway holds. A file that expands to more through its aliases
#: (`*name`) is refused rather than built ("billion laughs").
MAX_VALUES = 100_000
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _refuse(node: yaml.Node, reason: str) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=reason, problem_mark=node.start_mark)


class _Builder:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.constructor = yaml.SafeLoader("")
        self.count = 0  # values built so far
        self.open: set[int] = set()  # the mappings and lists being built, to catch alias loops

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _refuse(
                node,
                f"the file expands to more than {MAX_VALUES} values through its aliases (*name)",
            )
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if id(node) in self.open:
                raise _refuse(node, "an alias (*name) refers to a mapping or list it is part of")
            self.open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path)
                return [self._item(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self.open.discard(id(node))
        if node.tag == _TIMESTAMP:  # kept as text (see below), even when no such date exists
            return node.value
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (ValueError, LookupError, AttributeError) as exc:  # e.g. `!!int 0x`
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise _refuse(node, f"{node.value!r} cannot be read as {tag}") from exc
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.source.written[path] = node.value
        # Dates and timestamps stay as the author wrote them; the models decide what they mean.
        if not isinstance(value, (str, int, float, bool, type(None))):
            return node.value
        return value

    def _item(self, node: yaml.Node, path: Path) -> Any:
        self.source.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        return self.build(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        self.constructor.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, path)
            if isinstance(key, (list, dict)):
                mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                self.source.report("bad-key", path, "a mapping key must be a plain word", mark)
                continue
            key = str(key) if not isinstance(key, str) else key
            here = (*path, key)
            mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in out:
                self.source.report(
                    "duplicate-key",
                    here,
                    f"'{key}' is written twice in the same mapping; only one can be meant",
                    mark,
                )
                continue
            self.source.marks[here] = mark
            out[key] = self.build(value_node, here)
        return out
