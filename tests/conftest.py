"""Shared fixtures: a tiny randomly initialised BERT (built once per session) and small real data."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel  # noqa: E402

from mlabel.model import resolve_encoder  # noqa: E402

# two cores: two threads, or one per worker when pytest-xdist runs two (make test)
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

try:  # profiles for the reader fuzz tests, which skip without hypothesis
    from hypothesis import HealthCheck, settings
except ImportError:
    pass
else:
    _fuzz = dict(
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    # ci: 6 fuzz tests x 350 = 2,100 examples, the same ones each run; long: new ones each run
    settings.register_profile("ci", max_examples=350, derandomize=True, **_fuzz)
    settings.register_profile("long", max_examples=4000, **_fuzz)  # bench/fuzz.py
    settings.load_profile("ci")  # --hypothesis-profile long chooses another

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "arxiv_topics.csv.gz"
LABELS = [
    "Computer Science",
    "Physics",
    "Mathematics",
    "Statistics",
    "Quantitative Biology",
    "Quantitative Finance",
]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with the default model's vocabulary, saved as an HF folder."""
    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=512,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    AutoTokenizer.from_pretrained(resolve_encoder("default")).save_pretrained(path)
    return str(path)


# Tiny encoders of other architectures than BERT, with the default model's tokenizer.
TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=514, pad_token_id=0)  # fmt: skip
ARCHITECTURES = {
    "electra": dict(embedding_size=32),  # its model takes no add_pooling_layer argument
    "deberta": {},  # fills bf16 scores with float32's minimum under CPU autocast
    "deberta-v2": {},
    "roberta": {},
    "distilbert": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37),
    "albert": dict(embedding_size=16),
    "mpnet": {},
    "modernbert": dict(global_attn_every_n_layers=1, local_attention=16),
}


def tiny_encoder_of(kind: str, path: Path) -> str:
    """A tiny randomly initialised encoder of another architecture (`ARCHITECTURES`)."""
    torch.manual_seed(0)
    config = AutoConfig.for_model(kind, **{**TINY, **ARCHITECTURES[kind]})
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(resolve_encoder("default")).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def arxiv() -> pd.DataFrame:
    return pd.read_csv(DATA, dtype={"ID": str})


@pytest.fixture(scope="session")
def small_csv(arxiv, tmp_path_factory) -> Path:
    """160 real abstracts, with every label present."""
    rows = pd.concat([arxiv[arxiv[label] == 1].head(12) for label in LABELS] + [arxiv.head(100)])
    rows = rows.drop_duplicates("ID").head(160)
    path = tmp_path_factory.mktemp("data") / "small.csv"
    rows.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_csv(small_csv, tmp_path_factory) -> Path:
    """44 rows, every label present: 33 training texts and 11 for validation (kill matrices)."""
    rows = pd.read_csv(small_csv, dtype={"ID": str})
    picked = pd.concat([rows[rows[label] == 1].head(4) for label in LABELS] + [rows])
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    picked.drop_duplicates("ID").head(44).to_csv(path, index=False)
    return path


class RecordingBar:
    """Stands in for tqdm: records the total it was given and the updates."""

    made: list[RecordingBar] = []

    def __init__(self, total=None, **kwargs):
        self.total, self.desc, self.updates = total, kwargs.get("desc"), []
        self.closed = False
        RecordingBar.made.append(self)

    def update(self, n: int) -> None:
        self.updates.append(n)

    def close(self) -> None:
        self.closed = True


def tiny_train_settings(encoder: str) -> dict:
    """Training settings that make a run take seconds."""
    return dict(
        model=encoder,
        text_cols=["TITLE", "ABSTRACT"],
        max_len=64,
        epochs=2,
        batch_size=16,
        lr=1e-3,
        val_frac=0.25,
        threads=2,
        seed=1,
        precision="fp32",
    )


@pytest.fixture
def tiny_settings(tiny_encoder) -> dict:
    """Training settings that make a run take seconds (a fresh dict per test)."""
    return tiny_train_settings(tiny_encoder)


@pytest.fixture(scope="session")
def trained_tiny(tiny_encoder, small_csv, tmp_path_factory) -> Path:
    """A tiny model folder trained once per session (read-only for tests)."""
    from mlabel.classifier import fit_model
    from mlabel.config import TrainConfig

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(**tiny_train_settings(tiny_encoder))
    return fit_model(cfg, small_csv, out).model_dir


@pytest.fixture(scope="session")
def trained_tiny_encoder_only(tiny_encoder, small_csv, tmp_path_factory) -> Path:
    """The tiny model without the TF-IDF blend, so engine tests see the encoder's differences
    whole (the blend halves them). Read-only for tests."""
    from mlabel.classifier import fit_model
    from mlabel.config import TrainConfig

    out = tmp_path_factory.mktemp("run-encoder-only")
    cfg = TrainConfig(**tiny_train_settings(tiny_encoder), ensemble=None)
    return fit_model(cfg, small_csv, out).model_dir


@contextlib.contextmanager
def running(app, **config) -> Iterator[str]:
    """`app` on uvicorn in a thread, on a free loopback port (a real socket): its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
