"""The model folder: its record (`mlabel.json`) as a typed `ModelInfo`, its file layout, and its
atomic save. Nothing else knows the file names or the record's keys."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mlabel import faults
from mlabel.atomic import TEMP_PREFIX, write_text_atomic
from mlabel.config import LONG_MODES, LONG_POOLS, POOLINGS
from mlabel.decision import DecisionRule
from mlabel.errors import MlabelError, ModelError

FORMAT = 1
META_FILE = "mlabel.json"
HEAD_FILE = "head.safetensors"
TFIDF_DIR = "tfidf"
ONNX_DIR = "onnx"
# engine -> the graph it runs; OpenVINO compiles the fp32 export at its own precision
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx", "openvino": "model.onnx"}
KINDS = ("transformer", "tfidf")
ENGINE_CHOICES = ("torch", "bf16", *ONNX_FILES)  # what `mlabel export` may record
CODE_CONFIGS = ("config.json", "tokenizer_config.json")  # where auto_map may name code
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"}
VERSIONED = ("mlabel", "torch", "transformers", "tokenizers", "scikit-learn")


@dataclass
class Ensemble:
    """A TF-IDF member blended in: probs = (1 - weight) * encoder + weight * tfidf; `weight` is
    one number or one per label."""

    kind: str = "tfidf"
    weight: float | list[float] = 0.5


@dataclass
class EngineChoice:
    """What `mlabel export` measured: the chosen engine, each engine's speed and agreement, the
    sample and the machine it was measured on."""

    choice: str
    measured: dict[str, dict[str, float]] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelInfo:
    """Everything a model folder records besides its weights."""

    labels: list[str]
    thresholds: list[float]
    text_cols: list[str]
    kind: str = "transformer"
    threshold_method: str = "fixed:0.5"
    threshold_source: str = "default"
    rule: DecisionRule = field(default_factory=DecisionRule)
    max_len: int | None = None
    pooling: str | None = "mean"
    long: str = "truncate"
    stride: int = 64
    long_pool: str = "max"
    ensemble: Ensemble | None = None
    engine: EngineChoice | None = None
    subject_uris: dict[str, str] | None = None
    subject_names: dict[str, str] | None = None  # readable names of labels that are URIs
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    best_epoch: int | None = None
    files: dict[str, str] = field(default_factory=dict)  # sha256 of each saved file, see digests
    format: int = FORMAT

    def __post_init__(self) -> None:
        _check_record(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def id_col(self) -> str:
        """The training table's id column ("ID" where the record has none)."""
        return self.config.get("id_col") or "ID"

    def label_form(self) -> dict[str, str]:
        """How the training table held its labels: one list column, or 0/1 columns ({})."""
        if self.config.get("labels_col"):
            return {"labels_col": self.config["labels_col"], "label_sep": self.config["label_sep"]}
        return {}


def read(directory: str | Path) -> ModelInfo:
    """The folder's record, with defaults for keys older folders lack; a one-line error naming
    the file and the key for anything missing or malformed."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise ModelError(f"{directory}: not an mlabel model folder ({META_FILE} missing)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    return from_dict(raw, str(path))


def from_dict(raw: Any, source: str) -> ModelInfo:
    if not isinstance(raw, dict):
        raise ModelError(f"{source}: expected a JSON object, found {type(raw).__name__}")
    missing = [k for k in ("labels", "thresholds", "text_cols") if k not in raw]
    if missing:
        raise ModelError(f"{source}: missing {', '.join(missing)}")
    known = {f.name for f in fields(ModelInfo)}
    values = {k: v for k, v in raw.items() if k in known and v is not None}
    try:
        if "rule" in values:
            values["rule"] = DecisionRule(**_rule_values(_object(values["rule"], "rule")))
        if "ensemble" in values:
            values["ensemble"] = Ensemble(**_object(values["ensemble"], "ensemble"))
        if "engine" in values:
            values["engine"] = EngineChoice(**_object(values["engine"], "engine"))
        return ModelInfo(**values)
    except TypeError as exc:  # an unexpected key inside rule, ensemble or engine
        raise ModelError(f"{source}: {exc}") from None
    except MlabelError as exc:
        raise ModelError(f"{source}: {exc}") from None


def write(info: ModelInfo, directory: str | Path) -> None:
    """Write mlabel.json atomically: a reader sees the old record or the new, never half. The
    record lists the digests of the files beside it, which every load checks."""
    record = replace(info, files=digests(directory))
    write_text_atomic(Path(directory) / META_FILE, json.dumps(record.to_dict(), indent=2))


def _object(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ModelError(f"{key} is {value!r}, expected an object")
    return value


def _rule_values(rule: dict[str, Any]) -> dict[str, Any]:
    """The rule's numbers checked for type before DecisionRule compares them."""
    for key in ("top_k", "min_labels"):
        value = rule.get(key)
        if not (value is None or _whole(value)):
            raise ModelError(f"rule.{key} is {value!r}, expected a whole number")
    return rule


