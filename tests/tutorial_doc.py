"""docs/tutorial.md as data: its steps, and the plugin as it is after each of them.

Every `# file:` block of a step shows code of the finished plugin (plugins/tutorial, and the
second plugin of step 9, plugins/tutorial_stats) as it is at that step: new code, code it
changes, and code of earlier steps around it. A block's chunks are found in the finished file,
in order; inside a chunk the file may only have lines of later steps that the chunk does not
show (they do not exist yet). A statement over several lines counts as one line here, and a
line of the file belongs to the first step that shows it. Imports, `def` and `class` lines, and
what a module or a class assigns (a contract's declarations, a manifest's keys) may change from
step to step: a block shows them as they are at its step, matched to the file's line with the
same module or name.

So the file at step N is the file's lines of steps 1..N, each as step N last showed it. The
finished files must be covered — every line shown, in its final form — which keeps the doc
from hiding code and the code from drifting from the doc.

    python -m tests.tutorial_doc table             the line-count table of the doc
    python -m tests.tutorial_doc uncovered         lines of the plugins no step shows
    python -m tests.tutorial_doc replay [FOLDER]   every step: its tests and shell sessions
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tests.doc_blocks import ROOT, Block, blocks

DOC = ROOT / "docs" / "tutorial.md"
TREES = ("plugins/tutorial", "plugins/tutorial_stats")
DEVICE_SHELL = ("services/client/static/index.html", "services/client/static/shell.js",
                "services/client/static/shell.css")  # the device shell, in the client
IGNORED = re.compile(r"(^|/)(__pycache__|[^/]*\.egg-info|build|dist)(/|$)")
STEP = re.compile(r"^## Step (\d+): (.+)$", re.M)
TEST_ID = re.compile(r"`((?:plugins/[\w/]+/)?tests/(?:\w+/)*test_\w+\.py::\w+)`")
FROM_IMPORT = re.compile(r"^(\s*from \S+ import) ")
DEFINITION = re.compile(r"^(\s*(?:async def|def|class) \w+)\b")
DECLARATION = re.compile(r"^( {0,4}[A-Za-z_][\w.]*)(?:: [^=]+)? = ")  # at module or class level


class TutorialError(AssertionError):
    """The doc and the plugin disagree; the message says where."""


@dataclass
class Unit:
    """A line of a file, or a parenthesised import over several lines."""

    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def blank(self) -> bool:
        return not self.text.strip()

    @property
    def head(self) -> str | None:
        """What stays the same when the unit changes from step to step: the module of an
        import, the name of a def or a class, the name a module or a class assigns (a
        declaration in a contract, a key of a manifest). Other units never change."""
        first = self.lines[0]
        match = FROM_IMPORT.match(first) or DEFINITION.match(first) or DECLARATION.match(first)
        return match.group(1) if match else None

    def names(self) -> set[str]:
        imported = self.text.split(" import ", 1)[1]
        return {n.strip() for n in re.sub(r"[()\n]", " ", imported).split(",") if n.strip()}


def open_brackets(line: str, state: tuple[int, str | None]) -> tuple[int, str | None]:
    """Brackets still open, and the triple quote still open, after `line` (strings and
    comments skipped)."""
    depth, quote = state
    i = 0
    while i < len(line):
        if quote is not None:
            end = line.find(quote, i)
            if end < 0:
                return depth, quote
            i, quote = end + len(quote), None
            continue
        char = line[i]
        if char == "#":
            break
        if char in "\"'":
            triple = line[i:i + 3]
            if triple in ('"""', "'''"):
                i, quote = i + 3, triple
                continue
            end = i + 1
            while end < len(line) and line[end] != char:
                end += 2 if line[end] == "\\" else 1
            i = end + 1
            continue
        depth += (char in "([{") - (char in ")]}")
        i += 1
    return depth, quote


def units(lines: list[str]) -> list[Unit]:
    """A file's (or a chunk's) lines as units: a statement over several lines — a call, a
    parenthesised import, a docstring — is one unit."""
    found: list[Unit] = []
    state: tuple[int, str | None] = (0, None)
    for line in lines:
        if state != (0, None):
            found[-1].lines.append(line)
        else:
            found.append(Unit([line]))
        state = open_brackets(line, state)
        if state[0] < 0:  # a chunk may start inside brackets it does not show
            state = (0, state[1])
    return found


