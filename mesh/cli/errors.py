"""How every `mesh` command fails: one `error: …` line on stderr and an exit code (2: the
command or its configuration is wrong, 1: what it talked to failed). Every command module
imports from here, never from `mesh.cli.main`, which imports them all."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from mesh.config import MeshSettings


def command_group(help: str) -> typer.Typer:
    """A group of `mesh` commands. Help is plain text: rich's help formatting costs 0.1-0.2 s
    at every start, and the container health check runs `mesh` every 10 s."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `message` as the command's error; raise what this returns."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def settings_or_exit() -> MeshSettings:
    """The configuration, or exit 2 with what is wrong in it, named as the user sets it."""
    from pydantic import ValidationError

    from mesh.config import MeshSettings

    try:
        return MeshSettings()
    except ValidationError as exc:
        problems = "".join(
            f"\n  MESH_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_url=False))
        raise fail(f"invalid configuration (environment or mesh.toml):{problems}") from None
    except Exception as exc:  # a broken mesh.toml
        raise fail(f"invalid configuration: {exc}") from None