def _check_record(info: ModelInfo) -> None:
    """Types and ranges of the fields the predictor relies on."""
    _strings("labels", info.labels)
    if len(set(info.labels)) != len(info.labels):
        raise ModelError("labels repeat a name")
    _strings("text_cols", info.text_cols)
    if info.kind not in KINDS:
        raise ModelError(f"kind is {info.kind!r}, expected one of {', '.join(KINDS)}")
    cuts = info.thresholds
    if not isinstance(cuts, list) or len(cuts) != len(info.labels):
        raise ModelError(f"thresholds must be a list of {len(info.labels)} numbers (one per label)")
    if not all(_number(t) and 0.0 <= t <= 1.0 for t in cuts):
        raise ModelError("thresholds must be numbers from 0 to 1")
    if info.kind == "transformer":
        if not (isinstance(info.max_len, int) and info.max_len >= 1):
            raise ModelError(f"max_len is {info.max_len!r}, expected a positive integer")
        _choice("pooling", info.pooling, POOLINGS)
    _choice("long", info.long, LONG_MODES)
    _choice("long_pool", info.long_pool, LONG_POOLS)
    if not (_whole(info.stride) and info.stride >= 0):
        raise ModelError(f"stride is {info.stride!r}, expected a whole number, 0 or more")
    if not (_whole(info.format) and 1 <= info.format <= FORMAT):
        raise ModelError(f"format is {info.format!r}; this mlabel reads formats 1 to {FORMAT}")
    if not (info.best_epoch is None or _whole(info.best_epoch)):
        raise ModelError(f"best_epoch is {info.best_epoch!r}, expected a whole number")
    for key in ("threshold_method", "threshold_source"):
        if not isinstance(getattr(info, key), str):
            raise ModelError(f"{key} is {getattr(info, key)!r}, expected a string")
    for key in ("metrics", "config", "versions"):
        _object(getattr(info, key), key)
    if not _string_map(info.files):
        raise ModelError("files must be an object of file names to sha256 digests")
    if info.subject_uris is not None:
        _check_subject_uris(info.subject_uris, info.labels)
    if info.subject_names is not None:
        _check_subject_names(info.subject_names, info.labels)
    if info.ensemble is not None:
        _choice("ensemble.kind", info.ensemble.kind, ("tfidf",))
        _check_weight(info.ensemble.weight, len(info.labels))
    if info.engine is not None:
        _check_engine(info.engine)


def _strings(key: str, value: Any) -> None:
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        raise ModelError(f"{key} must be a non-empty list of names")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _check_subject_uris(uris: Any, labels: list[str]) -> None:
    """One URI (a string without spaces) for each label, and none for anything else."""
    if not isinstance(uris, dict) or not all(
        isinstance(v, str) and v and not any(c.isspace() for c in v) for v in uris.values()
    ):
        raise ModelError("subject_uris must be an object of label names to URIs without spaces")
    if set(uris) != set(labels):
        odd = sorted(set(labels) ^ set(uris))[:3]
        raise ModelError(f"subject_uris must name each label once; it differs at {odd}")


def _check_subject_names(names: Any, labels: list[str]) -> None:
    """A non-empty name for some of the labels, and for nothing else."""
    if not (isinstance(names, dict) and all(isinstance(v, str) and v for v in names.values())):
        raise ModelError("subject_names must be an object of label names to readable names")
    odd = sorted(set(names) - set(labels))[:3]
    if odd:
        raise ModelError(f"subject_names names what is not a label: {odd}")


def _check_engine(engine: EngineChoice) -> None:
    _choice("engine.choice", engine.choice, ENGINE_CHOICES)
    for key in ("measured", "sample", "machine"):
        _object(getattr(engine, key), f"engine.{key}")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ModelError(f"{key} is {value!r}, expected one of {', '.join(allowed)}")


def _check_weight(weight: Any, n_labels: int) -> None:
    weights = weight if isinstance(weight, list) else [weight]
    if isinstance(weight, list) and len(weight) != n_labels:
        raise ModelError(f"ensemble weight has {len(weight)} values for {n_labels} labels")
    if not all(_number(w) and 0.0 <= w <= 1.0 for w in weights):
        raise ModelError("ensemble weight must be numbers from 0 to 1")


# ----------------------------------------------------------------------------- layout


def head_path(directory: str | Path) -> Path:
    return Path(directory) / HEAD_FILE


