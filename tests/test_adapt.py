"""Task-adaptive pre-training (`mlabel.adapt`, `mlabel adapt`, `train --unlabeled`) on tiny BERTs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_encoder_of
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
)

from mlabel.adapt import RECORD, adapt_encoder, adapted_config, masked_lm_loss, read_texts
from mlabel.cli import main
from mlabel.config import TrainConfig
from mlabel.errors import ConfigError, DataError

FAST = dict(max_len=32, batch_size=8, lr=1e-3, threads=2)


@pytest.fixture(scope="module")
def tiny_mlm(tiny_encoder, tmp_path_factory) -> str:
    """The tiny BERT with a masked-LM head (the shipped default model has none)."""
    path = tmp_path_factory.mktemp("tiny-mlm")
    torch.manual_seed(0)
    config = BertConfig.from_pretrained(tiny_encoder)
    BertForMaskedLM(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def texts(small_csv) -> list[str]:
    return pd.read_csv(small_csv)["ABSTRACT"].head(40).tolist()


def weights(folder: Path | str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def test_adapt_changes_the_encoder_and_keeps_the_tied_head(tiny_mlm, texts, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checkpoint with its head: no "new head" warning
        out = adapt_encoder(texts, tiny_mlm, tmp_path / "adapted", **FAST)
    before, after = weights(tiny_mlm), weights(out)
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(before[key], after[key])
    mlm, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert set(info["missing_keys"]) <= {"cls.predictions.decoder.weight"}  # tied, not stored
    decoder = mlm.get_output_embeddings().weight
    assert decoder.data_ptr() == mlm.get_input_embeddings().weight.data_ptr()
    assert AutoModel.from_pretrained(out).config.hidden_size == 32  # the plain encoder loads


def test_an_encoder_without_a_head_gets_a_new_one_and_says_so(tiny_encoder, texts, tmp_path):
    with pytest.warns(UserWarning, match="no masked-LM head"):
        out = adapt_encoder(texts[:16], tiny_encoder, tmp_path / "adapted", **FAST)
    assert "cls.predictions.transform.dense.weight" in weights(out)  # saved for a next round


@pytest.mark.filterwarnings("ignore:.*no masked-LM head")  # a bare encoder: said elsewhere
def test_an_encoder_failing_under_bf16_autocast_adapts_in_fp32(texts, tmp_path, monkeypatch):
    """As training does (test_precision): DeBERTa v1 on a CPU with bf16 units."""
    monkeypatch.setattr("mlabel.runtime.cpu_has_fast_bf16", lambda: True)
    deberta = tiny_encoder_of("deberta", tmp_path / "deberta")
    with pytest.warns(UserWarning, match="precision auto: the encoder fails under bfloat16"):
        out = adapt_encoder(texts[:16], deberta, tmp_path / "adapted", **FAST)
    assert AutoModel.from_pretrained(out).config.model_type == "deberta"


def test_the_masked_only_loss_equals_the_full_forward_loss(tiny_mlm, texts):
    tokenizer = AutoTokenizer.from_pretrained(tiny_mlm)
    collator = DataCollatorForLanguageModeling(tokenizer, seed=0)
    batch = collator(
        [
            {"input_ids": tokenizer(t, truncation=True, max_length=32)["input_ids"]}
            for t in texts[:8]
        ]
    )
    mlm = AutoModelForMaskedLM.from_pretrained(tiny_mlm).eval()
    with torch.no_grad():
        assert torch.allclose(masked_lm_loss(mlm, batch), mlm(**batch).loss, atol=1e-5)


def test_adapt_is_deterministic_given_the_seed(tiny_mlm, texts, tmp_path):
    runs = [
        weights(adapt_encoder(texts[:24], tiny_mlm, tmp_path / name, seed=seed, **FAST))
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    key = "bert.encoder.layer.1.output.dense.weight"
    assert torch.equal(runs[0][key], runs[1][key])
    assert not torch.equal(runs[0][key], runs[2][key])


def test_read_texts_from_a_table_or_lines(tmp_path):
    table = tmp_path / "u.csv"
    pd.DataFrame({"TITLE": ["a", "", None], "ABSTRACT": ["b", "c", None]}).to_csv(table)
    assert read_texts(table, ["TITLE", "ABSTRACT"]) == ["a\nb", "c"]  # the empty row skipped
    lines = tmp_path / "u.txt"
    lines.write_text("first text\n\n  second  \n__label__x third\n", encoding="utf-8")
    assert read_texts(lines, ["ignored"]) == ["first text", "second", "third"]
    (tmp_path / "bad.txt.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="bad.txt.gz: cannot read"):
        read_texts(tmp_path / "bad.txt.gz", ["text"])


@pytest.mark.parametrize(
    "column, message", [("TITLE", "no text in column"), ("BODY", "'BODY' not found")]
)
def test_empty_or_missing_text_column_is_a_one_line_error(tmp_path, capsys, column, message):
    table = tmp_path / "u.csv"
    pd.DataFrame({"TITLE": ["", None], "x": [1, 2]}).to_csv(table, index=False)
    with pytest.raises(DataError, match=message):
        read_texts(table, [column])
    assert main(["adapt", str(table), "--text-cols", column, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_adapt_then_train_from_it(tiny_mlm, tiny_settings, small_csv, texts, tmp_path):
    lines = tmp_path / "unlabelled.txt"
    lines.write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    adapted = tmp_path / "adapted"
    argv = ["adapt", lines, "--out", adapted, "--model", tiny_mlm, "--max-len", "32"]
    assert main([str(a) for a in [*argv, "--batch-size", "8", "--threads", "2"]]) == 0
    assert (adapted / RECORD).is_file() and (adapted / "tokenizer.json").is_file()
    train = ["train", small_csv, "--model", adapted, "--text-cols", "TITLE", "ABSTRACT"]
    train += ["--max-len", "32", "--epochs", "1", "--threads", "2", "--ensemble", "none"]
    assert main([str(a) for a in [*train, "--out", tmp_path / "run"]]) == 0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_train_unlabeled_adapts_first_and_records_it(tiny_encoder, small_csv, texts, tmp_path):
    unlabelled = tmp_path / "unlabelled.csv"
    pd.DataFrame({"TITLE": texts[:20], "ABSTRACT": texts[20:]}).to_csv(unlabelled, index=False)
    train = ["train", small_csv, "--model", tiny_encoder, "--text-cols", "TITLE", "ABSTRACT"]
    train += ["--max-len", "32", "--epochs", "1", "--threads", "2", "--ensemble", "none"]
    run = tmp_path / "run"
    assert main([str(a) for a in [*train, "--unlabeled", unlabelled, "--out", run]]) == 0
    assert (run / "adapted" / RECORD).is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert saved["unlabeled"] == str(unlabelled) and saved["model"] == str(run / "adapted")
    assert (run / "model" / "model.safetensors").is_file()


def test_a_resumed_run_keeps_its_adapted_encoder(tmp_path):
    (tmp_path / "adapted").mkdir()
    (tmp_path / "adapted" / RECORD).write_text("{}", encoding="utf-8")
    cfg = TrainConfig(unlabeled=str(tmp_path / "gone.txt"))  # read only when adapting anew
    assert adapted_config(cfg, tmp_path, resume=True).model == str(tmp_path / "adapted")
    with pytest.raises(DataError, match="gone.txt: file not found"):
        adapted_config(cfg, tmp_path, resume=False)
    with pytest.raises(ConfigError, match="tfidf"):
        adapted_config(cfg.replace(model="tfidf"), tmp_path)
