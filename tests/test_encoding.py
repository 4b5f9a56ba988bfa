"""Tokenization, length-grouped batches, dynamic padding and window pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast

import mlabel.encoding
from mlabel.encoding import (
    collate,
    encode,
    inference_batches,
    load_tokenizer,
    pool_windows,
    spell_out_symbols,
    text_blocks,
    training_batches,
)

TEXTS = ["short one", "a somewhat longer text with more words in it", "mid size text here", "x"]


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return load_tokenizer(tiny_encoder)


class CountingTokenizer:
    """Passes calls through to a tokenizer and records them."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.model_max_length = tokenizer.model_max_length
        self.pad_token_id = tokenizer.pad_token_id
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tokenizer(*args, **kwargs)


def test_one_batched_tokenizer_call(tokenizer):
    counting = CountingTokenizer(tokenizer)
    enc = encode(counting, TEXTS * 50, max_len=16)
    assert counting.calls == 1
    assert enc.n_texts == 200 and len(enc.ids) == 200


def test_encode_truncates_and_keeps_lengths(tokenizer):
    long = " ".join(["word"] * 100)
    enc = encode(tokenizer, ["hi", long], max_len=16)
    assert enc.ids.shape == (2, 16)
    assert enc.lengths.tolist() == [3, 16]  # [CLS] hi [SEP]
    assert enc.owner.tolist() == [0, 1]
    assert enc.n_truncated == 1
    assert enc.ids[0, 3:].tolist() == [tokenizer.pad_token_id] * 13


def other_tokenizers() -> dict[str, PreTrainedTokenizerFast]:
    """A byte-level BPE (as RoBERTa's) and a SentencePiece unigram (as XLM-R's), trained here
    on a few texts, each adding special tokens around a text as its models do."""
    corpus = [" ".join(WORDS[i : i + 40]) for i in range(0, len(WORDS), 7)] + [
        "東京は日本の首都です"
    ]
    made = {}
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    for name, kind, unk in (
        ("bpe", ByteLevelBPETokenizer, {}),  # bytes: no unknown token
        ("unigram", SentencePieceUnigramTokenizer, {"unk_token": "<unk>"}),
    ):
        backend = kind()
        backend.train_from_iterator(corpus, vocab_size=300, special_tokens=specials, **unk)
        backend = backend._tokenizer  # the Tokenizer inside the trainer's wrapper
        backend.post_processor = TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
        )
        made[name] = PreTrainedTokenizerFast(
            tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
        )
    return made


WORDS = [f"{stem}{i}" for i in range(60) for stem in ("word", "naïve", "x", "Über-", "ab.c")]


def random_texts(seed: int) -> list[str]:
    """Texts from a few characters to thousands of words, with runs of spaces, tabs, newlines,
    punctuation, accents and Japanese (no spaces), as real tables hold."""
    rng = np.random.default_rng(seed)
    gaps = [" ", " ", " ", "  ", "\n", "\t", " \n\n", ", ", "東京"]
    texts = []
    for _ in range(60):
        n = int(rng.choice([1, 5, 30, 200, 3000]))
        parts = rng.choice(WORDS, n)
        texts.append("".join(w + str(rng.choice(gaps)) for w in parts).strip(" "))
    return texts + ["東京は日本の首都です" * 300, "x" * 20000, "", "a " * 5000]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_first_windows_are_the_whole_texts_windows(tokenizer, kind):
    tokenizer = tokenizer if kind == "wordpiece" else other_tokenizers()[kind]
    texts = random_texts(seed=len(kind))
    for max_len in (8, 32, 128):
        enc = encode(tokenizer, texts, max_len=max_len)
        whole = tokenizer(texts, truncation=True, max_length=max_len, padding="longest")
        assert enc.ids.tolist() == whole["input_ids"]
        assert enc.lengths.tolist() == [sum(mask) for mask in whole["attention_mask"]]
        assert enc.n_truncated == sum(bool(e.overflowing) for e in whole.encodings) > 0


