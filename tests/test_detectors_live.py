"""brute_force against a real SSH server: dropbear on 127.0.0.1 takes wrong
passwords from paramiko while the agent follows its log, live (no replay)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not shutil.which("dropbear") or not shutil.which("dropbearkey"),
                                reason="dropbear is not installed (scripts/apt/)")

# dropbear -E writes "[pid] Nov 22 02:08:10 message" to stderr; on a device
# syslogd turns that into "Nov 22 02:08:10 host dropbear[pid]: message".
# This does the same, so the agent reads the lines as it does on a device.
_DROPBEAR_LINE = re.compile(r"^\[(\d+)\] (\w{3} [ \d]\d \d\d:\d\d:\d\d) (.*)$")


def _syslog(stream, log: Path) -> None:
    with open(log, "a") as out:
        for line in stream:
            m = _DROPBEAR_LINE.match(line.rstrip("\n"))
            if m:
                out.write(f"{m.group(2)} testhost authpriv.warn dropbear[{m.group(1)}]: {m.group(3)}\n")
                out.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wrong_password(port: int, user: str) -> None:
    import paramiko

    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        with pytest.raises(paramiko.AuthenticationException):
            c.connect("127.0.0.1", port, username=user, password="not-the-password", allow_agent=False,
                      look_for_keys=False, timeout=10, banner_timeout=10, auth_timeout=10)
    finally:
        c.close()


def test_real_dropbear_brute_force_raises_one_alert(agent, tmp_path):
    root = tmp_path / "root"
    log = root / "var" / "log" / "auth.log"
    log.parent.mkdir(parents=True)
    log.write_text("")
    key = tmp_path / "hostkey"
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(key)], check=True, capture_output=True)
    port = _free_port()
    server = subprocess.Popen(["dropbear", "-F", "-E", "-p", f"127.0.0.1:{port}", "-r", str(key),
                               "-P", str(tmp_path / "dropbear.pid")],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    threading.Thread(target=_syslog, args=(server.stderr, log), daemon=True).start()
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"Agent_StateDirectory": str(tmp_path / "state"), "Agent_Transport": "local",
                               "Local_Path": "-", "Login_PollingInterval": 500, "Login_UseUtmp": False,
                               "Login_LogFiles": "/var/log/auth.log", "Process_Disabled": True,
                               "NetworkActivity_Disabled": True}))
    os.chmod(cfg, 0o600)
    out = tmp_path / "agent.out"
    with open(out, "w") as sink:
        agent_proc = subprocess.Popen([str(agent.binary), "--config", str(cfg), "--root", str(root)], stdout=sink,
                                      stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        for _ in range(7):
            _wrong_password(port, "root")
        alerts = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not alerts:
            time.sleep(0.3)
            alerts = [e for line in out.read_text().splitlines() for e in json.loads(line)["Events"]
                      if e["EventType"] == "Alert"]
        time.sleep(1.5)  # later failures of the same source must not alert again
        alerts = [e for line in out.read_text().splitlines() for e in json.loads(line)["Events"]
                  if e["EventType"] == "Alert"]
    finally:
        agent_proc.terminate()
        server.terminate()
        agent_proc.wait(timeout=30)
        server.wait(timeout=30)
    assert [e["Name"] for e in alerts] == ["BruteForce"], alerts
    p = alerts[0]["Payload"][0]
    assert p["Severity"] == "Critical" and p["MitreTechnique"] == "T1110"
    assert p["Evidence"]["RemoteAddress"] == "127.0.0.1"
    assert p["Evidence"]["Users"] == ["root"] and p["Evidence"]["FailedCount"] >= 5
    assert p["Evidence"]["Executable"] == "dropbear"
