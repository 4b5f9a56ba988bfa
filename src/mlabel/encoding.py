"""Tokenization once per dataset, length-grouped batches and dynamic padding."""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
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


# texts and characters (or one longer text) per tokenizer call: its Python lists stay small
TEXTS_PER_CALL = 4096
CHARS_PER_CALL = 2**22
CHARS_PER_TOKEN = 12  # a long text's first piece holds max_len x this many characters
SPACES = " \n\t"


def encode(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_len: int,
    chunk: bool = False,
    stride: int = 64,
) -> Encoded:
    """Tokenize in batched calls; with `chunk`, long texts become overlapping windows, without
    it each text is its first `max_len` tokens."""
    check_max_len(tokenizer, max_len)
    pad = tokenizer.pad_token_id or 0
    ids, lengths, owner, longer = [], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], 0
    for start, part in text_blocks(texts):
        if chunk:
            rows, whose, more = _windows(tokenizer, part, max_len, stride)
        else:
            rows, whose, more = _heads(tokenizer, part, max_len)
        block_ids, block_lengths = _padded(rows, pad)
        ids.append(block_ids)
        lengths.append(block_lengths)
        owner.append(whose + start)
        longer += more
    return Encoded(
        _stacked(ids, pad), np.concatenate(lengths), np.concatenate(owner), len(texts), longer
    )


def text_blocks(texts: list[str]) -> Iterator[tuple[int, list[str]]]:
    """Consecutive runs of at most TEXTS_PER_CALL texts and CHARS_PER_CALL characters (or one
    longer text), each with the position of its first text."""
    start = 0
    while start < len(texts):
        end, size = start + 1, len(texts[start])
        while (
            end < len(texts)
            and end - start < TEXTS_PER_CALL
            and size + len(texts[end]) <= CHARS_PER_CALL
        ):
            size += len(texts[end])
            end += 1
        yield start, texts[start:end]
        start = end


def _windows(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_len: int, stride: int
) -> tuple[list[list[int]], np.ndarray, int]:
    """Every text's windows of `max_len` tokens overlapping by `stride`, the text each window
    comes from, and how many texts have more than one."""
    out = tokenizer(
        texts,
        truncation=True,
        max_length=max_len,
        stride=stride,
        return_overflowing_tokens=True,
        return_token_type_ids=False,
        return_attention_mask=False,
    )
    owner = np.asarray(out["overflow_to_sample_mapping"], dtype=np.int64)
    return out["input_ids"], owner, len(np.unique(owner[1:][owner[1:] == owner[:-1]]))


def _heads(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_len: int
) -> tuple[list[list[int]], np.ndarray, int]:
    """Each text's first `max_len` tokens, one row per text, and how many texts have more.

    A long text is tokenized from a piece of its start, not whole: 2,000 documents of 5,000
    words at max_len 128 take 1.6 s, not 32 s (bench/long_texts.py). The piece ends at a
    space; its first window is the whole text's when the window ends before the piece's last
    word (tokens before a space do not depend on what follows it). Where it does not, the
    piece grows and is tokenized again. A tokenizer that keeps the end of a text (truncation
    side left) reads it whole."""
    heads: list[list[int]] = [[] for _ in texts]
    longer = 0
    from_start = getattr(tokenizer, "truncation_side", "right") == "right"
    chars = [max_len * CHARS_PER_TOKEN if from_start else len(text) for text in texts]
    pending = list(range(len(texts)))
    while pending:
        pieces = [_piece(texts[i], chars[i]) for i in pending]
        out = tokenizer(
            [piece for piece, _ in pieces],
            truncation=True,
            max_length=max_len,
            return_token_type_ids=False,
            return_attention_mask=False,
        )
        again = []
        for i, (piece, last_word), window in zip(pending, pieces, out.encodings, strict=True):
            if len(piece) == len(texts[i]) or (window.overflowing and _ends_by(window, last_word)):
                heads[i], longer = window.ids, longer + bool(window.overflowing)
            else:
                chars[i] *= 4
                again.append(i)
        pending = again
    return heads, np.arange(len(texts)), longer


def _piece(text: str, chars: int) -> tuple[str, int]:
    """`text` up to its last space before `chars` (cut at `chars` where the second half of
    that has none), and where the piece's last word starts (0 when the piece has no space)."""
    if len(text) <= chars:
        return text, len(text)
    end = max(text.rfind(space, chars // 2, chars) for space in SPACES)
    piece = text[: chars if end < 0 else end]
    return piece, max(piece.rfind(space) for space in SPACES) + 1


def _ends_by(window, position: int) -> bool:
    """Whether a window's last token (not counting special tokens) ends by `position`."""
    ends = [
        end for (_, end), special in zip(window.offsets, window.special_tokens_mask) if not special
    ]
    return bool(ends) and ends[-1] <= position


def _stacked(blocks: list[np.ndarray], pad: int) -> np.ndarray:
    """Blocks of padded rows as one array, padded to the widest block."""
    width = max((block.shape[1] for block in blocks), default=0)
    out = np.full((sum(len(block) for block in blocks), width), pad, dtype=np.int64)
    row = 0
    for block in blocks:
        out[row : row + len(block), : block.shape[1]] = block
        row += len(block)
    return out


def _padded(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of token ids as one array padded with `pad` on the right, and their lengths."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    ids = np.full((len(rows), lengths.max(initial=0)), pad, dtype=np.int64)
    ids[np.arange(ids.shape[1]) < lengths[:, None]] = np.fromiter(
        itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum())
    )
    return ids, lengths


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
