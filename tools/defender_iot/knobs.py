"""The agent's build knobs: the CMake options of agent/CMakeLists.txt (and
agent/cmake/*.cmake) that are neither features nor developer switches, e.g.
AGENT_REPLAY, AGENT_CONFIG_REFERENCE, AGENT_LTO, AGENT_MAX_PAGE_SIZE.

They are read from the `option(...)` and `set(... CACHE STRING|BOOL ...)`
lines themselves, as features.py reads the `//feature:` lines: a knob added to
the agent reaches the profile's `build:` section, the CMake cache, the kas
fragment and the Buildroot fragment without a change here. (The recipe and
Config.in are written by hand; tests/test_layer.py and tests/test_buildroot.py
fail, saying the lines to add, while a knob is not wired there.)"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from defender_iot.errors import UserError
from defender_iot.features import KINDS, repo_root
from defender_iot.profile import Profile, ProfileError, suggest

BR_SYMBOL = "BR2_PACKAGE_DEFENDER_IOT_MICRO_AGENT"
RECIPE_PREFIX = "DEFENDER_IOT_"

# Options for the project's own CI and developers, never for a product: a
# list here rather than a marker in agent/CMakeLists.txt, so that an option
# nobody classified is a product knob and the layer/package tests ask for its
# wiring (forgetting it is loud), where a forgotten marker would hide it.
DEVELOPER_ONLY = {
    "AGENT_WERROR": "-Werror is for CI; the recipe and package always pass OFF (a newer compiler must not break "
                    "a product build)",
    "AGENT_SANITIZE": "AddressSanitizer/UBSan test builds",
    "AGENT_FUZZ": "libFuzzer targets (clang only)",
    "AGENT_TEST_FIXTURES_DIR": "where the C tests find their fixtures (ptest sets it)",
    "BUILD_TESTING": "the C tests; the recipe builds them only for ptest",
}

# Where Yocto and Buildroot default differently from a plain CMake build.
# LTO is the distribution's choice there (DISTRO_FEATURES lto puts -flto in
# every recipe's flags; BR2_ENABLE_LTO does the same for Buildroot, and the
# package follows it): the recipe and package keep it OFF unless the product
# opts in with `build: {lto: true}`.
PACKAGED_DEFAULT: Dict[str, Union[bool, str]] = {"AGENT_LTO": False}


def _page_size(v: str) -> bool:
    return v == "" or (v.isdigit() and 4096 <= int(v) <= 65536 and int(v) & (int(v) - 1) == 0)


# Values a string knob takes, where the agent's build would accept anything
# and fail late (the linker) or produce a binary that cannot load. A knob not
# listed takes any string without quotes, '$', ';' or backslashes.
VALUES: Dict[str, Tuple[Callable[[str], bool], str]] = {
    "AGENT_MAX_PAGE_SIZE": (_page_size, "a page size in bytes, a power of two from 4096 to 65536 (e.g. 4096), "
                                        "or '' for the toolchain's default"),
}
_UNSAFE = re.compile(r'["\\$;\n`]')

_OPTION = re.compile(r'\boption\(\s*(\w+)\s+"((?:[^"\\]|\\.)*)"\s*(\w*)\s*\)')
_CACHE = re.compile(r'\bset\(\s*(\w+)\s+("(?:[^"\\]|\\.)*"|[^\s")]+)\s+CACHE\s+(STRING|BOOL|PATH|FILEPATH|INTERNAL)'
                    r'\s+"((?:[^"\\]|\\.)*)"\s*(?:FORCE\s*)?\)')
_ANY = re.compile(r'\b(?:option\(\s*(AGENT_\w+)|set\(\s*(AGENT_\w+)[^)]*\bCACHE\b)')
_FEATURE_PREFIXES = tuple(f"AGENT_{k.upper()}_" for k in KINDS)


@dataclass(frozen=True)
class Knob:
    option: str                 # AGENT_MAX_PAGE_SIZE
    type: str                   # BOOL, or STRING/PATH/FILEPATH (a value), as CMake's cache has it
    default: Union[bool, str]   # the agent's own default (a plain CMake build)
    doc: str
    source: Path
    line: int

    @property
    def name(self) -> str:
        """The profile's key under `build:`, e.g. max_page_size."""
        return self.option[len("AGENT_"):].lower()

    @property
    def packaged_default(self) -> Union[bool, str]:
        """The default of the Yocto recipe and the Buildroot package."""
        return PACKAGED_DEFAULT.get(self.option, self.default)

    @property
    def packageconfig(self) -> str:
        """The recipe's PACKAGECONFIG value of a boolean knob."""
        return self.name.replace("_", "-")

    @property
    def recipe_var(self) -> str:
        """The recipe variable of a string knob, passed to EXTRA_OECMAKE."""
        return RECIPE_PREFIX + self.option[len("AGENT_"):]

    @property
    def br_symbol(self) -> str:
        return f"{BR_SYMBOL}_{self.option[len('AGENT_'):]}"

    def check(self, value: Any) -> Optional[str]:
        """What was expected, or None if `value` (from a profile) fits."""
        if self.type == "BOOL":
            return None if isinstance(value, bool) else "true or false"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return VALUES.get(self.option, (None, "a string"))[1]
        text = str(value)
        if self.option in VALUES:
            ok, expected = VALUES[self.option]
            return None if ok(text) else expected
        return "a string without quotes, '$', ';', '`' or backslashes" if _UNSAFE.search(text) else None

    def cmake(self, value: Union[bool, str]) -> str:
        if self.type == "BOOL":
            return "ON" if value else "OFF"
        return json.dumps(str(value))


