"""What is installed in the running environment, asked of `importlib.metadata` (never of pip,
which is slow and has no API): distributions, who owns which top-level package, and which
requirements are met."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from importlib.metadata import Distribution, distributions, packages_distributions

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from mesh.plugin.discovery import ENTRY_POINT_GROUP


def installed_distributions() -> dict[NormalizedName, Distribution]:
    """Every distribution import would see, by canonical name; the first on sys.path wins."""
    found: dict[NormalizedName, Distribution] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist)
    return found


def snapshot() -> dict[NormalizedName, str]:
    """Name → version of everything installed: compared before and after an install."""
    return {name: dist.version for name, dist in installed_distributions().items()}


def plugins_of(dist: Distribution) -> list[str]:
    """The plugin names a distribution registers in the `mesh.plugins` group."""
    return sorted(ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP)


def owners() -> dict[str, set[NormalizedName]]:
    """Importable top-level name → the installed distributions that provide it."""
    return {top: {canonicalize_name(d) for d in dists}
            for top, dists in packages_distributions().items()}


def applies(requirement: Requirement, extra: str = "") -> bool:
    """Whether a Requires-Dist line counts here (its marker, with `extra` as the extra)."""
    if requirement.marker is None:
        return True
    try:
        return requirement.marker.evaluate({"extra": extra})
    except UndefinedEnvironmentName:
        return False


def unmet_requirements(
    requires: Iterable[str], dists: Mapping[NormalizedName, Distribution] | None = None,
) -> list[str]:
    """The Requires-Dist lines that the environment does not satisfy, each with why; extras
    of a requirement are followed into the providing distribution's own requirements."""
    dists = installed_distributions() if dists is None else dists
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()

    def check(line: str, extra: str) -> None:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            problems.append(f"{line} (not a valid requirement)")
            return
        if not applies(requirement, extra):
            return
        dist = dists.get(canonicalize_name(requirement.name))
        if dist is None:
            problems.append(f"{requirement} (not installed)")
            return
        if requirement.specifier and not requirement.specifier.contains(
            dist.version, prereleases=True
        ):
            problems.append(f"{requirement} (found {dist.version})")
            return
        for wanted in sorted(requirement.extras):
            key = (canonicalize_name(requirement.name), wanted)
            if key in seen:
                continue
            seen.add(key)
            for sub in dist.requires or []:
                check(sub, wanted)

    for line in requires:
        check(line, "")
    return problems


def dependents_of(
    name: NormalizedName, new_version: str | None,
    dists: Mapping[NormalizedName, Distribution] | None = None,
) -> list[str]:
    """Installed distributions whose Requires-Dist would no longer hold if `name` became
    `new_version` (None: if it were removed)."""
    dists = installed_distributions() if dists is None else dists
    broken = []
    for other_name, dist in sorted(dists.items()):
        if other_name == name:
            continue
        for line in dist.requires or []:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if canonicalize_name(requirement.name) != name or not applies(requirement):
                continue
            if new_version is None or not requirement.specifier.contains(
                new_version, prereleases=True
            ):
                broken.append(f"{dist.metadata['Name']} {dist.version} needs {requirement}")
    return broken


def record_hash(data: bytes, algorithm: str = "sha256") -> str:
    """A RECORD hash: `algorithm=` and the urlsafe base64 digest without padding."""
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}={base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def installed_files_match(dist: Distribution, record: Mapping[str, str]) -> bool:
    """Whether the installed `dist` holds exactly the files of a wheel's RECORD (path → hash),
    outside its .dist-info folder, which pip rewrites on install."""
    hashes = {str(f): f"{f.hash.mode}={f.hash.value}" for f in dist.files or []
              if f.hash is not None}
    wanted = {p: h for p, h in record.items() if not p.split("/")[0].endswith(".dist-info")}
    return bool(wanted) and all(hashes.get(p) == h for p, h in wanted.items())
