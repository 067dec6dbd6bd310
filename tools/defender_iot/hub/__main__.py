"""`python -m defender_iot.hub ACTION ...`: the `defender-iot hub` command
without loading the other subcommands, so that HubProcess keeps working
while another command module is broken or being edited."""

from __future__ import annotations

import argparse
import sys

from defender_iot.commands.hub import COMMAND
from defender_iot.errors import UserError


def main() -> int:
    parser = argparse.ArgumentParser(prog="defender-iot hub", description=COMMAND.help)
    COMMAND.setup_parser(parser)
    args = parser.parse_args()
    try:
        return COMMAND.run(args)
    except UserError as e:
        print(f"defender-iot: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
