"""Product profiles: load a profile (YAML, round-trip so that comments and
order survive), validate it against the published schema, and resolve it to
the exact set of features to build, with the reason for each one.

Errors name the profile file and line, and suggest the nearest known name."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from defender_iot.errors import UserError
from defender_iot.features import Feature, FeatureSet, load_features, repo_root

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "profile.schema.json"


class ProfileError(UserError):
    """A profile problem, located at FILE:LINE."""

    def __init__(self, path: Path, line: Optional[int], message: str):
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def suggest(word: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a known name is close, else the list."""
    known = sorted(set(known))
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known: {', '.join(known)})" if known else " (none exists in this tree)"


def new_yaml() -> YAML:
    y = YAML()  # round-trip: keeps comments, key order and line numbers
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)  # "  - item" under its key, the common style
    return y


@dataclass
class Profile:
    path: Path
    data: CommentedMap

    @property
    def name(self) -> str:
        return str(self.data["product"])

    @property
    def arch(self) -> str:
        return str(self.data["arch"])

    def get(self, *keys: str, default: Any = None) -> Any:
        node: Any = self.data
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return default
            node = node[k]
        return node

    def line(self, *keys: Any) -> Optional[int]:
        """1-based line of the value at keys (a key or an item index)."""
        node: Any = self.data
        line = None
        for k in keys:
            try:
                if isinstance(node, CommentedMap) and k in node:
                    line = node.lc.value(k)[0] + 1 if not _is_collection(node[k]) else node.lc.key(k)[0] + 1
                elif isinstance(node, CommentedSeq) and isinstance(k, int) and k < len(node):
                    line = node.lc.item(k)[0] + 1
                else:
                    return line
            except (AttributeError, KeyError, TypeError):
                return line
            node = node[k]
        return line

    def key_line(self, *keys: Any) -> Optional[int]:
        """1-based line of the last key itself (for a wrong key name)."""
        node: Any = self.data
        for k in keys[:-1]:
            node = node[k]
        try:
            return node.lc.key(keys[-1])[0] + 1
        except (AttributeError, KeyError, TypeError):
            return self.line(*keys[:-1])

    def error(self, keys: Sequence[Any], message: str) -> ProfileError:
        return ProfileError(self.path, self.line(*keys), message)

    def dump(self) -> str:
        """The profile as YAML, comments and order as the user wrote them."""
        import io

        buf = io.StringIO()
        new_yaml().dump(self.data, buf)
        return buf.getvalue()


def _is_collection(v: Any) -> bool:
    return isinstance(v, (CommentedMap, CommentedSeq))


def load_profile(path: Path) -> Profile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read the profile: {e.strerror}") from None
    try:
        data = new_yaml().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark
        raise ProfileError(path, mark.line + 1 if mark else None, f"not valid YAML: {e.problem}") from None
    if not isinstance(data, CommentedMap):
        raise ProfileError(path, 1, "a profile is a YAML mapping (product: ..., arch: ..., ...)")
    profile = Profile(path=path, data=data)
    validate(profile)
    return profile


def validate(profile: Profile) -> None:
    """Check the profile against the published schema; the first error is
    reported with its line and, for a misspelt key, the nearest valid one."""
    schema = load_schema()
    plain = json.loads(json.dumps(profile.data))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(plain),
                    key=lambda e: (profile.line(*e.absolute_path) or 0))
    if not errors:
        return
    e = errors[0]
    where = list(e.absolute_path)
    if e.validator == "additionalProperties":
        allowed = e.schema.get("properties", {})
        extra = sorted(set(e.instance) - set(allowed), key=lambda k: profile.key_line(*where, k) or 0)[0]
        raise ProfileError(profile.path, profile.key_line(*where, extra),
                           f"unknown key '{extra}'" + suggest(extra, allowed))
    label = ".".join(str(p) for p in where) or "profile"
    if e.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", e.message)
        raise profile.error(where, f"{label}: missing key '{missing[0] if missing else e.message}'")
    if e.validator == "pattern" and where == ["product"]:
        raise profile.error(where, f"product: '{e.instance}' must be a file name: lower-case letters, digits, "
                                   "'-' and '_' (e.g. 'smart-camera')")
    if e.validator == "oneOf" and where and where[-1] in ("collectors", "detectors"):
        raise profile.error(where, f"{label}: expected 'default', a list of names, or a map of name: true|false")
    if e.validator == "type" and len(where) == 2 and where[0] == "build":
        raise profile.error(where, f"{label}: expected true, false, a string or a number, got "
                                   f"{json.dumps(e.instance)}")
    if e.validator == "enum":
        raise profile.error(where, f"{label}: '{e.instance}' is not one of {', '.join(map(str, e.validator_value))}"
                            + suggest(str(e.instance), map(str, e.validator_value)))
    if e.validator == "pattern":
        raise profile.error(where, f"{label}: '{e.instance}' does not match {e.validator_value}")
    raise profile.error(where, f"{label}: {e.message}")


