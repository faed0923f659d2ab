"""The project's error classes for bad input and bad options.

The CLI prints an :class:`InputError` (a :class:`ConfigError` is one) as ``error: ...`` and exits
with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable


class InputError(ValueError):
    """The user's input (a file, a row, an option) is wrong; the message says where and why."""


class ConfigError(InputError):
    """A config file, table, key or ``--set`` override that cannot be used (see :mod:`fairspeech.config`).

    ``source`` is the file (or ``"defaults"``; with the override when one is to blame), ``section`` the
    dotted table (None at the top level) and ``key`` the key, where known; ``message`` is the text after
    the source."""

    def __init__(self, message: str, source: str | None = None, section: str | None = None, key: str | None = None):
        self.message, self.source, self.section, self.key = message, source, section, key
        super().__init__(f"{source}: {message}" if source else message)


def cli_status(run: Callable[..., int | None], *args) -> int:
    """The exit status of a command-line entry point ``run(*args)``: what it returns (0 for None), or, when
    the input or options are bad (an :class:`InputError`), 2 after one ``error: ...`` line on stderr."""
    try:
        return run(*args) or 0
    except InputError as error:  # anything else is a bug and keeps its traceback
        # args[0], not str(): a KeyError subclass (ProfileError) would print its message quoted.
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
