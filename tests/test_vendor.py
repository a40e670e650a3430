"""Vendored browser code is exactly what the npm registry published: each tarball committed
beside its package-lock.json has the lockfile's integrity (sha512 of the tarball, as npm checks
it), and is the version package.json asks for. So the tests never need npm, and nothing is
fetched from a CDN."""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
from pathlib import Path

import pytest

VENDOR = Path(__file__).parent / "vendor"
LOCKED = sorted(VENDOR.glob("*/package-lock.json"))


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.mark.parametrize("lockfile", LOCKED, ids=lambda p: p.parent.name)
def test_the_vendored_tarball_matches_the_lockfile(lockfile: Path) -> None:
    lock = json.loads(lockfile.read_text())
    wanted = json.loads((lockfile.parent / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        locked = lock["packages"][f"node_modules/{name}"]
        assert locked["version"] == version
        tarball = lockfile.parent / f"{name}-{version}.tgz"
        assert integrity(tarball.read_bytes()) == locked["integrity"], tarball
        with tarfile.open(tarball) as tar:
            meta = tar.extractfile("package/package.json")
            assert meta is not None
            assert json.loads(meta.read())["version"] == version


def test_a_changed_tarball_does_not_match(tmp_path: Path) -> None:
    """The check itself: one byte more and the integrity differs."""
    [lockfile] = [p for p in LOCKED if p.parent.name == "axe-core"]
    locked = json.loads(lockfile.read_text())["packages"]["node_modules/axe-core"]
    tarball = next(lockfile.parent.glob("axe-core-*.tgz")).read_bytes()
    assert integrity(tarball + b"\0") != locked["integrity"]
    assert LOCKED  # at least one vendored package is checked
