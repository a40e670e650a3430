"""mypy sees through the stubs: replies are typed, and a wrongly typed call is reported."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent / "typing"


def mypy(path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--show-error-codes",
         "--no-error-summary", "--config-file", str(HERE.parents[1] / "pyproject.toml"),
         str(path)],
        capture_output=True, text=True, timeout=300,
    )
    return result.stdout + result.stderr


def test_stub_reply_type_is_inferred() -> None:
    output = mypy(HERE / "typed_caller.py")
    assert 'Revealed type is "mesh_noop.contract.EchoReply"' in output, output
    assert 'Revealed type is "mesh_tutorial.contract.StringInt"' in output, output
    assert "error" not in output, output


def test_wrongly_typed_calls_are_reported() -> None:
    path = HERE / "mistyped_caller.py"
    output = mypy(path)
    expected = {i for i, line in enumerate(path.read_text().splitlines(), 1)
                if "# error:" in line}
    reported = {int(m.group(1)) for m in re.finditer(r"mistyped_caller\.py:(\d+): error", output)}
    assert reported == expected, output
    assert '"SlowRequest"; expected "EchoRequest"' in output


def test_platform_and_bundled_plugins_type_check() -> None:
    root = HERE.parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "mesh", "services", "contracts",
         "plugins/noop/mesh_noop", "plugins/greeter/mesh_greeter",
         "plugins/tutorial/mesh_tutorial", "plugins/tutorial_stats/mesh_tutorial_stats",
         "plugins/identity/mesh_identity"],
        capture_output=True, text=True, timeout=300, cwd=root,
    )
    assert result.returncode == 0, result.stdout + result.stderr
