"""Tampered model folders: each damage gives one ModelError line naming the file, through the
library and through the CLI (exit 2), never a traceback, never code run, never wrong predictions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mlabel import folder
from mlabel.cli import main
from mlabel.errors import ModelError
from mlabel.model import EncoderClassifier
from mlabel.predict import Predictor

# Python that leaves a marker file if anything ever imports it.
EVIL = "from pathlib import Path\nPath(__file__).with_name('EXECUTED').write_text('ran')\n"


@pytest.fixture
def model_dir(trained_tiny, tmp_path) -> Path:
    return shutil.copytree(trained_tiny, tmp_path / "model")


def _edit_json(path: Path, **changes) -> None:
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps({k: v for k, v in raw.items() if v is not ...}))


def _auto_map(d: Path, model_type: str) -> str:
    (d / "evil.py").write_text(EVIL)
    auto_map = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    _edit_json(d / "config.json", auto_map=auto_map, model_type=model_type)
    return "config.json"


def _tokenizer_auto_map(d: Path) -> str:
    (d / "evil.py").write_text(EVIL)
    _edit_json(d / "tokenizer_config.json", auto_map={"AutoTokenizer": ["evil.Tok", None]})
    return "tokenizer_config.json"


def _truncate(name: str) -> Callable[[Path], str]:
    def tamper(d: Path) -> str:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
        return name

    return tamper


def _garbage(name: str) -> Callable[[Path], str]:
    def tamper(d: Path) -> str:
        (d / name).parent.mkdir(exist_ok=True)
        (d / name).write_bytes(b"\x00garbage" * 64)
        return name

    return tamper


def _text(name: str, content: str) -> Callable[[Path], str]:
    def tamper(d: Path) -> str:
        (d / name).write_text(content)
        return name

    return tamper


def _empty_tokenizer(d: Path) -> str:
    """The error names the folder: a tokenizer is read from several of its files."""
    (d / "tokenizer.json").write_text("{}")
    return "."


def _head(rows: int, hidden: int) -> Callable[[Path], str]:
    def tamper(d: Path) -> str:
        save_file(
            {"weight": torch.zeros(rows, hidden), "bias": torch.zeros(rows)},
            str(d / folder.HEAD_FILE),
        )
        return folder.HEAD_FILE

    return tamper


def _three_labels(d: Path) -> str:
    """mlabel.json lists 3 labels, the head (and the TF-IDF member) still score 6."""
    info = json.loads((d / folder.META_FILE).read_text())
    ensemble = info.get("ensemble", ...)  # `...`: no such key
    weight = ensemble.get("weight") if isinstance(ensemble, dict) else None
    if isinstance(weight, list):  # a per-label blend weight: keep it consistent
        ensemble = {**ensemble, "weight": weight[:3]}
    _edit_json(
        d / folder.META_FILE, labels=info["labels"][:3], thresholds=[0.5] * 3, ensemble=ensemble
    )
    return folder.HEAD_FILE


def _drop_encoder_tensor(d: Path) -> str:
    tensors = load_file(str(d / "model.safetensors"))
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    return "model.safetensors"


def _wider_config(d: Path) -> str:
    _edit_json(d / "config.json", hidden_size=64)
    return "model.safetensors"


def _record(**changes) -> Callable[[Path], str]:
    def tamper(d: Path) -> str:
        _edit_json(d / folder.META_FILE, **changes)
        return folder.META_FILE

    return tamper


def _link(target: Callable[[Path], Path]) -> Callable[[Path], str]:
    def tamper(d: Path) -> str:
        outside = target(d)
        (d / "model.safetensors").unlink()
        (d / "model.safetensors").symlink_to(outside)
        return "model.safetensors"

    return tamper


def _linked_member(d: Path) -> str:
    other = shutil.copytree(d / "tfidf", d.parent / "elsewhere")
    shutil.rmtree(d / "tfidf")
    (d / "tfidf").symlink_to(other, target_is_directory=True)
    return "tfidf"


TAMPERED = {
    "auto_map, custom model_type": (lambda d: _auto_map(d, "evil-bert"), "refusing auto_map"),
    "auto_map, bert model_type": (lambda d: _auto_map(d, "bert"), "refusing auto_map"),
    "tokenizer auto_map": (_tokenizer_auto_map, "refusing auto_map"),
    "truncated encoder": (_truncate("model.safetensors"), "cannot load"),
    "garbage encoder": (_garbage("model.safetensors"), "cannot load"),
    "encoder lacks a tensor": (_drop_encoder_tensor, "lacks embeddings"),
    "config wider than weights": (_wider_config, "config.json makes it"),
    "corrupt head": (_garbage(folder.HEAD_FILE), "cannot load"),
    "truncated head": (_truncate(folder.HEAD_FILE), "cannot load"),
    "head with 3 labels": (_head(3, 32), "expected bias 6, weight 6x32"),
    "head of another hidden size": (_head(6, 16), "hidden size 32"),
    "record with 3 labels": (_three_labels, "expected bias 3, weight 3x32"),
    "corrupt tfidf weights": (_garbage("tfidf/weights.safetensors"), "cannot load"),
    "tfidf settings not an object": (_text("tfidf/settings.json", "[]"), "expected a JSON object"),
    "config not JSON": (_text("config.json", "{not json"), "not valid JSON"),
    "tokenizer emptied": (_empty_tokenizer, "cannot load its tokenizer"),
    "record: labels missing": (_record(labels=...), "missing labels"),
    "record: config a list": (_record(config=[1]), "config is \\[1\\], expected an object"),
    "record: metrics a string": (_record(metrics="x"), "metrics is 'x'"),
    "record: versions a number": (_record(versions=3), "versions is 3"),
    "record: threshold_method a number": (_record(threshold_method=5), "expected a string"),
    "record: stride text": (_record(stride="64"), "stride is '64'"),
    "record: rule with text": (_record(rule={"top_k": "2"}), "rule.top_k is '2'"),
    "record: unknown engine": (_record(engine={"choice": "gpu"}), "engine.choice is 'gpu'"),
    "record: newer format": (_record(format=99), "format is 99"),
    "link to /etc/passwd": (_link(lambda d: Path("/etc/passwd")), "link out of the model folder"),
    "link to another folder's file": (
        _link(lambda d: shutil.copy(d / "model.safetensors", d.parent / "other.safetensors")),
        "link out of the model folder",
    ),
    "linked folder": (_linked_member, "link out of the model folder"),
}


def _assert_one_line_naming(error: str, path: Path) -> None:
    assert "\n" not in error.strip() and "Traceback" not in error
    assert str(path) in error


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_folder_is_one_line_naming_the_file(model_dir, case, capsys):
    """Each file's own check, as for a folder saved before records listed digests."""
    tamper, message = TAMPERED[case]
    bad = model_dir / tamper(model_dir)
    _edit_json(model_dir / folder.META_FILE, files=...)
    with pytest.raises(ModelError, match=message) as error:
        Predictor(model_dir, "torch")
    _assert_one_line_naming(str(error.value), bad)
    capsys.readouterr()
    assert main(["predict", str(model_dir), "--text", "x", "--engine", "torch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "warning" not in err
    _assert_one_line_naming(err, bad)
    assert not (model_dir / "EXECUTED").exists()


def test_custom_code_is_never_run_for_an_encoder_either(tiny_encoder, tmp_path):
    encoder = shutil.copytree(tiny_encoder, tmp_path / "encoder")
    _auto_map(encoder, "evil-bert")
    with pytest.raises(ModelError, match="config.json: refusing auto_map"):
        EncoderClassifier.from_encoder(str(encoder), n_labels=2)
    assert not (encoder / "EXECUTED").exists()


def _onnx_graph(n_labels: int) -> bytes:
    """A valid ONNX model with the exported inputs whose logits have `n_labels` columns."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"])
        for n in ("input_ids", "attention_mask")
    ]
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_labels])
    ones = numpy_helper.from_array(np.ones((1, n_labels), dtype=np.float32), "ones")
    axis = numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["ids", "axis"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "ones"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "g", inputs, [logits], initializer=[ones, axis])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x08garbage, not a protobuf" * 32, "not a usable ONNX model"),
        (None, r"outputs \['batch', 3\], expected \[batch, 6\]"),
    ],
)
def test_a_swapped_onnx_file_is_one_line_naming_it(model_dir, content, message, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    bad = folder.onnx_path(model_dir, "onnx")
    bad.parent.mkdir()
    bad.write_bytes(content if content is not None else _onnx_graph(3))
    with pytest.raises(ModelError, match=message) as error:
        Predictor(model_dir, "onnx")
    _assert_one_line_naming(str(error.value), bad)
    assert main(["predict", str(model_dir), "--text", "x", "--engine", "onnx"]) == 2
    _assert_one_line_naming(capsys.readouterr().err, bad)


def test_a_link_inside_the_folder_is_fine(model_dir, trained_tiny):
    (model_dir / "config-copy.json").symlink_to(model_dir / "config.json")
    texts = ["a quantum field", "a graph algorithm"]
    np.testing.assert_array_equal(
        Predictor(model_dir, "torch", device="cpu").predict_proba(texts),
        Predictor(trained_tiny, "torch", device="cpu").predict_proba(texts),
    )


def _flip_last_byte(name: str) -> Callable[[Path], str]:
    """Damage the data, not the header: the file still parses, its numbers are wrong."""

    def tamper(d: Path) -> str:
        data = bytearray((d / name).read_bytes())
        data[-1] ^= 0xFF
        (d / name).write_bytes(bytes(data))
        return name

    return tamper


def _config_number(d: Path) -> str:
    _edit_json(d / "config.json", layer_norm_eps=0.1)  # loads fine, computes something else
    return "config.json"


def _remove(name: str) -> Callable[[Path], str]:
    def tamper(d: Path) -> str:
        (d / name).unlink()
        return name

    return tamper


DAMAGED = {
    "encoder weights": (_flip_last_byte("model.safetensors"), "damaged or replaced"),
    "head weights": (_flip_last_byte(folder.HEAD_FILE), "damaged or replaced"),
    "tfidf weights": (_flip_last_byte("tfidf/weights.safetensors"), "damaged or replaced"),
    "tokenizer": (_flip_last_byte("tokenizer.json"), "damaged or replaced"),
    "config": (_config_number, "damaged or replaced"),
    "a file removed": (_remove(folder.HEAD_FILE), "missing, though mlabel.json lists it"),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_file_that_differs_from_its_digest_is_refused(model_dir, case, capsys):
    """Damage no parser notices (a flipped byte in the weights, one config number) would
    give wrong predictions without an error; the digests in mlabel.json catch it."""
    assert set(folder.read(model_dir).files) >= {"model.safetensors", folder.HEAD_FILE}
    tamper, message = DAMAGED[case]
    bad = model_dir / tamper(model_dir)
    with pytest.raises(ModelError, match=message) as error:
        Predictor(model_dir, "torch", device="cpu")
    _assert_one_line_naming(str(error.value), bad)
    assert main(["predict", str(model_dir), "--text", "x", "--engine", "torch"]) == 2
    _assert_one_line_naming(capsys.readouterr().err, bad)


def test_a_listed_name_outside_the_folder_is_refused(model_dir):
    _edit_json(model_dir / folder.META_FILE, files={"../other/model.safetensors": "0" * 64})
    with pytest.raises(ModelError, match="lists '../other/model.safetensors', outside"):
        Predictor(model_dir, "torch", device="cpu")
