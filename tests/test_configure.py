"""`defender-iot configure`: example profiles build exactly what they
resolve to; outputs are reproducible and committed fresh; errors point at
the profile line; trimming follows the product's root filesystem."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import REPO, run_agent
from defender_iot.build import build_agent
from defender_iot.cli import main
from defender_iot.configure import configure, rootfs_facts
from defender_iot.errors import UserError
from defender_iot.knobs import knobs_markdown, load_knobs
from defender_iot.profile import load_profile, resolve, schema_markdown
from defender_iot.size import size_report

PROFILES = ["camera", "gateway", "sensor", "default"]
BR = "BR2_PACKAGE_DEFENDER_IOT_MICRO_AGENT"
LAYER_PROFILES = REPO / "meta-defender-iot" / "recipes-security" / "defender-iot" / "files" / "profiles"


def run_configure(capsys, *args: str):
    rc = main(["configure", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    """Each example profile configured once: name -> (profile, out dir)."""
    out = tmp_path_factory.mktemp("configured")
    done = {}
    for name in PROFILES:
        profile = load_profile(REPO / "profiles" / f"{name}.yml")
        assert main(["configure", str(profile.path), "--out", str(out / name), "-q"]) == 0
        done[name] = (profile, out / name)
    return done


@pytest.mark.parametrize("name", PROFILES)
def test_example_profile_builds_exactly_its_features(configured, name):
    profile, out = configured[name]
    assert profile.name == name
    build = build_agent(arch=profile.arch, cache_file=out / "cmake" / f"{name}.cmake")
    listed = run_agent(build, "--list-features").stdout.splitlines()
    expected = [f"{f.kind} {f.name}" for f in resolve(profile).enabled()]
    assert sorted(listed) == sorted(expected)
    # the generated runtime config is one the agent built from it accepts
    config = out / "profiles" / f"{name}.json"
    os.chmod(config, 0o600)
    check = run_agent(build, "--check-config", "--config", str(config))
    assert check.stdout.strip() == f"{config}: OK"


def test_sensor_is_three_times_smaller_than_everything(configured):
    profile, out = configured["sensor"]
    sensor = build_agent(arch=profile.arch, cache_file=out / "cmake" / "sensor.cmake")
    everything = build_agent({f.option: True for f in resolve(profile).features}, arch=profile.arch)
    small, big = size_report(sensor.binary).total, size_report(everything.binary).total
    assert big >= 3 * small, f"sensor {small} bytes, all features {big} bytes"


@pytest.mark.parametrize("name", PROFILES)
def test_committed_outputs_are_fresh(configured, name):
    """kas/profile/ and the layer's files/profiles/ are this tool's output
    for the example profiles; refresh them with docs/configurator.md's loop."""
    _, out = configured[name]
    for generated, committed in ((out / "kas" / f"{name}.yml", REPO / "kas" / "profile" / f"{name}.yml"),
                                 (out / "profiles" / f"{name}.json", LAYER_PROFILES / f"{name}.json")):
        assert committed.is_file(), f"{committed} is missing"
        assert committed.read_bytes() == generated.read_bytes(), \
            f"{committed} is stale: re-run defender-iot configure profiles/{name}.yml (docs/configurator.md)"


def test_rerun_changes_no_byte(tmp_path, capsys):
    profile = REPO / "profiles" / "gateway.yml"
    rc, first, _ = run_configure(capsys, profile, "--out", tmp_path)
    assert rc == 0 and "wrote" in first
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    assert len(before) == 5
    rc, second, _ = run_configure(capsys, profile, "--out", tmp_path)
    assert rc == 0 and "wrote" not in second and second.count("unchanged") == 5
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name", PROFILES)
def test_round_trip_keeps_comments_and_order(name):
    path = REPO / "profiles" / f"{name}.yml"
    assert load_profile(path).dump() == path.read_text()


