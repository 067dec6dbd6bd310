"""Every input that once crashed, leaked or exhausted memory in a fuzz target
(tests/fuzz/regressions/<target>/, one file per bug, named after it) runs
through its target again, built with ASan+UBSan+libFuzzer: a fix that
regresses fails here. The targets' seeds must not be findings either."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("clang") is None, reason="the fuzz targets need clang")
@pytest.mark.timeout(900)
def test_fuzz_regression_inputs_pass():
    regs = sorted(p.name for p in (REPO / "tests" / "fuzz" / "regressions").iterdir() if p.is_dir())
    assert regs, "no regression inputs"
    proc = subprocess.run([str(REPO / "scripts" / "fuzz.sh"), "0", *regs], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "regression inputs pass" in proc.stdout
