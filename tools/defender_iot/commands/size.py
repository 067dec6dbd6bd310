"""`defender-iot size ELF`: what each part of the agent costs, a
bloat-o-meter style diff against another build, and the profile's budget."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from defender_iot.size import check_budget, diff, diff_data, format_report, report_json, size_report, to_html


class Size:
    name = "size"
    help = "footprint of an agent binary by section kind and component; diff; budget check"

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("elf", type=Path, help="the agent binary (unstripped, ideally built with -g)")
        parser.add_argument("--against", type=Path, metavar="OLD_ELF", help="print the change from OLD_ELF")
        parser.add_argument("--json", action="store_true", help="print the report (or with --against, the change) as JSON")
        parser.add_argument("--html", type=Path, metavar="FILE", help="also write a single-file HTML report")
        parser.add_argument("--profile", type=Path, metavar="PROFILE",
                            help="product profile: exit 1 when the build exceeds its budget")
        parser.add_argument("--top", type=int, default=0, metavar="N", help="also list the N largest symbols")

    def run(self, args: argparse.Namespace) -> int:
        report = size_report(args.elf)
        if args.against and args.json:
            print(json.dumps(diff_data(size_report(args.against), report), indent=2))
        elif args.against:
            print(diff(size_report(args.against), report))
        elif args.json:
            print(report_json(report))
        else:
            print(format_report(report, top=args.top))
        if args.html:
            args.html.write_text(to_html(report))
        if args.profile:
            from defender_iot.profile import load_profile

            check_budget(report, load_profile(args.profile))
        return 0


COMMAND = Size()
