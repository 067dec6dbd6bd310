"""`defender-iot demo`: build the default agent and run it once against this
machine, printing the security message. (The QEMU end-to-end demo replaces
this when the image builder lands: see issue 8.)"""

from __future__ import annotations

import argparse
import json
import subprocess

from defender_iot.build import build_agent


class Demo:
    name = "demo"
    help = "build the default agent and show what it reports"

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--root", default="/", help="system root to collect from (default: this machine)")

    def run(self, args: argparse.Namespace) -> int:
        build = build_agent()
        out = subprocess.run([str(build.binary), "--once", "--root", args.root], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        for line in out.splitlines():
            print(json.dumps(json.loads(line), indent=2))
        return 0


COMMAND = Demo()
