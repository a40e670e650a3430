"""A plugin's screens, declared in its manifest (`[ui]` and `[[screens]]`) and checked against
its package before it loads: the device shell shows them, lazily, to those allowed.

Everything a screen names lives in the plugin's UI folder (`[ui] folder`, default `ui`): its
ES module, its SVG icon, and the translation catalogs `i18n/<locale>.json`. The client service
serves that folder, and nothing else of the package, under `/plugins/<name>/...`
(docs/devices.md). Paths are checked twice: as text here when the manifest is parsed (relative,
no `..`, no backslash), and against the files when the plugin is discovered (there, a symlink
leading out of the folder is refused too).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCREEN_ID = r"^[a-z][a-z0-9_]{0,63}$"
LOCALE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
MAX_CATALOG_BYTES = 256 * 1024


def check_relative(value: str) -> str:
    """`value` if it is a plain relative path (`a/b.js`): no `..`, no `.`, no absolute path,
    no backslash, no empty part, only letters, digits, `_`, `.` and `-`."""
    parts = value.split("/")
    if not value or any(not SAFE_PART.match(p) or p in (".", "..") for p in parts):
        raise ValueError(f"{value!r} must be a relative path inside the UI folder ('a/b.js': "
                         "letters, digits, '_', '.', '-'; no '..', no leading '/', no '\\')")
    return value


class UiSection(BaseModel):
    """`[ui]`: where the plugin's browser files are and which locales its catalogs cover."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: str = Field(default="ui", description="The UI folder, relative to the package.")
    default_locale: str = Field(default="en", pattern=LOCALE)
    locales: list[str] = Field(
        default_factory=lambda: ["en"],
        description="Locales with a catalog i18n/<locale>.json in the UI folder.")

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        return check_relative(value)

    @field_validator("locales")
    @classmethod
    def _locales(cls, value: list[str]) -> list[str]:
        for locale in value:
            if not re.match(LOCALE, locale):
                raise ValueError(f"locale {locale!r} is not a language tag like 'en' or 'pt-BR'")
        return value

    @model_validator(mode="after")
    def _default_listed(self) -> UiSection:
        if self.default_locale not in self.locales:
            raise ValueError(f"default_locale {self.default_locale!r} is not in locales")
        return self


class Screen(BaseModel):
    """One `[[screens]]` entry: a device screen of the shell."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SCREEN_ID)
    title: str = Field(min_length=1, description="In the default locale; a catalog's "
                       "`screens.<id>.title` translates it.")
    icon: str = Field(description="An SVG file, relative to the UI folder.")
    module: str = Field(description="The ES module that mounts the screen, relative to the UI "
                        "folder.")
    category: str = Field(default="", max_length=64)
    keywords: list[str] = Field(default_factory=list)
    priority: int = Field(default=100, description="Lower comes first on the home grid.")
    permissions: list[str] = Field(
        default_factory=list, description="Shown only to users holding all of them: the "
        "plugin's own, the platform's, or ones it lists under [permissions.requires].")

    @field_validator("icon")
    @classmethod
    def _icon(cls, value: str) -> str:
        return _file_of_kind(value, ".svg", "icon", "an SVG file")

    @field_validator("module")
    @classmethod
    def _module(cls, value: str) -> str:
        return _file_of_kind(value, ".js", "module", "an ES module")

    def title_in(self, catalogs: dict[str, dict[str, str]], locales: list[str],
                 table: str = "screens") -> str:
        """The title in the first of `locales` whose catalog translates it (the key
        `<table>.<id>.title`: `screens` or `admin_screens`), else the declared one."""
        for locale in locales:
            text = catalogs.get(locale, {}).get(f"{table}.{self.id}.title")
            if text:
                return text
        return self.title


def inside(folder: Path, relative: str) -> Path | None:
    """The file `relative` names in `folder`, or None when there is none or it leads out of
    `folder` (through `..` or a symlink)."""
    root = folder.resolve()
    try:
        target = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def parse_catalog(name: str, raw: bytes) -> dict[str, str]:
    """A translation catalog: a JSON object of strings; ValueError saying why it is not."""
    if len(raw) > MAX_CATALOG_BYTES:
        raise ValueError(f"{name} is over {MAX_CATALOG_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{name} must be a JSON object of strings")
    return data


def read_catalog(path: Path) -> dict[str, str]:
    return parse_catalog(path.name, path.read_bytes())


def is_svg(raw: bytes) -> bool:
    head = raw[:4096].lstrip().lower()
    return (head.startswith(b"<svg") or head.startswith(b"<?xml")) and b"<svg" in head


def ui_problem(package: Path, ui: UiSection, screens: list[Screen]) -> str | None:
    """Why the UI the manifest declares does not fit the package's files, or None."""
    folder = package / ui.folder
    if not folder.resolve().is_relative_to(package.resolve()) or not folder.is_dir():
        return f"ui: no UI folder {ui.folder!r} in the package"

    def read(relative: str) -> bytes | None:
        path = inside(folder, relative)
        return path.read_bytes() if path is not None else None

    return files_problem(read, ui, screens)


def files_problem(read: Callable[[str], bytes | None], ui: UiSection,
                  screens: list[Screen]) -> str | None:
    """Why the files `read` finds (by path relative to the UI folder; None: no such file, or
    one leading out of the folder) do not fit the declared UI, or None. Used on an installed
    package and on an uploaded wheel alike."""
    for locale in ui.locales:
        raw = read(f"i18n/{locale}.json")
        if raw is None:
            return f"ui: no catalog i18n/{locale}.json in {ui.folder}/ (or it leads out of it)"
        try:
            parse_catalog(f"{locale}.json", raw)
        except ValueError as exc:
            return f"ui: {ui.folder}/i18n/{exc}"
    for screen in screens:
        for what in ("module", "icon"):
            relative = getattr(screen, what)
            if read(relative) is None:
                return (f"screens.{screen.id}.{what}: no file {ui.folder}/{relative} in the "
                        "package (or it leads out of the UI folder)")
        if not is_svg(read(screen.icon) or b""):
            return f"screens.{screen.id}.icon: {ui.folder}/{screen.icon} is not an SVG image"
    return None


def content_hash(folder: Path) -> str:
    """A short hash of every file in `folder` (names and bytes): the version segment of the
    plugin's static URLs, so an upgraded plugin is never served from a stale cache."""
    digest = hashlib.sha256()
    root = folder.resolve()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if inside(root, relative) is None:
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def static_path(relative: str) -> PurePosixPath | None:
    """`relative` (a URL path below a plugin's folder) as a safe relative path, or None."""
    try:
        check_relative(relative)
    except ValueError:
        return None
    return PurePosixPath(relative)


def _file_of_kind(value: str, suffix: str, field: str, kind: str) -> str:
    """A relative path inside the UI folder, with the suffix its kind of file has."""
    check_relative(value)
    if not value.endswith(suffix):
        raise ValueError(f"{field} {value!r} must be {kind} ({suffix})")
    return value
