"""The detectors end to end: scenario fixtures (tests/scenarios/) replayed
through the real collectors with `--replay`, checked for the alert a user
expects (name, severity, evidence, the cycle it comes by, its end), and a
benign corpus that must raise no alert at all."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from conftest import REPO, messages, run_agent
from defender_iot.build import AgentBuild, build_agent
from defender_iot.errors import UserError
from defender_iot.features import load_features

sys.path.insert(0, str(REPO / "tests" / "scenarios"))
import build as scenarios  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def replay(agent: AgentBuild, sc: scenarios.Scenario, tmp: Path, **config: Any) -> Tuple[List[dict], str]:
    """Run the scenario; returns its alert payloads (each with "Name" and
    "Step", the cycle it was raised in) and the agent's stderr."""
    steps = scenarios.build(sc, tmp)
    sc.config = {**sc.config, **config}
    cfg = scenarios.config_for(sc, tmp)
    proc = run_agent(agent, "--config", str(cfg), "--replay", str(steps), "--step", str(sc.step_seconds))
    alerts = []
    for m in messages(proc.stdout):
        for e in m["Events"]:
            if e["EventType"] != "Alert":
                continue
            assert e["Category"] == "Triggered"
            t = datetime.strptime(e["TimestampUTC"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            for p in e["Payload"]:
                alerts.append({**p, "Name": e["Name"], "Step": int((t - START).total_seconds()) // sc.step_seconds})
    return alerts, proc.stderr


def contains(actual: Any, expected: Any) -> bool:
    """expected is a subset of actual: objects by key, lists by item."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and all(any(contains(a, x) for a in actual) for x in expected)
    return actual == expected


def matching(alerts: List[dict], exp: Dict[str, Any]) -> List[dict]:
    state = exp.get("State", "Active")
    return [a for a in alerts if a["Name"] == exp["Name"] and a["State"] == state
            and a["Step"] <= exp["by_step"] and a["Step"] >= exp.get("not_before_step", 0)
            and ("Severity" not in exp or a.get("Severity") == exp["Severity"])
            and contains(a.get("Evidence", {}), exp.get("Evidence", {}))]


ATTACKS = scenarios.all_scenarios("attack")
BENIGN = scenarios.all_scenarios("benign")


@pytest.mark.parametrize("path", ATTACKS, ids=[p.stem for p in ATTACKS])
def test_attack_scenario_raises_expected_alerts(agent, tmp_path, path):
    sc = scenarios.load(path)
    alerts, stderr = replay(agent, sc, tmp_path)
    for exp in sc.expect:
        assert matching(alerts, exp), (
            f"{sc.name}: no {exp.get('State', 'Active')} {exp['Name']} by cycle {exp['by_step']} with "
            f"{exp.get('Evidence')}; got:\n" + "\n".join(json.dumps(a) for a in alerts))
    # once per incident: no Active alert repeats for the same incident
    keys = [(a["Name"], a["Incident"]) for a in alerts if a["State"] == "Active"]
    assert len(keys) == len(set(keys)), keys
    for text in json.loads(path.read_text()).get("stderr", []):
        lines = [line for line in stderr.splitlines() if text in line]
        assert len(lines) == 1, stderr


@pytest.mark.parametrize("path", BENIGN, ids=[p.stem for p in BENIGN])
def test_benign_corpus_raises_no_alert(agent, tmp_path, path):
    alerts, _ = replay(agent, scenarios.load(path), tmp_path)
    assert alerts == []


# The benign corpus is quiet for the right reason: the same data with a
# stricter setting does alert, so the detectors did see it.

def test_compiler_alerts_without_its_allowlist_entry(agent, tmp_path):
    sc = scenarios.load(REPO / "tests/scenarios/benign/compiler_allowlisted.json")
    alerts, _ = replay(agent, sc, tmp_path, CryptoMiner_Allowlist="")
    hits = [a for a in alerts if a["Name"] == "CryptoMiner" and a["State"] == "Active"]
    assert len(hits) == 1 and hits[0]["Evidence"]["Name"] == "cc1plus" and hits[0]["Step"] <= 11


def test_developer_typos_reach_the_detector(agent, tmp_path):
    sc = scenarios.load(REPO / "tests/scenarios/benign/developer_two_typos.json")
    alerts, _ = replay(agent, sc, tmp_path, BruteForce_WindowThreshold=2)
    assert [a["Name"] for a in alerts if a["State"] == "Active"] == ["BruteForce", "BruteForceSuccess"]


def test_busy_gateway_connections_reach_the_detectors(agent, tmp_path):
    sc = scenarios.load(REPO / "tests/scenarios/benign/busy_gateway.json")
    rule = {"id": "conn-range", "type": "active_connections", "max": 100}
    alerts, _ = replay(agent, sc, tmp_path, Custom_Rules=[rule])
    hit = [a for a in alerts if a["Name"] == "Custom:conn-range"]
    assert hit and hit[0]["Evidence"]["ActiveConnections"] > 250


# ---- configuration ----

def test_thresholds_change_through_config(agent, tmp_path):
    sc = scenarios.load(REPO / "tests/scenarios/attack/ssh_brute_force_then_success.json")
    alerts, _ = replay(agent, sc, tmp_path, BruteForce_FastThreshold=10, BruteForce_SlowThreshold=10,
                       BruteForce_WindowThreshold=10)
    assert alerts == []


def test_bad_custom_rule_structure_is_refused_with_one_line(agent, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"Custom_Rules": {"id": "x", "type": "threshold"}}))
    os.chmod(cfg, 0o600)
    proc = run_agent(agent, "--config", str(cfg), "--check-config", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Custom_Rules" in lines[0] and "array of rule objects" in lines[0]


def test_bad_rule_names_rule_and_field_and_others_keep_working(agent, tmp_path):
    sc = scenarios.load(REPO / "tests/scenarios/attack/custom_rules.json")
    rules = [{"id": "no-regex", "type": "threshold", "event": "Login", "threshold": 1,
              "match": {"UserName": {"regex": "([a-z"}}},
             {"id": "fails", "type": "failed_logins", "threshold": 2}]
    alerts, stderr = replay(agent, sc, tmp_path, Custom_Rules=rules)
    errors = [line for line in stderr.splitlines() if "Custom_Rules[" in line]
    assert errors == [line for line in errors if "Custom_Rules[0] (id 'no-regex'): 'UserName'" in line] and errors
    assert {a["Name"] for a in alerts} == {"Custom:fails"}


def test_masked_addresses_do_not_leak_through_alerts(agent, tmp_path):
    sc = scenarios.load(REPO / "tests/scenarios/attack/ssh_brute_force_then_success.json")
    alerts, _ = replay(agent, sc, tmp_path, Agent_MaskRemoteAddresses=True)
    assert {a["Name"] for a in alerts} == {"BruteForce", "BruteForceSuccess"}
    assert "203.0.113.7" not in json.dumps(alerts)
    active = [a for a in alerts if a["State"] == "Active"]
    assert all(a["Evidence"]["RemoteAddress"].startswith("masked-") for a in active)


# ---- build-time selection ----

@pytest.mark.parametrize("detector,collector", [("BRUTE_FORCE", "LOGIN"), ("CRYPTO_MINER", "PROCESS"),
                                                ("SUSPICIOUS_NETWORK", "NETWORK_ACTIVITY")])
def test_detector_without_its_collector_fails_the_build_clearly(tmp_path, detector, collector):
    opts: Dict[str, bool] = {d.option: False for d in load_features().of("detector")}
    opts.update({f"AGENT_COLLECTOR_{collector}": False, f"AGENT_DETECTOR_{detector}": True})
    with pytest.raises(UserError) as err:
        build_agent(opts, build_dir=tmp_path / "b")
    said = " ".join(str(err.value).split())  # CMake wraps its messages
    assert f"AGENT_DETECTOR_{detector}=ON needs the collector '{collector.lower()}'" in said
