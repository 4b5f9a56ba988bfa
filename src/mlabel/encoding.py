"""Tokenization once per dataset, length-grouped batches and dynamic padding."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import normalizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from mlabel.errors import ConfigError

NON_ASCII = re.compile(r"[^\x00-\x7f]")


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    if not tokenizer.is_fast:
        raise ValueError(f"{path}: mlabel needs a fast (Rust) tokenizer")
    tokenizer.padding_side = "right"  # `collate` cuts rows on the right
    saved = _saved_names(Path(path) / "tokenizer.json")
    _read_as(tokenizer, {c: name for c, name in saved.items() if _unknown(tokenizer, c)})
    return tokenizer


def spell_out_symbols(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> list[str]:
    """Have `tokenizer` read each symbol in `texts` that it would turn into its unknown token
    (emoji, mostly) as the symbol's Unicode name: "😂" becomes "face with tears of joy". The
    names are replacements in the tokenizer's normalizer, so they are saved with it
    (tokenizer.json) and offsets still point at the symbol. Returns the symbols added."""
    found = {c for text in texts for c in NON_ASCII.findall(text)}
    symbols = sorted(c for c in found if is_symbol(c) and _unknown(tokenizer, c))
    _read_as(tokenizer, {c: f" {unicodedata.name(c).lower()} " for c in symbols})
    return symbols


def is_symbol(piece: str) -> bool:
    """Whether `piece` is one symbol (Unicode category So, emoji among them) that
    spell_out_symbols would name."""
    return len(piece) == 1 and unicodedata.category(piece) == "So"


def _read_as(tokenizer: PreTrainedTokenizerBase, names: dict[str, str]) -> None:
    """Replace each symbol by its name before the tokenizer's own normalizer runs."""
    if names:
        backend = tokenizer.backend_tokenizer
        steps = [normalizers.Replace(c, name) for c, name in names.items()]
        if backend.normalizer is not None:
            steps.append(backend.normalizer)
        backend.normalizer = normalizers.Sequence(steps)


def _saved_names(file: Path) -> dict[str, str]:
    """The symbol names spell_out_symbols saved in a model's tokenizer.json: transformers
    rebuilds some tokenizers' normalizers (BERT's) from their settings on load, dropping them;
    load_tokenizer puts back those the loaded tokenizer does not read already."""
    if not file.is_file():
        return {}
    normalizer = json.loads(file.read_text(encoding="utf-8")).get("normalizer") or {}
    names = {}
    for step in normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else []:
        symbol = step.get("pattern", {}).get("String", "") if step.get("type") == "Replace" else ""
        if not is_symbol(symbol):
            break  # not one of ours: a model's own replacements stay as transformers loads them
        names[symbol] = step["content"]
    return names


def _unknown(tokenizer: PreTrainedTokenizerBase, char: str) -> bool:
    """Whether the tokenizer reads `char` as its unknown token (and Unicode names the char)."""
    ids = tokenizer(char, add_special_tokens=False)["input_ids"]
    return tokenizer.unk_token_id in ids and bool(unicodedata.name(char, ""))


@dataclass
class Encoded:
    """Padded token ids, one row per window; `owner[i]` is the text that window i came from."""

    ids: np.ndarray
    lengths: np.ndarray
    owner: np.ndarray
    n_texts: int
    n_truncated: int


def encode(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_len: int,
    chunk: bool = False,
    stride: int = 64,
) -> Encoded:
    """Tokenize in one batched call; with `chunk`, long texts become overlapping windows."""
    check_max_len(tokenizer, max_len)
    out = tokenizer(
        texts,
        truncation=True,
        max_length=max_len,
        stride=stride if chunk else 0,
        return_overflowing_tokens=True,
        return_token_type_ids=False,
        padding="longest",
        return_tensors="np",
    )
    owner = np.asarray(out["overflow_to_sample_mapping"], dtype=np.int64)
    first = np.ones(len(owner), dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    n_truncated = int(len(np.unique(owner[~first])))
    ids = out["input_ids"].astype(np.int64)
    lengths = out["attention_mask"].sum(axis=1).astype(np.int64)
    if not chunk:
        ids, lengths, owner = ids[first], lengths[first], owner[first]
    return Encoded(ids, lengths, owner, n_texts=len(texts), n_truncated=n_truncated)


def check_max_len(tokenizer: PreTrainedTokenizerBase, max_len: int) -> None:
    """ConfigError for a `max_len` past the encoder's limit (its tokenizer's model_max_length,
    where it names one): position embeddings end there, and the encoder would fail mid-run."""
    limit = tokenizer.model_max_length
    if limit < 10**9 and max_len > limit:
        raise ConfigError(
            f"max_len {max_len} is over the encoder's limit of {limit} tokens: lower --max-len "
            "(texts longer than it are read whole with --long chunk)"
        )


def training_batches(
    lengths: np.ndarray, batch_size: int, generator: torch.Generator, group: int = 64
) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort within pools of `group` batches, shuffle batches."""
    order = torch.randperm(len(lengths), generator=generator).numpy()
    pool = batch_size * group
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


MAX_BATCH_ROWS = 128  # rows per inference batch, however short the texts


def inference_batches(
    lengths: np.ndarray, max_tokens: int, max_batch: int = MAX_BATCH_ROWS
) -> list[np.ndarray]:
    """Batches of length-sorted rows holding at most `max_tokens` padded tokens each."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(max_batch, max_tokens // longest))
        batches.append(order[start : start + size])
        start += size
    return batches


def collate(encoded: Encoded, rows: np.ndarray, multiple: int = 1) -> dict[str, torch.Tensor]:
    """The selected rows cut to their longest member (dynamic padding), rounded up to a
    `multiple` of tokens where the padded ids allow, with the attention mask."""
    longest = int(encoded.lengths[rows].max())
    width = min(-(-longest // multiple) * multiple, encoded.ids.shape[1])
    input_ids = encoded.ids[rows, :width]
    mask = np.arange(width)[None, :] < encoded.lengths[rows][:, None]
    return {
        "input_ids": torch.from_numpy(np.ascontiguousarray(input_ids)),
        "attention_mask": torch.from_numpy(mask.astype(np.int64)),
    }


def pool_windows(window_probs: np.ndarray, owner: np.ndarray, n_texts: int, how: str) -> np.ndarray:
    """Combine per-window probabilities into one row per text (`max` or `mean`)."""
    if len(owner) == n_texts:
        return window_probs
    out = np.zeros((n_texts, window_probs.shape[1]), dtype=window_probs.dtype)
    if how == "max":
        np.maximum.at(out, owner, window_probs)
    else:
        np.add.at(out, owner, window_probs)
        out /= np.bincount(owner, minlength=n_texts)[:, None]
    return out
