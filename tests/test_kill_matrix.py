"""Kill matrix: a tiny `mlabel train` is SIGKILLed at each named point of `mlabel.faults` (mid-step,
mid-validation, inside each phase of a checkpoint write and of the model folder's write). After
each kill no loader finds a half-written model folder, and `--resume` ends with the weights and
metrics of an uninterrupted run.

Runs go through a fork server: one subprocess imports mlabel once, then forks a fresh child per
run that calls `mlabel.cli.main(["train", ...])`, as `python -m mlabel train` does. Importing
torch and transformers is most of a tiny run's time; paid once, the matrix fits CI's budget.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

from mlabel.faults import ENV

TIMING = {"seconds", "samples_per_s"}  # the only record fields allowed to differ between runs

# With 33 training texts in batches of 16 (3 steps an epoch) and a checkpoint every 2 steps,
# checkpoints are written in this order: step-2, epoch-001, step-4, epoch-002; with keep=1,
# pruning removes step-2, then epoch-001 and step-4. Epoch 2 improves on epoch 1, so the model
# folder is written twice and swapped once, and the TF-IDF member is staged into it at the end.
POINTS = [
    "train.backward:1",  # the first step: no checkpoint yet, the resume starts afresh
    "train.backward:5",  # mid-step in epoch 2: resume from step-4
    "train.validate:2",  # mid-validation of epoch 2
    "train.model_saved:1",  # epoch 1's model written, its checkpoint not
    "checkpoint.commit:1",  # step-2: files written and flushed, just before the rename
    "checkpoint.weights:2",  # epoch-001: weights written, optimizer not
    "checkpoint.optimizer:3",  # step-4: optimizer written, scheduler, RNG and state not
    "checkpoint.state:4",  # epoch-002: every file written, not yet renamed into place
    "checkpoint.discard:1",  # pruning step-2: renamed aside, not yet removed
    "staged.filled:2",  # epoch 2's model complete in model.tmp, epoch 1's still in place
    "staged.swapping:1",  # epoch 1's model moved to model.old, epoch 2's not yet renamed in
    "finalize.before_write",  # thresholds tuned, mlabel.json not yet updated
    "finalize.after_write",  # mlabel.json updated, the run not yet ended
]


class ForkServer:
    """One process that imported mlabel; each `run` forks a child to run one command."""

    def __init__(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop(ENV, None)
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def run(self, argv: list[str], log: Path, kill_at: str | None = None) -> int:
        """The child's return code (negative: killed by that signal); its output goes to `log`."""
        job = {"argv": argv, "log": str(log), "env": {ENV: kill_at} if kill_at else {}}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["returncode"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)  # exiting torch takes a while on a loaded machine


def serve() -> None:
    """The server's loop: import once, then fork a child per job line on stdin."""
    import mlabel.callbacks  # noqa: F401  (everything a training run imports, before forking)
    import mlabel.classifier  # noqa: F401
    import mlabel.reports.curves  # noqa: F401
    import mlabel.tracking  # noqa: F401
    from mlabel.cli import main

    for line in iter(sys.stdin.readline, ""):
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.environ.update(job["env"])
            code = 1
            try:
                code = main(job["argv"])
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


@pytest.fixture(scope="module")
def server():
    forks = ForkServer()
    yield forks
    forks.close()


