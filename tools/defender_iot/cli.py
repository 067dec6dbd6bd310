"""The `defender-iot` command: a thin shell over the library.

Each subcommand is one module in `defender_iot.commands` that defines
`COMMAND`, an object with `name`, `help`, `setup_parser(parser)` and
`run(args) -> int`. Adding a subcommand touches only its own module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional, Sequence

from defender_iot import __version__, commands
from defender_iot.errors import UserError


def load_commands() -> dict:
    found = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        command = getattr(module, "COMMAND", None)
        if command is not None:
            found[command.name] = command
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defender-iot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, command in load_commands().items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.setup_parser(p)
        p.set_defaults(_command=command)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._command.run(args) or 0)
    except UserError as e:
        print(f"defender-iot: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
