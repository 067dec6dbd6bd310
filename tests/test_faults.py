"""Fault injection: the agent with the iothub transport against the emulated
IoT Hub (ephemeral ports) while the hub, the network, the disk, the process
or the clock fail. Every test states what was lost, and asserts it: nothing,
or exactly the documented drops. docs/reliability.md lists what each shows.

Events are counted by heartbeat: the heartbeat collector emits one event
every interval (its Id unique, its TimestampUTC the agent's clock), so a
heartbeat missing at the hub shows as a gap between consecutive
timestamps."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import struct
import subprocess
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Set

import pytest

from defender_iot.features import load_features
from defender_iot.hub import HubProcess
from transport_support import AgentProcess, events_of, transport_options, write_secret

MODULE = "DefenderIotMicroAgent"
INTERVAL = 3.0  # seconds between heartbeats with FAST
FAST = "0.05,0.05,0.05"
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@pytest.fixture(scope="module")
def agent(agent_factory):
    return agent_factory(transport_options())


@pytest.fixture
def hub(tmp_path):
    with HubProcess(tmp_path / "hub") as h:
        yield h


def hub_config(hub: HubProcess, tmp_path: Path, **extra) -> dict:
    cs = write_secret(tmp_path / "connection_string.txt", hub.connection_string("dev1", MODULE) + "\n")
    cfg = {"Agent_Transport": "iothub", "IothubModule_ConnectionStringFile": str(cs),
           "IothubModule_CaFile": str(hub.ca), "IothubModule_ConnectAddress": f"127.0.0.1:{hub.mqtt_port}",
           "CollectorsCore_PriorityIntervals": FAST, "Agent_StateDirectory": str(tmp_path / "state")}
    cfg.update(extra)
    return cfg


def utc(ts: str) -> float:
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def heartbeats(hub: HubProcess) -> Dict[str, float]:
    """Heartbeat event id -> its timestamp, as received by the hub."""
    bodies = [m["body"] for m in hub.client.messages(device="dev1")]
    return {e["Id"]: utc(e["TimestampUTC"]) for e in events_of(bodies, "Heartbeat")}


def message_ids(hub: HubProcess) -> List[str]:
    return [m["body"]["MessageId"] for m in hub.client.messages(device="dev1")]


def wait_for(done: Callable[[], Any], timeout: float, what: str, seen: Callable[[], str]) -> Any:
    """Poll done() until it is true; on timeout say what was awaited and
    what was seen instead."""
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; seen: {seen()}")
        time.sleep(0.3)


def hub_seen(hub: HubProcess) -> str:
    hb = heartbeats(hub)
    last = max(hb.values(), default=None)
    return (f"{len(hb)} heartbeats at the hub, the latest stamped "
            f"{'never' if last is None else f'{last - time.time():+.0f} s from now'}")


def wait_heartbeat_after(hub: HubProcess, t: float, timeout: float, what: str) -> None:
    wait_for(lambda: any(ts > t for ts in heartbeats(hub).values()), timeout,
             f"a heartbeat stamped after {what} (the agent's queue delivered)", lambda: hub_seen(hub))


def assert_none_missing(hub: HubProcess, since: float, until: float, interval: float = INTERVAL) -> int:
    """Every heartbeat produced in [since, until] reached the hub: the
    first comes within an interval of `since`, the last within one of
    `until`, and no two consecutive ones are further apart than an interval
    (plus a second of scheduling and the timestamps' 1 s resolution).
    Returns how many there were."""
    times = sorted(t for t in heartbeats(hub).values() if since - 1 <= t <= until + 1)
    assert times, f"no heartbeat stamped between {since:.0f} and {until:.0f} reached the hub"
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert times[0] - since <= interval + 2, f"the first heartbeat came {times[0] - since:.0f} s after {since:.0f}"
    assert until - times[-1] <= interval + 2, f"the last heartbeat came {until - times[-1]:.0f} s before {until:.0f}"
    assert not gaps or max(gaps) <= interval + 2, \
        f"a gap of {max(gaps):.0f} s between heartbeats (interval {interval:g} s): events were lost"
    return len(times)


def delivery(hub: HubProcess) -> dict:
    """The agent's own delivery counters (queued, dropped_*), through its
    GetConfig direct method."""
    return hub.client.invoke("dev1", MODULE, "GetConfig", {})["payload"]["delivery"]


# ---- the spool, read the way the agent writes it (agent/src/lib/spool.c) ----

SPOOL_MAGIC = b"DSP1"
SPOOL_HDR = 52  # magic, length, created (u64), id (36 bytes); then body, CRC-32


def spool_segment_ids(path: Path) -> List[str]:
    """The message ids of one committed segment; AssertionError if any
    record is torn or fails its CRC (a committed segment never may)."""
    data = path.read_bytes()
    ids, off = [], 0
    while off < len(data):
        hdr = data[off:off + SPOOL_HDR]
        assert len(hdr) == SPOOL_HDR and hdr[:4] == SPOOL_MAGIC, f"{path}: damaged header at offset {off}"
        (length,) = struct.unpack_from("<I", hdr, 4)
        body = data[off + SPOOL_HDR:off + SPOOL_HDR + length]
        crc = data[off + SPOOL_HDR + length:off + SPOOL_HDR + length + 4]
        assert len(body) == length and len(crc) == 4, f"{path}: record at offset {off} is truncated"
        assert struct.unpack("<I", crc)[0] == zlib.crc32(hdr[8:] + body), f"{path}: CRC mismatch at offset {off}"
        mid = hdr[16:52].rstrip(b"\0").decode()
        assert json.loads(body)["MessageId"] == mid, f"{path}: record {mid} holds another message"
        ids.append(mid)
        off += SPOOL_HDR + length + 4
    return ids


def spool_contents(spool: Path) -> Set[str]:
    """Every message id committed to the spool directory (all segments
    checked intact)."""
    return {i for seg in sorted(spool.glob("seg-*.spool")) for i in spool_segment_ids(seg)}


# ---- the tests ----

@pytest.mark.timeout(240)
def test_hub_unreachable_at_start(agent, hub, tmp_path):
    """Lost: nothing. The hub is down when the agent starts: it keeps
    running, logs why once, connects when the hub appears and delivers what
    it queued meanwhile."""
    cfg = hub_config(hub, tmp_path)
    hub.stop()
    started = time.time()
    with AgentProcess(agent, tmp_path, cfg) as ap:
        ap.wait_log(f"cannot reach 127.0.0.1:{hub.mqtt_port}", 20)
        time.sleep(15)
        assert ap.proc.poll() is None, f"the agent exited while the hub was down:\n{ap.log_text()[-2000:]}"
        assert ap.log_text().count("cannot reach") == 1, "the same failure was logged more than once"
        up = time.time()
        hub.start()
        wait_heartbeat_after(hub, up, 90, "the hub came up")
        ap.wait_log("iothub: connected to", 5)
        n = assert_none_missing(hub, started, up)
        assert n >= 5


@pytest.mark.timeout(240)
def test_tls_handshake_failing_then_fixed_ca_by_sighup(agent, hub, tmp_path):
    """Lost: nothing; sent while the CA was wrong: nothing. The hub's
    certificate does not verify against the configured CA: one clear log
    line, retries with growing backoff, no crash and no message accepted;
    the right CA installed with SIGHUP delivers everything queued."""
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(other / "ca.key"), "-out", str(other / "ca.pem"), "-days", "1",
                    "-subj", "/CN=not the hub CA"], check=True, capture_output=True)
    cfg = hub_config(hub, tmp_path, IothubModule_CaFile=str(other / "ca.pem"), Agent_LogLevel="debug")
    started = time.time()
    with AgentProcess(agent, tmp_path, cfg) as ap:
        ap.wait_log("is not trusted for 'localhost'", 20)
        # Every attempt logs the reason at debug level; note when each shows.
        attempts: List[float] = []
        seen = 0
        deadline = time.monotonic() + 32
        while time.monotonic() < deadline:
            text = ap.log_text()
            n = text.count("is not trusted for 'localhost'")
            attempts += [time.monotonic()] * (n - seen)
            seen = n
            time.sleep(0.1)
        assert ap.proc.poll() is None, f"the agent exited:\n{ap.log_text()[-2000:]}"
        warnings = [l for l in ap.log_text().splitlines() if ": warning: " in l]
        assert any("is not trusted for 'localhost'" in w and "check IothubModule_CaFile" in w for w in warnings), \
            f"no warning names the untrusted certificate and the key to fix: {warnings}"
        assert len(warnings) == 1, f"the failure was logged more than once above debug level: {warnings}"
        gaps = [b - a for a, b in zip(attempts, attempts[1:])]
        assert len(attempts) >= 4, f"only {len(attempts)} attempts in 32 s: no retries"
        assert len(attempts) <= 9, f"{len(attempts)} attempts in 32 s: no backoff"
        assert gaps[-1] > gaps[0] and gaps[-1] >= 2, f"retry gaps {gaps} do not grow"
        assert not hub.client.messages(device="dev1"), "the hub accepted messages over an unverified connection"

        cfg["IothubModule_CaFile"] = str(hub.ca)
        write_secret(tmp_path / "agent.json", json.dumps(cfg))
        fixed = time.time()
        ap.proc.send_signal(signal.SIGHUP)
        ap.wait_log("configuration reloaded", 10)
        wait_heartbeat_after(hub, fixed, 90, "the CA was fixed")
        assert_none_missing(hub, started, fixed)


def kill_hub(hub: HubProcess) -> None:
    hub.proc.send_signal(signal.SIGKILL)
    hub.proc.wait()
    hub.proc = None


@pytest.mark.timeout(300)
def test_hub_killed_mid_publish(agent, hub, tmp_path):
    """Lost: nothing; duplicated: at most the unacknowledged in-flight
    messages (16) per lost connection, counted here. The hub process gets
    SIGKILL at random moments while messages flow (the hub acknowledges a
    message only after storing it), then restarts on the same port."""
    fast = 1.2
    cfg = hub_config(hub, tmp_path, CollectorsCore_PriorityIntervals="0.02,0.02,0.02")
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    kills = 3
    with AgentProcess(agent, tmp_path, cfg) as ap:
        wait_for(lambda: heartbeats(hub), 30, "a first heartbeat", lambda: hub_seen(hub))
        started = min(heartbeats(hub).values())
        for _ in range(kills):
            time.sleep(rng.uniform(2, 6))
            kill_hub(hub)
            time.sleep(rng.uniform(0, 3))
            hub.start()
        last_restart = time.time()
        wait_heartbeat_after(hub, last_restart + fast, 120, "the last hub restart")
        n = assert_none_missing(hub, started, last_restart, interval=fast)
        ids = message_ids(hub)
        dup = sum(c - 1 for c in Counter(ids).values())
        print(f"{n} heartbeats, {len(ids)} messages received, {dup} duplicates after {kills} hub kills")
        assert dup <= 16 * kills, f"{dup} duplicate messages after {kills} kills"
        assert ap.proc.poll() is None


@pytest.fixture
def small_state_dir(tmp_path):
    """The agent's state directory on a 64 KiB tmpfs (needs root)."""
    state = tmp_path / "state"
    state.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


@pytest.mark.timeout(300)
def test_disk_full_for_the_spool(agent, hub, tmp_path, small_state_dir):
    """Lost: nothing (the queue stays in memory; drops reported by the
    agent: 0). The spool's file system fills up during an outage: the agent
    keeps running, says it cannot write the spool, every segment it did
    commit is intact, and everything arrives once the hub is back."""
    st = os.statvfs(small_state_dir)
    free = st.f_bavail * st.f_frsize
    # Leave one page: the first batch fits, the later ones do not.
    (small_state_dir / "filler").write_bytes(b"\0" * (free - 4096))
    cfg = hub_config(hub, tmp_path)
    hub.stop()
    spool = small_state_dir / "spool-iothub"
    started = time.time()
    with AgentProcess(agent, tmp_path, cfg) as ap:
        ap.wait_log("No space left on device", 60)
        assert "cannot write the spool under" in ap.log_text()
        time.sleep(5)
        assert ap.proc.poll() is None, f"the agent exited on a full disk:\n{ap.log_text()[-2000:]}"
        committed = spool_contents(spool)
        assert not list(spool.glob("*.tmp")), "a partial segment was left behind"
        up = time.time()
        hub.start()
        wait_heartbeat_after(hub, up, 90, "the hub came up")
        assert_none_missing(hub, started, up)
        assert committed <= set(message_ids(hub)), "messages committed to the spool did not arrive"
        wait_for(lambda: delivery(hub)["queued"] == 0, 30, "the agent to report an empty queue",
                 lambda: f"delivery counters {delivery(hub)}")
        d = delivery(hub)
        assert (d["dropped_timeout"], d["dropped_queue_full"], d["dropped_damaged"]) == (0, 0, 0), d


@pytest.mark.timeout(420)
def test_sigkill_during_spool_writes(agent, hub, tmp_path):
    """Lost: only what was not yet committed to the spool at each kill (the
    agent writes a batch once the oldest unsent message is 10 s old, the
    documented flash-saving delay); every committed message arrives and no
    committed segment is ever damaged. The agent gets SIGKILL at random
    moments, six times, while it spools during an outage."""
    cfg = hub_config(hub, tmp_path, CollectorsCore_PriorityIntervals="0.02,0.02,0.02")
    spool = tmp_path / "state" / "spool-iothub"
    hub.stop()
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    committed: Set[str] = set()
    ap = AgentProcess(agent, tmp_path, cfg)
    for run in range(6):
        ap.start()
        time.sleep(rng.uniform(4, 16))
        ap.proc.send_signal(signal.SIGKILL)
        ap.proc.wait()
        ap.proc = None
        now = spool_contents(spool)  # raises if a committed segment is damaged
        assert committed <= now, f"run {run + 1}: messages committed earlier vanished from the spool"
        committed = now
    assert committed, "nothing was committed to the spool in six runs"
    hub.start()
    with ap.start():
        want = len(committed)
        wait_for(lambda: committed <= set(message_ids(hub)), 120, f"all {want} committed messages at the hub",
                 lambda: f"{len(committed - set(message_ids(hub)))} of them still missing")
        log = ap.log_text()
        assert "damaged record" not in log, "a restart found a damaged spool record"
        wait_for(lambda: not list(spool.glob("seg-*.spool")), 30, "the spool to empty once delivered",
                 lambda: f"segments {[p.name for p in spool.glob('seg-*.spool')]}")
    received = set(message_ids(hub))
    print(f"{len(committed)} committed messages, all delivered; {len(received - committed)} more sent after the"
          " last restart")


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs libfaketime (apt: faketime)")
@pytest.mark.timeout(300)
def test_clock_jumps_keep_token_renewal_working(agent, hub, tmp_path, monkeypatch):
    """Lost: nothing. The agent's wall clock (libfaketime, offset read from a
    file on every call) jumps a day ahead, back to the true time, then 20 s
    behind, while SAS tokens live 60 s: renewal follows the monotonic clock
    (every 48 s, no reconnect storm after a forward jump), each new token is
    accepted, and heartbeats keep arriving after every jump. (Detector
    windows: test_clock_jumps_keep_detector_windows_right.)"""
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    cfg = hub_config(hub, tmp_path, IothubModule_SasTokenLifetime=60)
    with monkeypatch.context() as m:
        m.setenv("LD_PRELOAD", str(LIBFAKETIME))
        m.setenv("FAKETIME_TIMESTAMP_FILE", str(offset))
        m.setenv("FAKETIME_NO_CACHE", "1")
        m.setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        ap = AgentProcess(agent, tmp_path, cfg).start()
    try:
        wait_for(lambda: heartbeats(hub), 30, "a first heartbeat", lambda: hub_seen(hub))
        phases = [("+1d", 86400, 25), ("+0", 0, 25), ("-20", -20, 0)]
        for spec, shift, hold in phases:
            offset.write_text(spec + "\n")
            jumped = time.time()
            wait_for(lambda: any(abs(t - (time.time() + shift)) < 10 for t in heartbeats(hub).values()
                                 if t > jumped + shift - 1), 40,
                     f"a heartbeat stamped with the clock at {spec} (agent time {jumped + shift:.0f})",
                     lambda: hub_seen(hub))
            time.sleep(hold)
        # 20 s behind, a 60 s token is 40 s from expiry when the hub checks
        # it: the agent must connect again (renewal at 48 s, or the hub
        # closing the connection at expiry) and carry on.
        before = ap.log_text().count("iothub: connected to")
        wait_for(lambda: ap.log_text().count("iothub: connected to") > before, 75,
                 "a new connection while the clock is 20 s behind", lambda: ap.log_text()[-1500:])
        again = time.time()
        wait_heartbeat_after(hub, again - 20 + 1, 40, "the reconnection with the clock 20 s behind")
        log = ap.log_text()
        renewals = log.count("reconnecting to renew the credentials")
        connects = log.count("iothub: connected to")
        assert renewals >= 2, f"{renewals} token renewals in over 2 minutes with 60 s tokens:\n{log[-2000:]}"
        assert connects <= renewals + len(phases) + 2, f"{connects} connections for {renewals} renewals: a storm"
        assert "CONNECT refused" not in hub.log_path.read_text(), "the hub refused a token"
        assert ap.proc.poll() is None
    finally:
        ap.stop()


def _brute_force_build(agent_factory):
    opts = {f.option: (f.kind == "collector" and f.name in ("heartbeat", "login"))
            or (f.kind == "detector" and f.name in ("brute_force", "custom")) or (f.kind == "transport" and f.name == "local")
            for f in load_features()}
    return agent_factory(opts)


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs libfaketime (apt: faketime)")
@pytest.mark.timeout(240)
def test_clock_jumps_keep_detector_windows_right(agent_factory, tmp_path):
    """Lost: nothing. brute_force counts failed logins by their log
    timestamps, a custom `failed_logins` rule by the agent's clock. The agent's wall clock (libfaketime) jumps an hour back, then
    a day ahead, while sshd logs with the same clock (as syslogd would):
    - an attack whose failures straddle the backward jump is detected, and
      its incident ends after the quiet window of real time, not an hour
      late;
    - a user with two typos before the jump and two after, then two more
      30 s later, raises nothing from either detector (the leak goes on
      across the jump);
    - an attack straddling the forward jump is detected too."""
    agent = _brute_force_build(agent_factory)
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    root = tmp_path / "root"
    log = root / "var" / "log" / "auth.log"
    log.parent.mkdir(parents=True)
    log.write_text("")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "Agent_StateDirectory": str(tmp_path / "state"), "Agent_Transport": "local", "Local_Path": "-",
        "Login_PollingInterval": 300, "Login_UseUtmp": False, "Login_LogFiles": "/var/log/auth.log",
        "CollectorsCore_PriorityIntervals": "0.02,0.02,0.02",
        "BruteForce_FastThreshold": 5, "BruteForce_FastLeakSeconds": 10, "BruteForce_SlowThreshold": 1000,
        "BruteForce_WindowThreshold": 1000, "BruteForce_WindowSeconds": 20,
        "Custom_Rules": [{"id": "fails", "type": "failed_logins", "threshold": 6, "window_seconds": 60}]}))
    os.chmod(cfg, 0o600)
    shift = {"now": 0}

    def fail(source: str, user: str, n: int) -> None:
        stamp = time.strftime("%b %e %H:%M:%S", time.gmtime(time.time() + shift["now"]))
        with open(log, "a") as f:
            for i in range(n):
                f.write(f"{stamp} testhost sshd[{4000 + i}]: Failed password for {user} from {source} "
                        f"port {50000 + i} ssh2\n")

    def jump(seconds: int) -> None:
        offset.write_text(f"{seconds:+d}\n")
        shift["now"] = seconds
        time.sleep(1)  # lines written from now on carry the new clock

    out = tmp_path / "agent.out"

    def alerts() -> List[Dict[str, Any]]:
        found = []
        for line in out.read_text().splitlines():
            for e in json.loads(line)["Events"]:
                if e["EventType"] == "Alert":
                    found += [{**p, "Name": e["Name"]} for p in e["Payload"]]
        return found

    def opened(source: str) -> List[Dict[str, Any]]:
        return [a for a in alerts() if a["Evidence"].get("RemoteAddress") == source and a.get("State") != "Ended"]

    def ended(source: str) -> List[Dict[str, Any]]:
        return [a for a in alerts() if a.get("Incident") == source and a.get("State") == "Ended"]

    env = {**os.environ, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset),
           "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1", "TZ": "UTC"}
    with open(out, "w") as sink:
        proc = subprocess.Popen([str(agent.binary), "--config", str(cfg), "--root", str(root)], stdout=sink,
                                stderr=subprocess.PIPE, text=True, env=env)
    seen = lambda: json.dumps(alerts())[-1500:]  # noqa: E731
    try:
        time.sleep(1.5)
        fail("198.51.100.7", "root", 3)
        fail("198.51.100.8", "alice", 2)
        time.sleep(1.5)
        jump(-3600)
        fail("198.51.100.7", "root", 3)
        fail("198.51.100.8", "alice", 2)
        wait_for(lambda: opened("198.51.100.7"), 15, "a BruteForce alert for the attack across the jump back", seen)
        t_last = time.monotonic()
        wait_for(lambda: ended("198.51.100.7"), 45, "the incident's end after 20 s of quiet", seen)
        assert time.monotonic() - t_last < 40, "the incident ended late"
        time.sleep(max(0.0, 30 - (time.monotonic() - t_last)))
        fail("198.51.100.8", "alice", 2)
        time.sleep(2)
        assert not [a for a in alerts() if a.get("Incident") == "198.51.100.8"], \
            f"six typos over 30 s across the jump raised an alert: {seen()}"

        fail("198.51.100.9", "admin", 3)
        time.sleep(1.5)
        jump(86400)
        fail("198.51.100.9", "admin", 3)
        wait_for(lambda: opened("198.51.100.9"), 15, "a BruteForce alert for the attack across the jump ahead", seen)
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    print(err[-2000:])
