"""Batch prediction on Ray Data: a pool of predictor actors over CSV, JSON Lines or Parquet
files.

The input is a file or a folder of files, local or on an object store (`s3://`, `gs://`); each
actor loads the model folder once and runs the same engine as `mlabel predict`, so the output
columns and values are the same: the ID column, then one 0/1 (or probability) column per label.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from mlabel import extras, folder
from mlabel.cells import require_columns
from mlabel.data import join_texts
from mlabel.errors import ConfigError, DataError, ModelError
from mlabel.tables import holds_json_lines, iter_table

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")  # read as JSON Lines


def _ray():
    extras.require("ray", "engine ray")
    import ray

    return ray


class PredictActor:
    """Loads the model folder once per actor, then turns batches of rows into prediction rows."""

    def __init__(
        self,
        model_dir: str,
        engine: str,
        id_col: str,
        text_cols: list[str],
        proba: bool,
        threshold: float | None,
        threads: int,
        source: str,
        device: str,
    ):
        import torch

        from mlabel.predict import load_predictor

        torch.set_num_threads(threads)
        self.predictor = load_predictor(model_dir, engine, device)
        self.predictor.text_cols = text_cols
        self.threshold, self.id_col, self.proba, self.source = threshold, id_col, proba, source

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        texts = join_texts(batch, self.predictor.text_cols, self.source, empty_ok=True)
        preds = self.predictor.run(texts, self.threshold)  # a row without text: not scored
        frame = pd.DataFrame(preds.values(self.proba), columns=self.predictor.labels)
        frame.insert(0, self.id_col, batch[self.id_col].astype(str).to_numpy())
        return frame


def input_format(path: str) -> str:
    """`csv`, `json` or `parquet`, from the file's name or, for a folder, from the files inside
    it."""
    names = [path] if _suffix(path) or Path(path).is_file() else _list_files(path)
    kinds = {_suffix(name) for name in names} - {None}
    if len(kinds) > 1:
        raise DataError(f"{path}: files of more than one kind ({', '.join(sorted(kinds))})")
    if not kinds:
        raise DataError(
            f"{path}: --engine ray reads CSV, JSON Lines or Parquet files (.csv, .jsonl, "
            ".parquet, or a folder of one kind); predict without --engine ray reads other tables"
        )
    return kinds.pop()


def _suffix(name: str) -> str | None:
    name = name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    return None


def _list_files(path: str) -> list[str]:
    """The files under a local folder or an object-store prefix (hidden files skipped)."""
    from pyarrow import fs

    try:
        filesystem, root = fs.FileSystem.from_uri(path)
    except (ValueError, TypeError):
        filesystem, root = fs.LocalFileSystem(), os.path.abspath(path)
    info = filesystem.get_file_info(root)
    if info.type == fs.FileType.NotFound:
        raise DataError(f"{path}: file or folder not found")
    entries = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    return [e.path for e in entries if e.is_file and not e.base_name.startswith((".", "_"))]


def read_dataset(path: str, id_col: str, text_cols: list[str]):
    """A Ray Dataset of the id and text columns, with the id and texts read as strings."""
    ray = _ray()
    columns = [id_col, *text_cols]
    fmt = input_format(path)
    if fmt == "parquet":
        return ray.data.read_parquet(path, columns=columns)
    if fmt == "json":  # Arrow's reader: ids as written ("007"), where pandas' makes them numbers
        return ray.data.read_json(path).select_columns(columns)
    import pyarrow as pa
    from pyarrow import csv

    convert = csv.ConvertOptions(
        column_types={c: pa.string() for c in columns}, include_columns=columns
    )
    return ray.data.read_csv(path, convert_options=convert)


def predict_ray(
    model_dir: str | Path,
    src: str,
    dst: str,
    proba: bool = False,
    threshold: float | None = None,
    id_col: str | None = None,
    text_cols: list[str] | None = None,
    engine: str = "auto",
    num_actors: int = 2,
    threads_per_actor: int = 1,
    batch_size: int = 1024,
    address: str | None = None,
    gpus_per_actor: float = 0.0,
) -> int:
    """Classify a table with a pool of Ray actors; returns the number of rows written.

    `dst` with a suffix (.csv, .jsonl, .parquet) is one file, written in input order by this
    process; without one it is a folder of Parquet parts written by the workers (object stores too).
    With `gpus_per_actor` (fractions share a GPU) each actor runs the torch engines on its GPU.
    The table needs the id column and the text columns: by default the model's, as trained.
    """
    ray = _ray()
    if num_actors < 1 or threads_per_actor < 1 or batch_size < 1:
        raise ConfigError("num_actors, threads_per_actor and batch_size must be 1 or more")
    if gpus_per_actor < 0:
        raise ConfigError(f"gpus per actor is {gpus_per_actor}, expected 0 or more")
    if gpus_per_actor and engine in folder.ONNX_FILES:  # the exported engines run on CPUs
        raise ConfigError(f"engine {engine!r} runs on the CPU; GPU actors run torch or bf16")
    info = folder.read(model_dir)  # fail here, before starting Ray, if it is not a model folder
    id_col, text_cols = id_col or info.id_col(), text_cols or info.text_cols
    _check_local_columns(src, id_col, text_cols)
    started = not ray.is_initialized()
    if started:
        _start(ray, address, num_actors * threads_per_actor)
    try:
        if gpus_per_actor and not ray.cluster_resources().get("GPU"):
            raise ConfigError("GPU actors need GPUs, and this Ray cluster has none")
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.raise_original_map_exception = True  # a DataError, not Ray's wrapper around it
        preds = _predictions(
            ray,
            str(model_dir),
            src,
            dict(
                engine=engine,
                id_col=id_col,
                text_cols=text_cols,
                proba=proba,
                threshold=threshold,
                threads=threads_per_actor,
                source=Path(src).name,
                device="cuda" if gpus_per_actor else "cpu",
            ),
            num_actors,
            batch_size,
            gpus_per_actor,
        )
        return _write(preds, dst, id_col, info.labels)
    except ray.exceptions.RayError as exc:
        raise _user_error(exc, src) or exc from None
    finally:
        if started:
            ray.shutdown()


def _check_local_columns(src: str, id_col: str, text_cols: list[str]) -> None:
    """A local table file's id and text columns, checked before Ray starts: its workers would
    fail on a missing one after pages of logs, and on a JSON array or document (Ray reads JSON
    Lines). A folder or a remote path is left to Ray."""
    if not Path(src).is_file():
        return
    if input_format(src) == "json" and not holds_json_lines(src):
        raise DataError(
            f"{Path(src).name}: one JSON array or document; --engine ray reads JSON Lines (one "
            "object a line): write it so, or predict without --engine ray"
        )
    head = next(iter_table(src, chunk_rows=1, str_cols=[id_col, *text_cols]), None)
    if head is not None:
        require_columns(head, [id_col], Path(src).name, "--id-col")
        require_columns(head, text_cols, Path(src).name, "--text-cols")


def _start(ray, address: str | None, actor_cpus: int) -> None:
    """Join a cluster, or start a local instance with a CPU for reading beside the actors."""
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        cpus = max(os.cpu_count() or 1, actor_cpus + 1)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)


def _predictions(
    ray,
    model_dir: str,
    src: str,
    actor_args: dict[str, Any],
    num_actors: int,
    batch_size: int,
    gpus_per_actor: float,
):
    ds = read_dataset(src, actor_args["id_col"], actor_args["text_cols"])
    # Split big blocks so that every actor gets work even from a single large file.
    ds = ds.repartition(target_num_rows_per_block=batch_size)
    return ds.map_batches(
        PredictActor,
        fn_constructor_kwargs={"model_dir": model_dir, **actor_args},
        batch_size=batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=actor_args["threads"],
        num_gpus=gpus_per_actor,
    )


def _write(preds, dst: str, id_col: str, labels: list[str]) -> int:
    if not Path(dst).suffix:
        ray = _ray()
        preds.write_parquet(dst, mode=ray.data.SaveMode.OVERWRITE)
        return ray.data.read_parquet(dst).count()  # from the parts' footers
    from mlabel.output import TableWriter

    n = 0
    with TableWriter(dst) as writer:
        for frame in preds.iter_batches(batch_format="pandas", batch_size=None):
            writer.write(frame[id_col].tolist(), id_col, labels, frame[labels].to_numpy())
            n += len(frame)
    return n


def _user_error(exc: Exception, src: str) -> Exception | None:
    """The error mlabel would raise without Ray, when a worker failed on the data or the model."""
    import pyarrow as pa

    cause = getattr(exc, "cause", None)  # the worker's own exception
    if isinstance(cause, DataError | ModelError):
        return cause
    if isinstance(cause, pa.ArrowException):
        return DataError(f"{src}: cannot read: {str(cause).strip().splitlines()[0]}")
    if isinstance(cause, json.JSONDecodeError):  # Ray's fallback after Arrow refused the lines
        return DataError(
            f"{src}: cannot read as JSON Lines ({cause}); Ray's reader needs one type per column "
            "(text and lists, or numbers and text, in one column are refused): predict without "
            "--engine ray reads it"
        )
    return None
