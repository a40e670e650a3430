"""The code blocks of the docs, as tests read them.

A block whose first line is `# file: PATH` (`// file: PATH` in JavaScript and JSON, `<!-- file:
PATH -->` in SVG and HTML) shows code of that file; a line `# ...` (`// ...`) in it skips over
code the block does not show, so one block can show several pieces ("chunks") of a file,
in the file's order. A block whose first line is `# example: NAME` is a program a test runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
FILE = re.compile(r"(?:#|//|<!--) file: (\S+?)(?: -->)?$")
SKIPS = ("# ...", "// ...")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    language: str
    body: str

    @property
    def where(self) -> str:
        doc = self.doc.relative_to(ROOT) if self.doc.is_relative_to(ROOT) else self.doc.name
        return f"{doc}:{self.line}"

    @property
    def file(self) -> str | None:
        """The file a `# file:` block shows, relative to the repository."""
        match = FILE.match(self.body.partition("\n")[0])
        return match.group(1) if match else None

    def chunks(self) -> list[list[str]]:
        """The pieces of the file the block shows, as lists of lines, without `# ...`."""
        lines = self.body.split("\n")[1:]
        if lines and lines[-1] == "":
            lines.pop()
        found: list[list[str]] = [[]]
        for line in lines:
            if line.strip() in SKIPS:
                found.append([])
            else:
                found[-1].append(line)
        return [chunk for chunk in found if chunk]


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text()
    return [Block(doc, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
            for m in FENCE.finditer(text)]