# ---- runtime config keys, read from the agent's own key tables ----

# The agent declares its keys in C tables (`{ "Process_Disabled", CFG_BOOL,
# "false", 0, 0, NULL, ...`); reading those same tables keeps one source of
# truth. The agent's --check-config remains the final judge of values.
_KEY_ROW = re.compile(
    r'\{\s*"([A-Za-z0-9%_]+)"\s*,\s*CFG_([A-Z]+)\s*,\s*(?:NULL|"[^"]*")\s*,\s*(-?\w+)\s*,\s*(-?\w+)\s*,\s*(NULL|"[^"]*")')
_EVENT_NAME = re.compile(r'\.event_name\s*=\s*"([A-Za-z0-9]+)"')


@dataclass(frozen=True)
class ConfigKey:
    name: str
    type: str          # BOOL INT STRING ENUM LIST JSON
    minimum: Optional[int]
    maximum: Optional[int]
    choices: Tuple[str, ...]
    owner: str         # "core" or "collector process"
    needs: Optional[str] = None  # the build option without which the agent has no such key


# A key row inside `#ifndef AGENT_NO_<NAME>` exists only while the build
# option AGENT_<NAME> is on (the agent's convention for core capabilities a
# product can compile out, e.g. AGENT_RUN_AS_USER).
_GUARD = re.compile(r"^\s*#\s*ifndef\s+AGENT_NO_(\w+)")


def _guards(text: str) -> List[Optional[str]]:
    """For each line of C text, the AGENT_ option its rows depend on."""
    stack: List[Optional[str]] = []
    out: List[Optional[str]] = []
    for line in text.splitlines():
        m = _GUARD.match(line)
        if m:
            stack.append("AGENT_" + m.group(1))
        elif re.match(r"^\s*#\s*if", line):
            stack.append(None)
        elif re.match(r"^\s*#\s*(else|elif)", line) and stack:
            stack[-1] = None
        elif re.match(r"^\s*#\s*endif", line) and stack:
            stack.pop()
        out.append(next((g for g in reversed(stack) if g), None))
    return out


def _int(text: str) -> Optional[int]:
    try:
        return int(text, 0)
    except ValueError:
        return None


def config_keys(features: Iterable[Feature], agent_dir: Optional[Path] = None) -> Dict[str, ConfigKey]:
    """Every runtime config key the agent built with `features` accepts."""
    agent_dir = agent_dir or repo_root() / "agent"
    sources: List[Tuple[str, Path, Optional[str]]] = [
        ("core", p, None) for p in sorted((agent_dir / "src" / "core").glob("*.c"))]
    for f in features:
        text = f.source.read_text(errors="replace")
        m = _EVENT_NAME.search(text) if f.kind == "collector" else None
        sources.append((f"{f.kind} {f.name}", f.source, m.group(1) if m else None))
    event_names = [ev for _, _, ev in sources if ev]
    keys: Dict[str, ConfigKey] = {}
    for owner, path, _ in sources:
        text = path.read_text(errors="replace")
        guards = _guards(text)
        for m in _KEY_ROW.finditer(text):
            name, typ, lo, hi, choices = m.groups()
            choice_t = tuple(choices.strip('"').split("|")) if choices != "NULL" else ()
            if "%s" in name:  # the core's per-collector keys
                for ev in event_names:
                    keys[name.replace("%s", ev)] = ConfigKey(name.replace("%s", ev), typ, _int(lo), _int(hi),
                                                             choice_t, "core")
                continue
            needs = guards[text.count("\n", 0, m.start())]
            keys[name] = ConfigKey(name, typ, _int(lo), _int(hi), choice_t, owner, needs)
    return keys


def check_value(key: ConfigKey, value: Any) -> Optional[str]:
    """What was expected, or None if the value fits the key's type."""
    t = key.type
    if t == "BOOL" and not isinstance(value, bool):
        return "true or false"
    if t == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return "an integer"
        if key.minimum is not None and key.maximum is not None and not key.minimum <= value <= key.maximum:
            return f"an integer from {key.minimum} to {key.maximum}"
    if t == "STRING" and not isinstance(value, str):
        return "a string"
    if t == "ENUM" and value not in key.choices:
        return "one of " + ", ".join(key.choices)
    if t == "LIST" and not (isinstance(value, str) or (isinstance(value, list)
                                                        and all(isinstance(v, str) for v in value))):
        return "a comma-separated string or a list of strings"
    return None


