"""Step 12: the device screen — declared in the manifest, its files in the package (discovery
refuses a plugin whose screen names a file it lacks), and every string it uses translated."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mesh.plugin.discovery import source_from_package

UI = Path(__file__).parents[1] / "mesh_tutorial" / "ui"


def test_the_screen_is_declared_and_every_string_translated() -> None:
    source = source_from_package("tutorial", "mesh_tutorial")
    assert source.error is None and source.manifest is not None
    [screen] = source.manifest.screens
    assert (screen.id, screen.permissions) == ("string_ints", ["tutorial/rows/view"])
    english = json.loads((UI / "i18n" / "en.json").read_text())
    german = json.loads((UI / "i18n" / "de.json").read_text())
    assert german.keys() == english.keys()
    used = set(re.findall(r'\bt\("([\w.]+)"', (UI / screen.module).read_text()))
    assert used and used <= english.keys()
