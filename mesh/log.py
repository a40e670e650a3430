"""structlog set-up: a console renderer on a terminal, one JSON object per line otherwise;
optionally also JSON lines into a file that rotates by size; and a level per plugin, changeable
while the process runs (`set_plugin_level`: the admin API sends it to every service)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_METHOD_LEVEL = {"debug": 10, "info": 20, "msg": 20, "warn": 30, "warning": 30, "error": 40,
                 "exception": 40, "err": 40, "critical": 50, "fatal": 50}


class _Levels:
    """The process's log levels: one for everything, and one per plugin that has its own."""

    def __init__(self) -> None:
        self.default = logging.INFO
        self.plugins: dict[str, int] = {}
        self.configured: dict[str, int] = {}  # MESH_PLUGIN_LOG_LEVELS, what None goes back to

    def drop_below(self, logger: object, method: str, event: structlog.typing.EventDict
                   ) -> structlog.typing.EventDict:
        """A processor: drop an event under the level of its plugin (or the default)."""
        plugin = event.get("plugin")
        wanted = self.plugins.get(plugin, self.default) if isinstance(plugin, str) else \
            self.default
        if _METHOD_LEVEL.get(method, 20) < wanted:
            raise structlog.DropEvent
        return event


_levels = _Levels()


def _numeric(level: str) -> int:
    if level.upper() not in LEVELS:
        raise ValueError(f"a log level is one of {', '.join(LEVELS)}, not {level!r}")
    return logging.getLevelNamesMapping()[level.upper()]


def set_plugin_level(plugin: str, level: str | None) -> None:
    """Log `plugin`'s events from `level` up (None: back to the level the process was
    configured with for it, MESH_PLUGIN_LOG_LEVELS, else the process's level)."""
    if level is None:
        _levels.plugins.pop(plugin, None)
        if plugin in _levels.configured:
            _levels.plugins[plugin] = _levels.configured[plugin]
        return
    _levels.plugins[plugin] = _numeric(level)


def apply_plugin_levels(levels: Mapping[str, str]) -> None:
    """The levels an administrator set (kept by the server), over the configured ones: a
    plugin in neither logs at the process's level. The whole map, as the server has it."""
    wanted = dict(_levels.configured)
    wanted.update({plugin: _numeric(level) for plugin, level in levels.items()})
    _levels.plugins = wanted


def log_levels() -> dict[str, Any]:
    """The process's level and each plugin's own, by name."""
    return {"level": logging.getLevelName(_levels.default),
            "plugins": {p: logging.getLevelName(n) for p, n in sorted(_levels.plugins.items())}}


class _Output:
    """Where a rendered event goes: stderr, and when set, a size-rotated file of JSON lines
    (the standard library's RotatingFileHandler, which rotates under its own lock)."""

    def __init__(self, console: bool, handler: logging.Handler | None) -> None:
        self.console = console
        self.handler = handler
        self.console_renderer = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
        ) if console else None

    def msg(self, **event: Any) -> None:
        if self.handler is not None:
            line = json.dumps(_plain(event), default=str)
            self.handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        if self.console_renderer is not None:
            text = self.console_renderer(None, "msg", dict(event))
        else:
            text = json.dumps(_plain(event), default=str)
        print(text, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def _plain(event: dict[str, Any]) -> dict[str, Any]:
    """An event as JSON carries it: an exception already formatted into text."""
    return dict(structlog.processors.format_exc_info(None, "msg", dict(event)))


def log_file_path(template: Path, service: str) -> Path:
    """MESH_LOG_FILE with `{service}` and `{pid}` filled in: one file per process, since
    processes must not rotate one file between them."""
    return Path(str(template).replace("{service}", service).replace("{pid}", str(os.getpid())))


def configure_logging(level: str = "INFO", fmt: str = "auto", *,
                      file: Path | None = None, max_bytes: int = 10 * 2**20, backups: int = 5,
                      plugin_levels: dict[str, str] | None = None) -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    _levels.default = numeric
    _levels.configured = {p: _numeric(w) for p, w in (plugin_levels or {}).items()}
    _levels.plugins = dict(_levels.configured)
    # levels change at run time, and bound loggers keep the wrapper they were made with: the
    # wrapper lets everything through and the first processor filters (the platform itself
    # logs nothing at DEBUG, so what this costs is a plugin's own debug calls)
    processors: list[structlog.typing.Processor] = [
        _levels.drop_below,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    handler = None
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes,
                                                       backupCount=backups, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
    if handler is None:
        processors += [
            structlog.processors.format_exc_info if not use_console else _identity,
            structlog.dev.ConsoleRenderer(
                exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False))
            if use_console else structlog.processors.JSONRenderer(),
        ]
        factory: Any = structlog.PrintLoggerFactory(file=sys.stderr)
    else:
        output = _Output(use_console, handler)
        factory = lambda *args: output  # noqa: E731  (one output for every logger)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def _identity(
    logger: object, name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    return event


class LazyLog:
    """A logger bound to a message's fields only when something is logged: most RPCs and
    tasks log nothing, and binding costs more than running a small handler."""

    __slots__ = ("_base", "_bound", "_fields")

    def __init__(self, base: Any, **fields: Any) -> None:
        self._base = base
        self._fields = fields
        self._bound: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._bound is None:
            self._bound = self._base.bind(**self._fields)
        return getattr(self._bound, name)