# ---- resolution ----

@dataclass
class Choice:
    """One feature and why it is in or out."""
    feature: Feature
    enabled: bool
    reason: str


@dataclass
class Resolution:
    profile: Profile
    features: FeatureSet
    choices: Dict[Tuple[str, str], Choice] = field(default_factory=dict)
    transport: Optional[str] = None  # Agent_Transport; None: the agent's own choice

    def enabled(self, kind: Optional[str] = None) -> List[Feature]:
        return [c.feature for c in self.ordered() if c.enabled and (kind is None or c.feature.kind == kind)]

    def ordered(self) -> List[Choice]:
        return [self.choices[(f.kind, f.name)] for f in self.features]

    def options(self) -> Dict[str, bool]:
        return {c.feature.option: c.enabled for c in self.ordered()}


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(repo_root()))
    except ValueError:
        return str(path)


def _names(profile: Profile, key: str, kind: str, fs: FeatureSet) -> Tuple[Dict[str, Tuple[bool, str]], bool]:
    """{name: (wanted, reason)} from a `default`/list/map entry, and whether
    the entry was given at all."""
    node = profile.get(key)
    known = [f.name for f in fs.of(kind)]
    out: Dict[str, Tuple[bool, str]] = {}
    if node is None:
        return out, False
    if node == "default":
        for f in fs.of(kind):
            out[f.name] = (f.default, f"`{key}: default` and its //feature: default is {'ON' if f.default else 'OFF'}")
        return out, True
    items = list(node.items()) if isinstance(node, dict) else [(n, True) for n in node]
    for i, (name, wanted) in enumerate(items):
        where = [key, name] if isinstance(node, dict) else [key, i]
        if name not in known:
            line = profile.key_line(*where) if isinstance(node, dict) else profile.line(*where)
            raise ProfileError(profile.path, line, f"unknown {kind} '{name}'" + suggest(name, known))
        out[name] = (bool(wanted), f"{'listed' if wanted else 'turned off'} in the profile (line {profile.line(*where)})")
    return out, True


def _goal(profile: Profile, i: int, goal: str, fs: FeatureSet) -> Tuple[str, str]:
    """A `detect:` goal to a detector: its name, else the one detector whose
    summary mentions the goal's words."""
    detectors = fs.of("detector")
    if any(d.name == goal for d in detectors):
        return goal, f"`detect: {goal}` (line {profile.line('detect', i)})"
    words = goal.replace("_", " ").replace("-", " ").lower()
    hits = [d for d in detectors if words in d.summary.lower()]
    if len(hits) == 1:
        return hits[0].name, f"`detect: {goal}` (line {profile.line('detect', i)}): its summary says \"{hits[0].summary}\""
    if len(hits) > 1:
        raise profile.error(["detect", i], f"goal '{goal}' matches several detectors ({', '.join(d.name for d in hits)}): "
                                           "name the one you want")
    raise profile.error(["detect", i], f"unknown detector or goal '{goal}'" + suggest(goal, [d.name for d in detectors]))


def resolve(profile: Profile, features: Optional[FeatureSet] = None) -> Resolution:
    """The exact feature set the profile asks for, each with its reason;
    dependencies pulled in, conflicts refused with the lines involved."""
    fs = features or load_features()
    res = Resolution(profile=profile, features=fs)

    collectors, _ = _names(profile, "collectors", "collector", fs)
    detectors, _ = _names(profile, "detectors", "detector", fs)
    for i, goal in enumerate(profile.get("detect") or []):
        name, why = _goal(profile, i, str(goal), fs)
        if name in detectors and not detectors[name][0]:
            raise profile.error(["detect", i], f"goal '{goal}' needs detector '{name}', which the profile turns off")
        detectors[name] = (True, why)

    transport = profile.get("transport")
    transports: Dict[str, Tuple[bool, str]] = {}
    if transport is None or transport == "default":
        for f in fs.of("transport"):
            transports[f.name] = (f.default, f"its //feature: default is {'ON' if f.default else 'OFF'}")
    else:
        known = [f.name for f in fs.of("transport")]
        if transport not in known:
            raise profile.error(["transport"], f"unknown transport '{transport}'" + suggest(str(transport), known))
        transports[str(transport)] = (True, f"`transport: {transport}` (line {profile.line('transport')})")
        res.transport = str(transport)

    for f in fs:
        table = {"collector": collectors, "detector": detectors, "transport": transports}[f.kind]
        wanted, why = table.get(f.name, (False, "not asked for by the profile"))
        res.choices[(f.kind, f.name)] = Choice(f, wanted, why)

    # A detector pulls in the collectors it reads (its //requires: line).
    for d in res.enabled("detector"):
        for req in d.requires:
            key = ("collector", req)
            if key not in res.choices:
                raise profile.error(_detector_keys(profile, d.name),
                                    f"detector '{d.name}' requires collector '{req}' ({_rel(d.source)}: //requires:), "
                                    "which does not exist in this tree" + suggest(req, [f.name for f in fs.of("collector")]))
            choice = res.choices[key]
            if choice.enabled:
                choice.reason += f"; required by detector {d.name}" if "required by" not in choice.reason \
                    else f", detector {d.name}"
                continue
            if req in collectors and not collectors[req][0]:
                raise profile.error(_detector_keys(profile, d.name),
                                    f"detector '{d.name}' needs collector '{req}' ({_rel(d.source)}: //requires:), "
                                    f"which line {profile.line('collectors', req)} turns off: "
                                    f"allow '{req}' or drop '{d.name}'")
            choice.enabled = True
            choice.reason = f"required by detector {d.name}"

    if not res.enabled("collector"):
        raise profile.error(["collectors"], "no collector is enabled: list at least 'heartbeat'")
    return res


