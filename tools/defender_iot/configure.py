"""From a resolved profile to build inputs: trimming to the product's root
filesystem, then rendering every output from the jinja2 templates beside
this module. Outputs are pure functions of the profile and the agent tree,
so a re-run on an unchanged profile rewrites no byte."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import jinja2

from defender_iot import __version__
from defender_iot.build import ARCHES
from defender_iot.errors import UserError
from defender_iot.features import Feature, FeatureSet
from defender_iot.knobs import BR_SYMBOL, Knob, choose
from defender_iot.profile import Profile, ProfileError, Resolution, config_keys, resolve, runtime_config

TEMPLATES = Path(__file__).resolve().parent / "templates"
RECIPE = "defender-iot-micro-agent"


# ---- what the product's root filesystem holds ----

@dataclass
class RootfsFacts:
    """The few facts about the product's system that decide what applies."""
    source: str
    ssh_server: Optional[str] = None   # what provides it, e.g. "usr/sbin/sshd"
    firewall: Optional[str] = None
    utmp: Optional[str] = None


# Files that prove a capability in a directory tree. For utmp the proof is a
# program that writes it: /var/run is a tmpfs on most images, so an empty
# image never holds utmp itself; a login, getty or daemon built with utmp
# support carries the path as a string.
_SSH_FILES = ("usr/sbin/sshd", "sbin/sshd", "usr/sbin/dropbear", "sbin/dropbear", "usr/bin/dropbearmulti")
_FIREWALL_FILES = ("usr/sbin/iptables", "sbin/iptables", "usr/sbin/nft", "sbin/nft",
                   "usr/sbin/xtables-legacy-multi", "usr/sbin/xtables-nft-multi", "usr/sbin/iptables-legacy")
_UTMP_FILES = ("var/run/utmp", "run/utmp", "var/log/wtmp")
_UTMP_WRITERS = ("bin/login", "usr/bin/login", "bin/busybox", "sbin/getty", "sbin/agetty", "usr/sbin/sshd",
                 "usr/sbin/dropbear", "usr/bin/dropbearmulti", "lib/systemd/systemd-logind",
                 "usr/lib/systemd/systemd-logind", "sbin/init")
# Yocto package names (image .manifest: "<package> <arch> <version>").
_SSH_PACKAGES = ("openssh-sshd", "dropbear")
_FIREWALL_PACKAGES = ("iptables", "nftables", "iptables-module-xt-standard")
_UTMP_PACKAGES = ("util-linux-login", "util-linux-agetty", "shadow", "systemd", "sysvinit", "openssh-sshd",
                  "dropbear", "busybox-utmp")


def _first_file(root: Path, candidates) -> Optional[str]:
    for rel in candidates:
        p = root / rel
        if p.is_file() or p.is_symlink():
            return rel
    return None


def _writes_utmp(root: Path) -> Optional[str]:
    found = _first_file(root, _UTMP_FILES)
    if found:
        return found
    for rel in _UTMP_WRITERS:
        p = root / rel
        if p.is_symlink():  # resolve inside the image, not on this machine
            target = Path(os.readlink(p))
            p = root / str(target).lstrip("/") if target.is_absolute() else p.parent / target
        try:
            if p.is_file() and b"utmp" in p.read_bytes():
                return f"{rel} (mentions utmp)"
        except OSError:
            continue
    return None


def rootfs_facts(path: Path) -> RootfsFacts:
    path = Path(path)
    if (path / "target").is_dir() and (path / "build").is_dir():
        path = path / "target"  # a Buildroot output/ directory
    if path.is_dir():
        return RootfsFacts(source=f"directory {path}",
                           ssh_server=_first_file(path, _SSH_FILES),
                           firewall=_first_file(path, _FIREWALL_FILES),
                           utmp=_writes_utmp(path))
    if path.is_file():
        packages = set()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise UserError(f"{path}:{n}: expected a Yocto image manifest line '<package> <arch> <version>', "
                                f"got '{line.strip()[:60]}'")
            packages.add(parts[0])

        def first(names):
            return next((f"package {p}" for p in names if p in packages), None)

        return RootfsFacts(source=f"manifest {path}", ssh_server=first(_SSH_PACKAGES),
                           firewall=first(_FIREWALL_PACKAGES), utmp=first(_UTMP_PACKAGES))
    raise UserError(f"{path}: no such root filesystem (expected a directory, a Buildroot output/target, "
                    "or a Yocto image .manifest)")


