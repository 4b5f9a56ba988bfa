"""Files replaced whole: a reader sees the old version or the new one, never a part of either.

New content goes to a hidden temporary file beside the target (same file system, so the final
`os.replace` is atomic), is flushed to disk, and replaces the target only when writing
succeeded. An exception leaves the target as it was; so does a kill, which at worst leaves a
hidden temporary file that the next write of the same target removes.

    with replace_on_success("out/results.csv") as tmp:
        frame.to_csv(tmp)            # any writer that takes a path
    write_text_atomic("out/best.yaml", text)
    with folder_on_success("out/report") as tmp:   # several files, replaced together
        plot.savefig(tmp / "plot.png")
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def temp_path(path: Path) -> Path:
    """A fresh hidden name beside `path` that keeps its suffix: `.tmp-PID-XXXX.results.csv`."""
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(2)}.{path.name}")


@contextlib.contextmanager
def replace_on_success(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `path`, on error it is removed.

    The caller creates the temporary file (it does not exist yet) and closes it before the block
    ends. It keeps the target's suffix, so writers that choose a format by extension still work.
    The folder must exist. A new file takes the mode of the file it replaces.
    """
    path = Path(path)
    _remove_stale(path)
    tmp = temp_path(path)
    try:
        yield tmp
        _commit(tmp, path)
    except BaseException:  # Ctrl-C too: nothing half-written stays behind
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def folder_on_success(path: str | Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside `path` to write files into; on success they replace
    their namesakes in `path` (other files there stay), on error the staging folder is removed.

    A new `path` is the staging folder renamed: whole or absent. Into an existing one the files
    move one `os.replace` each, in the order they were written (a report's pages last): a kill
    can fall only in those few renames, and never leaves a half-written file."""
    path = Path(path)
    _remove_stale(path)
    tmp = temp_path(path)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        _move_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """`Path.write_text`, but an existing file is replaced only once the new one is complete."""
    with replace_on_success(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """`Path.write_bytes`, but an existing file is replaced only once the new one is complete."""
    with replace_on_success(path) as tmp:
        tmp.write_bytes(data)


def _commit(tmp: Path, path: Path) -> None:
    # Flushed before the rename, or a crash could leave the new name on empty content.
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    if path.exists():
        shutil.copymode(path, tmp)
    os.replace(tmp, path)
    _fsync_folder(path.parent)


def _move_in(staging: Path, path: Path) -> None:
    """Rename `staging` to `path`, or move its files into an existing `path`, oldest first."""
    if not path.exists():
        staging.rename(path)
        _fsync_folder(path.parent)
        return
    for entry in sorted(staging.iterdir(), key=lambda e: (e.stat().st_mtime_ns, e.name)):
        os.replace(entry, path / entry.name)
    staging.rmdir()
    _fsync_folder(path)  # the renames into it


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX only: Windows cannot open a folder)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale(path: Path) -> None:
    """Remove temporary files (and staging folders) for `path` left by killed processes."""
    if os.name != "posix" or not path.parent.is_dir():  # os.kill(pid, 0) would kill on Windows
        return
    pattern = re.compile(rf"{re.escape(TEMP_PREFIX)}(\d+)-[0-9a-f]{{4}}\.{re.escape(path.name)}")
    for entry in path.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and not _alive(int(match[1])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        pass
    return True
