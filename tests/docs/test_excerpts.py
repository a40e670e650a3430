"""Code in the docs is real: excerpts match the files they name, and examples run.

docs/tutorial.md is checked more strictly by tests/docs/test_tutorial.py: each of its blocks
against the plugin as it is at the block's step.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Bus
from tests.doc_blocks import DOCS, ROOT, Block, blocks

TUTORIAL = ROOT / "docs" / "tutorial.md"


def file_excerpts() -> list[Block]:
    return [b for doc in DOCS if doc != TUTORIAL for b in blocks(doc) if b.file is not None]


@pytest.mark.parametrize("block", file_excerpts(), ids=lambda b: b.where)
def test_excerpts_match_their_files(block: Block) -> None:
    assert block.file is not None
    text = (ROOT / block.file).read_text()
    for chunk in block.chunks():
        excerpt = "\n".join(chunk).strip()
        assert excerpt in text, f"{block.where} shows {block.file} differently from the file"


def test_docs_have_excerpts() -> None:
    assert len(file_excerpts()) >= 3


def example(name: str) -> str:
    for doc in DOCS:
        for block in blocks(doc):
            if block.body.startswith(f"# example: {name}\n"):
                return block.body
    raise AssertionError(f"no example {name!r} in the docs")


@pytest.mark.slow
@pytest.mark.rabbitmq
async def test_readme_client_example_runs(rabbit_bus: Bus, tmp_path: Path) -> None:
    await rabbit_bus.service("server")
    script = tmp_path / "client_example.py"
    script.write_text(example("client"))
    env = {**os.environ, "MESH_BROKER_URL": rabbit_bus.url or "",
           "MESH_EXCHANGE": rabbit_bus.exchange}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(script)], capture_output=True, text=True,
        timeout=60, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "HELLO, ADA!"


# -- what `mesh plugin new` makes, as the plugin guide shows it --------------------------------

SCAFFOLDED = re.compile(r"# mesh plugin new (\S+)((?: \S+)*) → (\S+)$")


def scaffold_blocks() -> list[tuple[str, str, tuple[str, ...], str, str]]:
    """(doc, name, options, path or "files", excerpt) of every block headed by
    `# mesh plugin new NAME [OPTIONS] → PATH`."""
    found = []
    for doc in DOCS:
        for block in blocks(doc):
            first, _, rest = block.body.partition("\n")
            match = SCAFFOLDED.match(first)
            if match:
                name, options, path = match.groups()
                found.append((doc.name, name, tuple(options.split()), path, rest))
    return found


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, tuple[str, ...]], Path]:
    """The folder `mesh plugin new NAME OPTIONS` makes, made once per NAME and OPTIONS."""
    from typer.testing import CliRunner

    from mesh.cli.main import app

    made: dict[tuple[str, tuple[str, ...]], Path] = {}

    def make(name: str, options: tuple[str, ...]) -> Path:
        if (name, options) not in made:
            folder = tmp_path_factory.mktemp("scaffolded") / name
            result = CliRunner().invoke(app, ["plugin", "new", name, "--dir", str(folder),
                                              *options])
            assert result.exit_code == 0, result.stderr
            made[name, options] = folder
        return made[name, options]

    return make


def test_the_guide_shows_what_the_scaffold_makes() -> None:
    assert len(scaffold_blocks()) >= 8


@pytest.mark.parametrize(("doc", "name", "options", "path", "excerpt"), scaffold_blocks(),
                         ids=lambda v: v if isinstance(v, str) and "/" in v else None)
def test_scaffold_excerpts_match_what_it_makes(
    scaffolded: Callable[[str, tuple[str, ...]], Path], doc: str, name: str,
    options: tuple[str, ...], path: str, excerpt: str,
) -> None:
    folder = scaffolded(name, options)
    if path == "files":
        made = {f"{name}/{p.relative_to(folder)}" for p in folder.rglob("*") if p.is_file()}
        assert set(excerpt.split()) == made, f"{doc} lists other files than it makes"
        return
    text = (folder.parent / path).read_text()
    assert excerpt.strip() in text, f"{doc} shows {path} differently from what it makes"


@pytest.mark.slow
def test_the_guide_kit_example_runs(tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(example("kit"))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pytest"), "-q", "-p", "no:cacheprovider",
         "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
         str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_readme_tour_shows_what_scaffolding_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tour's `mesh plugin new` session: the command's output, and as many tests passing
    as the new plugin has."""
    from typer.testing import CliRunner

    from mesh.cli.main import app

    session = next(b.body for b in blocks(ROOT / "README.md")
                   if b.language == "sh" and "mesh plugin new" in b.body)
    command, _, rest = session.partition("\n")
    args = command.split("mesh ", 1)[1].split()
    shown = rest.split("\n$ ", 1)[0]
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == shown.strip()
    passed = int(re.search(r"^(\d+) passed", session, re.M).group(1))  # type: ignore[union-attr]
    made = tmp_path / "plugins" / "demo" / "tests" / "test_demo.py"
    assert made.read_text().count("\nasync def test_") == passed