def test_outputs_follow_the_contracts(configured):
    profile, out = configured["gateway"]
    enabled = resolve(profile).enabled()
    kas = (out / "kas" / "gateway.yml").read_text()
    # features, then the build options on in the recipe (gateway sets none: the defaults)
    values = " ".join([f.name.replace("_", "-") for f in enabled]
                      + [k.packageconfig for k in load_knobs() if k.type == "BOOL" and k.packaged_default])
    assert "replay" in values and "lto" not in values
    assert f'PACKAGECONFIG:pn-defender-iot-micro-agent = "{values}"' in kas
    assert 'DEFENDER_IOT_PROFILE = "gateway"' in kas
    cache = (out / "cmake" / "gateway.cmake").read_text()
    for f in resolve(profile).features:
        assert f"set({f.option} {'ON' if f in enabled else 'OFF'} CACHE BOOL" in cache
    runtime = json.loads((out / "profiles" / "gateway.json").read_text())
    assert runtime["CollectorsCore_PriorityIntervals"] == "15,60,720"
    assert runtime["Agent_Transport"] == "iothub"
    assert json.loads((out / "twin" / "gateway.json").read_text()) == {"properties": {"desired": runtime}}


# ---- build options that are not features (agent/CMakeLists.txt) ----

KNOBS = "product: p\narch: x86_64\n" + ("collectors: [heartbeat]\ntransport: local\n"
                "build:\n  replay: false\n  config_reference: false\n  max_page_size: 4096\n")


def test_build_options_reach_every_output(tmp_path):
    path = tmp_path / "product.yml"
    path.write_text(KNOBS)
    files = configure(load_profile(path), out=tmp_path).files
    cache = files["cmake/p.cmake"]
    assert "# build.replay in the profile (line 6)\nset(AGENT_REPLAY OFF CACHE BOOL " in cache
    assert "set(AGENT_CONFIG_REFERENCE OFF CACHE BOOL " in cache
    assert 'set(AGENT_MAX_PAGE_SIZE "4096" CACHE STRING ' in cache
    # not in the profile: the agent's own default, said so
    assert re.search(r"# the agent's default \(agent/CMakeLists.txt:\d+\); Yocto and Buildroot: OFF, left to the "
                     r"distribution\nset\(AGENT_LTO ON CACHE BOOL ", cache)
    kas = files["kas/p.yml"]
    values = re.search(r'^    PACKAGECONFIG:pn-defender-iot-micro-agent = "([^"]*)"$', kas, re.M).group(1).split()
    assert values[:2] == ["heartbeat", "local"]
    assert not {"replay", "config-reference", "lto"} & set(values)
    assert '    DEFENDER_IOT_MAX_PAGE_SIZE = "4096"\n' in kas
    br = files["buildroot/p.config"].splitlines()
    for line in (f"# {BR}_REPLAY is not set", f"# {BR}_CONFIG_REFERENCE is not set", f"# {BR}_LTO is not set",
                 f'{BR}_MAX_PAGE_SIZE="4096"'):
        assert line in br
    # at their defaults the packaged builds keep replay and the reference
    path.write_text("product: p\narch: x86_64\ncollectors: [heartbeat]\ntransport: local\nbuild:\n  lto: true\n")
    files = configure(load_profile(path), out=tmp_path).files
    values = re.search(r'PACKAGECONFIG:pn-defender-iot-micro-agent = "([^"]*)"', files["kas/p.yml"]).group(1).split()
    assert values[:2] == ["heartbeat", "local"] and {"config-reference", "replay", "lto"} <= set(values)
    assert "DEFENDER_IOT_MAX_PAGE_SIZE" not in files["kas/p.yml"]
    assert {f"{BR}_REPLAY=y", f"{BR}_LTO=y", f'{BR}_MAX_PAGE_SIZE=""'} <= set(files["buildroot/p.config"].splitlines())


def test_build_options_are_read_from_the_cmake_files(tmp_path):
    (tmp_path / "cmake").mkdir()
    (tmp_path / "CMakeLists.txt").write_text(
        '# option(AGENT_COMMENTED "a comment, not an option" ON)\n'
        'option(AGENT_SANITIZE "developer only" OFF)\n'
        'option(AGENT_PRIVDROP "Privilege drop # not a comment" ON) # a comment\n'
        'option(AGENT_COLLECTOR_X "a feature" ON)\n'
        'set(AGENT_TAG "a b" CACHE STRING "syslog tag")\n')
    (tmp_path / "cmake" / "Extra.cmake").write_text('option(AGENT_MASKING\n  "Privacy masking"\n  OFF)\n')
    knobs = {k.option: k for k in load_knobs(tmp_path)}
    assert list(knobs) == ["AGENT_PRIVDROP", "AGENT_TAG", "AGENT_MASKING"]
    assert (knobs["AGENT_PRIVDROP"].default, knobs["AGENT_PRIVDROP"].doc) == (True, "Privilege drop # not a comment")
    assert (knobs["AGENT_TAG"].type, knobs["AGENT_TAG"].default, knobs["AGENT_TAG"].name) == ("STRING", "a b", "tag")
    assert (knobs["AGENT_MASKING"].line, knobs["AGENT_MASKING"].default) == (1, False)
    (tmp_path / "CMakeLists.txt").write_text('\noption(AGENT_ODD "doc" ${SOMETHING})\n')
    with pytest.raises(UserError, match=r"CMakeLists.txt:2: cannot read the declaration of AGENT_ODD"):
        load_knobs(tmp_path)


