"""The systemd unit's exposure, as `systemd-analyze security` scores it."""

import re
import shutil
import subprocess

from conftest import REPO

UNIT = REPO / "agent" / "packaging" / "defender-iot-agent.service"


def test_unit_exposure_is_at_most_3(tmp_path):
    unit = tmp_path / UNIT.name
    shutil.copy(UNIT, unit)
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=30", str(unit)],
                          capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr
    assert float(m.group(1)) <= 3.0, proc.stdout
    assert proc.returncode == 0, proc.stderr
