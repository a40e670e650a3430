"""The screens of the running plugins, for the device shell (`[[screens]]`) or the admin page
(`[[admin_screens]]`): who may see which, titled in the reader's language, with versioned URLs
of their files (docs/devices.md, "Screens"; docs/admin.md, "Admin screens").

Built whenever the plugins change, so a plugin switched on shows its screens on the next
catalog and one switched off loses them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from mesh.identity import Identity
from mesh.plugin.plugin_set import PluginSet
from mesh.plugin.screens import Screen, content_hash, read_catalog

log = structlog.get_logger("mesh.gateway")


@dataclass(frozen=True)
class PluginUi:
    """One running plugin's UI folder: where it is, its content hash, catalogs and screens."""

    plugin: str
    folder: Path
    tag: str  # the versioned URL segment: "@<content hash>"
    default_locale: str
    catalogs: Mapping[str, Mapping[str, str]]
    screens: tuple[Screen, ...]
    table: str = "screens"  # the manifest's table: screens or admin_screens

    def url(self, relative: str) -> str:
        return f"/plugins/{self.plugin}/{self.tag}/{relative}"

    def locales_for(self, wanted: Iterable[str]) -> list[str]:
        """The catalogs to use for `wanted` (best first), the default last: `de-AT` falls
        back to `de`, then to the default."""
        chosen: list[str] = []
        for tag in wanted:
            for candidate in (tag, tag.split("-")[0]):
                if candidate in self.catalogs and candidate not in chosen:
                    chosen.append(candidate)
        if self.default_locale not in chosen:
            chosen.append(self.default_locale)
        return chosen

    def describe(self, screen: Screen, wanted: list[str]) -> dict[str, Any]:
        locales = self.locales_for(wanted)
        catalogs = {k: dict(v) for k, v in self.catalogs.items()}
        return {
            "plugin": self.plugin, "id": screen.id,
            "title": screen.title_in(catalogs, locales, self.table),
            "icon": self.url(screen.icon), "module": self.url(screen.module),
            "category": screen.category, "keywords": list(screen.keywords),
            "priority": screen.priority, "permissions": list(screen.permissions),
            "locale": locales[0],
            # merged in this order, later winning: the default first, then the best match
            "strings": [self.url(f"i18n/{loc}.json") for loc in reversed(locales)],
        }


@dataclass(frozen=True)
class Screens:
    """Every running plugin's UI, by plugin name."""

    plugins: Mapping[str, PluginUi] = field(default_factory=dict)

    @classmethod
    def from_plugins(cls, plugins: PluginSet, running: Iterable[str], *,
                     admin: bool = False) -> Screens:
        """The UI of each of `running` that has one: its device screens, or with `admin` its
        admin screens (a plugin's UI folder is served to both apps)."""
        table = "admin_screens" if admin else "screens"
        found: dict[str, PluginUi] = {}
        for name in running:
            source = plugins.source(name)
            manifest = source.manifest if source is not None else None
            ui = manifest.ui_section if manifest is not None else None
            if source is None or manifest is None or ui is None or source.path is None:
                continue
            folder = source.path / ui.folder
            try:
                catalogs = {loc: read_catalog(folder / "i18n" / f"{loc}.json")
                            for loc in ui.locales}
                tag = "@" + content_hash(folder)
            except (OSError, ValueError) as exc:  # changed on disk since it was discovered
                log.error("gateway.ui_refused", plugin=name, reason=str(exc))
                continue
            found[name] = PluginUi(name, folder, tag, ui.default_locale, catalogs,
                                   tuple(getattr(manifest, table)), table)
        return cls(found)

    def usable(self, identity: Identity, locales: list[str]) -> list[dict[str, Any]]:
        """The screens `identity` may use (holding every permission each names), in `locales`
        (best first), ordered by priority, then plugin and id."""
        shown = [ui.describe(screen, locales) for ui in self.plugins.values()
                 for screen in ui.screens
                 if all(identity.may(p) for p in screen.permissions)]
        return sorted(shown, key=lambda s: (s["priority"], s["plugin"], s["id"]))


def wanted_locales(value: Any) -> list[str]:
    """Language tags from a `locale` field or an Accept-Language header, best first; at most
    five, anything odd left out."""
    if not isinstance(value, str):
        return []
    tags = []
    for part in value.split(",")[:5]:
        tag = part.split(";")[0].strip()
        if 0 < len(tag) <= 35 and all(c.isalnum() or c == "-" for c in tag):
            language, _, region = tag.partition("-")
            tags.append(language.lower() + (f"-{region}" if region else ""))
    return tags
