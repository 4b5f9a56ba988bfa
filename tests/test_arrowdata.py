"""Hugging Face `datasets` on disk: `save_to_disk` folders, Arrow and Feather files, and the
class names `datasets` records in a file's schema. The folders are written here the way
`datasets` 4.1 and 5.2 write them (checked against both): Arrow stream files listed in
`state.json`, features in `dataset_info.json` and in the schema's `huggingface` metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from mlabel.cli import main
from mlabel.data import load_examples
from mlabel.errors import DataError
from mlabel.tables import count_rows, iter_table

EMOTIONS = ["admiration", "amusement", "anger"]
FEATURES = {
    "text": {"dtype": "string", "_type": "Value"},
    "labels": {"feature": {"names": EMOTIONS, "_type": "ClassLabel"}, "_type": "List"},
    "id": {"dtype": "string", "_type": "Value"},
    "topic": {"names": ["World", "Sports", "Business"], "_type": "ClassLabel"},
    "spam": {"names": ["no", "yes"], "_type": "ClassLabel"},  # two classes: stays 0/1
}


def emotions_table(rows: int = 4) -> pa.Table:
    """A GoEmotions-like table as `datasets` holds it: class numbers, features in the schema."""
    data = {
        "text": [f"text {i}" for i in range(rows)],
        "labels": [[[0], [1], [2, 0], []][i % 4] for i in range(rows)],
        "id": [f"r{i}" for i in range(rows)],
        "topic": [i % 3 for i in range(rows)],
        "spam": [i % 2 for i in range(rows)],
    }
    meta = {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}
    return pa.table(data).replace_schema_metadata(meta)


def save_to_disk(table: pa.Table, folder: Path, shards: int = 1) -> Path:
    """What `Dataset.save_to_disk` writes: Arrow stream shards, state.json, dataset_info.json."""
    folder.mkdir(parents=True)
    names, step = [], -(-table.num_rows // shards)
    for i in range(shards):
        names.append(f"data-{i:05d}-of-{shards:05d}.arrow")
        with pa.OSFile(str(folder / names[-1]), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table.slice(i * step, step))
    state = {
        "_data_files": [{"filename": n} for n in names],
        "_fingerprint": "e78f",
        "_split": None,
    }
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "dataset_info.json").write_text(json.dumps({"features": FEATURES}))
    return folder


def test_a_save_to_disk_folder_is_a_table_with_class_names(tmp_path):
    folder = save_to_disk(emotions_table(10), tmp_path / "go", shards=3)
    ex = load_examples(folder, ["text"], id_col="id", labels_col="labels")
    assert ex.ids[:4] == ["r0", "r1", "r2", "r3"] and len(ex.ids) == 10
    assert ex.labels == EMOTIONS
    np.testing.assert_array_equal(ex.y[:4], [[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    chunks = list(iter_table(folder, chunk_rows=4))
    assert [c.index.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert chunks[0]["topic"].tolist() == ["World", "Sports", "Business", "World"]
    assert chunks[0]["spam"].tolist() == [0, 1, 0, 1]
    assert count_rows(folder) == 10


@pytest.mark.parametrize("form", ["arrow-stream", "feather", "parquet"])
def test_arrow_feather_and_parquet_files_give_class_names(tmp_path, form):
    """`Dataset.to_parquet` keeps the features in the schema too: one reading for all three."""
    table = emotions_table()
    if form == "arrow-stream":
        path = save_to_disk(table, tmp_path / "go") / "data-00000-of-00001.arrow"
    elif form == "feather":
        feather.write_feather(table, path := tmp_path / "go.feather")
    else:
        pq.write_table(table, path := tmp_path / "go.parquet")
    ex = load_examples(path, ["text"], id_col="id", labels_col="labels")
    assert ex.labels == EMOTIONS
    np.testing.assert_array_equal(ex.y, [[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])


def test_a_folder_of_splits_names_them(tmp_path):
    folder = tmp_path / "dict"
    for split in ["train", "test"]:
        save_to_disk(emotions_table(), folder / split)
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(DataError) as err:
        load_examples(folder, ["text"], labels_col="labels")
    assert str(err.value) == (
        f"dict: a dataset of splits; pass one split's folder: {folder / 'train'}, {folder / 'test'}"
    )


def test_a_damaged_datasets_folder_is_one_line(tmp_path, capsys):
    folder = save_to_disk(emotions_table(), tmp_path / "go")
    (folder / "data-00000-of-00001.arrow").write_bytes(b"not arrow at all")
    assert main(["inspect", str(folder), "--labels-col", "labels", "--id-col", "id"]) == 2
    assert capsys.readouterr().err.startswith("error: go: cannot read as arrow: ")
    (folder / "data-00000-of-00001.arrow").unlink()
    with pytest.raises(DataError, match="^go: its file data-00000-of-00001.arrow is missing$"):
        load_examples(folder, ["text"], labels_col="labels")
    (folder / "state.json").write_text("{")
    with pytest.raises(DataError, match="^go/state.json: cannot read"):
        load_examples(folder, ["text"], labels_col="labels")


class Features(dict):
    """Stands in for `datasets.Features`: `to_dict()` gives the form dataset_info.json holds."""

    def to_dict(self) -> dict:
        return dict(self)


class HubDataset:
    """Stands in for an in-memory `datasets.Dataset`: features, and a table that converts itself
    (class numbers, as `Dataset.to_pandas()` gives them)."""

    def __init__(self, table: pa.Table):
        self.table, self.features = table, Features(FEATURES)

    def to_pandas(self):
        return self.table.to_pandas()


def test_in_memory_datasets_and_arrow_tables_give_class_names():
    table = emotions_table()
    for data in (HubDataset(table), table):
        ex = load_examples(data, ["text"], id_col="id", labels_col="labels")
        assert ex.labels == EMOTIONS
        np.testing.assert_array_equal(ex.y, [[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    plain = load_examples(table.replace_schema_metadata(None), ["text"], labels_col="labels")
    assert plain.labels == ["0", "1", "2"]  # no features recorded: the numbers are the labels
