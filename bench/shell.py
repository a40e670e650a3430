"""The device shell: its own size, and how fast it shows a screen, against a bare page.

Size: the shell's own files (index.html, shell.js, shell.css, and mesh.js, the device client it
loads), gzipped at level 9, before any plugin screen. Aim: at most 60 KB.

Time, in headless Chromium, from the Performance API's time origin (the navigation's start) to
the tutorial's StringInt screen showing all its rows (a MutationObserver, installed in every
new document through the DevTools protocol, notes `performance.now()` when the last row
appears):

- shell cold: the deep link `#/tutorial/string_ints` with the HTTP cache cleared;
- shell warm: the same with a warm cache;
- shell switch: in an open shell, from the home grid to the screen (the screen's module
  imported before) — from setting the address to the rows shown;
- bare cold and warm: the baseline, a plain HTML page on its own port that imports the same
  screen module and mesh.js and mounts the screen with no shell around it.

Each figure is the median of `--repeat` runs; the mesh (server, client, agent, worker with the
tutorial and identity plugins, on the in-process bus and SQLite) runs in this process. Aim:
shell switch at most 1.5 times bare warm. Figures vary with the machine's load: compare the
ratios of one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import socket
import statistics
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from mesh.admin_credentials import admin_password
from mesh.log import configure_logging
from mesh.testing.browser import available, browser, sign_in, wait_for
from mesh.testing.bus import Bus
from mesh.testing.devices import Device
from mesh.testing.harness import select_plugins
from services.client.gateway.web_security import SHELL_FILES as SERVED_SHELL_FILES

NAME = "shell"
HELP = "the device shell: its gzip size, and screen render time in Chromium against a bare page"
# Every file of the shell a device loads before any plugin screen: the page, what the client
# service serves as the shell (its scripts and style), and the service worker
SHELL_FILES = ("index.html", *sorted(SERVED_SHELL_FILES), "sw.js")
AIM_KB = 60
AIM_SWITCH_OVER_BARE = 1.5
SCREEN = "tutorial/string_ints"

BARE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bare</title>
<script type="module" src="/bare.js"></script></head>
<body><main id="screen"></main></body></html>
"""
BARE_JS = """import { Mesh } from "/mesh.js";
import { mount } from "/string_ints.js";

const strings = await (await fetch("/en.json")).json();
sessionStorage.setItem("mesh-token", decodeURIComponent(location.hash.slice(1)));
const mesh = new Mesh(%(ws)s);
mount(document.getElementById("screen"), {mesh, t: (key) => strings[key] ?? key,
  report: (error) => { document.body.dataset.error = String(error?.message ?? error); }});
"""
OBSERVER = """window.__rendered = null;
new MutationObserver(() => {
  if (window.__rendered === null
      && document.querySelectorAll("#rows tr[data-id]").length >= %(rows)d) {
    window.__rendered = performance.now();
  }
}).observe(document, {subtree: true, childList: true});
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=50,
                        help="StringInt rows the screen shows (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=7,
                        help="runs of each measurement; the median is reported "
                             "(default: %(default)s)")


def shell_size() -> dict[str, Any]:
    """Each shell file's bytes and gzip -9 bytes, and the total."""
    static = resources.files("services.client").joinpath("static")
    files = {}
    for name in SHELL_FILES:
        raw = static.joinpath(name).read_bytes()
        files[name] = {"bytes": len(raw), "gzip_bytes": len(gzip.compress(raw, 9, mtime=0))}
    total = sum(f["gzip_bytes"] for f in files.values())
    return {"files": files, "gzip_bytes": total, "gzip_kb": round(total / 1024, 1),
            "aim_kb": AIM_KB, "within_aim": total <= AIM_KB * 1024}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def bare_server(port: int, files: dict[str, tuple[bytes, str]]) -> Iterator[str]:
    """The baseline page and what it imports, served on `port` in a thread: its origin."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = files.get(self.path.split("?")[0])
            if found is None:
                self.send_error(404)
                return
            body, media_type = found
            self.send_response(200)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def bare_files(client_port: int) -> dict[str, tuple[bytes, str]]:
    static = resources.files("services.client").joinpath("static")
    ui = resources.files("mesh_tutorial").joinpath("ui")
    js = "text/javascript"
    ws = json.dumps(f"ws://127.0.0.1:{client_port}/ws")
    return {
        "/bare.html": (BARE_HTML.encode(), "text/html; charset=utf-8"),
        "/bare.js": ((BARE_JS % {"ws": ws}).encode(), js),
        "/mesh.js": (static.joinpath("mesh.js").read_bytes(), js),
        "/offline.js": (static.joinpath("offline.js").read_bytes(), js),  # mesh.js imports it
        "/string_ints.js": (ui.joinpath("string_ints.js").read_bytes(), js),
        "/en.json": (ui.joinpath("i18n", "en.json").read_bytes(), "application/json"),
    }


class Timer:
    """Chromium with the row observer in every new document; times navigations and switches."""

    def __init__(self, rows: int) -> None:
        self.driver = browser()
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                    {"source": OBSERVER % {"rows": rows}})
        self.driver.execute_cdp_cmd("Network.enable", {})

    def rendered(self) -> float:
        return float(wait_for(self.driver, lambda d: d.execute_script(
            "return window.__rendered"), timeout=30))

    def load(self, url: str, *, cold: bool) -> float:
        """Milliseconds from the navigation's start to the rows shown."""
        self.driver.get("about:blank")
        if cold:
            self.driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        self.driver.get(url)
        return self.rendered()

    def switch(self, home: Callable[[Any], bool]) -> float:
        """In the open shell: home, then the screen; milliseconds to the rows shown."""
        self.driver.execute_script("location.hash = '#/'")
        wait_for(self.driver, home)
        started = self.driver.execute_script(
            f"window.__rendered = null; const t = performance.now(); "
            f"location.hash = '#/{SCREEN}'; return t")
        return self.rendered() - float(started)

    def quit(self) -> None:
        self.driver.quit()


