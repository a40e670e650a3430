"""Code in the docs is real: excerpts match the files they name, and examples run."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Bus

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text())]


def file_excerpts() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        for _, body in blocks(doc):
            first, _, rest = body.partition("\n")
            match = re.match(r"# file: (\S+)$", first)
            if match:
                found.append((doc.name, match.group(1), rest))
    return found


@pytest.mark.parametrize(("doc", "path", "excerpt"), file_excerpts(),
                         ids=lambda v: v if isinstance(v, str) and "/" in v else None)
def test_excerpts_match_their_files(doc: str, path: str, excerpt: str) -> None:
    text = (ROOT / path).read_text()
    assert excerpt.strip() in text, f"{doc} shows {path} differently from the file"


def test_docs_have_excerpts() -> None:
    assert len(file_excerpts()) >= 3


def example(name: str) -> str:
    for doc in DOCS:
        for _, body in blocks(doc):
            if body.startswith(f"# example: {name}\n"):
                return body
    raise AssertionError(f"no example {name!r} in the docs")


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
