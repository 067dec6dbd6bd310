"""The agent's features, read from the same `//feature:` lines that the CMake
build reads (agent/cmake/Features.cmake), so the toolkit never keeps a list
of its own."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from defender_iot.errors import UserError

KINDS = ("collector", "detector", "transport")
_TAG = re.compile(r"^//(feature|summary|requires|libs):\s*(.*?)\s*$")


def repo_root() -> Path:
    """The repository this toolkit runs from (it is installed editable)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "agent" / "CMakeLists.txt").is_file():
            return parent
    raise UserError("cannot find the repository's agent/ directory above " + str(here))


@dataclass(frozen=True)
class Feature:
    kind: str
    name: str
    default: bool
    summary: str
    source: Path
    requires: Tuple[str, ...] = ()
    libs: Tuple[str, ...] = ()

    @property
    def option(self) -> str:
        """The CMake option, e.g. AGENT_COLLECTOR_PROCESS."""
        return f"AGENT_{self.kind}_{self.name}".upper()


@dataclass
class FeatureSet:
    features: Dict[Tuple[str, str], Feature] = field(default_factory=dict)

    def of(self, kind: str) -> List[Feature]:
        return sorted((f for f in self.features.values() if f.kind == kind), key=lambda f: f.name)

    def get(self, kind: str, name: str) -> Feature:
        try:
            return self.features[(kind, name)]
        except KeyError:
            raise UserError(f"unknown {kind} '{name}'") from None

    def __iter__(self):
        return iter(sorted(self.features.values(), key=lambda f: (KINDS.index(f.kind), f.name)))


def parse_source(path: Path) -> Feature | None:
    tags: Dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh):
            if i > 20:
                break
            m = _TAG.match(line)
            if m and m.group(1) not in tags:
                tags[m.group(1)] = m.group(2)
    if "feature" not in tags:
        return None
    parts = tags["feature"].split()
    if len(parts) != 3 or parts[0] not in KINDS or parts[2] not in ("ON", "OFF"):
        raise UserError(f"{path}: '//feature:' must be '<kind> <name> ON|OFF', got '{tags['feature']}'")
    return Feature(
        kind=parts[0],
        name=parts[1],
        default=parts[2] == "ON",
        summary=tags.get("summary", ""),
        source=path,
        requires=tuple(tags.get("requires", "").split()),
        libs=tuple(tags.get("libs", "").split()),
    )


def load_features(agent_dir: Path | None = None) -> FeatureSet:
    agent_dir = agent_dir or repo_root() / "agent"
    fs = FeatureSet()
    for sub in ("collectors", "detectors", "transports"):
        for path in sorted((agent_dir / "src" / sub).glob("*.c")):
            feature = parse_source(path)
            if feature:
                fs.features[(feature.kind, feature.name)] = feature
    return fs
