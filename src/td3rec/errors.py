"""User-facing errors.

A :class:`UserError` means the user can fix the problem (bad file, bad option, missing dataset).
The CLI prints its message on one line and exits with code 2, without a traceback.
Anything else is a bug in td3rec and is allowed to show a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or settings; the message says what and how to fix it."""

    exit_code = 2


class DataError(UserError):
    """A data file that cannot be read or yields no usable data."""


class ConfigError(UserError):
    """An impossible, inconsistent or unknown setting."""