@dataclass
class Row:
    item: str
    kept: bool
    reason: str


@dataclass
class Trim:
    rows: List[Row] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)


def _baseline_groups(features: List[Feature]) -> Dict[str, str]:
    """The baseline's group names, as spelt in its sources (lower-cased key)."""
    baseline = [f for f in features if f.kind == "collector" and f.name == "baseline"]
    if not baseline:
        return {}
    src = baseline[0].source
    texts = [p.read_text(errors="replace") for p in sorted(src.parent.glob("baseline*"))
             + sorted((src.parent.parent / "lib").glob("baseline*"))]
    return {s.lower(): s for t in texts for s in re.findall(r'"([A-Za-z][A-Za-z0-9_-]{1,30})"', t)}


def trim(res: Resolution, facts: RootfsFacts, profile_config: Dict[str, Any]) -> Trim:
    """Drop what cannot apply on this product, as config (the features stay
    as resolved: the table says what no longer applies and why)."""
    out = Trim()
    enabled = res.enabled()
    keys = config_keys(enabled)
    groups = _baseline_groups(enabled)
    disabled_groups: List[str] = []

    for what, group, fact, absent in (
            ("SSH checks", "ssh", facts.ssh_server, "no SSH server (sshd, dropbear)"),
            ("firewall checks", "firewall", facts.firewall, "no iptables or nft")):
        if fact:
            out.rows.append(Row(what, True, f"{fact} is present"))
        elif "Baseline_GroupsDisabled" not in keys:
            out.rows.append(Row(what, False, f"{absent} in {facts.source}; the build has no baseline collector"))
        elif group not in groups:
            out.rows.append(Row(what, True, f"{absent}, but the baseline here has no '{group}' group to turn off"))
        else:
            disabled_groups.append(groups[group])
            out.rows.append(Row(what, False, f"{absent} in {facts.source}: Baseline_GroupsDisabled += {groups[group]}"))
    if disabled_groups:
        given = profile_config.get("Baseline_GroupsDisabled", "")
        given = given.split(",") if isinstance(given, str) else list(given)
        out.config["Baseline_GroupsDisabled"] = ",".join(sorted(set(g for g in given if g) | set(disabled_groups)))

    if any(f.name == "login" and f.kind == "collector" for f in enabled):
        if facts.utmp:
            out.rows.append(Row("logins from utmp/wtmp", True, f"{facts.utmp} writes utmp"))
        elif "Login_UseUtmp" in profile_config:
            out.rows.append(Row("logins from utmp/wtmp", bool(profile_config["Login_UseUtmp"]),
                                f"nothing writes utmp in {facts.source}, but the profile sets Login_UseUtmp"))
        elif "Login_UseUtmp" in keys:
            out.config["Login_UseUtmp"] = False
            out.rows.append(Row("logins from utmp/wtmp", False,
                                f"nothing writes utmp in {facts.source}: Login_UseUtmp = false (syslog only)"))
        else:
            out.rows.append(Row("logins from utmp/wtmp", True, "no utmp writer, but this login collector has no key "
                                                               "to read syslog only"))
    return out


# ---- outputs ----

@dataclass
class Outputs:
    """Relative path -> text; what `configure` writes under --out."""
    files: Dict[str, str]
    table: List[Row]


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             autoescape=False)
    # json.dumps, not jinja's tojson: tojson escapes <, > and & for HTML,
    # which would change the values of a config file.
    env.filters["json"] = lambda v, indent=2: json.dumps(v, indent=indent, sort_keys=True, ensure_ascii=False)
    env.filters["brsymbol"] = lambda f: f"{BR_SYMBOL}_{f.kind.upper()}_{f.name.upper()}"
    env.filters["cmake_quote"] = lambda s: '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return env


