"""The encoder classifier: pooling, and a model folder that saves and loads symmetrically."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import ARCHITECTURES, tiny_encoder_of
from safetensors.torch import load_file
from transformers import AutoModel, PretrainedConfig

from mlabel import folder
from mlabel.encoding import collate, encode, load_tokenizer
from mlabel.errors import ModelError
from mlabel.folder import refuse_pickles
from mlabel.model import EncoderClassifier, _set_attention_dropout, attention, pool


@pytest.fixture(scope="module")
def batch(tiny_encoder):
    enc = encode(load_tokenizer(tiny_encoder), ["a short text", "a longer text " * 5], 32)
    return collate(enc, [0, 1])


def test_pool_mean_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_save_load_round_trip(tiny_encoder, batch, tmp_path, pooling):
    torch.manual_seed(0)
    model = EncoderClassifier.from_encoder(tiny_encoder, 5, pooling=pooling).eval()
    with torch.no_grad():
        before = model(**batch)
    assert before.shape == (2, 5)
    model.save(tmp_path)
    loaded = EncoderClassifier.load(tmp_path, pooling, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch), before, atol=1e-6, rtol=0)
    assert not loaded.training


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_encoders_of_other_architectures_round_trip(kind, batch, tmp_path):
    """The bare encoder (without a pooler layer where its model has an optional one), saved
    and loaded with the same outputs."""
    model = EncoderClassifier.from_encoder(tiny_encoder_of(kind, tmp_path / "enc"), 3).eval()
    assert getattr(model.encoder, "pooler", None) is None
    with torch.no_grad():
        before = model(**batch)
    model.save(tmp_path / "model")
    loaded = EncoderClassifier.load(tmp_path / "model", "mean", 3)
    assert loaded.encoder.config.model_type == kind
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch), before, atol=1e-6, rtol=0)


def test_folder_opens_with_transformers(tiny_encoder, tmp_path):
    EncoderClassifier.from_encoder(tiny_encoder, 3).save(tmp_path)
    encoder = AutoModel.from_pretrained(tmp_path)
    assert encoder.config.hidden_size == 32
    assert (tmp_path / "model.safetensors").is_file()
    assert (tmp_path / "head.safetensors").is_file()


def test_pooling_changes_the_output(tiny_encoder, batch):
    torch.manual_seed(0)
    mean = EncoderClassifier.from_encoder(tiny_encoder, 3, pooling="mean").eval()
    cls = EncoderClassifier(mean.encoder, 3, "cls", 0.0).eval()
    cls.head.load_state_dict(mean.head.state_dict())
    with torch.no_grad():
        assert not torch.allclose(mean(**batch), cls(**batch))


def test_attention_switches_for_the_block_and_computes_the_same(tiny_encoder, batch):
    model = EncoderClassifier.from_encoder(tiny_encoder, 3).eval()
    assert model.encoder.config._attn_implementation == "sdpa"
    with torch.no_grad(), attention(model.encoder, "eager"):
        assert model.encoder.config._attn_implementation == "eager"
        eager = model(**batch)
    assert model.encoder.config._attn_implementation == "sdpa"
    with torch.no_grad():
        torch.testing.assert_close(model(**batch), eager, atol=1e-5, rtol=1e-5)
    with attention(model.encoder, None):
        assert model.encoder.config._attn_implementation == "sdpa"
    with attention(model.encoder, "no-such-attention"):  # refused: the encoder keeps its own
        assert model.encoder.config._attn_implementation == "sdpa"


def test_refuses_pickles(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelError, match="refusing to load pickle files"):
        refuse_pickles(tmp_path)


def test_encoder_with_only_pickle_weights_is_refused(tiny_encoder, tmp_path, monkeypatch):
    """A base encoder with pytorch_model.bin and no safetensors: refused, never unpickled."""
    shutil.copytree(tiny_encoder, tmp_path / "enc")
    weights = load_file(str(tmp_path / "enc" / "model.safetensors"))
    (tmp_path / "enc" / "model.safetensors").unlink()
    torch.save(weights, tmp_path / "enc" / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(ModelError, match=r"refusing to load pickle files \(pytorch_model.bin\)"):
        EncoderClassifier.from_encoder(str(tmp_path / "enc"), 3)


def test_missing_encoder_and_folder(tmp_path):
    with pytest.raises(ModelError, match="cannot load encoder"):
        EncoderClassifier.from_encoder(str(tmp_path / "nope"), 3)
    with pytest.raises(ModelError, match="not an mlabel model folder"):
        folder.read(tmp_path)


def _attention_dropouts(model: EncoderClassifier) -> set[float]:
    return {m.dropout.p for m in model.modules() if type(m).__name__ == "BertSelfAttention"}


def test_attention_dropout_replaces_the_encoders_own(tiny_encoder):
    assert _attention_dropouts(EncoderClassifier.from_encoder(tiny_encoder, 3)) == {0.1}
    model = EncoderClassifier.from_encoder(tiny_encoder, 3, attention_dropout=0.0)
    assert _attention_dropouts(model) == {0.0}
    assert model.encoder.config.attention_probs_dropout_prob == 0.0
    assert model.encoder.config.hidden_dropout_prob == 0.1  # the other dropouts stay


def test_attention_dropout_on_an_encoder_without_one_is_refused():
    config = PretrainedConfig()  # keeps neither key (T5 and XLNet, say, call theirs otherwise)
    with pytest.raises(ModelError, match="'t5-like' .* has no attention dropout setting"):
        _set_attention_dropout(config, 0.0, "t5-like")
