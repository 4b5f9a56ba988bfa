"""One dataclass holds every training setting; config files (YAML or TOML) use the same keys."""

from __future__ import annotations

import difflib
import tomllib
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mlabel.atomic import write_text_atomic
from mlabel.decision import DecisionRule
from mlabel.errors import ConfigError
from mlabel.subjects import check_uri_base, read_uri_table

POOLINGS = ("mean", "cls")
OPTIMIZERS = ("adamw", "adam")
LOSSES = ("bce", "focal")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LONG_MODES = ("truncate", "chunk")
LONG_POOLS = ("max", "mean")
# prediction engines, see mlabel.predict
ENGINES = ("auto", "torch", "bf16", "onnx", "onnx-int8", "openvino")
COUNTS = ("epochs", "batch_size", "grad_accum", "max_len", "keep", "threads", "save_steps")
NON_NEGATIVE = ("patience", "stride", "weight_decay", "max_grad_norm", "focal_gamma")  # 0: off
DEFAULT_STRIDE = 64  # --long chunk: tokens neighbouring windows share, where max_len allows
THRESHOLD_METHODS = ("fixed", "global", "per-label", "shrunk")  # and fixed:X; see mlabel.metrics


@dataclass
class TrainConfig:
    """Every setting of a training run. Defaults are the measured default recipe (see README)."""

    model: str = "default"
    text_cols: list[str] = field(default_factory=lambda: ["text"])
    id_col: str = "ID"
    label_cols: list[str] | None = None
    labels_col: str | None = None
    label_sep: str = "|"
    val_frac: float = 0.15
    val: str | None = None
    all_data: bool = False
    unlabeled: str | None = None  # texts to adapt the encoder on first (see mlabel.adapt)
    max_len: int = 128
    pooling: str = "mean"
    dropout: float = 0.1
    attention_dropout: float | None = None  # None: the encoder's own (see mlabel.model)
    spell_symbols: bool = False  # read unknown symbols (emoji) as their names (encoding)
    epochs: int = 6
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 8e-5
    head_lr: float | None = None
    layer_decay: float = 1.0
    weight_decay: float = 0.01
    warmup: float = 0.1
    max_grad_norm: float = 1.0
    optimizer: str = "adamw"
    loss: str = "bce"
    focal_gamma: float = 2.0
    pos_weight: str = "auto"
    patience: int = 2
    max_minutes: float | None = None  # no epoch starts that would end past this (see training)
    thresholds: str = "auto"
    thresholds_from: str | None = None
    top_k: int | None = None
    min_labels: int = 0
    ensemble: str | None = "tfidf"
    long: str = "truncate"
    stride: int | None = None  # tokens neighbouring windows share (--long chunk); chunk_stride()
    long_pool: str = "max"
    precision: str = "auto"
    seed: int = 42
    threads: int | None = None
    save_steps: int | None = None
    keep: int = 2
    track: str | None = None
    subject_uri_base: str | None = None  # a label's URI: this + the url-quoted label
    subject_uris: str | None = None  # or a CSV/TSV of label and uri columns (see mlabel.subjects)

    def __post_init__(self) -> None:
        for name, hint in typing.get_type_hints(TrainConfig).items():
            setattr(self, name, _check_type(name, getattr(self, name), hint))
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("long", self.long, LONG_MODES)
        _check_choice("long_pool", self.long_pool, LONG_POOLS)
        _check_choice("pos_weight", self.pos_weight, ("none", "auto"))
        for name in ("ensemble", "track"):  # `--ensemble none` on the command line turns it off
            if getattr(self, name) in ("none", "null", ""):
                setattr(self, name, None)
        _check_choice("ensemble", self.ensemble, (None, "tfidf"))
        _check_choice("track", self.track, (None, "mlflow", "tensorboard"))
        _check_thresholds(self.thresholds)
        self.rule()  # its own checks: top_k 1 or more, min_labels 0 to top_k
        _check_range("val_frac", self.val_frac, 0.0, 1.0, open_ends=True)
        _check_range("dropout", self.dropout, 0.0, 1.0, open_ends=False)
        if self.attention_dropout is not None:
            _check_range("attention_dropout", self.attention_dropout, 0.0, 1.0, open_ends=False)
        _check_range("layer_decay", self.layer_decay, 0.0, 1.0, open_ends=False)
        _check_range("warmup", self.warmup, 0.0, 1.0, open_ends=False)
        for name in COUNTS:
            _check_at_least(name, getattr(self, name), 1)
        for name in NON_NEGATIVE:
            _check_at_least(name, getattr(self, name), 0)
        for name in ("lr", "head_lr", "max_minutes"):  # NaN fails `> 0` too
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"{name} is {getattr(self, name)}, expected a positive number")
        if not self.label_sep:
            raise ConfigError("label_sep is empty, expected a separator such as '|'")
        if self.max_len < 8:
            raise ConfigError(f"max_len is {self.max_len}, expected 8 or more")
        if self.long == "chunk" and not self.chunk_stride() < self.max_len // 2:
            raise ConfigError(
                f"stride is {self.stride}, expected 0 to {self.max_len // 2 - 1} "
                f"(under half of max_len {self.max_len})"
            )
        if self.label_cols and self.labels_col:
            raise ConfigError("give label_cols or labels_col, not both")
        if self.subject_uri_base is not None and self.subject_uris is not None:
            raise ConfigError("give subject_uri_base or subject_uris, not both")
        if self.subject_uri_base is not None:
            check_uri_base(self.subject_uri_base)
        if (
            self.subject_uris is not None
        ):  # read now; that it covers the labels, once they are known
            read_uri_table(self.subject_uris)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rule(self) -> DecisionRule:
        """The decision rule stored with the model: a cap and a minimum beside the thresholds."""
        return DecisionRule(self.top_k, self.min_labels)

    def chunk_stride(self) -> int:
        """The tokens neighbouring windows share with `--long chunk`: `stride`, else
        DEFAULT_STRIDE where that is under half of max_len, else a quarter of max_len."""
        if self.stride is not None:
            return self.stride
        return DEFAULT_STRIDE if DEFAULT_STRIDE < self.max_len // 2 else self.max_len // 4

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed, validated like the original."""
        return from_dict({**self.to_dict(), **changes})


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """The value as its field's type; numbers written as text (YAML reads `1e-4` so) convert."""
    if typing.get_origin(hint) is not list and typing.get_args(hint):  # `X | None`
        if value is None:
            return None
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) is list:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list | tuple) and items and all(isinstance(v, str) for v in items):
            return list(items)
        raise ConfigError(f"{name} is {value!r}, expected a list of column names")
    if hint is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{name} is {value!r}, expected {_TYPE_NAMES[hint]}")


_TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name} is {value!r}, expected one of {', '.join(map(str, choices))}")


def _check_thresholds(method: str) -> None:
    """`auto`, `fixed`, `fixed:X` with 0 < X < 1, `global`, `per-label` or `shrunk`."""
    if method == "auto" or method in THRESHOLD_METHODS:
        return
    value = method.removeprefix("fixed:")
    try:
        ok = method.startswith("fixed:") and 0 < float(value) < 1
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"thresholds is {method!r}, expected auto, fixed:X (0 < X < 1), global, per-label "
            "or shrunk"
        )


def _check_at_least(name: str, value: float | None, low: int) -> None:
    """`value` >= `low` (None: the setting is off); NaN is refused."""
    if value is not None and not value >= low:
        raise ConfigError(f"{name} is {value}, expected {low} or more")


def _check_range(name: str, value: float, low: float, high: float, open_ends: bool) -> None:
    inside = low < value < high if open_ends else low <= value <= high
    if not inside:
        raise ConfigError(f"{name} is {value}, expected {low} to {high}")


def from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a TrainConfig, rejecting unknown keys by name with the closest known key."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = [k for k in values if k not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"{source}: unknown setting {', '.join(hints)}")
    try:
        return TrainConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path) -> dict[str, Any]:
    """Read the settings in a YAML or TOML file (keys checked by `from_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path.name}: not valid {path.suffix.lstrip('.')}: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path.name}: expected a mapping of settings at the top level")
    from_dict(values, source=path.name)  # reject unknown keys early, by file name
    return values


def save_config(config: TrainConfig, path: str | Path) -> None:
    # atomic: a run killed while rewriting it must still resume (its config.yaml is compared)
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
