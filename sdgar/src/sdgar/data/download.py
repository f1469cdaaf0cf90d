"""Resumable, checksummed downloads for ``sdgar data download NAME`` (never called by tests or defaults).

A download goes to ``<file>.part``; an interrupted one continues with an HTTP ``Range`` request; the file is
renamed into place only after its SHA-256 matches (when a checksum is known).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from neurips20_common import UserError


def sha256(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, checksum: str | None = None, timeout: float = 60.0,
             on_progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Fetch ``url`` to ``dest`` (resuming ``dest.part``) and check its SHA-256. Returns ``dest``."""
    dest = Path(dest)
    if dest.is_file() and (checksum is None or sha256(dest) == checksum):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            resumed = have > 0 and resp.status == 206
            if not resumed:
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with part.open("ab" if resumed else "wb") as fh:
                done = have
                while chunk := resp.read(1 << 16):
                    fh.write(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(done, total)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already complete
            pass
        else:
            raise UserError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise UserError(f"download of {url} failed ({exc}); {part} keeps what arrived, run the command again to "
                        "resume, or fetch the file by hand into " + str(dest.parent)) from None
    if checksum is not None:
        got = sha256(part)
        if got != checksum:
            part.unlink()
            raise UserError(f"{url}: SHA-256 mismatch (expected {checksum}, got {got}); the partial file was "
                            "deleted, run the command again")
    os.replace(part, dest)
    return dest


def extract_member(archive: Path, member_suffix: str, dest: Path) -> Path:
    """Copy the first member of a zip whose name ends with ``member_suffix`` to ``dest``."""
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n.endswith(member_suffix)]
        if not names:
            raise UserError(f"{archive} has no member ending in {member_suffix!r}")
        tmp = dest.with_name(dest.name + ".tmp")
        with zf.open(names[0]) as src, tmp.open("wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dest)
    return dest