def tfidf_dir(directory: str | Path) -> Path:
    return Path(directory) / TFIDF_DIR


def onnx_path(directory: str | Path, engine: str) -> Path:
    return Path(directory) / ONNX_DIR / ONNX_FILES[engine]


def refuse_pickles(directory: Path) -> None:
    """Raise if a folder holds pickle-based weight files: mlabel never unpickles."""
    found = sorted(p.name for p in Path(directory).iterdir() if p.suffix in PICKLE_SUFFIXES)
    if found:
        raise ModelError(
            f"{directory}: refusing to load pickle files ({', '.join(found)}); "
            "mlabel reads only safetensors and JSON (convert the weights with "
            "save_pretrained(..., safe_serialization=True) where you trust them)"
        )


def check_files(directory: Path) -> None:
    """Refuse a folder that could load something other than what was saved: pickles, a link
    that leads out of it, a config naming code to run (`auto_map`), a file whose digest differs
    from the record's."""
    refuse_pickles(directory)
    root = Path(directory).resolve()
    for path in _entries(Path(directory)):
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise ModelError(
                f"{path}: refusing a link out of the model folder (to {path.readlink()}); "
                "copy the file into the folder instead"
            )
    for name in CODE_CONFIGS:
        refuse_remote_code(Path(directory) / name)
    if (Path(directory) / META_FILE).is_file():
        check_digests(directory, read(directory).files)


def digests(directory: str | Path) -> dict[str, str]:
    """The sha256 of every file in the folder but mlabel.json, the ONNX exports (which
    `mlabel export` rewrites and checks itself) and temporary files, by path inside the folder."""
    root = Path(directory)
    return {
        path.relative_to(root).as_posix(): _sha256(path)
        for path in _entries(root)
        if path.is_file()
        and path.relative_to(root).parts[0] not in (META_FILE, ONNX_DIR)
        and not path.name.startswith(TEMP_PREFIX)
    }


def check_digests(directory: str | Path, listed: dict[str, str]) -> None:
    """Raise if a file the record lists is gone or differs: a flipped byte in a weight file
    would otherwise give wrong predictions without any error."""
    root = Path(directory).resolve()
    for name, digest in sorted(listed.items()):
        path = Path(directory) / name
        if not path.resolve().is_relative_to(root):
            raise ModelError(f"{Path(directory) / META_FILE}: lists {name!r}, outside the folder")
        if not path.is_file():
            raise ModelError(f"{path}: missing, though {META_FILE} lists it")
        if _sha256(path) != digest:
            raise ModelError(
                f"{path}: damaged or replaced since the model was saved (its sha256 is not "
                f"the one {META_FILE} records; a change made on purpose: drop its entry there)"
            )


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _entries(directory: Path) -> Iterator[Path]:
    """Every file and folder below `directory`, not following links (they are what is checked)."""
    for parent, dirs, files in os.walk(directory):
        for name in sorted(dirs + files):
            yield Path(parent) / name


def refuse_remote_code(path: Path) -> None:
    """Raise if a Hugging Face config names custom code: mlabel never runs a folder's Python."""
    if not path.is_file():
        return
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(raw, dict) and "auto_map" in raw:
        raise ModelError(
            f"{path}: refusing auto_map (custom code: {json.dumps(raw['auto_map'])[:120]}); "
            "mlabel runs only the model classes built into transformers"
        )


@contextlib.contextmanager
def staged(directory: Path) -> Iterator[Path]:
    """A sibling folder (`NAME.tmp`) to write a model into; on success it replaces `directory`.
    On an error the staging folder is removed and `directory` kept.

    The swap is two renames (`NAME` -> `NAME.old`, `NAME.tmp` -> `NAME`): between them `NAME`
    is absent for an instant, and a reader finds no model, never half of one. A kill in that
    instant leaves the previous model in `NAME.old`; `restore_interrupted` (called here, and by
    training when it starts) puts it back."""
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    restore_interrupted(directory)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    faults.point("staged.filled")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
        faults.point("staged.swapping")
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def restore_interrupted(directory: Path) -> None:
    """Put back the previous model when a kill fell between the two renames of `staged`
    (`NAME.old` is complete: it only ever comes from renaming a complete `NAME`)."""
    old = directory.with_name(directory.name + ".old")
    if old.is_dir() and not directory.exists():
        old.rename(directory)


# ----------------------------------------------------------------------------- versions


def package_version(name: str) -> str:
    """The installed version of a distribution, or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def package_versions() -> dict[str, str]:
    """Python's and the key libraries' versions, recorded in mlabel.json."""
    return {"python": sys.version.split()[0], **{n: package_version(n) for n in VERSIONED}}
