"""Long texts: `--long chunk` reads past the first window; truncation is reported once."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from mlabel.classifier import fit_model
from mlabel.cli import main
from mlabel.config import TrainConfig
from mlabel.predict import Predictor

FILLER = [f"w{i}" for i in range(16)]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


@pytest.fixture(scope="module")
def word_encoder(tmp_path_factory) -> str:
    """A tiny BERT with a word-level vocabulary: filler words plus the two deciding words."""
    path = tmp_path_factory.mktemp("word-bert")
    vocab = {word: i for i, word in enumerate([*SPECIAL, *FILLER, "alpha", "beta"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    ).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    return str(path)


def long_texts(n: int, seed: int, filler: int = 60, repeat: int = 4) -> pd.DataFrame:
    """`filler` random words, then the deciding word, then a few more: the label is that word.

    With max_len 32 (30 words a window) the deciding word sits in the third window.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        word = "alpha" if i % 2 == 0 else "beta"
        words = [rng.choice(FILLER) for _ in range(filler)] + [word] * repeat
        words += [rng.choice(FILLER) for _ in range(4)]
        rows.append({"ID": f"t{i}", "text": " ".join(words), "alpha": int(i % 2 == 0)})
        rows[-1]["beta"] = 1 - rows[-1]["alpha"]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def long_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.csv"
    long_texts(64, seed=0).to_csv(path, index=False)
    return path


def settings(encoder: str, long: str) -> TrainConfig:
    return TrainConfig(
        model=encoder,
        long=long,
        max_len=32,
        stride=8,
        epochs=5,
        batch_size=16,
        lr=1e-2,
        warmup=0.0,
        dropout=0.0,
        patience=0,
        val_frac=0.25,
        thresholds="global",
        ensemble=None,  # TF-IDF reads whole texts: it would hide what truncation does
        threads=2,
        seed=0,
        precision="fp32",
    )


def accuracy(model_dir: Path) -> float:
    test = long_texts(40, seed=1)
    probs = Predictor(model_dir, engine="torch").predict_proba(test["text"].tolist())
    return float(np.mean(probs.argmax(1) == test["beta"].to_numpy()))


def test_chunking_reads_past_the_first_window(word_encoder, long_csv, tmp_path):
    result = fit_model(settings(word_encoder, "chunk"), long_csv, tmp_path / "chunk")
    meta = json.loads((result.model_dir / "mlabel.json").read_text())
    assert meta["long"] == "chunk" and meta["stride"] == 8
    assert accuracy(result.model_dir) >= 0.9
    assert result.metrics["micro_f1"] >= 0.8  # validation scored per text, windows pooled


def test_truncation_is_at_chance_and_reported_once(word_encoder, long_csv, tmp_path, capsys):
    result = fit_model(settings(word_encoder, "truncate"), long_csv, tmp_path / "cut")
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("train: 48 of 48 texts are longer than max_len 32 tokens") == 1
    assert err.count("validation: 16 of 16 texts") == 1 and "--long chunk" in err
    assert accuracy(result.model_dir) <= 0.7


def test_cli_chunk_train_and_predict(word_encoder, long_csv, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", str(long_csv), "--model", word_encoder, "--long", "chunk", "--max-len", "32"]
    argv += ["--stride", "8", "--epochs", "1", "--threads", "2", "--out", str(run)]
    assert main(argv) == 0
    assert "truncated" not in capsys.readouterr().err
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run / "model"), str(long_csv), "-o", str(out)]) == 0
    assert list(pd.read_csv(out).columns) == ["ID", "alpha", "beta"]