def _detector_keys(profile: Profile, name: str) -> List[Any]:
    for key in ("detect", "detectors"):
        node = profile.get(key)
        if isinstance(node, list) and name in node:
            return [key, list(node).index(name)]
        if isinstance(node, dict) and name in node:
            return [key, name]
    return ["detect"] if profile.get("detect") else ["detectors"]


def runtime_config(profile: Profile, res: Resolution, left_out: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The runtime config keys the profile sets, checked against the key
    tables of the features it resolved to. `left_out`: build option that
    the profile turns off -> why (its `build:` line)."""
    keys = config_keys(res.enabled())
    left_out = left_out or {}

    def refuse(name: str, where: List[Any], label: str) -> None:
        needs = keys[name].needs if name in keys else None
        if needs in left_out:
            raise profile.error(where, f"{label}: {left_out[needs]}, which leaves {name} out of the agent "
                                       f"({needs}=OFF): drop the setting or the build option")

    out: Dict[str, Any] = {}
    intervals = profile.get("settings", "intervals")
    if intervals:
        out["CollectorsCore_PriorityIntervals"] = ",".join(
            _minutes(intervals[k]) for k in ("high", "medium", "low"))
    mask = profile.get("settings", "privacy", "mask_remote_addresses")
    if mask is not None:
        refuse("Agent_MaskRemoteAddresses", ["settings", "privacy", "mask_remote_addresses"],
               "settings.privacy.mask_remote_addresses")
        out["Agent_MaskRemoteAddresses"] = bool(mask)
    if res.transport:
        out["Agent_Transport"] = res.transport
    for name, value in (profile.get("settings", "config") or {}).items():
        where = ["settings", "config", name]
        if name not in keys:
            raise ProfileError(profile.path, profile.key_line(*where),
                               f"settings.config: no key '{name}' in an agent built from this profile"
                               + suggest(name, keys))
        refuse(name, where, f"settings.config.{name}")
        plain = json.loads(json.dumps(value))
        expected = check_value(keys[name], plain)
        if expected:
            raise profile.error(where, f"settings.config.{name}: expected {expected}, got {json.dumps(plain)}")
        out[name] = plain
    return out


def _minutes(v: Any) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def schema_markdown(schema: Optional[dict] = None) -> str:
    """The profile reference table of docs/configurator.md, from the schema
    itself (`python -m defender_iot.profile` prints it)."""
    schema = schema or load_schema()
    rows = ["| key | type | meaning |", "|---|---|---|"]

    def kind(node: dict) -> str:
        if "$ref" in node:
            return "`default`, list or map of names"
        if "enum" in node:
            return " \\| ".join(f"`{v}`" for v in node["enum"])
        t = node.get("type", "")
        if t == "array":
            return "list of " + node.get("items", {}).get("type", "") + "s"
        return t

    def walk(props: dict, prefix: str, required: Sequence[str]) -> None:
        for key, node in props.items():
            path = prefix + key
            req = " (required)" if key in required else ""
            rows.append(f"| `{path}` | {kind(node)} | {node.get('description', '')}{req} |")
            if "properties" in node:
                walk(node["properties"], path + ".", node.get("required", []))

    walk(schema["properties"], "", schema.get("required", []))
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(schema_markdown(), end="")
