"""Task-adaptive pre-training: continued masked-LM training of the encoder on unlabelled texts
("Don't Stop Pretraining", Gururangan et al. 2020), written as an ordinary Hugging Face folder
that `mlabel train --model` takes."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import (
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

from mlabel.cells import require_columns
from mlabel.config import TrainConfig
from mlabel.data import join_text_parts, read_rows, text_cells
from mlabel.encoding import Encoded, collate, encode, load_tokenizer, training_batches
from mlabel.errors import ConfigError, DataError, ModelError
from mlabel.folder import refuse_remote_code, staged
from mlabel.model import first_line, resolve_encoder
from mlabel.runtime import (
    attention_kernels,
    autocast_dtype,
    checked_autocast,
    reuse_freed_memory,
    setup,
)
from mlabel.tables import table_format

MLM_PROBABILITY = 0.15  # BERT's masking rate, which the paper keeps
WARMUP = 0.06  # share of the steps with a rising learning rate (the paper's RoBERTa recipe)
RECORD = "adapt.json"  # what the folder was adapted from, and the loss per epoch


def read_texts(path: str | Path, text_cols: list[str]) -> list[str]:
    """Unlabelled texts: one per line of a .txt file (fastText's labels left out), or a table's
    text columns joined as training joins them. Blank lines and rows are skipped; a file with no
    text at all is an error."""
    path = Path(path)
    if not path.is_dir() and table_format(path) == ".txt":
        text_cols = ["text"]
    df, source = read_rows(path, text_cols, id_col="ID")
    require_columns(df, text_cols, source, "--text-cols")
    parts = [text_cells(df, c).tolist() for c in text_cols]
    texts = [t for t in (join_text_parts(row) for row in zip(*parts)) if t]
    if not texts:
        raise DataError(f"{path.name}: no text in column(s) {', '.join(text_cols)}")
    return texts


def adapt_encoder(
    texts: list[str],
    model: str | Path,
    out: Path,
    *,
    epochs: int = 1,
    max_len: int = 128,
    batch_size: int = 32,
    lr: float = 5e-5,
    seed: int = 42,
    threads: int | None = None,
) -> Path:
    """Continue masked-LM training of encoder `model` (a name, a path or `default`) on `texts`
    and save it, with its tokenizer, to `out` (replaced only once complete). An encoder saved
    without a masked-LM head (all-MiniLM-L6-v2) gets a new one, randomly initialised, whose
    word decoder is tied to the input embeddings."""
    if not texts:
        raise DataError("no texts to adapt the encoder on")
    if epochs < 1 or batch_size < 1 or max_len < 8 or not lr > 0:
        raise ConfigError(
            f"adapt: epochs {epochs}, batch_size {batch_size}, max_len {max_len}, lr {lr}: "
            "expected epochs and batch_size 1 or more, max_len 8 or more, lr above 0"
        )
    rt = setup(threads)
    if rt.distributed:
        raise ConfigError(
            "adapting runs as one process: run `mlabel adapt` without torchrun, "
            "then train with --model"
        )
    torch.manual_seed(seed)  # the new head's initialisation and dropout
    path = resolve_encoder(str(model))
    tokenizer = load_tokenizer(path)
    encoded = encode(tokenizer, texts, max_len)  # first: a max_len past the limit stops here
    mlm = _load_masked_lm(path, str(model)).to(rt.device)
    with attention_kernels(rt.device), reuse_freed_memory(rt.device):
        losses = _train(mlm, tokenizer, encoded, epochs, batch_size, lr, seed)
    record = {"model": str(model), "texts": len(texts), "epochs": epochs, "max_len": max_len}
    record |= {"batch_size": batch_size, "lr": lr, "seed": seed, "loss": losses}
    out = Path(out)
    with staged(out) as tmp:
        mlm.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return out


def _load_masked_lm(path: str, name: str) -> PreTrainedModel:
    """The encoder with its masked-LM head; a missing head is made (and said so)."""
    if Path(path).is_dir():
        refuse_remote_code(Path(path) / "config.json")
    try:
        mlm, info = AutoModelForMaskedLM.from_pretrained(
            path, use_safetensors=True, trust_remote_code=False, output_loading_info=True
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load encoder {name!r} as a masked LM: {first_line(exc)}"
        ) from None
    # A tied decoder is not stored, so it is "missing" even when the head is there.
    tied = {"cls.predictions.decoder.weight", "lm_head.decoder.weight"}
    if set(info["missing_keys"]) - tied:
        warnings.warn(
            f"encoder {name!r} has no masked-LM head: starting from a new, random one "
            "(its word decoder is tied to the input embeddings)",
            stacklevel=3,
        )
    return mlm


def _train(
    mlm: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: Encoded,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> list[float]:
    """AdamW with linear warmup and decay over length-grouped batches; the mean masked-token
    loss of each epoch."""
    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=MLM_PROBABILITY, return_tensors="pt", seed=seed
    )
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(encoded.lengths) / batch_size)
    optimizer = torch.optim.AdamW(mlm.parameters(), lr=lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(WARMUP * steps), steps)
    device = next(mlm.parameters()).device
    dtype = autocast_dtype("auto", device)
    dtype = dtype if dtype == torch.bfloat16 else None  # fp16 would need a loss scaler
    sample = collate(encoded, np.arange(min(2, len(encoded.lengths))))
    dtype, note = checked_autocast(mlm, {k: v.to(device) for k, v in sample.items()}, dtype)
    if note:
        warnings.warn(note, stacklevel=2)
    mlm.train()
    losses = []
    for epoch in range(epochs):
        batches = training_batches(encoded.lengths, batch_size, generator)
        total, count = 0.0, 0
        for rows in tqdm(batches, desc=f"adapt epoch {epoch + 1}/{epochs}", leave=False):
            batch = collator([{"input_ids": _row(encoded, i)} for i in rows])
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = masked_lm_loss(mlm, batch)
            if torch.isnan(loss):  # no token masked in this batch (tiny batches of short texts)
                continue
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mlm.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            masked = int((batch["labels"] != -100).sum())
            total, count = total + loss.item() * masked, count + masked
        losses.append(round(total / max(count, 1), 4))
    mlm.eval()
    return losses


def masked_lm_loss(mlm: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean cross-entropy over the masked tokens. The vocabulary projection runs on those
    tokens alone (15%), not on every token as `mlm(**batch).loss` does: for a small encoder such
    as all-MiniLM-L6-v2 it costs as much as the encoder itself."""
    head = getattr(mlm, "cls", None)  # BERT-like; RoBERTa-like models call it lm_head
    head = head if head is not None else getattr(mlm, "lm_head", None)
    if head is None:
        return mlm(**batch).loss
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = mlm.base_model(**inputs).last_hidden_state
    masked = batch["labels"] != -100
    return F.cross_entropy(head(hidden[masked]).float(), batch["labels"][masked])


def _row(encoded: Encoded, i: int) -> list[int]:
    return encoded.ids[i, : encoded.lengths[i]].tolist()


def adapted_config(cfg: TrainConfig, out: Path, resume: bool = False) -> TrainConfig:
    """With `cfg.unlabeled`: the encoder adapted to those texts in `out/adapted` (one already
    there is kept on resume), as the model to train from; otherwise `cfg` unchanged."""
    if not cfg.unlabeled:
        return cfg
    if cfg.model == "tfidf":
        raise ConfigError("unlabeled texts adapt an encoder; the tfidf model has none")
    target = Path(out) / "adapted"
    if not (resume and (target / RECORD).is_file()):
        texts = read_texts(cfg.unlabeled, cfg.text_cols)
        adapt_encoder(
            texts, cfg.model, target, max_len=cfg.max_len, seed=cfg.seed, threads=cfg.threads
        )
    return cfg.replace(model=str(target))
