"""User-facing errors.

A :class:`UserError` means the user can fix the problem (bad file, bad option, missing dataset, a full disk).
The CLI prints its message on one line and exits with its ``exit_code`` (2; 3 for a diverged run), without a
traceback. Anything else is a bug in td3rec and is allowed to show a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or settings; the message says what and how to fix it."""

    exit_code = 2


class DataError(UserError):
    """A data file that cannot be read or yields no usable data."""


class ConfigError(UserError):
    """An impossible, inconsistent or unknown setting."""


class OutputError(UserError):
    """An output file cannot be written (full disk, read-only folder, no permission); the previous version
    of the file, if any, is left as it was."""


class DivergedError(UserError):
    """A run stopped because its loss or gradient was non-finite too many steps in a row.

    Exit code 3 (not 2) so that scripts can tell "the settings made training diverge" from "bad input"; the
    last good outputs and the resume checkpoint are kept.
    """

    exit_code = 3
