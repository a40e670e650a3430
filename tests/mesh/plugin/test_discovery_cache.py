"""The discovery cache: a second start reads the frozen list instead of discovering; an
install, an uninstall or an edited manifest makes it discover again; a cache that is
damaged, or a data directory that cannot be written, is logged and never changes what is
found."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bench.discovery import generate_installed
from mesh.plugin import discovery_cache
from mesh.plugin.discovery import PluginSource, discover
from mesh.plugin.discovery_cache import cache_path, cached_discover
from mesh.plugin.plugin_set import PluginSet


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path holding two installed plugin distributions."""
    folder = tmp_path / "site"
    folder.mkdir()
    generate_installed(folder, 2)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def discovered(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[PluginSource],
                                                                         int]:
    """What a start finds, and how many times it ran discovery to find it."""
    runs = []

    def counting(group: str) -> list[PluginSource]:
        runs.append(group)
        return discover(group)

    monkeypatch.setattr(discovery_cache, "discover", counting)
    return cached_discover(data_dir), len(runs)


def names(sources: list[PluginSource]) -> set[str]:
    return {s.name for s in sources if s.name.startswith("bench_dc")}


def test_a_second_start_reads_the_cache(site: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    first, runs = discovered(data, monkeypatch)
    assert runs == 1 and cache_path(data).is_file()
    second, runs = discovered(data, monkeypatch)
    assert runs == 0
    assert second == first == discover()  # the very same sources, manifests included
    assert names(second) == {"bench_dc000", "bench_dc001"}
    assert PluginSet.installed(cache=data).sources == PluginSet.installed().sources


def install_one(site: Path) -> None:
    """Another distribution appears on the path, as `pip install` leaves one."""
    scratch = site.parent / "build"
    generate_installed(scratch, 3)  # bench_dc002 is the new one
    for entry in scratch.iterdir():
        if "bench_dc002" in entry.name:
            entry.rename(site / entry.name)


def test_an_install_or_an_uninstall_makes_a_start_discover_again(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data"
    discovered(data, monkeypatch)
    install_one(site)
    found, runs = discovered(data, monkeypatch)
    assert runs == 1 and names(found) == {"bench_dc000", "bench_dc001", "bench_dc002"}
    assert discovered(data, monkeypatch)[1] == 0  # and the new list is cached

    shutil.rmtree(site / "mesh_bench_dc001-1.0.0.dist-info")  # pip uninstall
    shutil.rmtree(site / "mesh_bench_dc001")
    found, runs = discovered(data, monkeypatch)
    assert runs == 1 and names(found) == {"bench_dc000", "bench_dc002"}


def test_an_edited_manifest_or_screen_file_makes_a_start_discover_again(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An editable install changes its files without any new distribution."""
    data = tmp_path / "data"
    discovered(data, monkeypatch)
    manifest = site / "mesh_bench_dc000" / "plugin.toml"
    manifest.write_text(manifest.read_text().replace('title = "bench_dc000"', 'title = "Edited"'))
    found, runs = discovered(data, monkeypatch)
    assert runs == 1
    edited = next(s for s in found if s.name == "bench_dc000")
    assert edited.manifest is not None and edited.manifest.title == "Edited"

    (site / "mesh_bench_dc001" / "ui" / "icon.svg").unlink()  # a screen's icon removed
    found, runs = discovered(data, monkeypatch)
    assert runs == 1
    broken = next(s for s in found if s.name == "bench_dc001")
    assert broken.manifest is None and broken.error is not None and "icon" in broken.error

    icon = site / "mesh_bench_dc001" / "ui" / "icon.svg"
    icon.write_text("<svg/>")
    found, runs = discovered(data, monkeypatch)
    assert runs == 1 and next(s for s in found if s.name == "bench_dc001").manifest is not None
    stamp = icon.stat()
    icon.write_text("<svg/>")  # the same size: the time alone tells
    os.utime(icon, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    assert discovered(data, monkeypatch)[1] == 1


@pytest.mark.parametrize("damage", [
    b"\x00\xff garbage",
    b'{"format": 1, "key": "',  # cut short
    b'{"format": 1, "key": "x", "sources": "many"}',
    b"[]",
    b"",
])
def test_a_damaged_cache_is_logged_ignored_and_written_again(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes,
) -> None:
    data = tmp_path / "data"
    expected, _ = discovered(data, monkeypatch)
    cache_path(data).write_bytes(damage)
    with capture_logs() as logs:
        found, runs = discovered(data, monkeypatch)
    assert runs == 1 and found == expected
    assert [e["event"] for e in logs] == ["discovery.cache_unreadable"]
    assert logs[0]["path"] == str(cache_path(data))
    assert discovered(data, monkeypatch)[1] == 0  # rebuilt


def test_a_forged_cache_entry_is_refused_like_a_manifest(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cache is validated as the manifests are: a bad version in it is not loaded."""
    data = tmp_path / "data"
    discovered(data, monkeypatch)
    text = cache_path(data).read_text()
    cache_path(data).write_text(text.replace('"version":"1.0.0"', '"version":"one"', 1))
    with capture_logs() as logs:
        found, runs = discovered(data, monkeypatch)
    assert runs == 1 and "bench_dc000" in names(found)
    assert [e["event"] for e in logs] == ["discovery.cache_unreadable"]
    assert "version" in str(logs[0]["error"])


def test_another_environment_does_not_use_the_cache(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data"
    discovered(data, monkeypatch)
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # another path: another key
    assert discovered(data, monkeypatch)[1] == 1


def test_a_data_directory_that_cannot_be_written_only_costs_the_cache(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "not-a-folder"
    data.write_text("a file where the data directory should be")
    with capture_logs() as logs:
        found, runs = discovered(data, monkeypatch)
    assert runs == 1 and names(found) == {"bench_dc000", "bench_dc001"}
    assert [e["event"] for e in logs] == ["discovery.cache_unreadable",
                                          "discovery.cache_not_written"]
    assert not list(tmp_path.glob("**/.discovery.json.*"))  # no half-written file left


def test_a_service_finds_its_plugins_through_the_cache_of_its_data_directory(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mesh.bus.memory import MemoryBroker
    from mesh.config import MeshSettings
    from services.agent import AgentService

    settings = MeshSettings(data_dir=tmp_path / "data")
    AgentService(settings, MemoryBroker().connect("test"))
    assert cache_path(settings.data_dir).is_file()
    monkeypatch.setattr(discovery_cache, "discover", lambda group: pytest.fail("discovered"))
    agent = AgentService(settings, MemoryBroker().connect("test"))
    assert {"bench_dc000", "bench_dc001"} <= set(agent.plugins.sources)