def test_agent_built_without_replay_refuses_it(tmp_path, capsys, agent):
    path = tmp_path / "product.yml"
    path.write_text(KNOBS)
    rc, _, err = run_configure(capsys, path, "--out", tmp_path / "out", "-q")
    assert rc == 0, err
    build = build_agent(cache_file=tmp_path / "out" / "cmake" / "p.cmake")
    (tmp_path / "replay" / "000").mkdir(parents=True)
    proc = run_agent(build, "--replay", str(tmp_path / "replay"), "--once", check=False)
    assert proc.returncode == 2
    assert "unrecognized option '--replay'" in proc.stderr
    assert "--replay" not in run_agent(build, "--help").stdout
    proc = run_agent(build, "--config-reference", check=False)
    assert proc.returncode == 2 and "unrecognized option '--config-reference'" in proc.stderr
    # the default build has both
    assert "--replay" in run_agent(agent, "--help").stdout
    assert run_agent(agent, "--config-reference").stdout


# ---- errors: file, line, and what to do ----

def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "product.yml"
    p.write_text(text)
    return p


BASE = "product: p\narch: x86_64\n"


@pytest.mark.parametrize("body, line, message", [
    ("colectors: [heartbeat]\n", 3, "unknown key 'colectors' (did you mean 'collectors'?)"),
    ("collectors: [heartbeat]\nsettings:\n  privacy:\n    mask_remote_adresses: true\n", 6,
     "unknown key 'mask_remote_adresses' (did you mean 'mask_remote_addresses'?)"),
    ("collectors: [heartbeat, proces]\n", 3, "unknown collector 'proces' (did you mean 'process'?)"),
    ("collectors: [heartbeat]\ndetect:\n  - brute_forse\n", 5,
     "unknown detector or goal 'brute_forse' (did you mean 'brute_force'?)"),
    ("collectors: [heartbeat]\ndetectors: [crypto_minor]\n", 4, "unknown detector 'crypto_minor' (did you mean 'crypto_miner'?)"),
    ("collectors: [heartbeat]\ntransport: iot_hub\n", 4, "unknown transport 'iot_hub' (did you mean 'iothub'?)"),
    ("collectors:\n  heartbeat: true\n  login: false\ndetect: [brute_force]\n", 6,
     "detector 'brute_force' needs collector 'login' (agent/src/detectors/brute_force.c: //requires:), "
     "which line 5 turns off: allow 'login' or drop 'brute_force'"),
    ("collectors: [heartbeat]\nsettings:\n  config:\n    Heartbeat_Disabld: true\n", 6,
     "settings.config: no key 'Heartbeat_Disabld' in an agent built from this profile (did you mean 'Heartbeat_Disabled'?)"),
    ("collectors: [heartbeat]\nsettings:\n  config:\n    Agent_LogLevel: loud\n", 6,
     "settings.config.Agent_LogLevel: expected one of debug, info, warning, error, got \"loud\""),
    ("collectors: [heartbeat]\nsettings:\n  config:\n    Login_PollingInterval: 100\n", 6,
     "no key 'Login_PollingInterval' in an agent built from this profile"),
    ("collectors: [heartbeat]\nbuild:\n  lto: true\n  replai: false\n", 6,
     "build: unknown build option 'replai' (did you mean 'replay'?)"),
    ("collectors: [heartbeat]\nbuild:\n  replay: no\n", 5, 'build.replay: expected true or false, got "no"'),
    ("collectors: [heartbeat]\nbuild:\n  max_page_size: 4000\n", 5,
     "build.max_page_size: expected a page size in bytes, a power of two from 4096 to 65536 (e.g. 4096), "
     "or '' for the toolchain's default, got 4000"),
    ("collectors: [heartbeat]\nbuild:\n  max_page_size: true\n", 5, "build.max_page_size: expected a page size"),
    ("collectors: [heartbeat]\nbuild:\n  config_reference: [false]\n", 5,
     "build.config_reference: expected true, false, a string or a number, got [false]"),
    # a runtime key of a capability the build leaves out
    ("collectors: [heartbeat]\nsettings:\n  privacy:\n    mask_remote_addresses: true\nbuild:\n"
     "  mask_addresses: false\n", 6, "settings.privacy.mask_remote_addresses: build.mask_addresses is false in the "
                                    "profile (line 8), which leaves Agent_MaskRemoteAddresses out of the agent "
                                    "(AGENT_MASK_ADDRESSES=OFF): drop the setting or the build option"),
    ("collectors: [heartbeat]\nsettings:\n  config:\n    Agent_RunAsUser: nobody\nbuild: {run_as_user: false}\n", 6,
     "settings.config.Agent_RunAsUser: build.run_as_user is false in the profile (line 7), which leaves "
     "Agent_RunAsUser out"),
])
def test_profile_errors_name_file_and_line(tmp_path, capsys, body, line, message):
    path = write(tmp_path, BASE + body)
    rc, _, err = run_configure(capsys, path, "--out", tmp_path / "out")
    assert rc == 2
    assert err.startswith(f"defender-iot: error: {path}:{line}: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_bad_arch_and_yaml(tmp_path, capsys):
    path = write(tmp_path, "product: p\narch: arm64\n")
    rc, _, err = run_configure(capsys, path, "--out", tmp_path / "o")
    assert rc == 2 and f"{path}:2: arch: 'arm64' is not one of x86_64, aarch64, armhf" in err
    path = write(tmp_path, "product: p\narch: [x86_64\n")
    rc, _, err = run_configure(capsys, path, "--out", tmp_path / "o")
    assert rc == 2 and f"{path}:3: not valid YAML" in err


def test_budget_too_small_fails_the_build_step(tmp_path, capsys):
    path = write(tmp_path, BASE + "collectors: [heartbeat]\ntransport: local\nbudget:\n  flash_kb: 2\n")
    rc, out, err = run_configure(capsys, path, "--out", tmp_path / "out", "--build")
    assert rc == 1
    assert f"{path}:6: budget.flash_kb is 2 KiB but defender-iot-agent takes" in err
    assert "biggest: " in err and "core " in err
    # the generated files are there to inspect
    assert (tmp_path / "out" / "cmake" / "p.cmake").is_file()
    path.write_text(BASE + "collectors: [heartbeat]\ntransport: local\nbudget:\n  flash_kb: 1024\n")
    rc, out, err = run_configure(capsys, path, "--out", tmp_path / "out", "--build")
    assert rc == 0, err
    assert "KiB flash" in out


# ---- trimming ----

def test_trim_from_a_directory(tmp_path, capsys):
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF... no login records here")
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "sbin" / "dropbear").write_bytes(b"\x7fELF")
    path = write(tmp_path, BASE + "collectors: [heartbeat, login, baseline]\ntransport: local\n")
    rc, out, _ = run_configure(capsys, path, "--out", tmp_path / "out", "--rootfs", root)
    assert rc == 0
    config = json.loads((tmp_path / "out" / "profiles" / "p.json").read_text())
    assert config["Baseline_GroupsDisabled"] == "Firewall"
    assert config["Login_UseUtmp"] is False
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "kept" in lines["SSH checks"] and "usr/sbin/dropbear" in lines["SSH checks"]
    assert "dropped" in lines["firewall checks"] and "no iptables or nft" in lines["firewall checks"]
    assert "dropped" in lines["logins from utmp/wtmp"] and "Login_UseUtmp = false" in lines["logins from utmp/wtmp"]


