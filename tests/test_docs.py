"""Code in the docs is real: excerpts match the files they name, and examples run.

docs/tutorial.md is checked more strictly by tests/test_tutorial_doc.py: each of its blocks
against the plugin as it is at the block's step.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
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
