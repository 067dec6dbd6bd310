"""`defender-iot configure PROFILE.yml --out DIR`: a product profile to a
trimmed build (CMake cache, kas fragment, Buildroot fragment, runtime config,
twin desired properties)."""

from __future__ import annotations

import argparse
from pathlib import Path

from defender_iot.configure import configure, format_table, write_outputs
from defender_iot.profile import load_profile


class Configure:
    name = "configure"
    help = "turn a product profile into build inputs for CMake, Yocto (kas) and Buildroot"

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("profile", type=Path, help="product profile (YAML; schema: tools/defender_iot/schemas/"
                                                       "profile.schema.json)")
        parser.add_argument("--out", type=Path, required=True, help="directory for the generated files")
        parser.add_argument("--rootfs", type=Path,
                            help="the product's root filesystem (directory, Buildroot output/target, or Yocto image "
                                 ".manifest) to trim what cannot apply; overrides the profile's rootfs")
        parser.add_argument("--buildroot-config-path", metavar="PATH",
                            help="value of ..._CONFIG_FILE in the Buildroot fragment (default: the generated "
                                 "runtime config's absolute path)")
        parser.add_argument("--build", action="store_true",
                            help="also build the agent from the generated cache and check the profile's budget")
        parser.add_argument("--quiet", "-q", action="store_true", help="do not print the kept/dropped table")

    def run(self, args: argparse.Namespace) -> int:
        profile = load_profile(args.profile)
        outputs = configure(profile, rootfs=args.rootfs, out=args.out,
                            buildroot_config_path=args.buildroot_config_path)
        changed = write_outputs(outputs, args.out)
        if not args.quiet:
            print(format_table(outputs.table))
            print()
        for rel in sorted(outputs.files):
            path = args.out / rel
            print(f"{'wrote    ' if path in changed else 'unchanged'} {path}")
        if args.build:
            from defender_iot.build import build_agent
            from defender_iot.size import check_budget, size_report

            # -g adds no allocated byte; its DWARF lets the budget check name
            # the biggest parts of a link-time optimised build
            build = build_agent(arch=profile.arch, cache_file=args.out / f"cmake/{profile.name}.cmake",
                                extra={"CMAKE_C_FLAGS": "-g"})
            report = size_report(build.binary)
            print(f"built {build.binary}: {report.flash / 1024:.1f} KiB flash, {report.ram / 1024:.1f} KiB static RAM")
            check_budget(report, profile)
        return 0


COMMAND = Configure()
