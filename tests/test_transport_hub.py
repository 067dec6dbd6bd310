"""The iothub transport against the emulated IoT Hub: connection, security
messages with their marker, the module twin, outages and restarts."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_agent
from defender_iot.hub import HubProcess
from transport_support import FAST, AgentProcess, events_of, transport_options, wait_until, write_secret

MODULE = "DefenderIotMicroAgent"
MARKER = {"$.ifid": "urn:azureiot:Security:SecurityAgent:1", "$.ct": "application/json", "$.ce": "utf-8"}


@pytest.fixture(scope="module")
def agent(agent_factory):
    return agent_factory(transport_options())


@pytest.fixture
def hub(tmp_path):
    with HubProcess(tmp_path / "hub") as h:
        yield h


def agent_config(agent, hub, tmp_path, device="dev1", **extra):
    cs = write_secret(tmp_path / "connection_string.txt", hub.connection_string(device, MODULE) + "\n")
    cfg = {"Agent_Transport": "iothub", "IothubModule_ConnectionStringFile": str(cs),
           "IothubModule_CaFile": str(hub.ca), "IothubModule_ConnectAddress": f"127.0.0.1:{hub.mqtt_port}",
           "CollectorsCore_PriorityIntervals": FAST, "Agent_StateDirectory": str(tmp_path / "state")}
    cfg.update(extra)
    return cfg


def heartbeats(hub, device="dev1"):
    return events_of([m["body"] for m in hub.client.messages(device=device)], "Heartbeat")


def reported(hub, device="dev1"):
    return hub.client.get_twin(device, MODULE)["properties"]["reported"]


def test_security_messages_arrive_with_the_security_marker(agent, hub, tmp_path):
    with AgentProcess(agent, tmp_path, agent_config(agent, hub, tmp_path)):
        msgs = hub.client.wait_for_messages(lambda m: len(m) >= 2, device="dev1", timeout=30)
        for m in msgs:
            assert m["module"] == MODULE
            assert {k: m["properties"].get(k) for k in MARKER} == MARKER
            assert m["properties"]["$.mid"] == m["body"]["MessageId"]
            assert [e["Name"] for e in m["body"]["Events"]] == ["Heartbeat"]
        rep = wait_until(lambda: reported(hub).get("latest_state") and reported(hub), 20, "the twin report")
        assert rep["latest_state"] == "success" and rep.get("latest_invalid_fields") is None
        assert rep["configuration"]["Heartbeat_Disabled"] is False


def test_desired_patch_disables_a_collector_and_a_bad_patch_keeps_the_last_good_config(agent, hub, tmp_path):
    with AgentProcess(agent, tmp_path, agent_config(agent, hub, tmp_path)) as ap:
        wait_until(lambda: heartbeats(hub), 30, "a first heartbeat")
        hub.client.set_desired("dev1", MODULE, {"Heartbeat_Disabled": True})
        wait_until(lambda: reported(hub).get("configuration", {}).get("Heartbeat_Disabled") is True, 20,
                   "the patch to be reported")
        assert reported(hub)["latest_state"] == "success"
        time.sleep(1)
        before = len(heartbeats(hub))
        time.sleep(8)  # more than two intervals of 3 s
        assert len(heartbeats(hub)) == before, "Heartbeat events went on after Heartbeat_Disabled"

        hub.client.set_desired("dev1", MODULE, {"Heartbeat_Disabled": False, "Heartbeat_MessageFrequency": "Sometimes"})
        rep = wait_until(lambda: reported(hub).get("latest_state") == "failed" and reported(hub), 20,
                         "latest_state failed")
        assert rep["latest_invalid_fields"] == ["Heartbeat_MessageFrequency"]
        assert rep["configuration"]["Heartbeat_Disabled"] is True  # nothing of the bad patch applied
        time.sleep(7)
        assert len(heartbeats(hub)) == before
        log = ap.log_text()
        assert "key 'Heartbeat_MessageFrequency': expected one of Low|Medium|High" in log


def test_direct_methods(agent, hub, tmp_path):
    with AgentProcess(agent, tmp_path, agent_config(agent, hub, tmp_path)):
        wait_until(lambda: reported(hub).get("latest_state"), 30, "the agent to connect")
        got = hub.client.invoke("dev1", MODULE, "GetConfig", {})
        assert got["status"] == 200
        assert got["payload"]["configuration"]["CollectorsCore_PriorityIntervals"] == FAST
        assert hub.client.invoke("dev1", MODULE, "Reboot", {})["status"] == 501


def _utc(ts: str) -> float:
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def assert_no_heartbeat_missing(hub, since: float, until: float, interval: float = 3.0):
    """Heartbeats come every `interval` seconds: between since and until,
    counted by event id, none may be missing."""
    seen = {}
    for e in heartbeats(hub):
        seen.setdefault(e["Id"], _utc(e["TimestampUTC"]))
    times = sorted(t for t in seen.values() if since <= t <= until)
    assert times, "no heartbeat in the window"
    expected = int((until - since) / interval) - 1
    assert len(times) >= expected, f"{len(times)} heartbeats in {until - since:.0f} s, expected {expected}"
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= interval + 2, f"a gap of {max(gaps):.0f} s: heartbeats were lost"
    return times


@pytest.mark.timeout(400)
def test_events_produced_while_the_hub_is_down_all_arrive(agent, hub, tmp_path):
    with AgentProcess(agent, tmp_path, agent_config(agent, hub, tmp_path)) as ap:
        wait_until(lambda: heartbeats(hub), 30, "a first heartbeat")
        hub.stop()
        down = time.time()
        time.sleep(60)
        up = time.time()
        hub.start()
        # Backoff is at most 60 s; then the queue drains.
        wait_until(lambda: any(_utc(e["TimestampUTC"]) > up for e in heartbeats(hub)), 120,
                   "heartbeats after the restart")
        times = assert_no_heartbeat_missing(hub, down, up)
        assert len(times) >= 18
        assert "messages are queued" in ap.log_text()
        msgs = hub.client.messages(device="dev1")
        ids = [m["body"]["MessageId"] for m in msgs]
        # QoS 1 is at least once; the agent resends only what was unacknowledged.
        assert len(ids) - len(set(ids)) <= 16


@pytest.mark.timeout(300)
def test_restart_with_a_full_spool_loses_nothing(agent, hub, tmp_path):
    cfg = agent_config(agent, hub, tmp_path)
    spool = tmp_path / "state" / "spool-iothub"
    hub.stop()
    ap = AgentProcess(agent, tmp_path, cfg).start()
    first = time.time()
    time.sleep(14)
    assert ap.stop() == 0
    last = time.time()
    assert "kept in" in ap.log_text()
    assert list(spool.glob("seg-*.spool")), "nothing was spooled"
    hub.start()
    with ap.start():
        wait_until(lambda: any(_utc(e["TimestampUTC"]) > last + 1 for e in heartbeats(hub)), 90,
                   "heartbeats from the second run")
        assert_no_heartbeat_missing(hub, first + 1, last - 1)
        assert "from the spool of an earlier run are queued" in ap.log_text()
        wait_until(lambda: not list(spool.glob("seg-*.spool")), 30, "the spool to empty once delivered")


def test_x509_module_identity(agent, hub, tmp_path):
    out = subprocess.run([sys.executable, "-m", "defender_iot.cli", "hub", "add", "dev2", "--module", MODULE,
                          "--data", str(hub.data_dir), "--x509"], capture_output=True, text=True, check=True)
    cs = out.stdout.strip()
    assert cs.endswith("x509=true")
    ident = hub.data_dir / "identities" / f"dev2+{MODULE}"
    shutil.copy(ident.with_suffix(".pem"), tmp_path / "certificate_public.pem")
    shutil.copy(ident.with_suffix(".key"), tmp_path / "certificate_private.pem")
    os.chmod(tmp_path / "certificate_private.pem", 0o600)
    cfg = agent_config(agent, hub, tmp_path)
    write_secret(tmp_path / "connection_string.txt", cs + "\n")
    with AgentProcess(agent, tmp_path, cfg):
        msgs = hub.client.wait_for_messages(lambda m: len(m) >= 1, device="dev2", timeout=30)
        assert msgs[0]["module"] == MODULE


def test_untrusted_hub_certificate_is_refused(agent, hub, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(other / "ca.key"),
                    "-out", str(other / "ca.pem"), "-days", "1", "-subj", "/CN=not the hub CA"],
                   check=True, capture_output=True)
    cfg = agent_config(agent, hub, tmp_path, IothubModule_CaFile=str(other / "ca.pem"))
    with AgentProcess(agent, tmp_path, cfg) as ap:
        ap.wait_log("is not trusted for 'localhost'", 30)
        time.sleep(4)
        assert not hub.client.messages(device="dev1")


def test_connection_string_readable_by_others_is_refused(agent, hub, tmp_path):
    cfg = agent_config(agent, hub, tmp_path)
    cs = Path(cfg["IothubModule_ConnectionStringFile"])
    os.chmod(cs, 0o644)
    conf = write_secret(tmp_path / "agent.json", json.dumps(cfg))
    proc = run_agent(agent, "--config", str(conf), check=False, timeout=30)
    assert proc.returncode == 1
    line = next(l for l in proc.stderr.splitlines() if str(cs) in l)
    assert "group or others" in line and f"chmod 600 {cs}" in line


def test_bad_connection_string_names_the_field(agent, tmp_path):
    cs = write_secret(tmp_path / "cs.txt", "HostName=localhost;ModuleId=m;SharedAccessKey=QUJDRA==\n")
    conf = write_secret(tmp_path / "agent.json", json.dumps({
        "Agent_Transport": "iothub", "IothubModule_ConnectionStringFile": str(cs)}))
    proc = run_agent(agent, "--config", str(conf), check=False, timeout=30)
    assert proc.returncode == 1
    assert f"{cs}: connection string: DeviceId is missing" in proc.stderr


@pytest.mark.timeout(200)
def test_sas_token_is_renewed_before_it_expires(agent, hub, tmp_path):
    cfg = agent_config(agent, hub, tmp_path, IothubModule_SasTokenLifetime=60)
    with AgentProcess(agent, tmp_path, cfg) as ap:
        wait_until(lambda: heartbeats(hub), 30, "a first heartbeat")
        ap.wait_log("reconnecting to renew the credentials", 70)  # at 80% of 60 s
        renewed = time.time()
        wait_until(lambda: ap.log_text().count("iothub: connected to") >= 2, 20, "the second connection")
        wait_until(lambda: any(_utc(e["TimestampUTC"]) > renewed + 1 for e in heartbeats(hub)), 20,
                   "heartbeats on the renewed connection")
        # Past the first token's expiry the agent is still connected and sending.
        time.sleep(max(0.0, renewed + 15 - time.time()))
        assert hub.client.identity("dev1", MODULE)["connectionState"] == "Connected"


@pytest.mark.timeout(300)
def test_messages_older_than_the_timeout_are_dropped_and_reported(agent, hub, tmp_path):
    cfg = agent_config(agent, hub, tmp_path, IothubModule_MessageTimeout=1)
    with AgentProcess(agent, tmp_path, cfg) as ap:
        wait_until(lambda: heartbeats(hub), 30, "a first heartbeat")
        hub.stop()
        down = time.time()
        time.sleep(75)  # the first 15 s of heartbeats pass the 1-minute timeout
        hub.start()
        ap.wait_log("older than IothubModule_MessageTimeout", 10)
        rep = wait_until(lambda: reported(hub).get("delivery", {}).get("dropped_timeout") and reported(hub), 90,
                         "the drop to be reported in the twin")
        assert rep["delivery"]["dropped_timeout"] >= 3
        late = [e for e in heartbeats(hub) if down < _utc(e["TimestampUTC"])]
        assert late, "the messages younger than the timeout were not delivered"
        assert min(_utc(e["TimestampUTC"]) for e in late) >= down + 5


RETIRED = Path("/etc/defender_iot_micro_agent")


@pytest.mark.skipif(os.geteuid() != 0 or RETIRED.exists() or Path("/etc/defender-iot/connection_string.txt").exists(),
                    reason="needs root and neither connection string path in use on this machine")
def test_retired_agents_connection_string_is_used_when_ours_is_absent(agent, hub, tmp_path):
    cfg = agent_config(agent, hub, tmp_path)
    cs_text = Path(cfg.pop("IothubModule_ConnectionStringFile")).read_text()
    RETIRED.mkdir(mode=0o700)
    try:
        write_secret(RETIRED / "connection_string.txt", cs_text)
        with AgentProcess(agent, tmp_path, cfg) as ap:
            ap.wait_log(f"using the retired agent's {RETIRED}/connection_string.txt", 10)
            hub.client.wait_for_messages(lambda m: len(m) >= 1, device="dev1", timeout=30)
    finally:
        shutil.rmtree(RETIRED)
