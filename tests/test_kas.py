"""The kas fragments: kas's own schema, `kas dump` of every combination the
documentation gives, and `kas checkout` writing bblayers.conf and local.conf.

kas clones the pinned repositories before it dumps anything, and CI has no
network: each run uses a copy of the fragments plus one fragment that points
the four upstream repositories at empty local stand-ins (url: null). Only
the source of those repositories changes; their pinned commits and branches,
and everything else, are the committed files'."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import jsonschema
import kas
import pytest
from ruamel.yaml import YAML

from conftest import REPO

KAS = REPO / "kas"
KAS_BIN = Path(sys.executable).parent / "kas"
DOCS = [REPO / "README.md", REPO / "meta-defender-iot" / "README.md", REPO / "docs" / "integration.md"]
UPSTREAM = {
    "bitbake": [],
    "openembedded-core": ["meta"],
    "meta-yocto": ["meta-poky"],
    "meta-openembedded": ["meta-oe", "meta-python", "meta-networking"],
}
ENTRY = "kas/base.yml:kas/machine/qemuarm64.yml:kas/defender-iot.yml:kas/profile/gateway.yml"


def load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


def own_fragments() -> List[Path]:
    return [KAS / "base.yml", KAS / "defender-iot.yml", *sorted((KAS / "machine").glob("*.yml")),
            *sorted((KAS / "opt").glob("*.yml"))]


def documented_combinations() -> List[str]:
    found: List[str] = []
    for doc in DOCS:
        for m in re.finditer(r"^\s*kas (?:build|dump|checkout)(?: --\S+(?: \S+)?)* (kas/\S+\.yml)\s*$",
                             doc.read_text(), re.M):
            if m.group(1) not in found:
                found.append(m.group(1))
    return found


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the repository's kas/ and layer, with the offline fragment
    and stand-ins for the upstream repositories."""
    root = tmp_path_factory.mktemp("kas")
    co = root / "co"
    shutil.copytree(KAS, co / "kas")
    shutil.copytree(REPO / "meta-defender-iot", co / "meta-defender-iot")
    subprocess.run(["git", "init", "-q", str(co)], check=True)
    repos = {}
    for name, layers in UPSTREAM.items():
        for layer in layers or ["."]:
            (root / "upstream" / name / layer).mkdir(parents=True, exist_ok=True)
        repos[name] = {"url": None, "path": str(root / "upstream" / name)}
    # What openembedded-core's script does for kas: make and enter the build directory.
    (root / "upstream" / "openembedded-core" / "oe-init-build-env").write_text(
        'BUILDDIR=$(mkdir -p "${1:-build}/conf" && cd "${1:-build}" && pwd)\nexport BUILDDIR\ncd "$BUILDDIR" || return 1\n')
    (co / "kas" / "ci-offline.yml").write_text(json.dumps({"header": {"version": 14}, "repos": repos}))
    (root / "work").mkdir()
    return co


def kas_run(checkout: Path, command: str, combination: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KAS_BIN), command, combination + ":kas/ci-offline.yml"], cwd=checkout,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, KAS_WORK_DIR=str(checkout.parent / "work")))


def test_fragments_match_kas_schema():
    schema = json.loads((Path(kas.__file__).parent / "schema-kas.json").read_text())
    for path in own_fragments():
        jsonschema.validate(load(path), schema)


def test_one_concern_per_fragment():
    for path in sorted((KAS / "machine").glob("*.yml")):
        frag = load(path)
        assert set(frag) == {"header", "machine"} and frag["machine"] == path.stem, path
    assert set(load(KAS / "defender-iot.yml")["repos"]) == {"meta-defender-iot"}
    assert {p.stem for p in (KAS / "machine").glob("*.yml")} >= {"qemux86-64", "qemuarm64", "qemuarm"}


def test_base_pins_every_repository_by_commit_and_branch():
    base = load(KAS / "base.yml")
    assert set(base["repos"]) == set(UPSTREAM)
    for name, repo in base["repos"].items():
        assert repo["url"].startswith("https://"), name
        assert re.fullmatch(r"[0-9a-f]{40}", repo["commit"]), f"{name}: commit must be a full commit id"
        assert repo["branch"], f"{name}: the branch that holds the commit"
        assert "refspec" not in repo
    for name in ("openembedded-core", "meta-yocto", "meta-openembedded"):
        assert base["repos"][name]["branch"] == "wrynose"


def test_documentation_gives_the_entry_point():
    combos = documented_combinations()
    assert ENTRY in combos
    used = {part for combo in combos for part in combo.split(":")}
    for path in own_fragments():
        assert str(path.relative_to(REPO)) in used, f"{path.name} appears in no documented combination"


@pytest.mark.parametrize("combination", documented_combinations())
def test_documented_combination_dumps(checkout, combination):
    for part in combination.split(":"):
        assert (REPO / part).is_file(), f"{part}: named by the documentation, but missing"
    proc = kas_run(checkout, "dump", combination)
    assert proc.returncode == 0, proc.stderr
    dumped = YAML(typ="safe").load(proc.stdout)
    machine = next(p for p in combination.split(":") if p.startswith("kas/machine/"))
    assert dumped["machine"] == Path(machine).stem
    assert dumped["distro"] == "poky"
    base = load(KAS / "base.yml")
    for name in UPSTREAM:
        assert dumped["repos"][name]["commit"] == base["repos"][name]["commit"]
        assert dumped["repos"][name]["branch"] == base["repos"][name]["branch"]
    assert "meta-defender-iot" in dumped["repos"]["meta-defender-iot"]["layers"]
    conf = "\n".join(dumped["local_conf_header"].values())
    profile = next(p for p in combination.split(":") if p.startswith("kas/profile/"))
    assert f'DEFENDER_IOT_PROFILE = "{Path(profile).stem}"' in conf
    if "kas/opt/test.yml" in combination:
        assert dumped["target"] == "defender-iot-test-image" and dumped["task"] == "testimage"
        assert re.search(r'^TEST_SUITES = ".*\bdefender_iot\b.*"$', conf, re.M)
        assert "slirp" in conf
    if "kas/opt/offline.yml" in combination:
        assert 'BB_NO_NETWORK = "1"' in conf


