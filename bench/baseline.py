#!/usr/bin/env python3
"""The baseline collector's cost on a BusyBox-style device, beside Lynis.

    .venv/bin/python bench/baseline.py [--runs 20] [--no-lynis]

The device is tests/fixtures/baseline-hardened (BusyBox syslogd and
Dropbear, OpenSSH config, sha512crypt password hashes, iptables dump) with its
modes applied, grown into a BusyBox-like root file system: 400 applet links
to /bin/busybox, 40 shared libraries, 300 data files. The agent (MinSizeRel,
heartbeat and baseline collectors, local transport) runs `--once --root TREE` --runs times with the baseline on
and as many times with `Baseline_Disabled`; each run's CPU time and peak RSS
come from wait4(2) and GNU time(1). Reported:

- baseline CPU: median CPU with the baseline minus median without it, with a
  warm default-credential cache (the state directory persists between runs,
  as on a device); the first run, which crypt(3)s the Mirai candidates for
  each password hash, is reported on its own;
- extra RSS: median peak RSS with minus without.

Then `lynis audit system --quick` audits this machine; its wall and CPU time
and the number of tests it ran (lynis_tests_done in its report) are printed
beside the agent's (`--once` on this machine, real root).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

from defender_iot.build import build_agent  # noqa: E402
from defender_iot.features import load_features  # noqa: E402

# Only what the measurement needs, so no other collector's memory hides the
# baseline's in the peak RSS.
KEEP = {("collector", "heartbeat"), ("collector", "baseline"), ("transport", "local")}


@dataclass
class Run:
    cpu_s: float
    rss_kb: int
    wall_s: float
    stdout: str


def measure(cmd: Sequence[str]) -> Run:
    """Run cmd under GNU time. CPU comes from wait4 (precise; it includes
    time(1)'s own few hundred microseconds, the same in every run); peak RSS
    from time(1), because a child forked from Python would report Python's
    RSS: Linux keeps the largest RSS a process had, across exec too."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], stdout=out,
                                stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
        out.seek(0)
        text = out.read().decode()
        peak = int(rss.read().split()[-1])
    return Run(ru.ru_utime + ru.ru_stime, peak, wall, text)


def busybox_tree(dst: Path) -> Path:
    """The hardened fixture with its MODES applied, plus a BusyBox-like rootfs."""
    tree = dst / "device"
    shutil.copytree(REPO / "tests" / "fixtures" / "baseline-hardened", tree, symlinks=True)
    for d, _, files in os.walk(tree):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(Path(d) / f, 0o644)
    manifest = tree / "MODES"
    for line in manifest.read_text().splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) == 3 and os.geteuid() == 0:
            os.chown(tree / fields[0], *map(int, fields[2].split(":")))
        os.chmod(tree / fields[0], int(fields[1], 8))
    manifest.unlink()
    for d in ("sbin", "usr/bin", "usr/sbin", "lib", "usr/share/misc", "etc/init.d"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    dirs = ["bin", "sbin", "usr/bin", "usr/sbin"]
    for i in range(400):
        os.symlink("/bin/busybox", tree / dirs[i % 4] / f"applet{i}")
    for i in range(40):
        (tree / "lib" / f"lib{i}.so.1").write_bytes(b"\x7fELF" + bytes(2048))
    for i in range(300):
        (tree / "usr/share/misc" / f"data{i}").write_text("x" * 256)
    for i in range(20):
        (tree / "etc/init.d" / f"S{i:02d}service").write_text("#!/bin/sh\n")
    return tree


def write_config(path: Path, settings: dict) -> Path:
    path.write_text(json.dumps(settings))
    os.chmod(path, 0o600)
    return path


def baseline_entries(stdout: str) -> List[dict]:
    return [p for line in stdout.splitlines() if line.strip()
            for e in json.loads(line)["Events"] if e["Name"] == "Baseline" for p in e["Payload"]]


def lynis(tmp: Path) -> Optional[Run]:
    exe = shutil.which("lynis") or ("/usr/sbin/lynis" if os.path.exists("/usr/sbin/lynis") else None)
    if not exe:
        print("lynis is not installed (apt-get install lynis): skipped", file=sys.stderr)
        return None
    report = tmp / "lynis-report.dat"
    run = measure([exe, "audit", "system", "--quick", "--no-colors", "--logfile", str(tmp / "lynis.log"),
                   "--report-file", str(report)])
    done = [line.split("=", 1)[1] for line in report.read_text().splitlines() if line.startswith("lynis_tests_done=")]
    run.stdout = done[0] if done else "?"
    return run


def main() -> None:
    if not os.path.exists("/usr/bin/time"):
        raise SystemExit("GNU time is needed for peak RSS: apt-get install time")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-lynis", action="store_true", help="skip the Lynis comparison (it takes minutes)")
    args = ap.parse_args()

    build = build_agent({f.option: (f.kind, f.name) in KEEP for f in load_features()})
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        tree = busybox_tree(tmp)
        state = tmp / "state"
        state.mkdir(mode=0o700)
        on = write_config(tmp / "on.json", {"Agent_StateDirectory": str(state)})
        off = write_config(tmp / "off.json", {"Agent_StateDirectory": str(state), "Baseline_Disabled": True})
        cmd = [str(build.binary), "--once", "--root", str(tree), "--config"]
        first = measure(cmd + [str(on)])
        entries = baseline_entries(first.stdout)
        results = {r: sum(e["Result"] == r for e in entries) for r in ("Pass", "Fail", "Skip", "Error")}
        with_bl: List[Run] = []
        without: List[Run] = []
        for _ in range(args.runs):
            with_bl.append(measure(cmd + [str(on)]))
            without.append(measure(cmd + [str(off)]))
        cpu = statistics.median(r.cpu_s for r in with_bl) - statistics.median(r.cpu_s for r in without)
        first_cpu = first.cpu_s - statistics.median(r.cpu_s for r in without)
        rss = statistics.median(r.rss_kb for r in with_bl) - statistics.median(r.rss_kb for r in without)
        files = sum(len(f) + len(d) for _, d, f in os.walk(tree))

        print(f"BusyBox-style tree: {files} files, {len(entries)} checks "
              f"({', '.join(f'{k} {v}' for k, v in results.items())}), {args.runs} runs")
        print(f"  baseline CPU (median, warm credential cache): {cpu * 1000:6.1f} ms   target <= 50 ms")
        print(f"  baseline CPU, first run (crypt of Mirai candidates): {first_cpu * 1000:6.1f} ms")
        print(f"  extra peak RSS (median): {rss / 1024:6.2f} MB   target <= 1 MB")

        # On the real root: the agent with the baseline minus the agent without.
        here = [measure([str(build.binary), "--once", "--config", str(c)]) for c in (on, off, on, off, on, off)]
        here_entries = baseline_entries(here[0].stdout)
        here_wall = statistics.median(r.wall_s for r in here[::2]) - statistics.median(r.wall_s for r in here[1::2])
        here_cpu = statistics.median(r.cpu_s for r in here[::2]) - statistics.median(r.cpu_s for r in here[1::2])
        errors = [e["Id"] for e in here_entries if e["Result"] == "Error"]
        ly = None if args.no_lynis else lynis(tmp)
        print(f"\nThis machine, side by side (baseline Error results here: {errors or 'none'}):")
        print(f"  {'tool':38} {'checks':>7} {'wall':>9} {'CPU':>9}")
        print(f"  {'defender-iot-agent baseline':38} {len(here_entries):>7} {here_wall:>8.3f}s {here_cpu:>8.3f}s")
        if ly:
            print(f"  {'lynis audit system --quick':38} {ly.stdout:>7} {ly.wall_s:>8.3f}s {ly.cpu_s:>8.3f}s")


if __name__ == "__main__":
    main()