@dataclass
class Step:
    number: int
    title: str
    text: str  # the step's markdown, its blocks included
    blocks: list[Block]

    @property
    def tests(self) -> list[str]:
        """The tests the step names as its check, in the text outside its code blocks."""
        prose = re.sub(r"^```.*?^```$", "", self.text, flags=re.S | re.M)
        return TEST_ID.findall(prose)

    @property
    def sessions(self) -> list[Block]:
        return [b for b in self.blocks if b.language == "console"]


def steps(doc: Path = DOC) -> list[Step]:
    text = doc.read_text()
    found = list(STEP.finditer(text))
    all_blocks = blocks(doc)
    result = []
    for index, match in enumerate(found):
        start = match.start()
        end = found[index + 1].start() if index + 1 < len(found) else text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end
        first, last = text.count("\n", 0, start) + 1, text.count("\n", 0, end) + 1
        result.append(Step(int(match.group(1)), match.group(2), text[start:end],
                           [b for b in all_blocks if first <= b.line < last]))
    numbers = [s.number for s in result]
    if numbers != list(range(1, len(result) + 1)):
        raise TutorialError(f"{DOC.name}: steps are numbered {numbers}, not 1, 2, 3, …")
    return result


def tree_files(root: Path = ROOT) -> list[str]:
    """Every file of the finished plugins, relative to the repository."""
    found = []
    for tree in TREES:
        for path in sorted((root / tree).rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and not IGNORED.search(relative):
                found.append(relative)
    return found


def is_test(path: str) -> bool:
    return "/tests/" in path


@dataclass
class FileHistory:
    """One finished file, and the step and form of each of its units."""

    path: str
    final: list[Unit]
    created: int | None = None  # the step of an empty block, for an empty file
    steps: list[int | None] = field(default_factory=list)
    versions: list[list[tuple[int, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = [None] * len(self.final)
        self.versions = [[] for _ in self.final]

    def text_at(self, step: int) -> str | None:
        """The file as it is after `step`, or None if it does not exist yet."""
        if self.created is not None and self.created <= step and not self.final:
            return ""
        kept: list[str] = []
        exists = False
        for unit, first, versions in zip(self.final, self.steps, self.versions, strict=True):
            if first is None:
                if unit.blank:
                    kept.append("")
                continue
            if first > step:
                continue
            exists = True
            kept.append([text for s, text in versions if s <= step][-1])
        if not exists:
            return None
        text = re.sub(r"\n{4,}", "\n\n\n", "\n".join(kept).strip("\n") + "\n")
        return text


@dataclass
class Count:
    files: set[str] = field(default_factory=set)
    lines: int = 0  # new or changed non-blank lines of the plugins' code
    test_lines: int = 0  # non-blank lines of the test files the step's checks are in


class Tutorial:
    """The doc replayed over the finished plugins."""

    def __init__(self, doc: Path = DOC, root: Path = ROOT) -> None:
        self.root = root
        self.steps = steps(doc)
        self.files = {p: FileHistory(p, units((root / p).read_text().split("\n")[:-1]))
                      for p in tree_files(root) if not is_test(p)}
        self.counts = {s.number: Count() for s in self.steps}
        for step in self.steps:
            for block in step.blocks:
                if block.file is not None:
                    self._apply(step.number, block)
        self.test_steps = self._test_steps()
        for path, first in self.test_steps.items():
            if first is not None:
                count = self.counts[first]
                count.files.add(path)
                count.test_lines += sum(1 for line in (root / path).read_text().splitlines()
                                        if line.strip())

    # -- replaying the blocks ---------------------------------------------------------------

    def _apply(self, step: int, block: Block) -> None:
        path = block.file
        assert path is not None
        history = self.files.get(path)
        if history is None:
            raise TutorialError(f"{block.where}: {path} is not a file of {' or '.join(TREES)} "
                                "(or is a test, which the doc names but does not show)")
        chunks = block.chunks()
        if not chunks:
            if history.final:
                raise TutorialError(f"{block.where}: an empty block, but {path} is not empty")
            history.created = step
            self.counts[step].files.add(path)
            return
        position = 0
        for chunk in chunks:
            position = self._apply_chunk(step, block, history, units(chunk), position)

    def _apply_chunk(self, step: int, block: Block, history: FileHistory, chunk: list[Unit],
                     position: int) -> int:
        alignments = [a for start in range(position, len(history.final))
                      if (a := self._align(history, chunk, start)) is not None]
        first_line = chunk[0].lines[0].strip()
        if not alignments:
            raise TutorialError(
                f"{block.where}: the chunk starting {first_line!r} does not match "
                f"{history.path} as it is at step {step}: lines differ, or a line of an earlier "
                "step is missing from the chunk")
        if len(alignments) > 1:
            raise TutorialError(f"{block.where}: the chunk starting {first_line!r} matches "
                                f"{history.path} in {len(alignments)} places; show more of it")
        count = self.counts[step]
        for unit, index in zip(chunk, alignments[0], strict=True):
            versions = history.versions[index]
            if history.steps[index] is None:
                history.steps[index] = step
                versions.append((step, unit.text))
                if not unit.blank:
                    count.files.add(history.path)
                    count.lines += sum(1 for line in unit.lines if line.strip())
            elif unit.text != versions[-1][1]:
                before = Unit(versions[-1][1].split("\n"))
                if FROM_IMPORT.match(unit.lines[0]) and not before.names() <= unit.names():
                    raise TutorialError(f"{block.where}: {first_line!r} drops names "
                                        f"{sorted(before.names() - unit.names())} an earlier "
                                        "step imported")
                versions.append((step, unit.text))
                count.files.add(history.path)
                count.lines += len({line for line in unit.lines if line.strip()}
                                   - set(before.lines))
        return alignments[0][-1] + 1

    @staticmethod
    def _align(history: FileHistory, chunk: list[Unit], start: int) -> list[int] | None:
        """Where the chunk's units are in the file, if it starts at `start`: the file may
        have units no step has shown yet between them, and nothing else."""
        final, taken = history.final, history.steps
        found: list[int] = []
        index = start
        for unit in chunk:
            while True:
                if index >= len(final):
                    return None
                candidate = final[index]
                if candidate.text == unit.text or (
                        unit.head is not None and unit.head == candidate.head):
                    found.append(index)
                    index += 1
                    break
                if not found or taken[index] is not None:
                    return None
                index += 1
        return found

    def _test_steps(self) -> dict[str, int | None]:
        """Each test file, and the first step that names a test in it (None: conftest)."""
        tests = [p for p in tree_files(self.root) if is_test(p)]
        first: dict[str, int | None] = {p: None for p in tests if p.endswith("/conftest.py")}
        for step in self.steps:
            for test in step.tests:
                path, _, name = test.partition("::")
                if not (self.root / path).is_file():
                    raise TutorialError(f"step {step.number} names {test}: no such file")
                if not re.search(rf"^(async )?def {name}\(", (self.root / path).read_text(),
                                 re.M):
                    raise TutorialError(f"step {step.number} names {test}: no such test")
                if path.startswith("tests/"):  # the repository's: run on the finished plugin
                    continue
                if path not in tests:
                    raise TutorialError(f"step {step.number} names {test}: not a test of "
                                        f"{' or '.join(TREES)}")
                first.setdefault(path, step.number)
        unnamed = sorted(set(tests) - set(first))
        if unnamed:
            raise TutorialError(f"no step names a test in {', '.join(unnamed)}")
        return first

    # -- what the replay gives ----------------------------------------------------------------

    def uncovered(self) -> list[str]:
        """Lines of the finished files that no step shows in their final form."""
        problems = []
        for history in self.files.values():
            if not history.final and history.created is None:
                problems.append(f"{history.path}: empty, and no step shows it (an empty block)")
            line = 1
            for unit, versions in zip(history.final, history.versions, strict=True):
                if not unit.blank and (not versions or versions[-1][1] != unit.text):
                    shown = f", last shown as {versions[-1][1]!r}" if versions else ""
                    problems.append(f"{history.path}:{line}: {unit.text.strip()!r}{shown}")
                line += len(unit.lines)
        return problems

    def tree_at(self, step: int) -> dict[str, str]:
        """Every file of the plugins after `step`: path → text (tests included)."""
        files = {path: text for path, history in self.files.items()
                 if (text := history.text_at(step)) is not None}
        for path, first in self.test_steps.items():
            plugin = path.rsplit("/tests/", 1)[0] + "/"
            shared = first is None and any(p.startswith(plugin) for p in files)  # conftest
            if shared or (first is not None and first <= step):
                files[path] = (self.root / path).read_text()
        return files

    def table(self) -> str:
        """The page's table: mesh's lines per step, counted here, against Peek's."""
        from tests.peek_counts import PEEK

        rows = ["| step | mesh: files | mesh: lines | mesh: test lines | Peek 8.9 | Peek: files | "
                "Peek: lines | Peek: TypeScript, HTML | mesh / Peek |",
                "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
        totals = [0] * 6

        def row(name: str, files: int, lines: int, tests: int, key: int | str) -> None:
            peek = PEEK[key]
            peek_lines = peek.lines + peek.frontend_lines
            ratio = f"{lines / peek_lines:.2f}" if peek_lines else "—"
            values = (files, lines, tests, peek.files + peek.frontend_files, peek.lines,
                      peek.frontend_lines)
            rows.append(f"| {name} | {files} | {lines} | {tests} | {peek.sections} | "
                        + " | ".join(str(v) if v else "—" for v in values[3:])
                        + f" | {ratio} |")
            for i, value in enumerate(values):
                totals[i] += value

        for step in self.steps:
            count = self.counts[step.number]
            row(f"{step.number}. {step.title}", len({f for f in count.files if not is_test(f)}),
                count.lines, count.test_lines, step.number)
        shell = [line for path in DEVICE_SHELL
                 for line in (self.root / path).read_text().splitlines() if line.strip()]
        row("device shell (`services/client/static/`: index.html, shell.js, shell.css)",
            len(DEVICE_SHELL), len(shell), 0, "device page")
        rows.append(f"| **all** | {totals[0]} | {totals[1]} | {totals[2]} | | {totals[3]} | "
                    f"{totals[4]} | {totals[5]} | {totals[1] / (totals[4] + totals[5]):.2f} |")
        return "\n".join(rows)


# -- the shell sessions ------------------------------------------------------------------------

ANY = "…"
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")  # the variables a later command uses
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Command:
    """A `$ ` line of a console block, and the output the block shows for it."""

    text: str
    expected: list[str]
    where: str

    @property
    def is_make_up(self) -> bool:
        return self.text == "make up"


def commands(block: Block) -> list[Command]:
    found: list[Command] = []
    for line in block.body.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            found.append(Command(line[2:], [], block.where))
        elif not found:
            raise TutorialError(f"{block.where}: a console block starts with a `$ ` command")
        else:
            found[-1].expected.append(line)
    return found


def line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in expected.split(ANY)) + "$")


def output_lines(text: str) -> list[str]:
    return [line.rstrip() for line in ANSI.sub("", text).split("\n")]


def matches_in_order(expected: list[str], actual: list[str]) -> bool:
    """Each expected line matches an actual line, in order, with nothing between them except
    where the block has a line `…` (any lines); `…` inside a line is any text."""
    actual = [line for line in actual if line]
    patterns = [None if line == ANY else line_pattern(line) for line in expected if line]

    def match(i: int, j: int) -> bool:
        if i == len(patterns):
            return j == len(actual)
        pattern = patterns[i]
        if pattern is None:
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and bool(pattern.match(actual[j])) and match(i + 1, j + 1)

    return match(0, 0)


def missing_lines(expected: list[str], actual: list[str]) -> list[str]:
    """The expected lines (not `…`) that match no actual line: `make up`'s lines come from four
    services at once, so their order is not checked."""
    return [line for line in expected if line and line != ANY
            and not any(line_pattern(line).match(a) for a in actual)]


# -- replaying the steps ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Replay:
    """The steps, one after the other, in a folder of their own that stands for the reader's
    checkout: the plugins as they are after the step, `.venv` (the one running this), and the
    `.mesh` folder `make up` keeps from step to step."""

    def __init__(self, tutorial: Tutorial, folder: Path) -> None:
        self.tutorial = tutorial
        self.folder = folder
        self.site = folder.parent / f"{folder.name}-site"  # stands for `make install`
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / ".venv").exists():
            (folder / ".venv").symlink_to(sys.prefix)
        self.admin_port, self.client_port = free_port(), free_port()
        self.up: subprocess.Popen[bytes] | None = None
        self.up_log = folder.parent / f"{folder.name}-up.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MESH_") or k.startswith("MESH_TEST_")}
        paths = [self.site, *(self.folder / tree for tree in TREES), self.tutorial.root]
        env.update(PYTHONPATH=os.pathsep.join(map(str, paths)), PYTHONDONTWRITEBYTECODE="1",
                   MESH_ADMIN_PORT=str(self.admin_port), MESH_CLIENT_PORT=str(self.client_port),
                   MESH_LOG_FORMAT="console", MESH_LOG_LEVEL="INFO")
        return env

    def write(self, step: int) -> None:
        """The plugins as they are after `step`, installed: a `.dist-info` per plugin carries
        the entry points of its pyproject.toml as it is then (none before the plugin exists,
        which hides the finished plugin installed in `.venv`)."""
        shutil.rmtree(self.folder / "plugins", ignore_errors=True)
        for path, text in self.tutorial.tree_at(step).items():
            target = self.folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        shutil.rmtree(self.site, ignore_errors=True)
        for tree in TREES:
            final = tomllib.loads((self.tutorial.root / tree / "pyproject.toml").read_text())
            name, version = final["project"]["name"], final["project"]["version"]
            dist = self.site / f"{name.replace('-', '_')}-{version}.dist-info"
            dist.mkdir(parents=True)
            (dist / "METADATA").write_text(
                f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
            pyproject = self.folder / tree / "pyproject.toml"
            if pyproject.is_file():
                groups = tomllib.loads(pyproject.read_text())["project"]["entry-points"]
                (dist / "entry_points.txt").write_text("".join(
                    f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
                    for group, points in groups.items()))

    def run_tests(self, step: Step) -> None:
        names = [t for t in step.tests if not t.startswith("tests/")]
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
             str(self.tutorial.root / "pyproject.toml"), "--rootdir", str(self.folder),
             "-k", "not postgresql", *names],  # the suite runs them on PostgreSQL too
            cwd=self.folder, env=self.env(), capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise TutorialError(f"step {step.number}: its tests fail on the plugin as it is "
                                f"then:\n{result.stdout[-6000:]}{result.stderr[-3000:]}")

    def shell(self, text: str) -> str:
        for port, mine in ((8010, self.admin_port), (8000, self.client_port)):
            text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{mine}")
        return text

    def run_sessions(self, step: Step) -> None:
        self.assignments: list[str] = []  # `NAME=$(...)` lines, as a terminal keeps them
        try:
            for block in step.sessions:
                for command in commands(block):
                    if command.is_make_up:
                        self.make_up(command)
                    else:
                        self.run(command)
        finally:
            self.stop_up()

    def make_up(self, command: Command) -> None:
        """`make up` is `.venv/bin/mesh up` (the Makefile's recipe): run it until it printed
        every line the block shows."""
        self.stop_up()
        with self.up_log.open("wb") as log:
            self.up = subprocess.Popen([".venv/bin/mesh", "up"], cwd=self.folder,
                                       env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            output = output_lines(self.up_log.read_text(errors="replace"))
            missing = missing_lines(command.expected, output)
            if not missing:
                return
            if self.up.poll() is not None or time.monotonic() > deadline:
                raise TutorialError(f"{command.where}: `make up` printed no line like "
                                    f"{missing[0]!r}:\n" + "\n".join(output[-60:]))
            time.sleep(0.2)

    def stop_up(self) -> None:
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                self.up.wait(30)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait()
        self.up = None

    def run(self, command: Command) -> None:
        script = "\n".join([*self.assignments, f"set -e\n{command.text}"])
        result = subprocess.run(["bash", "-c", self.shell(script)], cwd=self.folder,
                                env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=120)
        if ASSIGNMENT.match(command.text):
            if result.returncode != 0:
                raise TutorialError(f"{command.where}: `$ {command.text}` failed:\n"
                                    + result.stdout)
            self.assignments.append(command.text)
        actual = output_lines(result.stdout)
        if not matches_in_order(command.expected, actual):
            raise TutorialError(f"{command.where}: `$ {command.text}` printed\n"
                                + "\n".join(actual) + "\nbut the page shows\n"
                                + "\n".join(command.expected))

    def step(self, step: Step) -> None:
        self.write(step.number)
        self.run_tests(step)
        self.run_sessions(step)


def main(argv: list[str]) -> int:
    tutorial = Tutorial()
    if argv == ["table"]:
        print(tutorial.table())
        return 0
    if argv[:1] == ["replay"]:  # replay [FOLDER]: every step, stopping at the first failure
        import tempfile

        folder = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp()) / "checkout"
        replay = Replay(tutorial, folder)
        for step in tutorial.steps:
            print(f"step {step.number}: {step.title}", flush=True)
            replay.step(step)
        return 0
    if argv == ["uncovered"]:
        problems = tutorial.uncovered()
        print("\n".join(problems) or "every line of the plugins is shown by a step")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
