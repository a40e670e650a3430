"""The bootstrap secrets in banners: named, never shown whole; from the environment, not at all."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from mesh.admin_credentials import admin_password, admin_token, masked
from mesh.config import MeshSettings
from mesh.plugin.plugin_set import PluginSet
from mesh.supervisor import planned_banner


def test_a_kept_secret_shows_its_first_characters_and_its_file(tmp_path: Path) -> None:
    settings = MeshSettings(data_dir=tmp_path)
    token, kept_in = admin_token(settings)
    shown = masked(token, kept_in, "MESH_ADMIN_TOKEN")
    assert shown == f"{token[:4]}…  (kept in {tmp_path / 'admin-token'})"
    assert token not in shown


def test_a_secret_from_the_environment_shows_nothing(tmp_path: Path) -> None:
    settings = MeshSettings(data_dir=tmp_path, admin_token=SecretStr("env-token-do-not-log"),
                            admin_password=SecretStr("env-password-do-not-log"))
    for secret, kept_in in (admin_token(settings), admin_password(settings)):
        assert kept_in is None
        assert masked(secret, kept_in, "MESH_X") == "(from MESH_X)"
    banner = planned_banner(settings, dict.fromkeys(("server", "client", "agent", "worker"), 1),
                            PluginSet(()))
    assert "env-token" not in banner and "(from MESH_ADMIN_TOKEN)" in banner


def test_mesh_up_banner_never_prints_the_whole_token(tmp_path: Path) -> None:
    settings = MeshSettings(data_dir=tmp_path, broker_url="amqp://u:secret@127.0.0.1/")
    banner = planned_banner(settings, dict.fromkeys(("server", "client", "agent", "worker"), 1),
                            PluginSet(()))
    token, _ = admin_token(settings)
    assert token not in banner and token[:4] in banner and "secret" not in banner
