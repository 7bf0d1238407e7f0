"""YAML in, plain data out, with the line and column of every key and item kept.

PyYAML's composer gives nodes with marks; we build plain Python data from them ourselves so that
we can (a) remember where each location path came from, for errors a clinical lead can find, and
(b) refuse a key written twice in one mapping, which PyYAML would silently resolve to the last.

Hostile files end in a located problem, never an exception: lists and mappings nested more than
MAX_DEPTH deep (PyYAML's composer, our builder and the checks after them all recurse, and a
RecursionError would escape `carepath validate` and fail a POST /pathways with a 500), and a
file that expands to more than MAX_VALUES values through aliases (`*name`, "billion laughs") or
merge keys (`<<: [*a, *a, ...]`, which PyYAML would copy before anything could count them).
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
    """Parse one YAML document. YAML errors become `yaml-syntax` problems, nesting deeper than
    MAX_DEPTH a `too-deep` problem, never exceptions."""
    source = Source(file=file, text=text)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except _TooDeep as exc:
        source.report("too-deep", exc.path, exc.message, exc.at)
        return source
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
    except _TooDeep as exc:
        source.report("too-deep", exc.path, exc.message, exc.at)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = getattr(exc, "problem", None) or str(exc)  # one line, not PyYAML's excerpt
        source.report("yaml-syntax", (), f"not valid YAML: {reason}", (line, column))
    return source


#: Far more values than any pathway holds. A file that expands to more through its aliases
#: (`*name`) or merge keys (`<<`) is refused rather than built ("billion laughs").
MAX_VALUES = 100_000
#: How deeply lists and mappings may nest. The reference pathways nest 9 levels at most.
MAX_DEPTH = 64
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"


def _refuse(node: yaml.Node, reason: str) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=reason, problem_mark=node.start_mark)


class _TooDeep(yaml.YAMLError):
    """Lists and mappings nested more than MAX_DEPTH deep, at `mark` (and `path` when known)."""

    def __init__(self, mark: Any, path: Path = (), how: str = "") -> None:
        # a yaml Mark (PyYAML's, or its C extension's); None only if PyYAML gave none
        self.at: Mark = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.path = path
        self.message = (
            f"lists and mappings are nested more than {MAX_DEPTH} levels deep here{how}; "
            "a pathway needs about ten"
        )
        super().__init__(self.message)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer counts how deeply lists and mappings nest, and stops past
    MAX_DEPTH: PyYAML composes recursively (a few frames per level), so a file of 2,000 `[`
    would otherwise end in a RecursionError."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _TooDeep(event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.constructor = yaml.SafeLoader("")
        self.count = 0  # values built so far
        self.merged = 0  # entries copied by merge keys so far
        self.open: set[int] = set()  # the mappings and lists being built, to catch alias loops

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _refuse(
                node,
                f"the file expands to more than {MAX_VALUES} values through its aliases (*name)",
            )
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if len(path) >= MAX_DEPTH:  # composed shallow, built deep: aliases inside aliases
                raise _TooDeep(node.start_mark, path, " (through aliases, *name)")
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
        self._flatten(node, path, 0)
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

    def _flatten(self, node: yaml.MappingNode, path: Path, level: int) -> None:
        """PyYAML's `flatten_mapping` (merge keys: `<<: *defaults` copies the entries of
        `defaults` into this mapping), counting what it copies and how deeply merges nest, so
        that `<<: [*a, *a, ...]` over and over cannot copy billions of entries first."""
        if level > MAX_DEPTH:
            raise _TooDeep(node.start_mark, path, " (through merge keys, <<)")
        merge: list[tuple[yaml.Node, yaml.Node]] = []
        index = 0
        while index < len(node.value):
            key_node, value_node = node.value[index]
            if key_node.tag == _VALUE:
                key_node.tag = "tag:yaml.org,2002:str"
            if key_node.tag != _MERGE:
                index += 1
                continue
            del node.value[index]
            if isinstance(value_node, yaml.MappingNode):
                subnodes = [value_node]
            elif isinstance(value_node, yaml.SequenceNode):
                subnodes = value_node.value
            else:
                raise _refuse(value_node, "a merge key (<<) takes a mapping or a list of mappings")
            submerge = []
            for subnode in subnodes:
                if not isinstance(subnode, yaml.MappingNode):
                    raise _refuse(subnode, "a merge key (<<) takes a mapping or a list of mappings")
                self._flatten(subnode, path, level + 1)
                self.merged += len(subnode.value)
                if self.merged > MAX_VALUES:
                    raise _refuse(
                        subnode,
                        f"the file expands to more than {MAX_VALUES} values through its merge "
                        "keys (<<)",
                    )
                submerge.append(subnode.value)
            for value in reversed(submerge):
                merge.extend(value)
        if merge:
            node.value = merge + node.value
