"""The project's one error class for bad input and bad options.

The CLI prints an :class:`InputError` as ``error: ...`` and exits with status 2; any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """The user's input (a file, a row, an option) is wrong; the message says where and why."""
