"""`defender-iot image build|run`: the QEMU test image (see docs/testing.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from defender_iot.image.arches import ARCHES
from defender_iot.image.builder import Image, build_image, default_dir
from defender_iot.image.qemu import HUB_ADDRESS, free_port, overlay_initrd, qemu_command


class ImageCommand:
    name = "image"
    help = "build or boot the QEMU test image (Debian kernel, BusyBox, Dropbear, the agent)"

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", metavar="ACTION")
        sub.required = True
        b = sub.add_parser("build", help="build the image (cached: a rebuild with nothing changed takes seconds)")
        b.add_argument("--arch", choices=sorted(ARCHES), default="x86_64")
        b.add_argument("--out", type=Path, help="output directory (default build/image-ARCH)")
        b.add_argument("--agent", type=Path, help="use this agent binary instead of building the default one")
        r = sub.add_parser("run", help="boot the image with its console on this terminal (Ctrl-A X: QEMU quits"
                                       " only with -nographic; here: `poweroff -f` in the guest)")
        r.add_argument("--arch", choices=sorted(ARCHES), default="x86_64")
        r.add_argument("--image", type=Path, help="image directory (default build/image-ARCH)")
        r.add_argument("--hub-port", type=int, help="host port of the hub's MQTT listener, forwarded to the guest"
                                                    f" as {HUB_ADDRESS[0]}:{HUB_ADDRESS[1]}")
        r.add_argument("--ssh-port", type=int, default=0, help="host port forwarded to the guest's SSH server")
        r.add_argument("--print", action="store_true", help="print the QEMU command instead of running it")

    def run(self, args: argparse.Namespace) -> int:
        if args.action == "build":
            image = build_image(args.arch, out_dir=args.out, agent_binary=args.agent)
            print(image.directory)
            return 0
        image = Image.load(args.image or default_dir(args.arch))
        fwd = {HUB_ADDRESS: args.hub_port} if args.hub_port else {}
        ssh = args.ssh_port or free_port()
        initrd = overlay_initrd(image, image.directory / "initrd-run.gz")
        cmd = qemu_command(image, initrd, guestfwd=fwd, ssh_port=ssh)
        if args.print:
            print(" ".join(a if " " not in a else f"'{a}'" for a in cmd))
            return 0
        print(f"image: SSH on 127.0.0.1:{ssh} (root/{image.root_password}); `poweroff -f` in the guest ends it",
              file=sys.stderr)
        os.execvp(cmd[0], cmd)
        return 1


COMMAND = ImageCommand()
