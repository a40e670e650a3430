"""docs/tutorial.md is the plugin: every step's code is the plugin's, every line of the plugin is
in a step, each step's tests and shell sessions pass on the plugin as it is after that step,
and the page's line-count table is what the blocks count (tests/tutorial_doc.py)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_blocks import ROOT
from tests.tutorial_doc import (
    DOC,
    Replay,
    Tutorial,
    TutorialError,
    commands,
    matches_in_order,
    missing_lines,
    units,
)


@pytest.fixture(scope="module")
def tutorial() -> Tutorial:
    return Tutorial()


def test_every_line_of_the_plugins_is_in_a_step(tutorial: Tutorial) -> None:
    uncovered = tutorial.uncovered()
    assert not uncovered, ("no step of docs/tutorial.md shows these lines of the plugins (in "
                           "this form): show them in the step that adds them\n"
                           + "\n".join(uncovered))


def test_the_steps_add_up_to_the_finished_plugins(tutorial: Tutorial) -> None:
    finished = tutorial.tree_at(tutorial.steps[-1].number)
    on_disk = {p: (ROOT / p).read_text() for p in tutorial.files} | {
        p: (ROOT / p).read_text() for p in tutorial.test_steps}
    assert finished.keys() == on_disk.keys()
    for path, text in finished.items():
        assert text == on_disk[path], f"the steps give {path} differently"


def test_each_step_adds_to_the_one_before(tutorial: Tutorial) -> None:
    before: dict[str, str] = {}
    for step in tutorial.steps:
        now = tutorial.tree_at(step.number)
        assert before.keys() <= now.keys(), f"step {step.number} removes a file"
        assert now != before, f"step {step.number} changes nothing"
        before = now


@pytest.mark.slow
def test_every_step_names_tests_that_pytest_collects(tutorial: Tutorial) -> None:
    named = [test for step in tutorial.steps for test in step.tests]
    assert all(step.tests for step in tutorial.steps), "a step names no test"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *{test: None for test in named}],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    collected = {line.split("[")[0] for line in result.stdout.splitlines() if "::" in line}
    assert set(named) <= collected, set(named) - collected


def test_the_pages_table_is_the_count(tutorial: Tutorial) -> None:
    text = DOC.read_text()
    match = re.search(r"<!-- table: .*? -->\n(.*?)\n<!-- end of table -->", text, re.S)
    assert match is not None, "the table's markers are missing"
    assert match.group(1) == tutorial.table(), (
        "the table is out of date: `python -m tests.tutorial_doc table` prints it")


def test_make_up_is_mesh_up() -> None:
    """The replay runs `make up` as `.venv/bin/mesh up`, which is what the Makefile runs."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^up: \$\(STAMP\)\n\t\$\(VENV\)/bin/mesh up$", makefile, re.M)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_steps_replay(tutorial: Tutorial, tmp_path: Path) -> None:
    """Step after step, as a reader goes: the plugins as they are after the step, installed;
    the step's tests; its shell sessions against `make up`, with `.mesh` kept between steps."""
    replay = Replay(tutorial, tmp_path / "checkout")
    for step in tutorial.steps:
        replay.step(step)


