"""Manifests and discovery: every bad manifest is refused with a reason that says where."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.plugin.discovery import discover, source_from_package
from mesh.plugin.manifest import ManifestError, parse_manifest, read_manifest

GOOD = {
    "name": "demo",
    "title": "Demo",
    "version": "1.2.3",
    "services": {"server": "demo.server:Part"},
    "depends": {"noop": ">=1.0,<2"},
}


def with_(**changes: object) -> dict[str, object]:
    return {**GOOD, **changes}


def test_good_manifest() -> None:
    manifest = parse_manifest(GOOD)
    assert manifest.name == "demo"
    assert str(manifest.requirement("noop")) == "<2,>=1.0"


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (with_(name="Bad-Name"), "name"),
        (with_(version="one"), "not a PEP 440 version"),
        (with_(depends={"noop": "=>1"}), "depends.noop"),
        (with_(depends={"No Way": ">=1"}), "not a valid plugin name"),
        (with_(services={}), "services"),
        (with_(services={"desktop": "x:Y"}), "services.desktop"),
        (with_(services={"server": "no_colon"}), "module:Class"),
        (with_(surprise=1), "surprise"),
        ({k: v for k, v in GOOD.items() if k != "title"}, "title"),
    ],
)
def test_bad_manifest_is_refused_with_where(data: dict[str, object], complaint: str) -> None:
    with pytest.raises(ManifestError, match=complaint):
        parse_manifest(data, source="demo/plugin.toml")


def test_manifest_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no plugin.toml"):
        read_manifest(tmp_path / "plugin.toml")
    broken = tmp_path / "plugin.toml"
    broken.write_text("name = ")
    with pytest.raises(ManifestError, match="not valid TOML"):
        read_manifest(broken)


def test_discovery_finds_bundled_plugins_through_entry_points() -> None:
    names = {s.name: s for s in discover()}
    assert {"noop", "greeter"} <= names.keys()
    assert names["noop"].manifest is not None and names["noop"].error is None
    assert names["noop"].distribution == "mesh-noop"


def test_reading_a_manifest_does_not_import_the_plugin() -> None:
    import sys

    sys.modules.pop("mesh_fixture_boom", None)
    source = source_from_package("boom", "mesh_fixture_boom")
    assert source.manifest is not None
    assert "mesh_fixture_boom" not in sys.modules


def test_entry_point_name_must_match_manifest() -> None:
    source = source_from_package("other", "mesh_fixture_boom")
    assert source.manifest is None and "manifest says 'boom'" in (source.error or "")


def test_distribution_version_must_match_manifest() -> None:
    source = source_from_package("boom", "mesh_fixture_boom", distribution="boom",
                                 distribution_version="2.0.0")
    assert source.manifest is None and "does not match" in (source.error or "")


def test_missing_package_is_refused() -> None:
    source = source_from_package("ghost", "mesh_no_such_package")
    assert source.manifest is None and "not importable" in (source.error or "")
