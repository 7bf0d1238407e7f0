"""Whole files and folders: the shipped pathways validate, files that cannot be read or that
repeat a pathway are reported, and `carepath validate` prints it all (plain or `--json`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.definition.loader import check_paths, load_pathway, pathway_files
from engine.errors import DefinitionError
from tests.definition.factory import pathway, position

ROOT = Path(__file__).resolve().parents[2]
PATHWAYS = ROOT / "pathways"
SHIPPED = sorted(PATHWAYS.glob("*.y*ml"))


def validate(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", *map(str, args)])
    return result.exit_code, result.stdout


# -- the shipped pathways -----------------------------------------------------------------------


def test_every_shipped_pathway_validates() -> None:
    pathways, problems = check_paths([PATHWAYS])

    assert [p.render() for p in problems] == []
    assert len(pathways) == len(SHIPPED) >= 1
    assert sorted(Path(p.file).name for p in pathways) == [f.name for f in SHIPPED]
    assert len({p.key for p in pathways}) == len(pathways)


@pytest.mark.parametrize("file", SHIPPED, ids=[f.stem for f in SHIPPED])
def test_each_shipped_pathway_loads_completely(file: Path) -> None:
    loaded = load_pathway(file)
    assert loaded.triggers
    assert loaded.source_text == file.read_text(encoding="utf-8")
    assert len(loaded.source_hash) == 64


def test_validate_prints_ok_for_each_shipped_pathway() -> None:
    code, out = validate(PATHWAYS)

    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(SHIPPED)
    for line, file in zip(lines, SHIPPED, strict=True):
        assert line.startswith("ok ")
        assert f"({PATHWAYS / file.name})" in line


# -- files and folders --------------------------------------------------------------------------


def test_a_file_that_is_not_utf8_is_unreadable(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes(pathway().replace("Test lead", "Équipe").encode("latin-1"))

    with pytest.raises(DefinitionError) as caught:
        load_pathway(file)

    (problem,) = caught.value.problems
    assert (problem.code, problem.file, problem.line, problem.column, problem.location) == (
        "unreadable-file",
        str(file),
        1,
        1,
        "",
    )
    assert "can't decode byte 0xc9" in problem.message


def test_a_missing_file_is_unreadable(tmp_path: Path) -> None:
    _, problems = check_paths([tmp_path / "nowhere.yaml"])
    assert [(p.code, p.line) for p in problems] == [("unreadable-file", 1)]
    assert "No such file or directory" in problems[0].message


def test_the_same_pathway_twice_is_reported_at_the_second_file_s_id(tmp_path: Path) -> None:
    chf = PATHWAYS / "chf-post-discharge.yaml"
    shutil.copy(chf, tmp_path / "a.yaml")
    shutil.copy(chf, tmp_path / "b.yaml")

    pathways, problems = check_paths([tmp_path])

    assert len(pathways) == 2
    line, _ = position(chf.read_text(encoding="utf-8"), "\nid: chf-post-discharge")
    (problem,) = problems
    assert (problem.code, problem.file, problem.line, problem.column, problem.location) == (
        "duplicate-pathway",
        str(tmp_path / "b.yaml"),
        line + 1,
        1,
        "id",
    )
    assert problem.message == f"chf-post-discharge@1 is also defined in {tmp_path / 'a.yaml'}"


def test_a_new_version_of_a_pathway_is_not_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "v1.yaml").write_text(pathway(), encoding="utf-8")
    (tmp_path / "v2.yaml").write_text(pathway().replace("version: 1", "version: 2"), "utf-8")

    pathways, problems = check_paths([tmp_path])

    assert problems == []
    assert sorted(p.key for p in pathways) == ["test-pathway@1", "test-pathway@2"]


def test_folders_are_searched_for_yaml_and_yml_files_only(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    for name in ("a.yaml", "nested/b.yml", "notes.txt", "c.yaml.bak"):
        (tmp_path / name).write_text("x", encoding="utf-8")

    assert pathway_files([tmp_path]) == [tmp_path / "a.yaml", tmp_path / "nested" / "b.yml"]


# -- the command line ---------------------------------------------------------------------------


def test_validate_with_a_bad_file_prints_each_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(pathway().replace("role: care_coordinator", "role: ward_nurse"), "utf-8")

    code, out = validate(bad, PATHWAYS)

    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(
        f"{bad}:14:11: unknown-role enrolment.triggers[0].then[0].role: 'ward_nurse' is not a "
        "known role"
    )
    assert [line[:3] for line in lines[1:]] == ["ok "] * len(SHIPPED)


def test_validate_json_lists_every_problem_for_tools(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(pathway(exit="exit:\n  - reason: completed\n"), "utf-8")

    result = CliRunner().invoke(app, ["validate", "--json", str(bad)])

    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {
            "file": str(bad),
            "line": 16,
            "column": 5,
            "code": "bad-exit",
            "location": "exit[0]",
            "message": "an exit needs exactly one of 'when: {event: ...}' or 'after: <duration "
            "after enrolment>'",
        }
    ]


def test_validate_json_of_good_files_is_an_empty_list() -> None:
    result = CliRunner().invoke(app, ["validate", "--json", str(PATHWAYS)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_validate_set_overrides_a_parameter_and_reports_an_unknown_one() -> None:
    chf = PATHWAYS / "chf-post-discharge.yaml"
    code, out = validate(chf, "--set", "weight_gain_24h_threshold=2 lb")
    assert code == 0
    assert out.startswith("ok chf-post-discharge@1 ")

    code, out = validate(chf, "--set", "weight_gain_threshold=2 lb")
    assert code == 1
    assert "unknown-parameter parameters: override 'weight_gain_threshold' is not a parameter" in (
        out
    )