@pytest.mark.slow
def test_autogenerate_writes_the_first_migration(tutorial: Tutorial, tmp_path: Path) -> None:
    """Step 3's `mesh db revision --autogenerate`, on the plugin as it is at step 3 without its
    migration, writes the migration the step shows, under the same name: the same revision and
    the same operations (the step shows it tidied: formatted, in another order)."""
    replay = Replay(tutorial, tmp_path / "checkout")
    replay.write(3)
    migrations = replay.folder / "plugins/tutorial/mesh_tutorial/migrations"
    [shown] = migrations.glob("0001_*.py")
    shown_text = shown.read_text()
    shown.unlink()
    result = subprocess.run(
        [".venv/bin/mesh", "db", "revision", "--plugin", "tutorial", "-m",
         "StringInt and setting tables", "--autogenerate"],
        cwd=replay.folder, env=replay.env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote {shown}" in result.stdout

    def meaning(text: str) -> tuple[set[str], dict[str, set[str]]]:
        module = ast.parse(text)
        names = {ast.dump(s) for s in module.body if isinstance(s, ast.AnnAssign)}
        bodies = {f.name: {ast.dump(s) for s in f.body}
                  for f in module.body if isinstance(f, ast.FunctionDef)}
        return names, bodies

    assert meaning(shown.read_text()) == meaning(shown_text)
    assert set(meaning(shown_text)[1]) == {"upgrade", "downgrade"}


# -- the replay's own checks, on a made-up plugin -------------------------------------------------

PLUGIN = '''"""A made-up plugin."""

from mesh import Empty, PluginPart


class Part(PluginPart):
    def one(self) -> int:
        value = 1
        return value

    def two(self) -> int:
        value = 1
        return value * 2
'''


def made_up(tmp_path: Path, doc: str) -> Tutorial:
    files = {"plugins/tutorial/mesh_tutorial/server.py": PLUGIN,
             "plugins/tutorial/tests/test_tutorial_x.py": "def test_x() -> None:\n    pass\n"}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    (tmp_path / "doc.md").write_text(doc)
    return Tutorial(tmp_path / "doc.md", root=tmp_path)


def step(number: int, *chunks: str, test: str = "test_x") -> str:
    body = "\n# ...\n".join(chunks)
    return (f"## Step {number}: s{number}\n\n```python\n"
            f"# file: plugins/tutorial/mesh_tutorial/server.py\n{body}\n```\n\n"
            f"`plugins/tutorial/tests/test_tutorial_x.py::{test}`\n\n")


FIRST = '''"""A made-up plugin."""

from mesh import PluginPart


class Part(PluginPart):
    def one(self) -> int:
        value = 1
        return value'''
SECOND = '''from mesh import Empty, PluginPart
# ...
        return value

    def two(self) -> int:
        value = 1
        return value * 2'''


def test_a_made_up_plugin_replays(tmp_path: Path) -> None:
    tutorial = made_up(tmp_path, step(1, FIRST) + step(2, SECOND))
    assert tutorial.uncovered() == []
    path = "plugins/tutorial/mesh_tutorial/server.py"
    assert tutorial.tree_at(1)[path] == FIRST + "\n"
    assert tutorial.tree_at(2)[path] == PLUGIN
    assert (tutorial.counts[1].lines, tutorial.counts[2].lines) == (6, 4)  # the import: 1
    assert tutorial.test_steps == {"plugins/tutorial/tests/test_tutorial_x.py": 1}


@pytest.mark.parametrize(("doc", "error"), [
    (step(1, FIRST), "server.py:11: 'def two(self) -> int:'"),  # never shown
    (step(1, FIRST) + step(2, SECOND.replace("value * 2", "value * 3")), "does not match"),
    (step(1, FIRST) + step(2, "    def one(self) -> int:\n        return value"),
     "does not match"),  # leaves out a line step 1 has
    (step(1, FIRST.replace("PluginPart\n", "Empty, PluginPart\n")) +
     step(2, SECOND.replace("Empty, ", "")), "drops names ['Empty']"),
    (step(1, FIRST) + step(2, SECOND) + step(3, "        value = 1"), "in 2 places"),
    (step(1, FIRST) + step(2, SECOND, test="test_y"), "no such test"),
    (step(1, FIRST) + step(2, SECOND).replace("server.py", "client.py"), "not a file of"),
    (step(1, FIRST) + step(3, SECOND), "numbered [1, 3]"),
])
def test_the_replay_refuses_a_page_that_is_not_the_plugin(tmp_path: Path, doc: str,
                                                         error: str) -> None:
    try:
        problems = made_up(tmp_path, doc).uncovered()
    except TutorialError as exc:
        problems = [str(exc)]
    assert any(error in problem for problem in problems), problems


def test_a_statement_over_several_lines_is_one_unit() -> None:
    lines = ['x = call(1,', '         ")(")  # (', '"""A docstring', '(over lines', '"""',
             "y = [", "]", "z = 1"]
    assert [u.lines for u in units(lines)] == [lines[:2], lines[2:5], lines[5:7], lines[7:]]


def test_a_declaration_may_change_at_a_later_step(tmp_path: Path) -> None:
    """Only a module's or a class's names (with imports, defs and classes) may read
    differently at an earlier step: the contract's declarations, the manifest's keys."""
    final = 'LIMIT = 10\nrpc = call(\n    "a", permission="p")\n'
    path = tmp_path / "plugins/tutorial/mesh_tutorial/contract.py"
    path.parent.mkdir(parents=True)
    path.write_text(final)
    (tmp_path / "doc.md").write_text(
        "## Step 1: s1\n\n```python\n# file: plugins/tutorial/mesh_tutorial/contract.py\n"
        'LIMIT = 5\nrpc = call("a")\n```\n\n'
        "## Step 2: s2\n\n```python\n# file: plugins/tutorial/mesh_tutorial/contract.py\n"
        + final + "```\n")
    tutorial = Tutorial(tmp_path / "doc.md", root=tmp_path)
    assert tutorial.uncovered() == []
    assert tutorial.tree_at(1)["plugins/tutorial/mesh_tutorial/contract.py"] == \
        'LIMIT = 5\nrpc = call("a")\n'
    assert tutorial.counts[2].lines == 3


def test_output_matching() -> None:
    assert matches_in_order(["a", "…", "c…"], ["a", "b", "b", "cdef"])
    assert matches_in_order(["x …z"], ["x yyy z"])
    assert not matches_in_order(["a", "c"], ["a", "b", "c"])
    assert not matches_in_order(["a"], ["a", "b"])
    assert missing_lines(["…", "two", "one"], ["one", "two"]) == []
    assert missing_lines(["three"], ["one"]) == ["three"]


def test_every_console_block_starts_with_a_command(tutorial: Tutorial) -> None:
    for step_ in tutorial.steps:
        for block in step_.sessions:
            assert commands(block), block.where


@pytest.mark.slow
def test_the_replay_environment_hides_what_is_not_there_yet(tutorial: Tutorial,
                                                          tmp_path: Path) -> None:
    """Before step 9, tutorial_stats is not installed (though .venv has the finished one)."""
    replay = Replay(tutorial, tmp_path / "checkout")
    replay.write(1)
    found = subprocess.run(
        [sys.executable, "-c", "from mesh.plugin.discovery import discover\n"
         "print(sorted((s.name, str(s.path)) for s in discover()))"],
        cwd=replay.folder, env=replay.env(), capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert "tutorial_stats" not in found.stdout
    assert str(replay.folder / "plugins/tutorial/mesh_tutorial") in found.stdout
    assert not any(k.startswith("MESH_") and not k.startswith("MESH_TEST_")
                   and k not in {"MESH_ADMIN_PORT", "MESH_CLIENT_PORT", "MESH_LOG_FORMAT",
                                 "MESH_LOG_LEVEL"} for k in replay.env())
    assert shutil.which("bash") and os.access(replay.folder / ".venv/bin/mesh", os.X_OK)
