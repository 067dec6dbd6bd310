"""The README's first command, `scripts/demo.sh`, is `defender-iot demo`
after set-up: run it as a user does and check what it prints, so the main
job cannot break while the scenario tests still pass."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from defender_iot.commands.demo import STEPS

# every alert the demo's attacks must produce, as its alert section names them
ALERTS = ("BruteForce", "BruteForceSuccess", "CryptoMiner", "Botnet", "ReverseShell", "UnexpectedListeningPort")


@pytest.mark.qemu
def test_demo_runs_every_scenario_and_prints_posture_and_alerts(tmp_path, request):
    if "x86_64" not in request.config.getoption("--dfi-arch").split(","):
        pytest.skip("the demo boots an x86_64 guest; --dfi-arch leaves x86_64 out")
    run = subprocess.run([sys.executable, "-m", "defender_iot.cli", "demo", "--workdir", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=840)
    out = run.stdout
    assert run.returncode == 0, out[-4000:]
    assert f"{len(STEPS)} of {len(STEPS)} scenarios passed" in out, out[-4000:]
    posture = out.split("== posture", 1)[1].split("== alerts", 1)[0]
    summary = re.search(r"Pass: (\d+).*\((\d+) checks\)", posture)
    assert summary and int(summary[2]) >= 70, posture
    assert re.search(r"^  Fail  \w+ +DIOT-[A-Z]+-\d+ ", posture, re.M), posture
    alerts = out.split("== alerts as the hub received them", 1)[1]
    named = set(re.findall(r"^  \S+Z  (\S+) ", alerts, re.M))
    assert set(ALERTS) <= named, alerts
    assert (tmp_path / "hub").is_dir()
