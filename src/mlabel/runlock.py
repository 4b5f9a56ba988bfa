"""One writer per run folder: `held(folder)` keeps a lock file there while a run writes to it.

The lock (`train.lock`: JSON with the owner's pid, host and start time) is created with
O_CREAT | O_EXCL, so of two processes starting at once exactly one gets it; the other stops with
a one-line error naming the owner. The lock is removed when the run ends, by success or error.
A kill -9 or a power cut leaves it behind: a lock whose process no longer runs on this host is
stale, and the next run takes it over and says so. A lock from another host (a shared file
system) cannot be checked, so it is refused with the file to remove.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlabel.atomic import _alive
from mlabel.errors import MlabelError

LOCK_FILE = "train.lock"
WRITE_GRACE_S = 10.0  # a lock file still empty after this long was left by a killed writer


class RunLocked(MlabelError):
    """Another process is training into the same run folder."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@contextlib.contextmanager
def held(folder: str | Path, say: Callable[[str], None] = _stderr) -> Iterator[Path]:
    """Hold `folder`'s lock for the block (creating the folder); `say` hears of a takeover. A
    folder the block created and left empty (a run stopped by a bad setting) is removed."""
    created = not Path(folder).exists()
    path = acquire(Path(folder), say)
    try:
        yield path
    finally:
        release(path)
        if created:
            with contextlib.suppress(OSError):  # not empty, or gone: left as it is
                Path(folder).rmdir()


def acquire(folder: Path, say: Callable[[str], None] = _stderr) -> Path:
    """Create the lock file or raise `RunLocked`; a stale lock is removed and taken over."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    for _ in range(2):  # the second try follows the removal of a stale lock
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if not _stale(path, owner):
                raise RunLocked(_refusal(folder, path, owner)) from None
            say(f"{path}: taking over a stale lock ({_describe(owner)}, no longer running)")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}, f)
        return path
    raise RunLocked(f"{path}: another process took the lock as this one removed a stale lock")


def release(path: Path) -> None:
    """Remove the lock if this process still owns it."""
    if _owner(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _owner(path: Path) -> dict[str, Any]:
    """The lock's record; {} while its writer has not written it yet, or when it is gone."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _stale(path: Path, owner: dict[str, Any]) -> bool:
    if not owner:  # empty: being written right now, or its writer died between create and write
        try:
            return time.time() - path.stat().st_mtime > WRITE_GRACE_S
        except FileNotFoundError:  # released meanwhile: try again
            return True
    if owner.get("host") != socket.gethostname() or os.name != "posix":
        return False  # a process elsewhere cannot be checked
    return isinstance(owner.get("pid"), int) and not _alive(owner["pid"])


def _refusal(folder: Path, path: Path, owner: dict[str, Any]) -> str:
    return (
        f"{folder}: another run is training into this folder ({_describe(owner)}); wait for it "
        f"or train into another --out (if that process is gone, remove {path})"
    )


def _describe(owner: dict[str, Any]) -> str:
    if not owner:
        return "lock file being written"
    return f"process {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
