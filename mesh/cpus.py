"""How many CPUs this process may really use: the machine's, narrowed by CPU affinity and by a
container's CPU limit (a cgroup quota), so that a worker limited to two CPUs on a 64-core host
starts two pool processes, not 64."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT,
                     proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs this process's cgroup may use (quota / period), or None when unlimited or
    unknown. cgroup v2's `cpu.max`, else v1's `cpu.cfs_quota_us` and `cpu.cfs_period_us`; in
    the process's own cgroup, else at the root (a container sees its cgroup there)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        number, controllers, path = [*line.split(":", 2), "", ""][:3]
        relative = path.lstrip("/")
        if number == "0" and controllers == "":
            folders = [cgroup_root / relative, cgroup_root]
            read = _v2_quota
        elif "cpu" in controllers.split(","):
            folders = [cgroup_root / mount / sub for mount in (controllers, "cpu", "cpu,cpuacct")
                       for sub in (relative, "")]
            read = _v1_quota
        else:
            continue
        for folder in folders:
            quota = read(folder)
            if quota is not None:
                return None if math.isinf(quota) else quota
    return None


# Each reads one cgroup folder: CPUs, math.inf when unlimited, None when it cannot tell.

def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return math.inf if quota == "max" else _ratio(quota, period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = (folder / "cpu.cfs_quota_us").read_text().strip()
        period = (folder / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return math.inf if quota.startswith("-") else _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        value = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else math.inf
