"""A few checks on the real embedded default model (all-MiniLM-L6-v2) on a handful of rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlabel import Classifier
from mlabel.encoding import collate, encode, load_tokenizer
from mlabel.model import EncoderClassifier, pool, resolve_encoder

pytestmark = pytest.mark.real


def test_default_encoder_matches_sentence_transformers():
    """Our mean pooling over the embedded weights reproduces the published sentence embeddings."""
    from sentence_transformers import SentenceTransformer

    texts = ["Quantum error correction with surface codes.", "A proof of the Riemann hypothesis?"]
    path = resolve_encoder("default")
    model = EncoderClassifier.from_encoder("default", n_labels=2).eval()
    enc = encode(load_tokenizer(path), texts, max_len=128)
    batch = collate(enc, np.arange(len(texts)))
    with torch.inference_mode():
        hidden = model.encoder(**batch).last_hidden_state
        ours = torch.nn.functional.normalize(pool(hidden, batch["attention_mask"], "mean"), dim=-1)
    theirs = SentenceTransformer(path, device="cpu").encode(texts, convert_to_tensor=True)
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_default_model_trains_predicts_and_round_trips(small_csv, tmp_path):
    clf = Classifier(
        text_cols=["TITLE", "ABSTRACT"],
        max_len=32,
        epochs=1,
        batch_size=8,
        threads=2,
        val_frac=0.25,
    ).fit(small_csv, out=tmp_path / "run")
    texts = ["Deep learning for image classification", "Stochastic volatility and option pricing"]
    probs = clf.predict_proba(texts)
    assert probs.shape == (2, 6) and np.all((probs >= 0) & (probs <= 1))
    again = Classifier.load(tmp_path / "run" / "model")
    assert again.labels_ == clf.labels_
    np.testing.assert_allclose(again.predict_proba(texts), probs, atol=1e-5)
