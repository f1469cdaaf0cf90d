"""One exception type for errors the user can fix (bad input, missing file, corrupt data)."""

from __future__ import annotations


class UserError(Exception):
    """An error with a message meant for the user: what went wrong, where, and what to do.

    CLIs catch it, print the message once and exit non-zero (click's ``ClickException`` does the same;
    ``UserError`` is for library code that must not depend on click).
    """

    exit_code = 2
