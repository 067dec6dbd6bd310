"""Build-time selection: every collector can be compiled out, and one that
is out leaves no symbol and no string of its own in the binary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, Set

import pytest
from elftools.elf.elffile import ELFFile

from conftest import FIXTURES, events, messages, run_agent
from defender_iot.features import load_features

FEATURES = load_features()
COLLECTORS = [f.name for f in FEATURES.of("collector")]


def options_without(collectors_off: Iterable[str]) -> Dict[str, bool]:
    """Turn collectors off, and with them every detector that reads one."""
    off = set(collectors_off)
    opts = {FEATURES.get("collector", c).option: False for c in off}
    for d in FEATURES.of("detector"):
        if off & set(d.requires):
            opts[d.option] = False
    return opts


def listed(build) -> Set[str]:
    return set(run_agent(build, "--list-features").stdout.splitlines())


def expected_listing(opts: Dict[str, bool]) -> Set[str]:
    return {f"{f.kind} {f.name}" for f in FEATURES if opts.get(f.option, f.default)}


def strings_of(obj: Path) -> Set[bytes]:
    """The string literals an object file carries (its .rodata.str sections)."""
    found: Set[bytes] = set()
    with open(obj, "rb") as fh:
        elf = ELFFile(fh)
        for sec in elf.iter_sections():
            if sec.name.startswith(".rodata") and sec["sh_type"] != "SHT_NOBITS":
                for s in sec.data().split(b"\0"):
                    if len(s) >= 6:
                        found.add(s)
    return found


def test_heartbeat_only_build(agent_factory, tmp_path):
    opts = options_without(c for c in COLLECTORS if c != "heartbeat")
    opts.update({f.option: False for f in FEATURES if f.kind != "collector"})
    build = agent_factory(opts)
    assert listed(build) == {"collector heartbeat"}
    out = run_agent(build, "--once", "--root", str(tmp_path)).stdout
    assert [e["Name"] for m in messages(out) for e in m["Events"]] == ["Heartbeat"]


@pytest.mark.parametrize("collector", [c for c in COLLECTORS if c != "heartbeat"])
def test_collector_off_leaves_nothing(agent_factory, agent, collector):
    opts = options_without([collector])
    off = agent_factory(opts)
    assert listed(off) == expected_listing(opts)

    source = FEATURES.get("collector", collector).source
    # the strings each source carries, from objects that hold code (a link-time
    # optimised build's objects hold only the compiler's intermediate form)
    reference = agent_factory(extra={"AGENT_LTO": "OFF"})
    objs = {p.name: p for p in reference.build_dir.rglob("*.c.o") if "defender-iot-agent.dir" in str(p)}
    own = strings_of(objs[f"{source.name}.o"])
    others: Set[bytes] = set()
    for name, p in objs.items():
        if name != f"{source.name}.o":
            others |= strings_of(p)
    for lib in reference.build_dir.glob("CMakeFiles/agentcore.dir/src/**/*.c.o"):
        others |= strings_of(lib)
    own -= others
    assert own, f"{collector}: expected some strings of its own"
    leaked = sorted(own & strings_of(off.binary))
    assert not leaked, f"{collector} is off but its strings are in the binary: {leaked[:5]}"

    with open(off.binary, "rb") as fh:
        symtab = ELFFile(fh).get_section_by_name(".symtab")
        names = {s.name for s in symtab.iter_symbols()} if symtab else set()
    assert f"collector_{collector}" not in names
    assert f"collector_{collector}" in {s.name for s in ELFFile(open(agent.binary, "rb")).get_section_by_name(".symtab").iter_symbols()}


def test_no_proc_net_tcp_without_network_collectors(agent_factory):
    opts = options_without(["network_activity", "listening_ports", "baseline"])
    blob = agent_factory(opts).binary.read_bytes()
    assert b"/proc/net/tcp" not in blob


def test_no_btmp_without_login(agent_factory):
    blob = agent_factory(options_without(["login"])).binary.read_bytes()
    assert b"btmp" not in blob


def test_detector_needs_its_collectors(agent_factory):
    detectors = [d for d in FEATURES.of("detector") if d.requires]
    if not detectors:
        pytest.fail("no detector declares //requires: (expected brute_force to need login)")
    d = detectors[0]
    from defender_iot.errors import UserError
    with pytest.raises(UserError) as err:
        agent_factory({FEATURES.get("collector", d.requires[0]).option: False, d.option: True})
    assert f"needs the collector '{d.requires[0]}'" in str(err.value)


@pytest.mark.parametrize("arch", ["aarch64", "armhf"])
def test_cross_build_runs_under_qemu_user(agent_factory, arch):
    build = agent_factory(arch=arch)
    with open(build.binary, "rb") as fh:
        machine = ELFFile(fh).header["e_machine"]
    assert machine == {"aarch64": "EM_AARCH64", "armhf": "EM_ARM"}[arch]
    out = run_agent(build, "--once", "--root", str(FIXTURES / "busybox-device")).stdout
    (info,) = events(out, "SystemInformation")[0]["Payload"]
    assert info["Hostname"] == "gw-100"
    assert listed(build) == expected_listing({})


def test_config_reference_off_leaves_no_help_text(agent_factory, tmp_path):
    opts = {f.option: f.name in ("heartbeat", "local") for f in FEATURES}
    on = agent_factory(opts).binary.read_bytes()
    build = agent_factory({**opts, "AGENT_CONFIG_REFERENCE": False})
    blob = build.binary.read_bytes()
    for text in (b"config-reference", b"least severe log level", b"is standard output"):
        assert text in on and text not in blob, text
    assert run_agent(build, "--config-reference", check=False).returncode == 2
    # the keys themselves are all there and still validated
    bad = tmp_path / "bad.json"
    bad.write_text('{"Agent_LogLevl": "debug"}')
    err = run_agent(build, "--config", str(bad), "--check-config", check=False)
    assert err.returncode == 2 and "unknown key 'Agent_LogLevl' (did you mean 'Agent_LogLevel'?)" in err.stderr
    bad.write_text('{"Local_Path": 3}')
    err = run_agent(build, "--config", str(bad), "--check-config", check=False)
    assert err.returncode == 2 and "key 'Local_Path': expected a string" in err.stderr


def test_replay_off_leaves_no_replay_code(agent_factory, tmp_path):
    opts = {f.option: f.name in ("heartbeat", "local") for f in FEATURES}
    on = agent_factory(opts).binary.read_bytes()
    build = agent_factory({**opts, "AGENT_REPLAY": False})
    blob = build.binary.read_bytes()
    for text in (b"--replay", b"expected step directories"):
        assert text in on and text not in blob, text
    assert run_agent(build, "--replay", str(tmp_path), check=False).returncode == 2
    out = run_agent(build, "--once", "--root", str(tmp_path)).stdout
    assert [e["Name"] for m in messages(out) for e in m["Events"]] == ["Heartbeat"]
