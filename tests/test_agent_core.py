"""The agent binary's command line and message model."""

import json
import os
import re

from conftest import events, messages, run_agent


def test_once_prints_one_valid_security_message(agent, tmp_path):
    out = run_agent(agent, "--once", "--root", str(tmp_path)).stdout
    msgs = messages(out)
    assert len(msgs) == 1
    m = msgs[0]
    assert m["AgentVersion"] and m["MessageSchemaVersion"] == "1.0"
    assert re.fullmatch(r"[0-9a-f-]{36}", m["AgentId"])
    for e in m["Events"]:
        assert set(e) >= {"EventType", "Category", "Name", "Id", "TimestampUTC", "Payload"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["TimestampUTC"])
    assert events(out, "Heartbeat")


def test_agent_id_comes_from_machine_id(agent, tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    m = messages(run_agent(agent, "--once", "--root", str(tmp_path)).stdout)[0]
    assert m["AgentId"] == "01234567-89ab-cdef-0123-456789abcdef"


def test_bad_config_is_one_line_naming_the_key(agent, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"Heartbeat_MessageFrequency": "Sometimes"}))
    os.chmod(cfg, 0o600)
    proc = run_agent(agent, "--config", str(cfg), "--once", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(cfg) in lines[0] and "Heartbeat_MessageFrequency" in lines[0] and "Low|Medium|High" in lines[0]


def test_config_that_others_can_write_is_refused(agent, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text("{}")
    os.chmod(cfg, 0o666)
    proc = run_agent(agent, "--config", str(cfg), "--once", check=False)
    assert proc.returncode == 2 and "group or others can write" in proc.stderr


def test_disabled_collector_sends_nothing(agent, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"Heartbeat_Disabled": True}))
    os.chmod(cfg, 0o600)
    out = run_agent(agent, "--config", str(cfg), "--once", "--root", str(tmp_path)).stdout
    assert not events(out, "Heartbeat")


def test_config_reference_lists_generated_keys(agent):
    ref = run_agent(agent, "--config-reference").stdout
    assert "`Heartbeat_Disabled`" in ref and "`CollectorsCore_PriorityIntervals`" in ref


# build option: (a setting of its key, the functions it alone imports and the
# text it alone has)
LEFT_OUT = {
    "AGENT_RUN_AS_USER": ({"Agent_RunAsUser": "nobody"},
                          [b"setgroups\0", b"getpwnam\0", b"capability mask 0x%llx", b"Agent_RunAsUser=%s"]),
    "AGENT_MASK_ADDRESSES": ({"Agent_MaskRemoteAddresses": True}, [b"cJSON_SetValuestring\0", b"masked-%012llx"]),
    "AGENT_LOCAL_SOCKET": ({"Local_Socket": "/run/x.sock"}, [b"sendmsg\0", b"connect\0", b"Local_Socket %s: %s"]),
}


def test_core_capabilities_left_out(agent_factory, tmp_path):
    """Each capability option OFF: its code and text are gone, --version says
    so, and its key is refused naming the option; the rest still works."""
    from defender_iot.features import load_features
    heartbeat = {f.option: f.name in ("heartbeat", "local") for f in load_features()}
    on = agent_factory(heartbeat)
    off = agent_factory({**heartbeat, **{option: False for option in LEFT_OUT}})
    on_blob, off_blob = on.binary.read_bytes(), off.binary.read_bytes()
    assert "left out" not in run_agent(on, "--version").stdout
    version = run_agent(off, "--version").stdout.splitlines()
    assert version[1].split(":")[0] == "left out"
    for option, (setting, texts) in LEFT_OUT.items():
        for text in texts:
            assert text in on_blob and text not in off_blob, (option, text)
        assert f"-D{option}=OFF" in version[1].split()
        cfg = tmp_path / f"{option}.json"
        cfg.write_text(json.dumps(setting))
        os.chmod(cfg, 0o600)
        proc = run_agent(off, "--config", str(cfg), "--check-config", check=False)
        (line,) = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and next(iter(setting)) in line and f"-D{option}=OFF" in line, line
        assert run_agent(on, "--config", str(cfg), "--check-config").returncode == 0
    out = run_agent(off, "--once", "--root", str(tmp_path)).stdout
    assert [e["Name"] for m in messages(out) for e in m["Events"]] == ["Heartbeat"]


def test_masking_left_out_with_every_feature(agent_factory):
    """Detectors read Agent_MaskRemoteAddresses too: a build without masking
    reads it as false (no abort, the addresses as they are)."""
    from pathlib import Path
    build = agent_factory({"AGENT_MASK_ADDRESSES": False}, build_type="Debug")
    fixture = Path(__file__).parent / "fixtures" / "debian-system"
    out = run_agent(build, "--once", "--root", str(fixture)).stdout
    remote = [e.get("RemoteAddress") for ev in events(out, "NetworkActivity") for e in ev["Payload"]]
    assert remote and not any(str(r).startswith("masked-") for r in remote)