def test_trim_from_a_buildroot_target(tmp_path):
    """A Buildroot output/target: BusyBox built with utmp support, OpenSSH,
    nft."""
    target = tmp_path / "output" / "target"
    for rel, data in (("bin/busybox", b"\x7fELF /var/run/utmp /var/log/wtmp"), ("usr/sbin/sshd", b"\x7fELF"),
                      ("usr/sbin/nft", b"\x7fELF")):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    (target / "bin" / "login").symlink_to("busybox")
    (target.parent / "build").mkdir()
    facts = rootfs_facts(target.parent)  # output/ stands for output/target
    assert facts.source == f"directory {target}"
    assert facts.ssh_server == "usr/sbin/sshd" and facts.firewall == "usr/sbin/nft"
    assert facts.utmp.startswith("bin/login")
    path = write(tmp_path, BASE + "collectors: [heartbeat, login, baseline]\ntransport: local\n")
    outputs = configure(load_profile(path), rootfs=target)
    config = json.loads(outputs.files["profiles/p.json"])
    assert "Baseline_GroupsDisabled" not in config and "Login_UseUtmp" not in config
    assert all(r.kept for r in outputs.table if r.item in ("SSH checks", "firewall checks", "logins from utmp/wtmp"))


def test_trim_from_a_yocto_manifest(tmp_path):
    manifest = tmp_path / "core-image-minimal-qemuarm64.manifest"
    manifest.write_text("busybox cortexa57 1.36.1\nlibc6 cortexa57 2.39\nbase-files qemuarm64 3.0.14\n")
    path = write(tmp_path, BASE + "collectors: [heartbeat, login, baseline]\ntransport: local\n")
    config = json.loads(configure(load_profile(path), rootfs=manifest).files["profiles/p.json"])
    assert config["Baseline_GroupsDisabled"] == "Firewall,SSH"
    assert config["Login_UseUtmp"] is False
    manifest.write_text("busybox cortexa57 1.36.1\nthis is not a manifest\n")
    with pytest.raises(Exception, match=r"core-image-minimal-qemuarm64.manifest:2: expected a Yocto image manifest line"):
        configure(load_profile(path), rootfs=manifest)