def test_a_long_text_is_tokenized_from_a_piece_of_its_start(tokenizer):
    seen = []

    def counting(texts, **kwargs):
        seen.extend(texts)
        return tokenizer(texts, **kwargs)

    counting.model_max_length, counting.pad_token_id = tokenizer.model_max_length, 0
    book = " ".join(WORDS * 200)  # 60,000 words: the tokenizer would make 10,000 windows
    enc = encode(counting, [book, "short"], max_len=16)
    assert enc.ids[0].tolist() == tokenizer(book, truncation=True, max_length=16)["input_ids"]
    assert enc.n_truncated == 1
    assert sum(map(len, seen)) < 16 * mlabel.encoding.CHARS_PER_TOKEN + len("short")


def test_a_tokenizer_that_keeps_the_end_of_texts_reads_them_whole(tiny_encoder):
    tokenizer = load_tokenizer(tiny_encoder)
    tokenizer.truncation_side = "left"
    texts = random_texts(seed=5)
    whole = tokenizer(texts, truncation=True, max_length=16, padding="longest")
    assert encode(tokenizer, texts, max_len=16).ids.tolist() == whole["input_ids"]


def test_texts_are_tokenized_in_blocks_to_the_same_result(tokenizer, monkeypatch):
    texts = random_texts(seed=3)
    one_call = encode(tokenizer, texts, max_len=32)
    chunked = encode(tokenizer, texts, max_len=32, chunk=True, stride=8)
    monkeypatch.setattr(mlabel.encoding, "TEXTS_PER_CALL", 7)
    monkeypatch.setattr(mlabel.encoding, "CHARS_PER_CALL", 5000)
    counting = CountingTokenizer(tokenizer)
    blocks = encode(counting, texts, max_len=32)
    assert counting.calls >= -(-len(texts) // 7)
    assert all(len(b) <= 7 for _, b in text_blocks(texts))
    assert all(len(b) == 1 or sum(map(len, b)) <= 5000 for _, b in text_blocks(texts))
    assert [t for _, b in text_blocks(texts) for t in b] == texts
    chunked_blocks = encode(tokenizer, texts, max_len=32, chunk=True, stride=8)
    for name in ("ids", "lengths", "owner", "n_texts", "n_truncated"):
        np.testing.assert_array_equal(getattr(blocks, name), getattr(one_call, name))
        np.testing.assert_array_equal(getattr(chunked_blocks, name), getattr(chunked, name))


def test_no_texts_encode_to_no_rows(tokenizer):
    enc = encode(tokenizer, [], max_len=16)
    assert enc.ids.shape[0] == len(enc.lengths) == len(enc.owner) == enc.n_texts == 0


def test_chunk_mode_makes_overlapping_windows(tokenizer):
    words = [f"w{i}" for i in range(60)]
    long = " ".join(words)
    enc = encode(tokenizer, ["short", long, "also short"], max_len=32, chunk=True, stride=8)
    owners = enc.owner.tolist()
    assert owners[0] == 0 and owners[-1] == 2
    windows = [i for i, o in enumerate(owners) if o == 1]
    assert len(windows) >= 3 and owners == sorted(owners)
    assert enc.n_truncated == 1
    first = enc.ids[windows[0], 1 : enc.lengths[windows[0]] - 1].tolist()
    second = enc.ids[windows[1], 1 : enc.lengths[windows[1]] - 1].tolist()
    assert first[-8:] == second[:8]  # consecutive windows share `stride` tokens
    assert (enc.lengths <= 32).all()


def test_training_batches_cover_every_row_once_and_are_seeded():
    lengths = np.random.default_rng(0).integers(3, 200, size=1000)
    first = training_batches(lengths, 16, torch.Generator().manual_seed(7), group=4)
    again = training_batches(lengths, 16, torch.Generator().manual_seed(7), group=4)
    other = training_batches(lengths, 16, torch.Generator().manual_seed(8), group=4)
    rows = np.concatenate(first)
    assert sorted(rows.tolist()) == list(range(1000))
    assert all(len(b) <= 16 for b in first)
    assert [b.tolist() for b in first] == [b.tolist() for b in again]
    assert [b.tolist() for b in first] != [b.tolist() for b in other]


def test_training_batches_group_similar_lengths():
    lengths = np.random.default_rng(1).integers(3, 500, size=2048)
    batches = training_batches(lengths, 16, torch.Generator().manual_seed(0), group=64)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = np.random.default_rng(2).permutation(2048).reshape(-1, 16)
    padded_random = sum(len(b) * lengths[b].max() for b in shuffled)
    assert padded < 0.7 * padded_random


def test_inference_batches_respect_token_budget():
    lengths = np.random.default_rng(3).integers(1, 300, size=500)
    batches = inference_batches(lengths, max_tokens=1024, max_batch=64)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) <= 64
        assert len(batch) * lengths[batch].max() <= 1024


