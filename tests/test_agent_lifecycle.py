"""The agent as a daemon: signals, config reloads, what survives a restart.
Every wait is a bounded poll for a condition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import FIXTURES


def wait_for(cond, what: str, timeout: float = 30.0, seen=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout:.0f}s for {what}; saw: {seen()}")


class Daemon:
    def __init__(self, build, tmp: Path, config: dict, root: Path = FIXTURES / "busybox-device"):
        self.out = tmp / "messages.jsonl"
        self.cfg = tmp / "config.json"
        self.stderr = tmp / "stderr.log"
        self.write_config({"Agent_Transport": "local", "Local_Path": str(self.out),
                           "Agent_StateDirectory": str(tmp / "state"), **config})
        self.proc = subprocess.Popen([str(build.binary), "--config", str(self.cfg), "--root", str(root)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.stderr, "w"))

    def write_config(self, config: dict) -> None:
        tmp = self.cfg.with_suffix(".new")
        tmp.write_text(json.dumps(config))
        os.chmod(tmp, 0o600)
        tmp.replace(self.cfg)

    def messages(self):
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def names(self):
        return [e["Name"] for m in self.messages() for e in m["Events"]]

    def log(self) -> str:
        return self.stderr.read_text()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


FAST = {"CollectorsCore_PriorityIntervals": "0.02,0.02,0.02"}  # 1.2 s


def test_sigterm_sends_what_was_collected_and_exits_zero(agent, tmp_path):
    d = Daemon(agent, tmp_path, {"CollectorsCore_PriorityIntervals": "600,600,600", "Login_PollingInterval": 200})
    try:
        wait_for(lambda: "SystemInformation" in d.names(), "the start-up message", seen=d.log)
        before = len(d.messages())
        time.sleep(0.5)  # a few login polls, nothing due for ten hours
        assert len(d.messages()) == before
    finally:
        rc = d.stop()
    assert rc == 0
    assert "stopping" in d.log()


def test_sighup_reloads_and_garbage_keeps_last_good_config(agent, tmp_path):
    d = Daemon(agent, tmp_path, FAST)
    try:
        wait_for(lambda: d.names().count("Heartbeat") >= 2, "two heartbeats", seen=d.log)
        d.write_config({"Agent_Transport": "local", "Local_Path": str(d.out), **FAST, "Heartbeat_Disabled": True,
                        "Agent_StateDirectory": str(tmp_path / "state")})
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in d.log(), "the reload", seen=d.log)
        n = d.names().count("Heartbeat")
        d.cfg.write_text("{ this is not json")
        os.chmod(d.cfg, 0o600)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the last good configuration" in d.log(), "the refusal", seen=d.log)
        # two more message cycles: still no heartbeat (the disabled state was kept), still running
        k = len(d.messages())
        wait_for(lambda: len(d.messages()) >= k + 2, "two more messages", seen=d.log)
        assert d.names().count("Heartbeat") == n
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0


def test_config_refused_on_reload_when_others_can_write(agent, tmp_path):
    d = Daemon(agent, tmp_path, FAST)
    try:
        wait_for(lambda: d.messages(), "a first message", seen=d.log)
        os.chmod(d.cfg, 0o666)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "group or others can write" in d.log(), "the refusal", seen=d.log)
        assert d.proc.poll() is None
    finally:
        d.stop()


def test_proc_entries_vanishing_between_cycles(agent, tmp_path):
    """Processes come and go between listing and reading: copy the fixture and
    delete /proc entries while the agent polls every 100 ms."""
    import shutil
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "busybox-device", root, symlinks=True)
    d = Daemon(agent, tmp_path, {**FAST, "Process_PollingInterval": 100}, root=root)
    try:
        wait_for(lambda: d.messages(), "a first message", seen=d.log)
        for pid_dir in sorted(p for p in (root / "proc").iterdir() if p.name.isdigit()):
            for f in sorted(pid_dir.rglob("*"), reverse=True):
                if f.is_file() or f.is_symlink():
                    f.unlink()
                time.sleep(0.002)
            shutil.rmtree(pid_dir, ignore_errors=True)
        k = len(d.messages())
        wait_for(lambda: len(d.messages()) >= k + 2, "two more messages", seen=d.log)
        assert d.proc.poll() is None, d.log()
    finally:
        assert d.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_drops_root_keeping_only_declared_capabilities(agent, tmp_path):
    os.chmod(tmp_path, 0o755)
    d = Daemon(agent, tmp_path, {**FAST, "Agent_RunAsUser": "nobody"})
    try:
        wait_for(lambda: "running as nobody" in d.log(), "the switch to nobody", seen=d.log)
        status = Path(f"/proc/{d.proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        uids = fields["Uid"].split()
        assert set(uids) == {str(65534)}, uids
        cap_eff = int(fields["CapEff"], 16)
        # CAP_DAC_READ_SEARCH (2), CAP_NET_ADMIN (12), CAP_SYS_PTRACE (19) at most
        assert cap_eff & ~((1 << 2) | (1 << 12) | (1 << 19)) == 0, hex(cap_eff)
        assert fields["NoNewPrivs"].strip() == "1"
    finally:
        d.stop()


def test_unknown_run_as_user_is_an_error(agent, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = Daemon(agent, tmp_path, {"Agent_RunAsUser": "no-such-user-xyz"})
    assert d.proc.wait(timeout=20) == 1
    assert "no user 'no-such-user-xyz'" in d.log()
