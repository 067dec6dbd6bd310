"""Soak: a replayed day of events (1,440 one-minute cycles: processes
starting and ending, connections to ever-new addresses, failed logins from
ever-new sources) must leave the agent's resident memory flat. Memory is
sampled from /proc/PID/status while the replay runs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import FIXTURES

sys.path.insert(0, str(FIXTURES))
from make_busy_system import Proc, Sock, write_net, write_process  # noqa: E402

STEPS = 1440


def make_day(root: Path) -> None:
    for step in range(STEPS):
        d = root / f"{step:04d}"
        base = 1000 + (step % 500) * 8
        procs = [Proc(pid=1, ppid=0, comm="init", cmdline=["/sbin/init"], exe="/bin/busybox")]
        for k in range(4):
            pid = base + k
            procs.append(Proc(pid=pid, ppid=1, comm=f"worker{k}", cmdline=[f"/usr/bin/worker{k}", f"--job={step}"],
                              exe=f"/usr/bin/worker{k}", fds={3: f"socket:[{pid}]"}))
        for p in procs:
            write_process(d, p)
        socks = [Sock("tcp", ("10.0.0.5", 40000 + k), (f"198.51.{step % 250}.{k + 1}", 443), "ESTABLISHED", 0,
                      base + k) for k in range(4)]
        write_net(d, socks)
        log = d / "var" / "log"
        log.mkdir(parents=True)
        hh, mm = divmod(step, 60)
        lines = [f"Nov 22 {hh:02d}:{mm:02d}:{s:02d} dev authpriv.warn dropbear[9]: Bad password attempt for "
                 f"'user{step % 97}' from 203.0.{step % 250}.{s % 250 + 1}:4{s:04d}\n" for s in range(3)]
        (log / "messages").write_text("".join(lines))


@pytest.mark.timeout(900)
def test_rss_stays_flat_over_a_replayed_day(agent, tmp_path):
    make_day(tmp_path / "day")
    cfg = tmp_path / "config.json"
    cfg.write_text('{"Baseline_Disabled": true, "Agent_LogLevel": "error"}'
                   if b"Baseline_Disabled" in subprocess.run([str(agent.binary), "--config-reference"],
                                                           capture_output=True).stdout
                   else '{"Agent_LogLevel": "error"}')
    cfg.chmod(0o600)
    proc = subprocess.Popen([str(agent.binary), "--config", str(cfg), "--replay", str(tmp_path / "day"),
                             "--step", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = []

    def sample():
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        samples.append(int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    _, err = proc.communicate(timeout=800)
    t.join()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert len(samples) >= 30, f"the replay ended before enough samples were taken ({len(samples)})"
    third = len(samples) // 3
    early, late = max(samples[third:2 * third]), max(samples[2 * third:])
    # flat: the last third grows at most 5% + 256 KiB over the middle third
    assert late <= early * 1.05 + 256, f"RSS grew from {early} KiB to {late} KiB (samples: {samples[::max(1, len(samples)//20)]})"
