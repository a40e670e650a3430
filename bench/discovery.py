"""Discovery with and without its cache (part of `python -m bench startup`).

`count` plugins are generated as installed distributions (a `*.dist-info` with an
`mesh.plugins` entry point, a package with its `plugin.toml`, a UI catalog and one screen)
in a folder put on `PYTHONPATH`. Each start is a new Python process, as a service's start
is: it imports the plugin set, then finds the plugins, either by discovery (entry points,
every manifest read and checked) or from a cache written by an earlier start. Uncached and
cached starts alternate, so both see the same machine load; the median of each is reported,
for the discovery step alone and for the whole process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROBE = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
from mesh.plugin.plugin_set import PluginSet
imported = time.perf_counter()
cache = Path(sys.argv[1]) if sys.argv[1] else None
plugins = PluginSet.installed(cache=cache)
found = time.perf_counter()
print(json.dumps({"discover_s": found - imported, "plugins": len(plugins),
                  "broken": len(plugins.broken)}))
"""

SCREEN = '''
[[screens]]
id = "main"
title = "Main"
icon = "icon.svg"
module = "main.js"
'''


def generate_installed(site: Path, count: int) -> list[str]:
    """`count` installed plugin distributions under `site`; returns their plugin names."""
    names = []
    for index in range(count):
        name = f"bench_dc{index:03d}"
        package = site / f"mesh_{name}"
        (package / "ui" / "i18n").mkdir(parents=True)
        (package / "__init__.py").write_text(
            "from mesh import PluginPart\n\n\nclass Part(PluginPart):\n    pass\n")
        (package / "plugin.toml").write_text(
            f'name = "{name}"\ntitle = "{name}"\nversion = "1.0.0"\n'
            f'description = "A generated plugin for the discovery bench."\n\n'
            f'[services]\nserver = "mesh_{name}:Part"\nclient = "mesh_{name}:Part"\n\n'
            f'[ui]\nlocales = ["en"]\n{SCREEN}')
        (package / "ui" / "i18n" / "en.json").write_text(json.dumps({"title": name}))
        (package / "ui" / "main.js").write_text("export function mount() {}\n")
        (package / "ui" / "icon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
        info = site / f"mesh_{name}-1.0.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: mesh-{name.replace('_', '-')}\nVersion: 1.0.0\n")
        (info / "entry_points.txt").write_text(f"[mesh.plugins]\n{name} = mesh_{name}\n")
        names.append(name)
    return names


def probe(site: Path, cache: Path | None) -> dict[str, Any]:
    """One start in a new process: its discovery step and its whole wall time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, str(cache or "")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the discovery probe failed: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    report["process_s"] = wall
    return report


def measure(count: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mesh-bench-discovery-") as scratch:
        site, data_dir = Path(scratch) / "site", Path(scratch) / "data"
        generate_installed(site, count)
        probe(site, None)  # warm the file system's caches for both kinds alike
        writing = probe(site, data_dir)  # the first start writes the cache
        uncached, cached = [], []
        for _ in range(repeat):
            uncached.append(probe(site, None))
            cached.append(probe(site, data_dir))
    found = {r["plugins"] for r in [*uncached, *cached]}
    broken = {r["broken"] for r in [*uncached, *cached]}
    if len(found) != 1 or broken != {0}:
        raise RuntimeError(f"the starts disagree on the plugins: {found}, broken {broken}")

    def median(runs: list[dict[str, Any]], figure: str) -> float:
        return statistics.median(r[figure] for r in runs)

    result = {
        "plugins": found.pop(),
        "generated": count,
        "uncached_discover_s": round(median(uncached, "discover_s"), 4),
        "cached_discover_s": round(median(cached, "discover_s"), 4),
        "writing_discover_s": round(writing["discover_s"], 4),
        "uncached_process_s": round(median(uncached, "process_s"), 4),
        "cached_process_s": round(median(cached, "process_s"), 4),
    }
    result["discover_uncached_over_cached"] = round(
        result["uncached_discover_s"] / result["cached_discover_s"], 2)
    result["process_uncached_over_cached"] = round(
        result["uncached_process_s"] / result["cached_process_s"], 2)
    return result


def print_report(report: dict[str, Any], repeat: int) -> None:
    print(f"\ndiscovery of {report['plugins']} installed plugins ({report['generated']} "
          f"generated), a new process each, median of {repeat}")
    print(f"{'':22}{'uncached':>10}{'cached':>10}{'ratio':>8}")
    print(f"{'discovery step':<22}{report['uncached_discover_s'] * 1000:>8.1f}ms"
          f"{report['cached_discover_s'] * 1000:>8.1f}ms"
          f"{report['discover_uncached_over_cached']:>7.2f}x")
    print(f"{'whole process':<22}{report['uncached_process_s'] * 1000:>8.1f}ms"
          f"{report['cached_process_s'] * 1000:>8.1f}ms"
          f"{report['process_uncached_over_cached']:>7.2f}x")
    print(f"(the start that wrote the cache: {report['writing_discover_s'] * 1000:.1f} ms)")
