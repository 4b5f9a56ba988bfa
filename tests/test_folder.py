"""The model folder's record: typed, validated in one place, old folders still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlabel import folder
from mlabel.decision import DecisionRule
from mlabel.errors import ModelError

FORMAT1 = Path(__file__).parent / "data" / "mlabel-format1.json"


@pytest.fixture
def model_dir(tmp_path) -> Path:
    shutil.copy(FORMAT1, tmp_path / folder.META_FILE)
    return tmp_path


def _rewrite(directory: Path, **changes) -> None:
    path = directory / folder.META_FILE
    raw = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in raw.items() if v is not ...}))


def test_a_folder_written_before_model_info_loads(model_dir):
    info = folder.read(model_dir)
    assert info.labels == ["Computer Science", "Physics", "Mathematics"]
    assert info.thresholds == [0.41, 0.5, 0.37]
    assert info.ensemble.weight == 0.5 and info.engine.choice == "onnx-int8"
    assert info.best_epoch == 3 and info.metrics["per_label"]["Physics"]["support"] == 20
    assert info.rule == DecisionRule() and info.subject_uris is None  # fields added since


def test_write_then_read_is_the_same_record(model_dir, tmp_path):
    info = folder.read(model_dir)
    info.rule = DecisionRule(top_k=2, min_labels=1)
    folder.write(info, tmp_path)
    assert folder.read(tmp_path) == info
    assert not [p for p in tmp_path.iterdir() if p.name != folder.META_FILE]  # no temp files


def test_keys_older_folders_lack_take_their_defaults(model_dir):
    _rewrite(
        model_dir, long=..., stride=..., long_pool=..., ensemble=..., engine=..., best_epoch=...
    )
    info = folder.read(model_dir)
    assert (info.long, info.stride, info.long_pool) == ("truncate", 64, "max")
    assert info.ensemble is None and info.engine is None and info.best_epoch is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": ...}, "missing labels"),
        ({"labels": "Physics"}, "labels must be a non-empty list"),
        ({"thresholds": [0.5, 0.5]}, "list of 3 numbers"),
        ({"thresholds": [0.5, "high", 0.5]}, "numbers from 0 to 1"),
        ({"thresholds": [0.5, 1.5, 0.5]}, "numbers from 0 to 1"),
        ({"kind": "svm"}, "kind is 'svm'"),
        ({"pooling": "max"}, "pooling is 'max'"),
        ({"max_len": "long"}, "max_len is 'long'"),
        ({"ensemble": {"kind": "tfidf", "weight": [0.5]}}, "1 values for 3 labels"),
        ({"rule": {"top_k": 0}}, "top_k is 0"),
        ({"engine": {"choice": "onnx", "colour": 1}}, "colour"),
        ({"engine": "onnx"}, "engine is 'onnx', expected an object"),
    ],
)
def test_a_malformed_record_is_one_line_naming_the_file(model_dir, changes, message):
    _rewrite(model_dir, **changes)
    with pytest.raises(ModelError, match=message) as error:
        folder.read(model_dir)
    assert str(model_dir / folder.META_FILE) in str(error.value)
    assert "\n" not in str(error.value)


def test_not_json_and_not_a_folder(tmp_path):
    with pytest.raises(ModelError, match="not an mlabel model folder"):
        folder.read(tmp_path)
    (tmp_path / folder.META_FILE).write_bytes(b"\xff{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        folder.read(tmp_path)
    (tmp_path / folder.META_FILE).write_text("[1, 2]")
    with pytest.raises(ModelError, match="expected a JSON object, found list"):
        folder.read(tmp_path)


def test_staged_keeps_the_old_folder_when_writing_fails(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(RuntimeError), folder.staged(target) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with folder.staged(target) as tmp:
        (tmp / "weights").write_text("new")
    assert (target / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
