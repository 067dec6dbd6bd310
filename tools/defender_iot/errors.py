"""User errors: every problem a user can fix derives from UserError, and the
CLI prints it as one line instead of a traceback (the kas way)."""


class UserError(Exception):
    """An input or environment problem the user can act on."""

    exit_code = 2