def test_inference_batch_of_one_when_a_row_exceeds_the_budget():
    batches = inference_batches(np.array([5000, 10, 10]), max_tokens=1024)
    assert [b.tolist() for b in batches] == [[0], [1, 2]]


def test_collate_pads_to_batch_max(tokenizer):
    enc = encode(tokenizer, TEXTS, max_len=32)
    rows = np.array([0, 3])
    batch = collate(enc, rows)
    width = int(enc.lengths[rows].max())
    assert width < enc.ids.shape[1]
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"].sum(1).tolist() == enc.lengths[rows].tolist()
    assert batch["input_ids"].dtype == torch.int64


def test_collate_rounds_widths_up_to_a_multiple_within_the_padded_ids(tokenizer):
    enc = encode(tokenizer, TEXTS, max_len=32)
    rows = np.array([int(np.argmin(enc.lengths))])
    short = int(enc.lengths[rows].max())
    batch = collate(enc, rows, multiple=4)
    assert batch["input_ids"].shape[1] == -(-short // 4) * 4
    assert batch["attention_mask"].sum().item() == short  # the extra columns are masked padding
    assert collate(enc, rows, multiple=1000)["input_ids"].shape[1] == enc.ids.shape[1]


def test_pool_windows_max_and_mean():
    probs = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.4], [0.7, 0.0]], dtype=np.float32)
    owner = np.array([0, 1, 1, 2])
    np.testing.assert_allclose(
        pool_windows(probs, owner, 3, "max"), [[0.1, 0.9], [0.5, 0.4], [0.7, 0.0]]
    )
    np.testing.assert_allclose(
        pool_windows(probs, owner, 3, "mean"), [[0.1, 0.9], [0.4, 0.3], [0.7, 0.0]]
    )
    one_each = pool_windows(probs[:3], np.arange(3), 3, "mean")
    np.testing.assert_array_equal(one_each, probs[:3])


def test_symbols_the_vocabulary_lacks_are_read_as_their_names(tiny_encoder, tmp_path):
    tokenizer = load_tokenizer(tiny_encoder)  # its own: the normalizer changes
    assert spell_out_symbols(tokenizer, ["plain words", "more words"]) == []  # nothing to add
    text = "so funny 😂 (c) © ok ❤"
    assert tokenizer.tokenize(text).count("[UNK]") == 2
    assert spell_out_symbols(tokenizer, [text, "again 😂"]) == ["❤", "😂"]  # © is in the vocab
    tokens = tokenizer.tokenize(text)
    face, heart = ["face", "with", "tears", "of", "joy"], ["heavy", "black", "heart"]
    assert tokens == ["so", "funny", *face, "(", "c", ")", "©", "ok", *heart]
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    assert {text[a:b] for a, b in enc["offset_mapping"][2:7]} == {"😂"}  # offsets: the emoji
    tokenizer.save_pretrained(tmp_path)  # a trained model's tokenizer, read back as engines do
    again = load_tokenizer(str(tmp_path))
    assert again.tokenize(text) == tokens
    assert again.tokenize("new 😭") == ["new", "[UNK]"]  # only the symbols training saw
    assert load_tokenizer(tiny_encoder).tokenize(text).count("[UNK]") == 2  # the encoder's own
