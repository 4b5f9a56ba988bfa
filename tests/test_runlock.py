"""One writer per run folder: a live owner's lock refuses a second run, a stale lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlabel import runlock
from mlabel.cli import main
from mlabel.runlock import LOCK_FILE, RunLocked

HOLD = """
import sys
from mlabel.runlock import held
with held(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def other_owner(tmp_path):
    """Another live process holding tmp_path/run's lock, until the test ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "held\n"
    yield proc
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def _lock(directory: Path, pid: int, host: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "then"}))
    return path


def _gone_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_lock_lasts_for_the_block_and_names_its_owner(tmp_path):
    with runlock.held(tmp_path / "run") as path:
        owner = json.loads(path.read_text())
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(RunLocked, match=f"process {os.getpid()}"):
            runlock.acquire(tmp_path / "run")
    assert not path.exists()


def test_a_folder_the_lock_created_is_removed_when_left_empty(tmp_path, small_csv, capsys):
    """A run stopped by a bad setting leaves no empty --out folder; a folder that existed
    before, or that the run wrote into, stays."""
    out = tmp_path / "runs" / "bad"
    argv = ["train", str(small_csv), "--text-cols", "TITLE", "ABSTRACT", "--out", str(out)]
    assert main([*argv, "--max-len", "100000"]) == 2
    assert "over the encoder's limit" in capsys.readouterr().err and not out.exists()
    kept, written = tmp_path / "kept", tmp_path / "written"
    kept.mkdir()
    for folder in (kept, written):
        with runlock.held(folder):
            if folder == written:
                (folder / "log.txt").write_text("x")
    assert kept.is_dir() and (written / "log.txt").exists()


def test_a_lock_held_by_a_live_process_refuses(other_owner, tmp_path):
    path = tmp_path / "run" / LOCK_FILE
    before = path.read_text()
    with pytest.raises(
        RunLocked, match=f"another run is training into this folder \\(process {other_owner.pid} "
    ):
        runlock.acquire(tmp_path / "run")
    assert path.read_text() == before  # the owner keeps its lock


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path):
    gone = _gone_pid()
    _lock(tmp_path, gone)
    said = []
    with runlock.held(tmp_path, say=said.append) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert len(said) == 1 and f"process {gone}" in said[0] and "stale" in said[0]
    assert not path.exists()


def test_a_lock_from_another_host_is_refused(tmp_path):
    path = _lock(tmp_path, _gone_pid(), host="elsewhere")
    with pytest.raises(RunLocked, match=f"remove {path}"):
        runlock.acquire(tmp_path)


def test_an_empty_lock_is_stale_only_after_a_grace_period(tmp_path):
    """A killed writer can leave the file empty; a live one fills it within microseconds."""
    path = tmp_path / LOCK_FILE
    path.touch()
    with pytest.raises(RunLocked, match="being written"):
        runlock.acquire(tmp_path)
    old = time.time() - 2 * runlock.WRITE_GRACE_S
    os.utime(path, (old, old))
    runlock.release(runlock.acquire(tmp_path))
    assert not path.exists()


def test_release_leaves_a_lock_this_process_does_not_own(tmp_path):
    path = _lock(tmp_path, os.getpid() + 1)
    runlock.release(path)
    assert path.exists()


def test_a_second_train_into_the_same_folder_exits_2(
    other_owner, small_csv, tiny_encoder, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["train", str(small_csv), "--model", tiny_encoder, "--text-cols", "TITLE", "ABSTRACT"]
    assert main([*argv, "--epochs", "1", "--max-len", "16", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"process {other_owner.pid}" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written beside it


def test_a_tfidf_train_into_a_held_folder_exits_2_and_releases_its_own_lock(
    other_owner, small_csv, tmp_path, capsys
):
    argv = ["train", str(small_csv), "--model", "tfidf", "--text-cols", "TITLE", "ABSTRACT"]
    held = tmp_path / "run"
    assert main([*argv, "--out", str(held)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"process {other_owner.pid}" in err
    assert sorted(p.name for p in held.iterdir()) == [LOCK_FILE]  # nothing written beside it
    free = tmp_path / "free"
    assert main([*argv, "--out", str(free)]) == 0
    assert (free / "model" / "mlabel.json").is_file() and not (free / LOCK_FILE).exists()


def test_two_trainings_into_one_folder_the_second_refuses(
    small_csv, tiny_encoder, tmp_path, capsys
):
    """A real `mlabel train` holds the folder; one started meanwhile exits 2 and disturbs nothing."""
    out = tmp_path / "run"
    argv = ["train", str(small_csv), "--model", tiny_encoder, "--text-cols", "TITLE", "ABSTRACT"]
    argv += ["--max-len", "64", "--epochs", "3", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "mlabel", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not (out / LOCK_FILE).exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"process {first.pid}" in err
    output = first.communicate(timeout=300)[0]
    assert first.returncode == 0, output
    assert (out / "model" / "mlabel.json").is_file() and not (out / LOCK_FILE).exists()
