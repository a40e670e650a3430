"""Log files rotated by size, and log levels per plugin changed while the process runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from mesh.config import MeshSettings
from mesh.log import (
    apply_plugin_levels,
    configure_logging,
    log_file_path,
    log_levels,
    set_plugin_level,
)


@pytest.fixture
def restore() -> Iterator[None]:
    yield
    configure_logging("INFO", "console")  # as the testing kit sets it


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_log_file_rotates_by_size_and_keeps_its_backups(
    tmp_path: Path, restore: None, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "logs" / "server.log"
    configure_logging("INFO", "json", file=path, max_bytes=4096, backups=2)
    log = structlog.get_logger("test").bind(service="server")
    for n in range(200):
        log.info("test.line", n=n, padding="x" * 40)
    log.debug("test.hidden")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("test.failed")
    kept = sorted(p.name for p in path.parent.iterdir())
    assert kept == ["server.log", "server.log.1", "server.log.2"]  # no .3: two backups
    assert all(p.stat().st_size <= 4096 for p in path.parent.iterdir())
    newest = lines(path)
    assert newest[-1]["event"] == "test.failed" and "ValueError: boom" in str(
        newest[-1]["exception"])
    numbers = [e["n"] for f in ("server.log.2", "server.log.1", "server.log")
               for e in lines(path.parent / f) if "n" in e]
    assert numbers == sorted(numbers) and numbers[-1] == 199  # in order, newest last
    assert not any(e["event"] == "test.hidden" for e in newest)
    assert '"event": "test.line"' in capsys.readouterr().err  # stderr still has every line


def test_a_plugin_s_level_changes_while_the_process_runs(
    tmp_path: Path, restore: None,
) -> None:
    path = tmp_path / "levels.log"
    configure_logging("INFO", "json", file=path, plugin_levels={"quiet": "ERROR"})
    chatty = structlog.get_logger("mesh.plugin.chatty").bind(plugin="chatty")
    quiet = structlog.get_logger("mesh.plugin.quiet").bind(plugin="quiet")
    platform = structlog.get_logger("mesh.host")
    chatty.debug("chatty.debug.1")
    quiet.warning("quiet.warning.1")
    quiet.error("quiet.error.1")
    set_plugin_level("chatty", "DEBUG")  # loggers bound before the change follow it
    chatty.debug("chatty.debug.2")
    platform.debug("platform.debug")
    set_plugin_level("quiet", "WARNING")
    quiet.warning("quiet.warning.2")
    set_plugin_level("quiet", None)  # back to the configured level, not the process's
    quiet.warning("quiet.warning.3")
    set_plugin_level("chatty", None)
    chatty.info("chatty.info.1")
    assert log_levels() == {"level": "INFO", "plugins": {"quiet": "ERROR"}}
    with pytest.raises(ValueError, match="a log level is one of"):
        set_plugin_level("chatty", "LOUD")
    assert [e["event"] for e in lines(path)] == [
        "quiet.error.1", "chatty.debug.2", "quiet.warning.2", "chatty.info.1"]


def test_the_levels_an_administrator_kept_apply_over_the_configured_ones(
    restore: None,
) -> None:
    configure_logging("INFO", "console", plugin_levels={"quiet": "ERROR", "loud": "DEBUG"})
    apply_plugin_levels({"quiet": "WARNING", "other": "DEBUG"})
    assert log_levels()["plugins"] == {"loud": "DEBUG", "other": "DEBUG", "quiet": "WARNING"}
    set_plugin_level("stray", "ERROR")  # the whole map applies: what it lacks goes back
    apply_plugin_levels({})
    assert log_levels()["plugins"] == {"loud": "DEBUG", "quiet": "ERROR"}
    with pytest.raises(ValueError, match="a log level is one of"):
        apply_plugin_levels({"quiet": "LOUD"})
    assert log_levels()["plugins"] == {"loud": "DEBUG", "quiet": "ERROR"}  # unchanged


def test_log_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_PLUGIN_LOG_LEVELS", '{"tutorial": "DEBUG"}')
    monkeypatch.setenv("MESH_LOG_FILE", "/var/log/mesh/{service}.log")
    settings = MeshSettings()
    assert settings.plugin_log_levels == {"tutorial": "DEBUG"}
    assert log_file_path(settings.log_file or Path(), "worker") == Path(
        "/var/log/mesh/worker.log")
    for name, value in [("MESH_PLUGIN_LOG_LEVELS", '{"tutorial": "LOUD"}'),
                        ("MESH_PLUGIN_LOG_LEVELS", '{"../x": "DEBUG"}'),
                        ("MESH_LOG_FILE_MAX_BYTES", "10"),
                        ("MESH_LOG_FILE_BACKUPS", "-1")]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError):
            MeshSettings()
        monkeypatch.delenv(name)
