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
