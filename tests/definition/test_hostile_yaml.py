"""Hostile pathway files: nesting too deep for PyYAML's recursive composer (or made deep through
aliases and merge keys), and merge-key bombs. Each gives one located problem, never an
exception: `carepath validate` prints it, POST /pathways answers 422 with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.definition.loader import check_paths, load_text
from engine.definition.source import MAX_DEPTH, MAX_VALUES, parse
from engine.errors import Problem
from tests.definition.factory import HEAD, pathway, position

TOO_DEEP = "lists and mappings are nested more than 64 levels deep here"


def problems_of(text: str) -> list[Problem]:
    loaded, problems = load_text("pathway.yaml", text)
    assert loaded is None
    return problems


def flow(levels: int) -> str:
    """`parameters: {codes: [[[...]]]}`: the file and `parameters` are two levels already."""
    return pathway(parameters="parameters:\n  codes: " + "[" * levels + "I50" + "]" * levels)


@pytest.mark.parametrize("levels", [63, 64, 1_000, 100_000])
def test_flow_nesting_too_deep_is_one_located_problem(levels: int) -> None:
    text = flow(levels)
    (problem,) = problems_of(text)
    assert (problem.code, problem.location) == ("too-deep", "")
    assert problem.message == f"{TOO_DEEP}; a pathway needs about ten"
    line, column = position(text, "codes: ")
    assert (problem.line, problem.column) == (line, column + len("codes: ") + 62)


def test_nesting_up_to_the_limit_is_read() -> None:
    """62 lists under `parameters` are 64 levels: read (and refused for what they mean)."""
    codes = [p.code for p in problems_of(flow(62))]
    assert "too-deep" not in codes and codes


def test_block_nesting_too_deep() -> None:
    lines = ["parameters:"] + [f"{'  ' * n}k{n}:" for n in range(1, 3_000)] + ["  " * 3_000 + "x"]
    (problem,) = problems_of(HEAD + "\n".join(lines) + "\n")
    # the file is level 1, `parameters` level 2: the mapping holding k64 (line 6 + 64) is 65
    assert (problem.code, problem.line) == ("too-deep", len(HEAD.splitlines()) + MAX_DEPTH + 1)


def test_aliases_inside_aliases_too_deep() -> None:
    """Each line is shallow; built, `v70` is 71 lists deep (and 2,500 values: no bomb)."""
    lines = ["v0: &v0 [leaf]"] + [f"v{n}: &v{n} [*v{n - 1}]" for n in range(1, 71)]
    (problem,) = problems_of(HEAD + "\n".join(lines) + "\n")
    assert problem.code == "too-deep"
    assert problem.message == f"{TOO_DEEP} (through aliases, *name); a pathway needs about ten"
    assert problem.location.startswith("v63[0][0]")


def test_merge_keys_cannot_copy_a_billion_entries() -> None:
    """`<<: [*a, *a, ...]` would make PyYAML copy 900 million entries before anything counted."""
    keys = ", ".join(f"k{n}: {n}" for n in range(100))
    text = (
        HEAD
        + f"a: &a {{{keys}}}\n"
        + "l1: &l1 {<<: ["
        + ", ".join(["*a"] * 900)
        + "]}\n"
        + "l2: &l2 {<<: ["
        + ", ".join(["*l1"] * 10_000)
        + "]}\n"
    )
    refused = [p for p in problems_of(text) if p.code != "duplicate-key"]
    assert [(p.code, p.message) for p in refused] == [
        (
            "yaml-syntax",
            f"not valid YAML: the file expands to more than {MAX_VALUES} values through its "
            "merge keys (<<)",
        )
    ]


def test_merges_inside_merges_too_deep() -> None:
    """Mappings never built (their keys are duplicates), each merging the one before: a chain
    PyYAML's flatten_mapping would follow recursively, 3,000 deep."""
    lines = ["d: &a0 {k: 1}"] + [f"d: &a{n} {{<<: *a{n - 1}}}" for n in range(1, 3_000)]
    text = HEAD + "\n".join([*lines, "z: *a2999"]) + "\n"
    (problem,) = [p for p in problems_of(text) if p.code != "duplicate-key"]
    assert (problem.code, problem.location) == ("too-deep", "z")
    assert "(through merge keys, <<)" in problem.message


@pytest.mark.parametrize(
    "text",
    [
        "base: &base {a: 1}\nmore: {<<: *base, b: 2}\n",
        "x: &x {a: 1}\ny: &y {c: 3}\nmore: {<<: [*x, *y], b: 2}\n",
        "x: &x {a: 1}\ny: &y {<<: *x, c: 3}\nz: {<<: [*y, {d: 4}]}\n",
    ],
)
def test_merge_keys_still_mean_what_pyyaml_says(text: str) -> None:
    source = parse("pathway.yaml", text)
    assert source.problems == []
    assert source.data == yaml.safe_load(text)


def test_validate_reports_a_deep_file_with_the_others(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text(flow(5_000), encoding="utf-8")
    (tmp_path / "fine.yaml").write_text(pathway(), encoding="utf-8")
    pathways, problems = check_paths([tmp_path])
    assert [p.id for p in pathways] == ["test-pathway"]
    assert [(Path(p.file).name, p.code) for p in problems] == [("deep.yaml", "too-deep")]
