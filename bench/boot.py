#!/usr/bin/env python3
"""Boot time of the QEMU test image under TCG, per architecture.

    .venv/bin/python bench/boot.py [--arch x86_64,aarch64] [--runs 3] [--driver pexpect|labgrid]

Builds the default agent and the image for each architecture (cached),
then boots it --runs times with the same QEMU command the tests use and
measures the time from QEMU's start to the console shell's first answer
(after the image's init scripts have started syslogd, dropbear and the
agent). Prints the median and range, and the initrd size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from defender_iot.build import build_agent
from defender_iot.image.builder import build_image
from defender_iot.image.lab import LabgridGuest
from defender_iot.image.qemu import Guest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="x86_64,aarch64")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--driver", choices=("pexpect", "labgrid"), default="pexpect")
    args = ap.parse_args()
    driver = Guest if args.driver == "pexpect" else LabgridGuest
    print(f"| arch | initrd | boot to shell (median, min-max of {args.runs}, {args.driver}) |")
    print("|---|---|---|")
    for arch in args.arch.split(","):
        image = build_image(arch, agent_binary=build_agent(arch=arch).binary, log=lambda m: None)
        times = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.monotonic()
                with driver(image, Path(tmp)) as guest:
                    times.append(time.monotonic() - start)
                    status, _ = guest.run("true")
                    assert status == 0
        size = image.initrd.stat().st_size / 1e6
        print(f"| {arch} | {size:.1f} MB | {statistics.median(times):.1f} s ({min(times):.1f}-{max(times):.1f}) |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