def test_a_typo_is_refused(checkout):
    (checkout / "kas" / "typo.yml").write_text("header:\n  version: 14\nmachin: qemuarm64\n")
    proc = kas_run(checkout, "dump", "kas/base.yml:kas/typo.yml")
    assert proc.returncode != 0 and "machin" in proc.stderr


def conf_lines(path: Path) -> Dict[str, str]:
    return dict(re.findall(r'^(\S+) \S?\?*=\s*"(.*)"$', path.read_text(), re.M))


def test_checkout_writes_layers_and_local_conf(checkout):
    proc = kas_run(checkout, "checkout", ENTRY)
    assert proc.returncode == 0, proc.stderr
    conf = checkout.parent / "work" / "build" / "conf"
    bblayers = (conf / "bblayers.conf").read_text()
    layers = sorted(Path(p).name for p in re.findall(r"\$\{TOPDIR\}/([^\s\"]+)", bblayers))
    assert layers == sorted(["meta", "meta-poky", "meta-oe", "meta-python", "meta-networking", "meta-defender-iot"])
    local = (conf / "local.conf").read_text()
    assert re.search(r'^MACHINE \?\?= "qemuarm64"$', local, re.M)
    assert re.search(r'^DISTRO \?\?= "poky"$', local, re.M)
    assert re.search(r'^PACKAGECONFIG:pn-defender-iot-micro-agent = ".*\biothub\b.*"$', local, re.M)
    assert 'IMAGE_INSTALL:append = " packagegroup-defender-iot"' in local


def test_profile_build_options_reach_local_conf(checkout):
    """The sensor profile drops replay and the config reference, opts in to
    LTO and links for 4 KiB pages: kas writes that into local.conf."""
    combination = ENTRY.replace("gateway", "sensor")
    proc = kas_run(checkout, "checkout", combination)
    assert proc.returncode == 0, proc.stderr
    local = conf_lines(checkout.parent / "work" / "build" / "conf" / "local.conf")
    values = local["PACKAGECONFIG:pn-defender-iot-micro-agent"].split()
    assert "lto" in values and "replay" not in values and "config-reference" not in values
    assert local["DEFENDER_IOT_MAX_PAGE_SIZE"] == "4096"


RECIPE = REPO / "meta-defender-iot" / "recipes-security" / "defender-iot" / "defender-iot-micro-agent_git.bb"


@pytest.mark.parametrize("profile", sorted(p.name for p in (KAS / "profile").glob("*.yml")))
def test_profile_sets_only_what_the_recipe_defines(profile):
    recipe = RECIPE.read_text()
    flags = set(re.findall(r"^PACKAGECONFIG\[([\w-]+)\] = ", recipe, re.M))
    variables = set(re.findall(r"^(DEFENDER_IOT_\w+) \??=", recipe, re.M))
    block = load(KAS / "profile" / profile)["local_conf_header"]["defender-iot-profile"]
    assignments = dict(re.findall(r'^(\S+) = "(.*)"$', block, re.M))
    assert set(assignments["PACKAGECONFIG:pn-defender-iot-micro-agent"].split()) <= flags
    assert set(assignments) - {"PACKAGECONFIG:pn-defender-iot-micro-agent"} <= variables, \
        f"{profile} sets variables {RECIPE.name} does not define"


def test_layer_dependencies_are_in_the_base():
    """Every collection the layer depends on is provided by a layer the base
    fragment adds (collection names as the layers' own layer.conf set them)."""
    provided = {"meta": "core", "meta-poky": "yocto", "meta-oe": "openembedded-layer",
                "meta-python": "meta-python", "meta-networking": "networking-layer"}
    base_layers = {layer for repo in load(KAS / "base.yml")["repos"].values() for layer in (repo.get("layers") or {})}
    conf = (REPO / "meta-defender-iot" / "conf" / "layer.conf").read_text()
    depends = re.search(r'^LAYERDEPENDS_defender-iot = "([^"]+)"$', conf, re.M).group(1).split()
    available = {provided[layer] for layer in base_layers if layer in provided}
    assert set(depends) <= available, set(depends) - available


def test_local_source_points_at_this_checkouts_agent():
    block = load(KAS / "opt" / "local-source.yml")["local_conf_header"]["local-source"]
    m = re.search(r'^EXTERNALSRC:pn-defender-iot-micro-agent = "\$\{DEFENDER_IOT_LAYERDIR\}/(\S+)"$', block, re.M)
    assert m and 'INHERIT += "externalsrc"' in block
    conf = (REPO / "meta-defender-iot" / "conf" / "layer.conf").read_text()
    assert re.search(r'^DEFENDER_IOT_LAYERDIR := "\$\{LAYERDIR\}"$', conf, re.M)
    assert ((REPO / "meta-defender-iot" / m.group(1)).resolve() / "CMakeLists.txt").is_file()