def _strip_comments(text: str) -> str:
    """CMake text with `#` comments blanked (quotes respected), so that a
    comment mentioning option(...) is not read as one; offsets are kept."""
    out, quoted = [], False
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        if c == "#" and not quoted:
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            out.append(" " * (end - i))
            i = end
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _bool(word: str) -> bool:
    return word.upper() in ("ON", "YES", "TRUE", "Y", "1")


def parse_cmake(path: Path) -> List[Knob]:
    text = _strip_comments(path.read_text(encoding="utf-8", errors="replace"))
    knobs: Dict[str, Knob] = {}

    def line(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    for m in _OPTION.finditer(text):
        name, doc, default = m.groups()
        knobs[name] = Knob(name, "BOOL", _bool(default or "OFF"), doc, path, line(m.start()))
    for m in _CACHE.finditer(text):
        name, value, typ, doc = m.groups()
        value = value[1:-1] if value.startswith('"') else value
        knobs.setdefault(name, Knob(name, typ, _bool(value) if typ == "BOOL" else value, doc, path, line(m.start())))
    for m in _ANY.finditer(text):
        name = m.group(1) or m.group(2)
        if name not in knobs:
            raise UserError(f"{path}:{line(m.start())}: cannot read the declaration of {name}: the toolkit reads "
                            "'option(AGENT_X \"doc\" ON|OFF)' and 'set(AGENT_X \"value\" CACHE STRING|BOOL|PATH \"doc\")' "
                            "(tools/defender_iot/knobs.py)")
    # INTERNAL entries are the build's own memory, not options
    return [k for k in knobs.values() if k.option.startswith("AGENT_") and k.type != "INTERNAL"]


def load_knobs(agent_dir: Optional[Path] = None) -> List[Knob]:
    """Every product build knob, in the order the build files declare them.
    Features (AGENT_COLLECTOR_*, ...: features.py) and DEVELOPER_ONLY
    options are not knobs."""
    agent_dir = agent_dir or repo_root() / "agent"
    files = [agent_dir / "CMakeLists.txt", *sorted((agent_dir / "cmake").glob("*.cmake"))]
    seen: Dict[str, Knob] = {}
    for path in files:
        for k in parse_cmake(path):
            if k.option in DEVELOPER_ONLY or k.option.startswith(_FEATURE_PREFIXES):
                continue
            seen.setdefault(k.option, k)
    return list(seen.values())


# ---- a profile's `build:` section ----

@dataclass
class KnobChoice:
    knob: Knob
    value: Union[bool, str]     # in the CMake cache (a plain CMake build)
    packaged: Union[bool, str]  # in the kas and Buildroot fragments
    reason: str


def choose(profile: Profile, knobs: Optional[List[Knob]] = None) -> List[KnobChoice]:
    """Each knob's value for this product, with the reason; an unknown name
    or a bad value fails at the profile's line."""
    knobs = load_knobs() if knobs is None else knobs
    by_name = {k.name: k for k in knobs}
    given = profile.get("build") or {}
    for name, value in given.items():
        if name not in by_name:
            raise ProfileError(profile.path, profile.key_line("build", name),
                               f"build: unknown build option '{name}'" + suggest(name, by_name)
                               + " (the AGENT_ options of agent/CMakeLists.txt, lower-case, without AGENT_)")
        expected = by_name[name].check(value)
        if expected:
            raise profile.error(["build", name], f"build.{name}: expected {expected}, got "
                                                 f"{json.dumps(value)}")
    out = []
    for k in knobs:
        if k.name in given:
            v = given[k.name] if k.type == "BOOL" else str(given[k.name])
            out.append(KnobChoice(k, v, v, f"build.{k.name} in the profile (line {profile.line('build', k.name)})"))
            continue
        where = f"{k.source.parent.name}/{k.source.name}:{k.line}"
        reason = f"the agent's default ({where})"
        if k.packaged_default != k.default:
            reason += f"; Yocto and Buildroot: {k.cmake(k.packaged_default)}, left to the distribution"
        out.append(KnobChoice(k, k.default, k.packaged_default, reason))
    return out


def knobs_markdown(knobs: Optional[List[Knob]] = None) -> str:
    """The build-option table of docs/configurator.md, from the CMake files
    themselves (`python -m defender_iot.knobs` prints it)."""
    knobs = load_knobs() if knobs is None else knobs
    rows = ["| `build:` key | CMake | Yocto recipe | Buildroot (`BR2_PACKAGE_DEFENDER_IOT_MICRO_AGENT`...) | default: CMake / Yocto, Buildroot | what it is |",
            "|---|---|---|---|---|---|"]
    for k in knobs:
        yocto = f"PACKAGECONFIG `{k.packageconfig}`" if k.type == "BOOL" else f"`{k.recipe_var}`"
        default = k.cmake(k.default)
        packaged = k.cmake(k.packaged_default)
        rows.append(f"| `{k.name}` | `{k.option}` | {yocto} | `{k.br_symbol[len(BR_SYMBOL):]}` | "
                    f"`{default}` / `{packaged}` | {k.doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(knobs_markdown(), end="")
