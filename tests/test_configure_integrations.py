"""The configurator's outputs fit the build systems they are for: kas
validates the fragments with its own schema and merges them with the
repository's other fragments; kconfiglib loads the Buildroot fragment against
the package's Config.in. These fail, not skip, while the layer or package is
missing."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import kas
import kconfiglib
import pytest
from ruamel.yaml import YAML

from conftest import REPO
from defender_iot.configure import configure
from defender_iot.profile import load_profile

PROFILES = ["camera", "gateway", "sensor", "default"]
BR_EXTERNAL = REPO / "buildroot-package"


@pytest.mark.parametrize("name", PROFILES)
def test_kas_fragment_matches_kas_schema(name):
    schema = json.loads((Path(kas.__file__).parent / "schema-kas.json").read_text())
    fragment = YAML(typ="safe").load(configure(load_profile(REPO / "profiles" / f"{name}.yml")).files[f"kas/{name}.yml"])
    jsonschema.validate(fragment, schema)
    committed = YAML(typ="safe").load((REPO / "kas" / "profile" / f"{name}.yml").read_text())
    jsonschema.validate(committed, schema)


@pytest.mark.parametrize("machine", ["qemuarm64", "qemuarm", "qemux86-64"])
def test_kas_merges_the_profile_with_the_repository_fragments(machine, tmp_path, monkeypatch):
    """What `kas dump` does before it fetches the remote layers (which needs
    the network): kas's own include handler loads each file, validates it
    against its schema and merges them in order."""
    from kas.context import create_global_context
    from kas.includehandler import IncludeHandler
    from kas.kas import kas_get_argparser

    monkeypatch.setenv("KAS_WORK_DIR", str(tmp_path))

    files = ["kas/base.yml", f"kas/machine/{machine}.yml", "kas/defender-iot.yml", "kas/profile/gateway.yml"]
    for f in files:
        assert (REPO / f).is_file(), f"{f} is missing (issue 7 writes the layer's kas fragments)"
    create_global_context(kas_get_argparser().parse_args(["dump", ":".join(files)]))
    handler = IncludeHandler([str(REPO / f) for f in files])
    handler.ensure_from_same_repo()
    config, missing = handler.get_config()
    assert missing == []
    block = config["local_conf_header"]["defender-iot-profile"]
    assert 'DEFENDER_IOT_PROFILE = "gateway"' in block
    assert re.search(r'^PACKAGECONFIG:pn-defender-iot-micro-agent = ".*\biothub\b.*"$', block, re.M)
    # the layer's own keys survive: the profile adds a block, it overrides none
    for f in files[:-1]:
        theirs = YAML(typ="safe").load((REPO / f).read_text())
        for key in (theirs.get("local_conf_header") or {}):
            assert config["local_conf_header"][key] == theirs["local_conf_header"][key]
    assert "meta-defender-iot" in config["repos"]


def _external_name() -> str:
    desc = BR_EXTERNAL / "external.desc"
    assert desc.is_file(), f"{desc} is missing (issue 7 writes the Buildroot package)"
    m = re.search(r"^name:\s*(\w+)\s*$", desc.read_text(), re.M)
    assert m, f"{desc}: no 'name:' line"
    return m.group(1)


def _kconfig(tmp_path: Path) -> kconfiglib.Kconfig:
    """The external tree's Config.in, with every symbol it uses from
    Buildroot proper (toolchain options, BR2_USE_MMU, ...) stubbed as y."""
    os.environ[f"BR2_EXTERNAL_{_external_name()}_PATH"] = str(BR_EXTERNAL)
    os.environ.setdefault("CONFIG_", "")
    top = BR_EXTERNAL / "Config.in"
    assert top.is_file(), f"{top} is missing"
    first = kconfiglib.Kconfig(str(top), warn=False)
    stubs = sorted(s.name for s in first.syms.values() if not s.nodes)
    # The usual target: a glibc toolchain with an MMU and shared libraries,
    # so every Buildroot symbol the package uses is y but BR2_STATIC_LIBS.
    wrapper = tmp_path / "Kconfig"
    wrapper.write_text("".join(f"config {s}\n\tbool\n\tdefault {'n' if s == 'BR2_STATIC_LIBS' else 'y'}\n\n"
                               for s in stubs)
                       + f'source "{top}"\n')
    return kconfiglib.Kconfig(str(wrapper), warn=False)


@pytest.mark.parametrize("name", PROFILES)
def test_buildroot_fragment_sets_only_package_symbols(tmp_path, name):
    kconf = _kconfig(tmp_path)
    text = configure(load_profile(REPO / "profiles" / f"{name}.yml"), out=tmp_path).files[f"buildroot/{name}.config"]
    fragment = tmp_path / "fragment.config"
    fragment.write_text(text)
    kconf.warn = True
    kconf.warn_assign_undef = True
    kconf.load_config(str(fragment))
    assert not [w for w in kconf.warnings if "undefined" in w or "not defined" in w], kconf.warnings
    seen = 0
    for line in text.splitlines():
        m = re.match(r"^(BR2_\w+)=(.*)$", line) or re.match(r"^# (BR2_\w+) is not set$", line)
        if not m:
            continue
        seen += 1
        sym = kconf.syms.get(m.group(1))
        assert sym is not None and sym.nodes, f"{m.group(1)} is not defined by {BR_EXTERNAL}"
        assert sym.name.startswith("BR2_PACKAGE_DEFENDER_IOT_MICRO_AGENT")
        want = m.group(2).strip('"') if m.lastindex == 2 else "n"
        assert sym.str_value == want, f"{sym.name}: fragment says {want}, Kconfig resolves {sym.str_value}"
    assert seen >= 3
