"""Screens in the manifest: a bad UI declaration refuses the plugin with a reason that says
what is wrong — a path out of the package, a missing file, an unknown permission, an icon that
is not SVG, a missing or broken catalog."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.plugin.discovery import source_from_package
from mesh.plugin.manifest import ManifestError, parse_manifest
from mesh.plugin.screens import content_hash, inside, static_path

SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"></svg>\n'
SCREEN = {"id": "main", "title": "Main", "icon": "icon.svg", "module": "main.js",
          "permissions": ["shop/stock/view"]}
BASE: dict[str, Any] = {
    "name": "shop", "title": "Shop", "version": "1.0.0",
    "services": {"server": "mesh_shop.server:Part"},
    "permissions": {"groups": {"stock": "Stock"}, "stock": {"view": "See the stock"},
                    "requires": {"tutorial": {"rows": ["view"]}}},
}


def manifest(**screen: Any) -> dict[str, Any]:
    return {**BASE, "ui": {"locales": ["en", "de"]}, "screens": [{**SCREEN, **screen}]}


@pytest.mark.parametrize(("screen", "complaint"), [
    ({"module": "../server.py"}, "relative path inside the UI folder"),
    ({"module": "/etc/passwd.js"}, "relative path inside the UI folder"),
    ({"module": "a\\b.js"}, "relative path inside the UI folder"),
    ({"module": "a/./b.js"}, "relative path inside the UI folder"),
    ({"module": "main.py"}, "must be an ES module"),
    ({"icon": "icon.png"}, "must be an SVG file"),
    ({"icon": "../../icon.svg"}, "relative path inside the UI folder"),
    ({"id": "Main"}, "screens.0.id"),
    ({"permissions": ["shop/stock/sell"]}, "permission 'shop/stock/sell' is neither declared"),
    ({"permissions": ["identity/users/view"]}, "nor listed under [permissions.requires]"),
    ({"permissions": ["nonsense"]}, "permission 'nonsense'"),
    ({"extra": 1}, "screens.0.extra"),
])
def test_a_bad_screen_declaration_is_refused(screen: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ManifestError, match="screens") as caught:
        parse_manifest(manifest(**screen))
    assert complaint in str(caught.value)


def test_permissions_the_plugin_declares_requires_or_the_platform_has() -> None:
    parsed = parse_manifest(manifest(permissions=["shop/stock/view", "tutorial/rows/view",
                                                  "mesh/admin/view"]))
    assert parsed.screens[0].permissions[1] == "tutorial/rows/view"
    assert parsed.ui_section is not None and parsed.ui_section.folder == "ui"
    assert parse_manifest(BASE).ui_section is None  # no screens, no UI


def test_duplicate_ids_a_default_locale_not_listed_and_a_folder_outside() -> None:
    twice = {**manifest(), "screens": [SCREEN, SCREEN]}
    with pytest.raises(ManifestError, match="the id 'main' is used twice"):
        parse_manifest(twice)
    with pytest.raises(ManifestError, match="default_locale 'fr' is not in locales"):
        parse_manifest({**manifest(), "ui": {"default_locale": "fr"}})
    with pytest.raises(ManifestError, match="ui.folder"):
        parse_manifest({**manifest(), "ui": {"folder": "../elsewhere"}})


TOML = """
name = "shop"
title = "Shop"
version = "1.0.0"
[services]
server = "mesh_shop.server:Part"
[permissions.groups]
stock = "Stock"
[permissions.stock]
view = "See the stock"
[ui]
locales = ["en", "de"]
[[screens]]
id = "main"
title = "Main"
icon = "icon.svg"
module = "main.js"
permissions = ["shop/stock/view"]
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable plugin package mesh_shop with a good UI folder."""
    root = tmp_path / "site"
    pkg = root / "mesh_shop"
    (pkg / "ui" / "i18n").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "ui" / "main.js").write_text("export function mount() {}\n")
    (pkg / "ui" / "icon.svg").write_text(SVG)
    for locale in ("en", "de"):
        (pkg / "ui" / "i18n" / f"{locale}.json").write_text(json.dumps({"hello": locale}))
    (pkg / "plugin.toml").write_text(TOML)
    monkeypatch.syspath_prepend(str(root))
    yield pkg
    sys.modules.pop("mesh_shop", None)


def refusal(pkg: Path) -> str | None:
    return source_from_package("shop", "mesh_shop").error


def test_a_good_ui_is_found(package: Path) -> None:
    source = source_from_package("shop", "mesh_shop")
    assert source.error is None and source.manifest is not None
    assert len(content_hash(package / "ui")) == 16


def test_missing_files_and_catalogs_refuse_the_plugin(package: Path) -> None:
    (package / "ui" / "main.js").unlink()
    assert "screens.main.module: no file ui/main.js" in str(refusal(package))
    (package / "ui" / "main.js").write_text("")
    (package / "ui" / "i18n" / "de.json").unlink()
    assert "no catalog i18n/de.json" in str(refusal(package))
    (package / "ui" / "i18n" / "de.json").write_text("[1, 2]")
    assert "de.json must be a JSON object of strings" in str(refusal(package))
    (package / "ui" / "i18n" / "de.json").write_text("{")
    assert "de.json is not JSON" in str(refusal(package))
    shutil.rmtree(package / "ui")
    assert "no UI folder 'ui'" in str(refusal(package))


def test_an_icon_that_is_not_svg_is_refused(package: Path) -> None:
    (package / "ui" / "icon.svg").write_bytes(b"\x89PNG\r\n\x1a\n....")
    assert "ui/icon.svg is not an SVG image" in str(refusal(package))
    (package / "ui" / "icon.svg").write_text("<html><script>alert(1)</script></html>")
    assert "is not an SVG image" in str(refusal(package))


def test_a_symlink_out_of_the_ui_folder_is_refused(package: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.js"
    secret.write_text("export const key = 'hush';\n")
    (package / "ui" / "main.js").unlink()
    (package / "ui" / "main.js").symlink_to(secret)
    assert "leads out of the UI folder" in str(refusal(package))
    assert inside(package / "ui", "main.js") is None
    (package / "ui" / "main.js").unlink()
    (package / "ui" / "main.js").symlink_to(package / "ui" / "icon.svg")  # inside: fine
    assert inside(package / "ui", "main.js") is not None


@pytest.mark.parametrize("path", ["..", "../plugin.toml", "a/../../x", "/etc/passwd", "a\\b",
                                  "a\0b", "", "a//b", ".hidden", "%2e%2e"])
def test_static_paths_are_plain(path: str) -> None:
    assert static_path(path) is None


def test_admin_screens_are_checked_as_device_screens_are(package: Path) -> None:
    admin = {**SCREEN, "id": "editor", "module": "editor.js", "permissions": ["mesh/admin/operate"]}
    parsed = parse_manifest({**BASE, "admin_screens": [admin]})
    assert parsed.ui_section is not None and [s.id for s in parsed.all_screens] == ["editor"]
    for bad, complaint in [({"permissions": ["shop/stock/sell"]}, "admin_screens.editor: "
                            "permission 'shop/stock/sell' is neither declared"),
                           ({"module": "../server.py"}, "relative path inside the UI folder")]:
        with pytest.raises(ManifestError, match="admin_screens") as caught:
            parse_manifest({**BASE, "admin_screens": [{**admin, **bad}]})
        assert complaint in str(caught.value)
    with pytest.raises(ManifestError, match="admin_screens: the id 'editor' is used twice"):
        parse_manifest({**BASE, "admin_screens": [admin, admin]})
    # the same id as a device screen is fine: the two lists are for two apps
    assert parse_manifest({**manifest(id="editor"), "admin_screens": [admin]}).admin_screens

    toml = (package / "plugin.toml").read_text()
    (package / "plugin.toml").write_text(toml + '\n[[admin_screens]]\nid = "editor"\n'
                                         'title = "Editor"\nicon = "icon.svg"\n'
                                         'module = "editor.js"\n')
    assert "screens.editor.module: no file ui/editor.js" in str(refusal(package))
    (package / "ui" / "editor.js").write_text("export function mount() {}\n")
    assert refusal(package) is None
