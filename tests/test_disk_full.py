"""A full disk (a file-size limit in a subprocess) ends a write with one line and exit 2, and
leaves the previous output as it was, with no temporary file beside it."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

LIMIT = 4096  # bytes any one file of the subprocess may reach


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_into_a_full_disk_keeps_the_old_output(trained_tiny, small_csv, tmp_path, suffix):
    out = tmp_path / f"results{suffix}"
    out.write_bytes(b"last week's results\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "mlabel", "predict", str(trained_tiny), str(small_csv)]
    done = subprocess.run(
        [*cmd, "-o", str(out), "--proba", "--engine", "torch"],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=_limited,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: no space left") and "Traceback" not in done.stderr
    assert out.read_bytes() == b"last week's results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
