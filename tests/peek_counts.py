"""What each step of docs/tutorial.md takes in Peek's manual (Peek 1.3, section 8.9), counted
from the manual's own listings.

Each step lists the listings the manual has the reader put into files — by the line of their
opening fence in the text of the manual (/work/shared/seeds/001_2fcc7ef52c1d4ae6.txt here) —
and the files the reader creates or edits. A listing split over two pages is two fences; a
listing the manual says to apply to more than one file is listed once per file. Lines are the
non-blank lines inside the fences, less the continuation lines the PDF's line wrapping made
(they start with ↪ or ↳).

Not counted: shell commands, output and logs, listings that repeat snippets already counted
("It should look like", "When you're finished", "Here is an example"), the "FROM" half of
from/to edits, code the manual says not to leave in, the offline variants (8.9.12 and the
"Offline Observable" parts), and files the manual has the reader download (all of `setup.py`
and `publish.sh` but the lines it shows, and `Setting.py`).

    python -m tests.peek_counts MANUAL.txt    recount, and compare with PEEK below
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PeekStep:
    sections: str
    files: tuple[str, ...]  # created or edited: Python, JSON, INI, Mako …
    listings: tuple[int, ...]  # their listings
    frontend_files: tuple[str, ...] = ()  # TypeScript and HTML of the admin and mobile apps
    frontend: tuple[int, ...] = ()


SERVER_HOOK = "_private/server/ServerEntryHook.py"
CLIENT_HOOK = "_private/client/ClientEntryHook.py"
AGENT_HOOK = "_private/agent/AgentEntryHook.py"
WORKER_HOOK = "_private/worker/WorkerEntryHook.py"
MOBILE_MODULE = "_private/mobile-app/tutorial.module.ts"

STEPS: dict[int | str, PeekStep] = {
    1: PeekStep(
        "8.9.2, 8.9.4",
        (".gitignore", "__init__.py", "_private/__init__.py", "setup.py", "publish.sh",
         "README.rst", "plugin_package.json", "_private/PluginNames.py",
         "_private/server/__init__.py", SERVER_HOOK),
        (6576, 6626, 6678, 6712, 6736, 6760, 6818, 7845, 7903, 7908, 7923, 7940, 7948),
        ("plugin-module/package.json", "plugin-module/_private/PluginNames.ts",
         "plugin-module/_private/index.ts"),
        (6859, 6874, 6897)),
    2: PeekStep(
        "8.9.5, 8.9.6, 8.9.19",
        ("_private/client/__init__.py", CLIENT_HOOK, "_private/agent/__init__.py", AGENT_HOOK,
         "_private/worker/__init__.py", WORKER_HOOK, "__init__.py", "plugin_package.json"),
        (8050, 8080, 8116, 8131, 8139, 8236, 8268, 8306, 8323, 8333,
         13266, 13312, 13336, 13353, 13363)),
    3: PeekStep(
        "8.9.7",
        ("_private/storage/__init__.py", "_private/storage/DeclarativeBase.py",
         "_private/alembic/__init__.py", "_private/alembic/versions/__init__.py",
         "_private/alembic/env.py", "_private/alembic/script.py.mako", "plugin_package.json",
         SERVER_HOOK, CLIENT_HOOK, AGENT_HOOK, WORKER_HOOK, "_private/alembic.ini",
         "_private/storage/StringIntTuple.py", "_private/storage/Setting.py"),
        # the client hook's edit (8692, 8698) goes into the agent's and the worker's too
        (8452, 8463, 8525, 8545, 8584, 8592, 8627, 8637, 8643, 8651,
         8692, 8698, 8692, 8698, 8692, 8698, 8748, 8776)),
    4: PeekStep(
        "8.9.10",
        ("_private/tuples/__init__.py", "_private/tuples/TutorialTuple.py", "tuples/__init__.py",
         SERVER_HOOK, CLIENT_HOOK, AGENT_HOOK, WORKER_HOOK),
        # the server hook's edit (9739, 9746) goes into the three other hooks too
        (9642, 9673, 9713, 9739, 9746, 9739, 9746, 9739, 9746, 9739, 9746),
        ("plugin-module/_private/tuples/TutorialTuple.ts",
         "plugin-module/_private/tuples/StringIntTuple.ts",
         "plugin-module/_private/tuples/SettingPropertyTuple.ts",
         "plugin-module/_private/index.ts"),
        (9834, 9865, 9896, 9922, 9936)),
    5: PeekStep(
        "8.9.8, 8.9.11",
        ("plugin_package.json", "_private/server/admin_backend/__init__.py", SERVER_HOOK,
         "_private/admin_backend/StringIntTableHandler.py",
         "_private/admin_backend/SettingPropertyHandler.py"),
        (9090, 9098, 9998, 10017, 10023, 10059, 10080, 10114, 10120, 10389, 10430, 10436),
        ("_private/admin-app/tutorial.component.html", "_private/admin-app/tutorial.component.ts",
         "_private/admin-app/tutorial.module.ts",
         "_private/admin-app/edit-string-int-table/edit.component.html",
         "_private/admin-app/edit-string-int-table/edit.component.ts",
         "_private/admin-app/edit-setting-table/edit.component.html",
         "_private/admin-app/edit-setting-table/edit.component.ts"),
        (8992, 9024, 9051, 10146, 10197, 10222, 10255, 10323, 10336, 10346, 10361, 10367,
         10462, 10491, 10534, 10555, 10605, 10617, 10634, 10640)),
    6: PeekStep(
        "8.9.13",
        ("_private/server/tuple_providers/__init__.py", "_private/server/TupleDataObservable.py",
         SERVER_HOOK, "_private/client/DeviceTupleDataObservableProxy.py", CLIENT_HOOK,
         "_private/server/tuple_providers/StringIntTupleProvider.py",
         "_private/admin_backend/StringIntTableHandler.py",
         "_private/server/admin_backend/__init__.py"),
        (10809, 10845, 10851, 10874, 10897, 10903, 11020, 11051, 11075, 11084,
         11105, 11115, 11150, 11156, 11168, 11182, 11197, 11217),
        (MOBILE_MODULE, "_private/mobile-app/string-int/string-int.component.mweb.html",
         "_private/mobile-app/string-int/string-int.component.ns.html",
         "_private/mobile-app/string-int/string-int.component.ts",
         "_private/mobile-app/tutorial.component.mweb.html",
         "_private/mobile-app/tutorial.component.ns.html"),
        (10921, 10938, 10947, 11252, 11281, 11306, 11326, 11372, 11397, 11403, 11412,
         11426, 11440)),
    7: PeekStep(
        "8.9.14",
        ("_private/tuples/StringCapToggleActionTuple.py",
         "_private/tuples/AddIntValueActionTuple.py", "_private/server/controller/__init__.py",
         "_private/server/controller/MainController.py", "_private/server/TupleActionProcessor.py",
         SERVER_HOOK, "_private/client/DeviceTupleProcessorActionProxy.py", CLIENT_HOOK),
        (11600, 11621, 11727, 11761, 11827, 11845, 11872, 11881, 11906, 11929, 11935),
        ("plugin-module/_private/tuples/StringCapToggleActionTuple.ts",
         "plugin-module/_private/tuples/AddIntValueActionTuple.ts",
         "plugin-module/_private/index.ts", MOBILE_MODULE,
         "_private/mobile-app/string-int/string-int.component.ts",
         "_private/mobile-app/string-int/string-int.component.mweb.html",
         "_private/mobile-app/string-int/string-int.component.ns.html"),
        (11649, 11672, 11695, 11953, 11969, 11978, 12047, 12060, 12069, 12093, 12190, 12228,
         12243)),
    8: PeekStep(
        "8.9.15",
        ("_private/server/agent_handlers/__init__.py",
         "_private/server/agent_handlers/RpcForAgent.py",
         "_private/server/controller/MainController.py", SERVER_HOOK,
         "_private/agent/AgentToServerRpcCallExample.py", AGENT_HOOK,
         "_private/agent/RpcForServer.py", "_private/server/ServerToAgentRpcCallExample.py"),
        (12394, 12413, 12480, 12504, 12519, 12525, 12547, 12600, 12659, 12666, 12687, 12701,
         12743, 12749, 12768, 12805, 12811)),
    9: PeekStep(
        "8.9.16",
        ("tuples/DoSomethingTuple.py", "server/__init__.py", "server/TutorialApiABC.py",
         "_private/server/TutorialApi.py", SERVER_HOOK, "_private/server/ExampleUseTaskApi.py"),
        (12952, 12967, 12999, 13026, 13064, 13070, 13076, 13084, 13090, 13124, 13141, 13187,
         13194, 13204)),
    10: PeekStep("8.9.19 (no task)", (), ()),
    11: PeekStep("none", (), ()),
    12: PeekStep("none (in 6, 7 and the shell)", (), ()),
    13: PeekStep("none (Active Task is a plugin of its own)", (), ()),
    "device page": PeekStep(
        "8.9.9",
        ("plugin_package.json",), (9378, 9386),
        ("_private/mobile-app/tutorial.component.mweb.html",
         "_private/mobile-app/tutorial.component.ns.html",
         "_private/mobile-app/tutorial.component.ts", MOBILE_MODULE),
        (9237, 9269, 9290, 9319)),
}


@dataclass(frozen=True)
class Counted:
    sections: str
    files: int
    lines: int  # Python, JSON, INI, Mako …
    frontend_files: int
    frontend_lines: int  # TypeScript, HTML


# What `python -m tests.peek_counts MANUAL.txt` prints for the listings above.
PEEK: dict[int | str, Counted] = {
    1: Counted("8.9.2, 8.9.4", 10, 116, 3, 11),
    2: Counted("8.9.5, 8.9.6, 8.9.19", 8, 140, 0, 0),
    3: Counted("8.9.7", 14, 83, 0, 0),
    4: Counted("8.9.10", 7, 48, 4, 50),
    5: Counted("8.9.8, 8.9.11", 5, 59, 7, 284),
    6: Counted("8.9.13", 8, 85, 6, 111),
    7: Counted("8.9.14", 8, 110, 7, 141),
    8: Counted("8.9.15", 8, 182, 0, 0),
    9: Counted("8.9.16", 6, 93, 0, 0),
    10: Counted("8.9.19 (no task)", 0, 0, 0, 0),
    11: Counted("none", 0, 0, 0, 0),
    12: Counted("none (in 6, 7 and the shell)", 0, 0, 0, 0),
    13: Counted("none (Active Task is a plugin of its own)", 0, 0, 0, 0),
    "device page": Counted("8.9.9", 1, 10, 4, 55),
}


def listing_lines(manual: list[str], fence: int) -> int:
    """Non-blank lines of the listing whose opening fence is on line `fence` (1-based)."""
    if not manual[fence - 1].lstrip().startswith("```"):
        raise ValueError(f"line {fence} of the manual opens no listing")
    count = 0
    for line in manual[fence:]:
        if line.lstrip().startswith("```"):
            return count
        if line.strip() and not line.lstrip().startswith(("↪", "↳")):
            count += 1
    raise ValueError(f"the listing at line {fence} does not end")


def recount(manual_path: Path) -> dict[int | str, Counted]:
    manual = manual_path.read_text().split("\n")
    return {key: Counted(step.sections, len(step.files),
                         sum(listing_lines(manual, f) for f in step.listings),
                         len(step.frontend_files),
                         sum(listing_lines(manual, f) for f in step.frontend))
            for key, step in STEPS.items()}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    counted = recount(Path(argv[0]))
    for key, value in counted.items():
        print(f"{key}: {value}")
    if counted != PEEK:
        print("differs from PEEK in tests/peek_counts.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
