"""The CPUs a worker's pool is sized to: affinity, and a container's cgroup CPU limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mesh.config import MeshSettings
from mesh.cpus import cgroup_cpu_quota, usable_cpus


def tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(("proc", "files", "quota"), [
    # cgroup v2 in a container (namespaced: its cgroup is the root)
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),
    # cgroup v2 on a host: the process's own cgroup
    ("0::/system.slice/mesh.service\n",
     {"system.slice/mesh.service/cpu.max": "200000 100000\n", "cpu.max": "max 100000\n"}, 2.0),
    # cgroup v1, both mount names
    ("4:memory:/x\n3:cpu,cpuacct:/docker/abc\n",
     {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
      "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}, 0.5),
    ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    # nothing readable, or nonsense: no limit known
    ("0::/\n", {}, None),
    ("0::/\n", {"cpu.max": "lots 0\n"}, None),
    ("garbage\n", {}, None),
])
def test_cgroup_quota(tmp_path: Path, proc: str, files: dict[str, str],
                      quota: float | None) -> None:
    root = tree(tmp_path / "cgroup", files)
    proc_file = tmp_path / "proc-cgroup"
    proc_file.write_text(proc)
    assert cgroup_cpu_quota(root, proc_file) == quota


def test_a_limit_narrows_the_cpus_and_rounds_up(tmp_path: Path) -> None:
    root = tree(tmp_path / "cgroup", {"cpu.max": "50000 100000\n"})
    proc_file = tmp_path / "proc-cgroup"
    proc_file.write_text("0::/\n")
    assert usable_cpus(root, proc_file) == 1  # half a CPU still gets one process
    affinity = len(os.sched_getaffinity(0))
    (root / "cpu.max").write_text(f"{(affinity + 8) * 100000} 100000\n")
    assert usable_cpus(root, proc_file) == affinity  # a limit above the CPUs changes nothing
    assert usable_cpus(root, tmp_path / "missing") == affinity


def test_the_pool_defaults_to_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESH_TASK_PROCESSES", raising=False)
    assert MeshSettings().task_processes == usable_cpus()
    monkeypatch.setattr("mesh.config.usable_cpus", lambda: 7)  # a container's limit, say
    assert MeshSettings().task_processes == 7
    monkeypatch.setenv("MESH_TASK_PROCESSES", "3")
    assert MeshSettings().task_processes == 3