def train_args(csv: Path, encoder: str, out: Path, keep: int = 1) -> list[str]:
    return [
        "train",
        str(csv),
        "--model",
        encoder,
        "--text-cols",
        "TITLE",
        "ABSTRACT",
        "--max-len",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-2",
        "--thresholds",
        "per-label",
        "--val-frac",
        "0.25",
        "--threads",
        "2",
        "--seed",
        "1",
        "--precision",
        "fp32",
        "--save-steps",
        "2",
        "--keep",
        str(keep),
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def reference(server, tiny_csv, tiny_encoder, tmp_path_factory) -> Path:
    """The uninterrupted run, keeping every checkpoint (each epoch's weights)."""
    out = tmp_path_factory.mktemp("reference")
    log = out.with_suffix(".log")
    assert server.run(train_args(tiny_csv, tiny_encoder, out, keep=20), log) == 0, log.read_text()
    history = _history(out)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["micro_f1"] > history[0]["micro_f1"]  # epoch 2 replaces epoch 1's model
    return out


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_run_resumes_to_the_uninterrupted_result(
    point, server, reference, tiny_csv, tiny_encoder, tmp_path
):
    out, killed, resumed = tmp_path / "run", tmp_path / "killed.log", tmp_path / "resumed.log"
    args = train_args(tiny_csv, tiny_encoder, out)
    assert server.run(args, killed, kill_at=point) == -signal.SIGKILL, killed.read_text()
    _assert_no_half_model(out, reference)
    if point.startswith("staged.swapping"):
        assert not (out / "model").exists()  # the instant between the two renames
        assert (out / "model.old" / "mlabel.json").is_file()
    assert server.run([*args, "--resume"], resumed) == 0, resumed.read_text()
    assert "taking over a stale lock" in resumed.read_text()  # the killed run's lock
    assert not (out / "train.lock").exists()
    _assert_same_run(out, reference)


def test_a_resume_killed_in_turn_still_ends_like_the_uninterrupted_run(
    server, reference, tiny_csv, tiny_encoder, tmp_path
):
    """Kills add up: epoch-001 left unrenamed, then the resume killed mid-swap of the model."""
    out, log = tmp_path / "run", tmp_path / "run.log"
    args = train_args(tiny_csv, tiny_encoder, out)
    assert server.run(args, log, kill_at="checkpoint.state:2") == -signal.SIGKILL
    assert server.run([*args, "--resume"], log, kill_at="staged.swapping:1") == -signal.SIGKILL
    assert {p.name for p in out.iterdir()} >= {"model.old", "model.tmp"}
    assert (out / "checkpoints" / ".tmp-epoch-001").is_dir()
    _assert_no_half_model(out, reference)
    assert server.run([*args, "--resume"], log) == 0, log.read_text()
    _assert_same_run(out, reference)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-002"]


def test_a_point_kills_on_its_nth_pass_only_when_named(tmp_path):
    code = "from mlabel.faults import point\nfor i in range(3):\n    point('a')\n    print(i, flush=True)"
    for target, returncode, printed in (("a:2", -signal.SIGKILL, "0\n"), ("b", 0, "0\n1\n2\n")):
        env = {**os.environ, ENV: target}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert (done.returncode, done.stdout) == (returncode, printed)


def test_a_model_moved_aside_is_put_back(tmp_path):
    """What a kill between the two renames of `staged` leaves: `model` gone, `model.old` whole."""
    from mlabel import folder

    model = tmp_path / "model"
    (tmp_path / "model.old").mkdir()
    (tmp_path / "model.old" / "weights").write_text("previous")
    (tmp_path / "model.tmp").mkdir()  # the new one, whose epoch a resume trains again
    with folder.staged(model) as tmp:
        assert (model / "weights").read_text() == "previous"
        (tmp / "weights").write_text("new")
    assert (model / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _assert_no_half_model(out: Path, reference: Path) -> None:
    """The model folder is absent or complete: it loads, predicts, and holds the weights of one
    of the reference's epochs."""
    import torch
    from safetensors.torch import load_file

    from mlabel import folder
    from mlabel.predict import load_predictor

    model_dir = out / "model"
    if not model_dir.exists():
        return
    info = folder.read(model_dir)
    probs = load_predictor(model_dir, engine="torch").predict_proba(["Spectra of random graphs"])
    assert probs.shape == (1, len(info.labels)) and np.isfinite(probs).all()
    head = load_file(str(folder.head_path(model_dir)))["weight"]
    epochs = sorted((reference / "checkpoints").glob("epoch-*"))
    epoch_heads = [load_file(str(p / "model.safetensors"))["head.weight"] for p in epochs]
    assert any(torch.equal(head, h) for h in epoch_heads), "model folder matches no epoch"


def _assert_same_run(out: Path, reference: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from mlabel import folder

    assert _without_timing(_history(out)) == _without_timing(_history(reference))
    for name in ("model/model.safetensors", "model/head.safetensors"):
        mine, theirs = load_file(str(out / name)), load_file(str(reference / name))
        assert mine.keys() == theirs.keys()
        for key in theirs:
            torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=1e-6, msg=key)
    mine, theirs = folder.read(out / "model"), folder.read(reference / "model")
    assert (mine.metrics, mine.thresholds, mine.best_epoch) == (
        theirs.metrics,
        theirs.thresholds,
        theirs.best_epoch,
    )
    assert mine.ensemble == theirs.ensemble
    left = [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert not left, f"left behind: {left}"


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


if __name__ == "__main__":
    serve()
