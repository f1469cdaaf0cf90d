"""Error types and the exit codes shared by the three CLIs.

Exit codes shared by the three CLIs: 0 success, 1 a bug (traceback printed), 2 a user error (one line saying
what to do: bad flag, bad data, missing or corrupt file, disk full, no permission), 3 training diverged
(non-finite loss or parameters). :class:`neurips20_common.cli.Group` applies them.
"""

from __future__ import annotations

import errno
import os


class UserError(Exception):
    """An error with a message meant for the user: what went wrong, where, and what to do.

    Library code raises it (it must not depend on click); the CLIs' :class:`neurips20_common.cli.Group` prints
    it once and exits with ``exit_code``.
    """

    exit_code = 2


class NonFiniteError(UserError):
    """Training produced NaN/Inf in a loss or a parameter. Usually a learning rate or weight that is too large."""

    exit_code = 3


# OSError numbers that a user fixes (free space, fix permissions, pick another path), not bugs.
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT,
                errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG}


def os_error_message(exc: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for an OSError: the path, the reason, and what to do."""
    where = path if path is not None else (exc.filename or "?")
    reason = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: "free some space or choose another --run-dir / --out",
        errno.EDQUOT: "free some space or choose another --run-dir / --out",
        errno.EFBIG: "the file system refuses a file this large: choose another --run-dir / --out",
        errno.EACCES: "fix the permissions or choose another path",
        errno.EPERM: "fix the permissions or choose another path",
        errno.EROFS: "the file system is read-only: choose another path",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "check the path",
    }.get(exc.errno or -1, "check the path")
    return f"{where}: {reason}; {hint}"


def as_user_error(exc: BaseException, path: str | os.PathLike | None = None) -> UserError | None:
    """The UserError a low-level write failure stands for, or None when it is a bug.

    Covers OSErrors with a user errno and torch's serializer, which reports a full disk as a RuntimeError
    (``enforce fail at inline_container.cc``, ``file write failed``).
    """
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _USER_ERRNOS:
        return UserError(os_error_message(exc, path))
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("inline_container" in text or "file write failed" in text):
        return UserError(f"{path or '?'}: writing failed (the disk is probably full or the file system "
                         "read-only); free some space or choose another path")
    return None
