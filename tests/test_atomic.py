"""Files replaced whole: an existing file is touched only by a write that succeeded."""

from __future__ import annotations

import os
import subprocess

import pytest

from mlabel.atomic import (
    folder_on_success,
    replace_on_success,
    temp_path,
    write_bytes_atomic,
    write_text_atomic,
)

OLD = bytes(range(256)) * 40  # not text: compared byte for byte


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_keeps_the_old_file_and_leaves_nothing(tmp_path, error):
    path = tmp_path / "results.csv"
    path.write_bytes(OLD)
    with pytest.raises(error), replace_on_success(path) as tmp:
        tmp.write_text("half of the new")
        raise error("failed mid-way")
    assert path.read_bytes() == OLD
    assert os.listdir(tmp_path) == ["results.csv"]


def test_success_replaces_and_keeps_the_mode(tmp_path):
    path = tmp_path / "best.yaml"
    path.write_bytes(OLD)
    path.chmod(0o640)
    write_text_atomic(path, "lr: 0.001\n")
    assert path.read_text() == "lr: 0.001\n"
    assert path.stat().st_mode & 0o777 == 0o640
    write_bytes_atomic(tmp_path / "new.bin", b"\x00\x01")
    assert (tmp_path / "new.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["best.yaml", "new.bin"]


def test_temp_file_is_hidden_beside_the_target_with_its_suffix(tmp_path):
    tmp = temp_path(tmp_path / "report.png")
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(f".tmp-{os.getpid()}-") and tmp.suffix == ".png"
    assert temp_path(tmp_path / "report.png") != tmp  # two writers in one process do not clash


def test_next_write_removes_what_a_killed_writer_left(tmp_path):
    dead = finished_pid()
    stale = tmp_path / f".tmp-{dead}-0a1b.out.csv"
    in_flight = tmp_path / f".tmp-{os.getpid()}-0a1b.out.csv"  # a live writer's
    other = tmp_path / f".tmp-{dead}-0a1b.other.csv"  # another target's
    for path in (stale, in_flight, other):
        path.write_text("partial")
    write_text_atomic(tmp_path / "out.csv", "new")
    assert not stale.exists()
    assert in_flight.exists() and other.exists()
    assert (tmp_path / "out.csv").read_text() == "new"


def test_a_folder_of_files_replaces_its_namesakes_only_on_success(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "page.html").write_text("old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), folder_on_success(out) as stage:
        (stage / "page.html").write_text("half")
        raise RuntimeError("failed mid-way")
    assert (out / "page.html").read_text() == "old" and os.listdir(tmp_path) == ["report"]
    with folder_on_success(out) as stage:
        (stage / "plot.png").write_text("new plot")
        (stage / "page.html").write_text("new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "page.html": "new",
        "plot.png": "new plot",
        "notes.txt": "mine",  # not the writer's: kept
    }
    assert os.listdir(tmp_path) == ["report"]


def test_a_new_folder_appears_whole_and_a_killed_writers_staging_goes(tmp_path):
    stale = tmp_path / f".tmp-{finished_pid()}-0a1b.report"
    stale.mkdir()
    (stale / "plot.png").write_text("partial")
    with folder_on_success(tmp_path / "report") as stage:
        (stage / "page.html").write_text("new")
        assert not (tmp_path / "report").exists()  # nothing visible until the end
    assert os.listdir(tmp_path) == ["report"]
    assert (tmp_path / "report" / "page.html").read_text() == "new"


def finished_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
