"""Errors a user can act on: the CLI prints them as one line, never as a traceback."""


class LongmixError(Exception):
    """A problem with the input, the config or the environment, stated for the user."""