def test_profile_settings_merge_with_trimming(tmp_path):
    manifest = tmp_path / "image.manifest"
    manifest.write_text("dropbear cortexa57 2022.83\n")
    path = write(tmp_path, BASE + "collectors: [heartbeat, baseline]\ntransport: local\nsettings:\n  config:\n"
                                  "    Baseline_GroupsDisabled: Accounts\n")
    config = json.loads(configure(load_profile(path), rootfs=manifest).files["profiles/p.json"])
    assert config["Baseline_GroupsDisabled"] == "Accounts,Firewall"


# ---- the schema is the documentation ----

def test_docs_hold_the_schema_reference():
    doc = (REPO / "docs" / "configurator.md").read_text()
    assert schema_markdown() in doc, "docs/configurator.md: paste `python -m defender_iot.profile` output"
    assert knobs_markdown() in doc, "docs/configurator.md: paste `python -m defender_iot.knobs` output"


def test_detect_by_goal(tmp_path, capsys):
    path = write(tmp_path, BASE + "collectors: [heartbeat]\ndetect: [reverse_shell]\ntransport: local\n")
    res = resolve(load_profile(path))
    chosen = [c for c in res.ordered() if c.enabled and c.feature.kind == "detector"]
    assert [c.feature.name for c in chosen] == ["suspicious_network"]
    assert "`detect: reverse_shell` (line 4): its summary says" in chosen[0].reason
    # the detector pulls in what it reads
    needed = set(chosen[0].feature.requires)
    assert needed and needed <= {f.name for f in res.enabled("collector")}
    # a goal that fits several detectors must be made precise
    path = write(tmp_path, BASE + "detect:\n  - temporary\n")
    rc, _, err = run_configure(capsys, path, "--out", tmp_path / "o")
    assert rc == 2 and f"{path}:4: goal 'temporary' matches several detectors (botnet, crypto_miner)" in err


def test_the_profile_wins_over_trimming(tmp_path, capsys):
    manifest = tmp_path / "image.manifest"
    manifest.write_text("busybox cortexa57 1.36.1\n")
    path = write(tmp_path, BASE + "collectors: [heartbeat, login]\ntransport: local\nrootfs: image.manifest\n"
                                  "settings:\n  config:\n    Login_UseUtmp: true\n")
    outputs = configure(load_profile(path))
    assert json.loads(outputs.files["profiles/p.json"])["Login_UseUtmp"] is True
    assert any("the profile sets Login_UseUtmp" in r.reason for r in outputs.table)
    path.write_text(BASE + "collectors: [heartbeat]\nrootfs: missing/\n")
    rc, _, err = run_configure(capsys, path, "--out", tmp_path / "o")
    assert rc == 2 and f"{path}:4: rootfs 'missing/' does not exist" in err