def pkg_config_status(libs: Tuple[str, ...], arch: str) -> Dict[str, bool]:
    """Whether each pkg-config module is installed for `arch` on this machine
    (what a plain CMake build from the cache needs)."""
    if not libs or shutil.which("pkg-config") is None:
        return {lib: False for lib in libs}
    env = None
    if ARCHES[arch][0]:
        triplet = ARCHES[arch][1]
        env = dict(os.environ, PKG_CONFIG_LIBDIR=f"/usr/lib/{triplet}/pkgconfig:/usr/share/pkgconfig")
    return {lib: subprocess.run(["pkg-config", "--exists", lib], env=env).returncode == 0 for lib in libs}


def configure(profile: Profile, *, rootfs: Optional[Path] = None, features: Optional[FeatureSet] = None,
              knobs: Optional[List[Knob]] = None, buildroot_config_path: Optional[str] = None,
              out: Optional[Path] = None) -> Outputs:
    res = resolve(profile, features)
    build = choose(profile, knobs)
    config = runtime_config(profile, res, {c.knob.option: c.reason.replace(" in the profile", " is false in the profile")
                                           for c in build if c.value is False and c.packaged is False})
    rows = [Row(f"{c.feature.kind} {c.feature.name}", c.enabled, c.reason) for c in res.ordered()]
    rows += [Row(f"build {c.knob.name} = {c.knob.cmake(c.value)}", c.value if c.knob.type == "BOOL" else True, c.reason)
             for c in build]
    for t in res.enabled():
        if t.libs:
            found = pkg_config_status(t.libs, profile.arch)
            rows.append(Row(f"libraries of {t.kind} {t.name}", True,
                            "//libs: " + ", ".join(f"{lib} ({'installed' if ok else 'NOT installed'} for {profile.arch} here)"
                                                   for lib, ok in found.items())))
    if rootfs is None and profile.get("rootfs"):
        rootfs = profile.path.parent / str(profile.get("rootfs"))
        if not rootfs.exists():
            raise profile.error(["rootfs"], f"rootfs '{profile.get('rootfs')}' does not exist (relative to "
                                            f"{profile.path.parent})")
    if rootfs:
        t = trim(res, rootfs_facts(Path(rootfs)), config)
        config.update(t.config)
        rows += t.rows

    name = profile.name
    out_dir = Path(out) if out else Path(".")
    json_rel = f"profiles/{name}.json"
    ctx = {
        "name": name,
        "profile": profile,
        "profile_file": profile.path.name,
        "description": str(profile.get("description") or ""),
        "version": __version__,
        "arch": profile.arch,
        "choices": res.ordered(),
        "enabled": res.enabled(),
        "build": build,
        "packageconfig": [f.name.replace("_", "-") for f in res.enabled()]
                         + [c.knob.packageconfig for c in build if c.knob.type == "BOOL" and c.packaged],
        "config": config,
        "twin": {"properties": {"desired": config}},
        "recipe": RECIPE,
        "br_symbol": BR_SYMBOL,
        "br_config_path": buildroot_config_path or str((out_dir / json_rel).resolve()),
        "toolchain": ARCHES[profile.arch][0],
    }
    env = _env()
    files = {
        f"cmake/{name}.cmake": env.get_template("agent.cmake.j2").render(ctx),
        f"kas/{name}.yml": env.get_template("kas.yml.j2").render(ctx),
        f"buildroot/{name}.config": env.get_template("buildroot.config.j2").render(ctx),
        json_rel: env.get_template("runtime.json.j2").render(ctx),
        f"twin/{name}.json": env.get_template("twin.json.j2").render(ctx),
    }
    return Outputs(files=files, table=rows)


def write_outputs(outputs: Outputs, out: Path) -> List[Path]:
    """Write what changed; an unchanged file is not touched (same bytes,
    same mtime), so build systems do not rebuild."""
    changed = []
    for rel, text in sorted(outputs.files.items()):
        path = Path(out) / rel
        if path.is_file() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        changed.append(path)
    return changed


def format_table(rows: List[Row]) -> str:
    width = max([len(r.item) for r in rows] + [4])
    lines = [f"{'what':<{width}}  {'':7}  why", f"{'-' * width}  -------  ---"]
    lines += [f"{r.item:<{width}}  {'kept' if r.kept else 'dropped':7}  {r.reason}" for r in rows]
    return "\n".join(lines)


__all__ = ["configure", "write_outputs", "format_table", "rootfs_facts", "trim", "ProfileError"]
