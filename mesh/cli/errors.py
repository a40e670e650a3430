"""How every `mesh` command fails: one `error: …` line on stderr and an exit code (2: the
command or its configuration is wrong, 1: what it talked to failed)."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `message` as the command's error; raise what this returns."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
