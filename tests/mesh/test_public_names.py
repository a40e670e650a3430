"""`from mesh import ...`: every public name resolves, and contracts stay cheap to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mesh


@pytest.mark.parametrize("name", mesh.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(mesh, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'PluginPartt'"):
        mesh.PluginPartt  # noqa: B018


def test_importing_a_contract_does_not_load_the_plugin_runtime() -> None:
    """Contract modules import mesh.contract; reading contracts (the catalog, the CLI, other
    plugins' stubs) must not pay for the plugin runtime."""
    probe = ("import sys, mesh.contract; "
             "print(sorted(m for m in sys.modules if m.startswith(('mesh.plugin', 'mesh.rpc.'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"
