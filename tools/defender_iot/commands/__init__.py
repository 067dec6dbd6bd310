"""One module per `defender-iot` subcommand (see defender_iot.cli)."""