def at_home(driver: Any) -> bool:
    return bool(driver.execute_script(
        "return !document.getElementById('home').hidden"
        " && !document.querySelector('#rows tr[data-id]')"))


def measure(timer: Timer, shell: str, bare: str, password: str, repeat: int
            ) -> dict[str, list[float]]:
    """Every timing, `repeat` times, in the browser (run in a thread: the mesh serves)."""
    driver = timer.driver
    driver.get(shell)
    sign_in(driver, "admin", password)
    wait_for(driver, at_home)
    token = driver.execute_script("return sessionStorage.getItem('mesh-token')")
    figures: dict[str, list[float]] = {k: [] for k in (
        "shell_cold", "shell_warm", "shell_switch", "bare_cold", "bare_warm")}
    for _ in range(repeat):
        figures["shell_cold"].append(timer.load(f"{shell}#/{SCREEN}", cold=True))
        figures["shell_warm"].append(timer.load(f"{shell}#/{SCREEN}", cold=False))
        timer.switch(at_home)  # the first visit in this document imports the module
        figures["shell_switch"].append(timer.switch(at_home))
        figures["bare_cold"].append(timer.load(f"{bare}/bare.html#{token}", cold=True))
        figures["bare_warm"].append(timer.load(f"{bare}/bare.html#{token}", cold=False))
    return figures


async def run_mesh(rows: int, repeat: int, scratch: Path) -> dict[str, list[float]]:
    client_port, bare_port = free_port(), free_port()
    bare_origin = f"http://127.0.0.1:{bare_port}"
    bus = Bus("memory", None, scratch / "data")
    sources = select_plugins(["tutorial", "identity"])
    database = f"sqlite+aiosqlite:///{scratch / 'mesh.db'}"
    try:
        server = await bus.service("server", sources=sources, database_url=database)
        await bus.service("client", sources=sources, database_url=database,
                          client_port=client_port, client_allowed_origins=[
                              f"http://127.0.0.1:{client_port}", bare_origin])
        for kind in ("agent", "worker"):  # the tutorial runs there too: its screen's buttons
            await bus.service(kind, sources=sources, database_url=database)
        password, _ = admin_password(server.settings)
        device = await Device.connect(f"ws://127.0.0.1:{client_port}/ws")
        await device.sign_in("admin", password)
        for n in range(rows):
            await device.call("tutorial.add_string_int", {"string1": f"row {n}", "int1": n})
        await device.close()
        timer = Timer(rows)
        try:
            with bare_server(bare_port, bare_files(client_port)) as bare:
                return await asyncio.to_thread(
                    measure, timer, f"http://127.0.0.1:{client_port}/", bare, password, repeat)
        finally:
            timer.quit()
    finally:
        await bus.close()


def summary(figures: dict[str, list[float]]) -> dict[str, float]:
    medians = {f"{name}_ms": round(statistics.median(values), 1)
               for name, values in figures.items()}
    medians["switch_over_bare_warm"] = round(
        medians["shell_switch_ms"] / medians["bare_warm_ms"], 2)
    medians["warm_over_bare_warm"] = round(medians["shell_warm_ms"] / medians["bare_warm_ms"], 2)
    medians["cold_over_bare_cold"] = round(medians["shell_cold_ms"] / medians["bare_cold_ms"], 2)
    return medians


def run(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    missing = available()
    if missing is not None:
        print(f"error: the shell bench needs Chromium: {missing}")
        return 1
    with tempfile.TemporaryDirectory(prefix="mesh-bench-shell-") as scratch:
        figures = asyncio.run(run_mesh(args.rows, args.repeat, Path(scratch)))
    report = {"rows": args.rows, "repeat": args.repeat, "size": shell_size(),
              "times": summary(figures), "aim_switch_over_bare": AIM_SWITCH_OVER_BARE}
    if args.json:
        print(json.dumps(report))
        return 0
    size, times = report["size"], report["times"]
    each = ", ".join(f"{name} {file['gzip_bytes']}" for name, file in size["files"].items())
    print(f"device shell: {size['gzip_kb']} KB gzip of its own files ({each} bytes); "
          f"aim ≤ {AIM_KB} KB")
    print(f"tutorial screen, {args.rows} rows, median of {args.repeat} (ms from navigation):")
    print(f"{'':8}{'cold':>9}{'warm':>9}{'switch':>9}")
    print(f"{'shell':8}{times['shell_cold_ms']:>9.1f}{times['shell_warm_ms']:>9.1f}"
          f"{times['shell_switch_ms']:>9.1f}")
    print(f"{'bare':8}{times['bare_cold_ms']:>9.1f}{times['bare_warm_ms']:>9.1f}")
    print(f"switch / bare warm: {times['switch_over_bare_warm']}x (aim ≤ "
          f"{AIM_SWITCH_OVER_BARE}x); warm / bare warm: {times['warm_over_bare_warm']}x; "
          f"cold / bare cold: {times['cold_over_bare_cold']}x")
    return 0
