"""Tests for mlabel.data: reading tables, validation messages, label forms, splitting."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlabel.data import Examples, default_label_columns, join_texts, load_examples
from mlabel.errors import DataError
from mlabel.split import split_examples, stratified_folds
from mlabel.tables import count_rows, iter_table, read_table

REPO = Path(__file__).resolve().parents[1]


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ID": ["007", "a2", "a3", "a4"],
            "TITLE": ["t1", "t2", "t3", "t4"],
            "ABSTRACT": ["b1", "b2", "b3", "b4"],
            "Physics": [1, 0, 1, 0],
            "Math": [0, 1, 1, 0],
        }
    )


def write(df: pd.DataFrame, path: Path) -> Path:
    """Write `df` in the format its file name asks for."""
    name = path.name
    if name.endswith(".parquet"):
        df.to_parquet(path, index=False)
    elif ".jsonl" in name or ".lines.json" in name:
        df.to_json(path, orient="records", lines=True)
    elif ".json" in name:
        df.to_json(path, orient="records", indent=1)
    else:
        df.to_csv(path, sep="\t" if ".tsv" in name else ",", index=False)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "name",
    [
        "t.csv",
        "t.tsv",
        "t.jsonl",
        "t.parquet",
        "t.csv.gz",
        "t.tsv.bz2",
        "t.jsonl.xz",
        "t.csv.zip",
        "t.jsonl.gz",
        "t.lines.json",  # JSON Lines in a .json file, as `datasets`' to_json writes them
        "t.json",  # an array of records
        "t.json.gz",
    ],
)
def test_every_format_loads_the_same(tmp_path, name):
    ex = load_examples(write(small_frame(), tmp_path / name), ["TITLE", "ABSTRACT"])
    assert ex.ids == ["007", "a2", "a3", "a4"]
    assert ex.texts == ["t1\nb1", "t2\nb2", "t3\nb3", "t4\nb4"]
    assert ex.labels == ["Physics", "Math"]
    assert ex.y.dtype == bool  # 1 byte a cell: 1.1 GB, not 4.5, at 60,000 texts x 18,645 subjects
    np.testing.assert_array_equal(ex.y, [[1, 0], [0, 1], [1, 1], [0, 0]])
    assert ex.source == name


@pytest.mark.parametrize(("name", "sep"), [("t.csv", ";"), ("t.csv.gz", ";"), ("t.csv", "\t")])
def test_csv_with_another_delimiter_loads_the_same(tmp_path, name, sep):
    df = small_frame().assign(ABSTRACT=["b1, with a comma", "b2", "b3", "b4"])
    df.to_csv(tmp_path / name, sep=sep, index=False)  # e.g. a spreadsheet's ';' export
    ex = load_examples(tmp_path / name, ["TITLE", "ABSTRACT"])
    assert ex.texts[0] == "t1\nb1, with a comma" and ex.labels == ["Physics", "Math"]
    np.testing.assert_array_equal(ex.y, [[1, 0], [0, 1], [1, 1], [0, 0]])


def test_commas_in_a_semicolon_free_header_keep_the_comma(tmp_path):
    path = write_text(tmp_path / "t.csv", 'ID,TITLE,y\n1,"a; b; c",1\n2,d,0\n')
    assert load_examples(path, ["TITLE"]).texts == ["a; b; c", "d"]


def test_read_table_keeps_id_strings(tmp_path):
    df = pd.DataFrame({"ID": [7, 8], "TITLE": ["a", "b"], "x": [0, 1]})
    for name in ("t.csv", "t.parquet", "t.jsonl"):
        table = read_table(write(df, tmp_path / name))
        assert table["ID"].tolist() == ["7", "8"]
        assert pd.api.types.is_numeric_dtype(table["x"])


@pytest.mark.parametrize("name", ["t.jsonl", "t.json", "t.parquet", None])
def test_a_text_cell_holding_a_list_of_paragraphs_is_their_text(tmp_path, name):
    """EUR-Lex's `main_body` is a list of paragraphs: one text, a paragraph per line (it was
    read as Python's repr of the list, brackets and quotes included)."""
    df = pd.DataFrame(
        {
            "ID": [7, 8],
            "title": ["Fish quotas", "Entry"],
            "main_body": [["Article 1: quotas.", " ", "Article 2: in force."], []],
            "concepts": [["1309", "693"], ["192"]],
        }
    )
    if name == "t.json":
        (tmp_path / name).write_text(df.to_json(orient="records"))
    data = (
        df if name is None else tmp_path / name if name == "t.json" else write(df, tmp_path / name)
    )
    ex = load_examples(data, ["title", "main_body"], labels_col="concepts")
    assert ex.texts == ["Fish quotas\nArticle 1: quotas.\nArticle 2: in force.", "Entry"]
    assert ex.ids == ["7", "8"]


def test_numeric_text_column_is_read_as_text(tmp_path):
    path = write_text(tmp_path / "t.csv", "ID,TITLE,y\n01,0042,1\n02,7,0\n")
    ex = load_examples(path, ["TITLE"])
    assert ex.ids == ["01", "02"]
    assert ex.texts == ["0042", "7"]


def test_missing_id_column_uses_row_numbers(tmp_path):
    df = small_frame().drop(columns="ID")
    ex = load_examples(write(df, tmp_path / "t.csv"), ["TITLE"], label_cols=["Physics", "Math"])
    assert ex.ids == ["0", "1", "2", "3"]


@pytest.mark.parametrize("name", ["id", "Id"])
def test_id_column_spelled_in_another_case_is_the_id(tmp_path, name):
    """A table's "id" is the default "ID": not a label column, read as text (zeros kept)."""
    df = small_frame().rename(columns={"ID": name})
    ex = load_examples(write(df, tmp_path / "t.csv"), ["TITLE", "ABSTRACT"])
    assert ex.ids == ["007", "a2", "a3", "a4"] and ex.labels == ["Physics", "Math"]


def test_two_id_columns_but_for_case_are_not_guessed(tmp_path):
    df = small_frame().drop(columns="ID").assign(id=["1", "2", "3", "4"], Id=["5", "6", "7", "8"])
    ex = load_examples(write(df, tmp_path / "t.csv"), ["TITLE"], label_cols=["Physics", "Math"])
    assert ex.ids == ["0", "1", "2", "3"]  # ambiguous: row numbers, as without an id column


def test_a_saved_index_column_is_not_a_label(tmp_path):
    """`df.to_csv(path)` without index=False writes a headerless first column ("Unnamed: 0")."""
    small_frame().to_csv(tmp_path / "t.csv")
    ex = load_examples(tmp_path / "t.csv", ["TITLE", "ABSTRACT"])
    assert ex.labels == ["Physics", "Math"] and ex.ids == ["007", "a2", "a3", "a4"]


def test_dataframe_input_counts_rows_by_position():
    df = small_frame().set_index("ID", drop=False)
    ex = load_examples(df, ["TITLE", "ABSTRACT"])
    assert ex.source == "DataFrame" and ex.ids[0] == "007" and len(ex) == 4
    df.loc["a3", "Math"] = 5
    with pytest.raises(DataError, match=r"^DataFrame row 3: label 'Math' is 5"):
        load_examples(df, ["TITLE", "ABSTRACT"])


# ---------------------------------------------------------------- iter_table


def test_iter_table_chunks_csv(tmp_path):
    df = pd.DataFrame({"ID": [f"{i:03d}" for i in range(25)], "v": range(25)})
    chunks = list(iter_table(write(df, tmp_path / "t.csv.gz"), chunk_rows=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert chunks[2].index.tolist() == list(range(20, 25))
    assert pd.concat(chunks)["ID"].tolist() == df["ID"].tolist()


def test_iter_table_chunks_parquet(tmp_path):
    df = pd.DataFrame({"ID": range(25), "v": range(25)})
    chunks = list(iter_table(write(df, tmp_path / "t.parquet"), chunk_rows=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert chunks[1].index.tolist() == list(range(10, 20))
    assert chunks[0]["ID"].tolist()[:2] == ["0", "1"]


def test_a_folder_of_parquet_parts_is_one_table(tmp_path):
    """As Ray, Spark and Dask write a table (and predict --engine ray -o DIR): read in name
    order, whole or in chunks numbered across parts, with its rows counted for progress bars."""
    df = small_frame()
    parts = tmp_path / "parts"
    parts.mkdir()
    write(df.iloc[2:], parts / "part-1.parquet")
    write(df.iloc[:2], parts / "part-0.parquet")
    (parts / "_SUCCESS").write_text("")  # Spark's marker file: not a part
    whole = load_examples(write(df, tmp_path / "t.parquet"), ["TITLE", "ABSTRACT"])
    ex = load_examples(parts, ["TITLE", "ABSTRACT"])
    assert (ex.ids, ex.texts, ex.labels) == (whole.ids, whole.texts, whole.labels)
    np.testing.assert_array_equal(ex.y, whole.y)
    chunks = list(iter_table(parts, chunk_rows=1))
    assert [c.index.tolist() for c in chunks] == [[0], [1], [2], [3]]
    assert count_rows(parts) == 4
    assert read_table(parts)["ID"].tolist() == ["007", "a2", "a3", "a4"]


def test_a_hive_partitioned_parquet_folder_is_one_table_with_its_partition_columns(tmp_path):
    """`pyarrow.parquet.write_to_dataset(partition_cols=...)` (and Spark's `partitionBy`) put
    parts in `key=value` folders: the value is a column again; "_" and "." files are not parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = small_frame().assign(source=["arXiv", "a/b", None, "arXiv"])  # "/" is escaped
    pq.write_to_dataset(pa.Table.from_pandas(df), tmp_path / "hive", partition_cols=["source"])
    (tmp_path / "hive" / "_common_metadata.parquet").write_bytes(b"not a part")
    table = read_table(tmp_path / "hive").sort_values("ID", ignore_index=True)
    assert table["source"].tolist() == ["arXiv", "a/b", None, "arXiv"]
    pd.testing.assert_frame_equal(table.drop(columns="source"), small_frame())
    assert count_rows(tmp_path / "hive") == 4


def test_text_tables_rows_are_counted_for_progress_bars(tmp_path):
    """CSV/TSV rows are counted as pandas reads them (a quoted line break is one row), JSON
    Lines by their lines; a JSON array, or a file that cannot be read, has no count."""
    df = pd.DataFrame({"ID": ["1", "2", "3"], "text": ["two\nlines", "b", "c"], "x": [1, 0, 1]})
    for name in ["t.csv", "t.tsv", "t.csv.gz", "t.jsonl", "t.parquet"]:
        path = write(df, tmp_path / name)
        assert count_rows(path) == sum(len(c) for c in iter_table(path, 2)) == 3, name
    lines = write_text(tmp_path / "blank.jsonl", '{"text": "a"}\n\n{"text": "b"}\n')
    assert count_rows(lines) == len(read_table(lines)) == 2
    assert count_rows(write_text(tmp_path / "array.json", '[{"text": "a"}]')) is None
    assert count_rows(write_text(tmp_path / "bad.csv.gz", "not gzip")) is None


def test_labels_the_model_does_not_know_are_counted_and_left_out(tmp_path):
    """A test table's subjects that training never had: the model cannot score them, so they
    are left out (as Annif leaves out subjects outside its vocabulary), counted in a warning."""
    path = write_text(tmp_path / "test.csv", "text,tags\nx,a|rare\ny,b\nz,rare|rarer\n")
    with pytest.warns(UserWarning) as caught:
        ex = load_examples(path, ["text"], labels_col="tags", labels=["a", "b"])
    assert ex.y.tolist() == [[1, 0], [0, 1], [0, 0]]
    assert [str(w.message) for w in caught] == [
        "test.csv: column 'tags' has 2 label(s) the model does not know, left out "
        "(3 of 5 labels given, 60.0%): 'rare' (row 1), 'rarer' (row 3)"
    ]


def test_a_json_array_is_read_in_chunks(tmp_path):
    df = pd.DataFrame({"ID": ["007", "8", "9"], "text": ["a", "b", "c"], "y": [1, 0, 1]})
    chunks = list(iter_table(write(df, tmp_path / "t.json"), chunk_rows=2, str_cols=["ID"]))
    assert [c.index.tolist() for c in chunks] == [[0, 1], [2]]
    assert pd.concat(chunks)["ID"].tolist() == ["007", "8", "9"]
    assert read_table(
        write_text(tmp_path / "axes.json", '[{"0": 1, "0000": 2}]')
    ).columns.tolist() == [
        "0",
        "0000",
    ]  # column names as written: pandas would make both 0


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_object_holding_the_records_is_read_as_them(tmp_path, indent):
    """`{"articles": [...]}` (BioASQ) or `{"version": 2, "data": [...]}`, on one line or
    indented: the one list of objects is the table; an object without one is one record."""
    records = [
        {"pmid": 7, "title": f"t{i}", "meshMajor": ["Humans", "Mice"][: i + 1]} for i in range(3)
    ]
    for name, document in [
        ("a.json", {"articles": records}),
        ("d.json", {"version": 2, "data": records}),
    ]:
        path = tmp_path / name
        path.write_text(json.dumps(document, indent=indent))
        chunks = list(iter_table(path, chunk_rows=2, str_cols=["pmid"]))
        assert [c.index.tolist() for c in chunks] == [[0, 1], [2]]
        assert chunks[0]["pmid"].tolist() == ["7", "7"] and chunks[1]["title"].tolist() == ["t2"]
        assert count_rows(path) is None  # known once read whole
    one = write_text(tmp_path / "one.json", json.dumps({"text": "a", "y": 1}, indent=indent))
    assert read_table(one).to_dict("records") == [{"text": "a", "y": 1}]
    lines = write_text(tmp_path / "lines.json", '{"text": "a", "y": 1}\n\n{"text": "b", "y": 0}\n')
    assert read_table(lines)["text"].tolist() == ["a", "b"]  # JSON Lines, a blank line between
    annif = {"text": "fish", "subjects": [{"uri": "http://x/1"}, {"uri": "http://x/2"}]}
    doc = write_text(tmp_path / "doc.json", json.dumps(annif, indent=indent))
    ex = load_examples(doc, ["text"])  # a text column of its own: one record, not 2 subjects
    assert (ex.texts, ex.labels) == (["fish"], ["http://x/1", "http://x/2"])
    for empty in ({}, {"data": []}):
        with pytest.raises(DataError, match=r"^e.json: no data rows$"):
            load_examples(write_text(tmp_path / "e.json", json.dumps(empty)), ["text"])
    utf16 = tmp_path / "u.json"
    utf16.write_bytes('{"data": [{"text": "a"}]}'.encode("utf-16"))  # Python's json would read it
    with pytest.raises(DataError, match=r"^u.json: not UTF-8 text \(line 1"):
        read_table(utf16)
    with pytest.raises(DataError, match=r"^s.json: holds a JSON str, not objects$"):
        read_table(write_text(tmp_path / "s.json", '"just text"\n'))


def test_a_text_file_is_a_text_per_line_and_fasttexts_labels(tmp_path):
    """fastText's form (`__label__sauce __label__cheese How much ...`, its StackExchange
    cooking data): the words with the prefix are the line's labels, wherever they stand."""
    lines = [
        "__label__sauce __label__cheese How much does potato starch affect a cheese sauce?",
        "",
        "__label__baking What is the purpose of sifting flour? __label__flour",
        "Which sauce goes with fish? __label__sauce",
        "__label__baking __label__flour Can I swap bread flour for plain flour?",
        "__label__cheese Is the rind of brie safe to eat?",
    ]
    path = write_text(tmp_path / "cooking.train.txt", "\n".join(lines) + "\n")
    ex = load_examples(path, ["text"])  # the lone `labels` column of lists: no option needed
    assert ex.texts[:2] == [
        "How much does potato starch affect a cheese sauce?",
        "What is the purpose of sifting flour?",
    ]
    assert ex.labels == ["baking", "cheese", "flour", "sauce"] and ex.ids[-1] == "4"
    np.testing.assert_array_equal(
        ex.y[:4], [[0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 0, 1], [1, 0, 1, 0]]
    )
    assert [len(c) for c in iter_table(path, chunk_rows=3)] == [3, 2] and count_rows(path) == 5
    plain = write_text(tmp_path / "new.txt", "first text\n\nsecond text\n")
    assert read_table(plain).to_dict("records") == [{"text": "first text"}, {"text": "second text"}]


def test_iter_table_chunks_jsonl(tmp_path):
    df = pd.DataFrame({"ID": range(7), "v": range(7)})
    chunks = list(iter_table(write(df, tmp_path / "t.jsonl"), chunk_rows=3))
    assert [len(c) for c in chunks] == [3, 3, 1]


# ---------------------------------------------------------------- label forms


def test_label_list_column(tmp_path):
    path = write_text(
        tmp_path / "t.csv", "ID,TITLE,tags\n1,a,cs.AI|math.CO\n2,b,math.CO\n3,c, cs.LG | cs.AI\n"
    )
    ex = load_examples(path, ["TITLE"], labels_col="tags")
    assert ex.labels == ["cs.AI", "cs.LG", "math.CO"]
    np.testing.assert_array_equal(ex.y, [[1, 0, 1], [0, 0, 1], [1, 1, 0]])


@pytest.mark.parametrize("name", ["t.jsonl", "t.parquet"])
def test_label_lists_stored_as_arrays(tmp_path, name):
    """JSON Lines and Parquet can hold real lists: taken as they are, like "a|b" text."""
    tags = [["cs.AI", "math.CO"], ["math.CO"], [" cs.LG ", "cs.AI"], []]
    df = pd.DataFrame({"ID": ["1", "2", "3", "4"], "TITLE": list("abcd"), "tags": tags})
    ex = load_examples(write(df, tmp_path / name), ["TITLE"], labels_col="tags")
    assert ex.labels == ["cs.AI", "cs.LG", "math.CO"]
    np.testing.assert_array_equal(ex.y, [[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]])


def test_label_lists_written_as_text_literals(tmp_path):
    """pandas writes list cells to CSV as "['a', 'b']" (Hugging Face exports too): read as lists."""
    df = pd.DataFrame({"TITLE": list("abc"), "tags": [["x", "y|z"], [], ["y|z"]]})
    df.to_csv(tmp_path / "t.csv", index=False)
    ex = load_examples(tmp_path / "t.csv", ["TITLE"], labels_col="tags")
    assert ex.labels == ["x", "y|z"]  # the list decides, not the separator
    np.testing.assert_array_equal(ex.y, [[1, 1], [0, 0], [0, 1]])
    ints = write_text(tmp_path / "i.csv", 'TITLE,labels\na,"[3, 27]"\nb,[27]\nc,[not a list\n')
    ex = load_examples(ints, ["TITLE"], labels_col="labels")
    assert ex.labels == ["27", "3", "[not a list"]


def test_label_lists_in_numpys_form_are_read_item_by_item(tmp_path):
    """`datasets`' `to_csv` writes list cells as numpy prints them: no commas ("[2 0]",
    "['a' 'b']"), long ones over several lines. Python's reader would join "'a' 'b'" into "ab"."""
    path = write_text(
        tmp_path / "hf.csv",
        "text,tags,ids\n"
        "x,['Computer Science' 'Physics'],[2 0]\n"
        "y,\"['a, b']\",[1]\n"
        "z,\"['Physics' 'x'\n 'it\\'s']\",[]\n",
    )
    ex = load_examples(path, ["text"], labels_col="tags", label_cols=None)
    assert ex.labels == ["Computer Science", "Physics", "a, b", "it's", "x"]
    np.testing.assert_array_equal(ex.y[:, 1], [1, 0, 1])
    ex = load_examples(path, ["text"], labels_col="ids")
    assert ex.labels == ["0", "1", "2"]
    np.testing.assert_array_equal(ex.y, [[1, 0, 1], [0, 1, 0], [0, 0, 0]])


def test_label_list_with_27_labels_and_custom_separator(tmp_path):
    names = [f"L{i:02d}" for i in range(27)]
    rows = [";".join(names[i : i + 3]) for i in range(0, 27, 3)] * 2
    df = pd.DataFrame({"TITLE": [f"t{i}" for i in range(len(rows))], "tags": rows})
    ex = load_examples(
        write(df, tmp_path / "t.parquet"), ["TITLE"], labels_col="tags", label_sep=";"
    )
    assert ex.labels == names
    assert ex.y.shape == (18, 27)
    assert (ex.y.sum(axis=0) == 2).all()


def test_lists_joined_by_another_separator_are_pointed_out(tmp_path):
    """ "Physics; Math" read with the default '|', which another cell holds, is one label of its
    own: say which separator would split it. A name whose parts are not labels (a comma inside a
    name) is left alone."""
    rows = 'TITLE,tags\na,Physics\nb,Math\nc,Physics; Math\nd,"Physics, applied"\ne,Math|Physics\n'
    path = write_text(tmp_path / "t.csv", rows)
    with pytest.warns(
        UserWarning,
        match=r"t.csv: 1 label\(s\) of column 'tags' look like lists "
        r"joined by ';' \(e.g. 'Physics; Math'.*pass --label-sep ';'",
    ):
        ex = load_examples(path, ["TITLE"], labels_col="tags")
    assert "Physics; Math" in ex.labels
    with pytest.warns(UserWarning, match=r"joined by '\|' \(e.g. 'Math\|Physics'"):
        ex = load_examples(path, ["TITLE"], labels_col="tags", label_sep=";")
    assert ex.labels == ["Math", "Math|Physics", "Physics", "Physics, applied"]


def test_lists_whose_labels_never_stand_alone_are_pointed_out(tmp_path, recwarn):
    """Comma-joined lists where no label is a cell of its own ('cs,math' and 'math,stats'): the
    parts recur across names, so the warning says to split at ','; names whose parts do not all
    recur ('Paris, France' beside 'Lyon, France'), URIs sharing path parts and subject headings
    in lists that '|' splits ('Art, Modern|Art, Medieval') draw none."""
    rows = 'T,tags\na,"cs,math"\nb,"math,stats"\nc,"cs,math,stats"\nd,"cs,math"\n'
    path = write_text(tmp_path / "t.csv", rows)
    with pytest.warns(UserWarning, match=r"3 label\(s\) .* joined by ',' .*pass --label-sep ','"):
        assert load_examples(path, ["T"], labels_col="tags").labels == [
            "cs,math",
            "cs,math,stats",
            "math,stats",
        ]
    headings = 'T,tags\na,"Art, Modern|Art, Medieval"\nb,"History, Modern"\nc,"Art, Medieval"\n'
    assert (
        len(
            load_examples(write_text(tmp_path / "h.csv", headings), ["T"], labels_col="tags").labels
        )
        == 3
    )
    places = 'T,tags\na,"Paris, France"\nb,"Lyon, France"\nc,"Paris, France"\nd,"Lyon, France"\n'
    uris = "T,tags\na,http://a/1\nb,http://b/1\nc,http://a/1\nd,http://b/1\n"
    for name, text in (("p.csv", places), ("u.csv", uris)):
        assert (
            len(load_examples(write_text(tmp_path / name, text), ["T"], labels_col="tags").labels)
            == 2
        )
    assert not [w for w in recwarn if "look like lists" in str(w.message)]


def test_lists_joined_by_another_separator_than_any_cell_holds_are_split_there(tmp_path):
    """No cell holds the default '|' and ', ' joins labels that stand alone elsewhere: split
    there, with a warning, in training and with a model's labels; names with a comma whose
    parts are not labels ("Smith, John") stay whole."""
    path = write_text(
        tmp_path / "t.csv", 'T,tags\na,news\nb,"sports, news"\nc,sports\nd,"politics, news"\n'
    )
    with pytest.warns(UserWarning, match=r"t.csv: labels of column 'tags' split at ','"):
        ex = load_examples(path, ["T"], labels_col="tags")
    assert ex.labels == ["news", "politics", "sports"]
    assert ex.y.tolist() == [[1, 0, 0], [1, 0, 1], [0, 0, 1], [1, 1, 0]]
    with pytest.warns(UserWarning, match="split at ','"):
        known = load_examples(path, ["T"], labels_col="tags", labels=["sports", "news", "politics"])
    assert known.y.tolist() == [[0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 1, 1]]
    names = write_text(tmp_path / "n.csv", 'T,tags\na,"Smith, John"\nb,"Doe, Jane"\n')
    assert load_examples(names, ["T"], labels_col="tags").labels == ["Doe, Jane", "Smith, John"]


def test_annif_corpora_read_as_they_are(tmp_path):
    """Annif's short-text corpus is a TSV without header (text TAB `<uri> <uri>`, split at the
    first tab and then at any whitespace, as Annif does; quotes are text); its CSV corpus has `text` and `subject_uris` columns beside metadata. The URIs are
    the labels, and `subject_uris` holds them unless 0/1 columns are named."""
    tsv = write_text(
        tmp_path / "c.tsv",
        'He said "hi\t<http://x/a>\t<http://x/b>\nno subjects here\nlast\t <http://x/b>\n',
    )
    ex = load_examples(tsv, ["text"])
    assert ex.texts == ['He said "hi', "no subjects here", "last"]
    assert ex.labels == ["http://x/a", "http://x/b"]
    np.testing.assert_array_equal(ex.y, [[1, 1], [0, 0], [0, 1]])
    # a first document without subjects, and a headed TSV holding URI lists
    none_first = write_text(tmp_path / "n.tsv", "no subjects\t\nsome\t<http://x/a>\n")
    assert load_examples(none_first, ["text"]).y.tolist() == [[0], [1]]
    headed = write_text(tmp_path / "h.tsv", "text\tsubject_uris\nsome\t<http://x/a>\n")
    assert load_examples(headed, ["text"]).texts == ["some"]
    csv = write_text(
        tmp_path / "c.csv",
        "document_id,text,subject_uris,year\nd1,one,<http://x/a>,2020\nd2,two,,2021\n",
    )
    ex = load_examples(csv, ["text"], id_col="document_id")
    assert (ex.ids, ex.labels) == (["d1", "d2"], ["http://x/a"])
    np.testing.assert_array_equal(ex.y, [[1], [0]])
    with pytest.raises(DataError, match="label 'year' is 2020"):  # named 0/1 columns win
        load_examples(csv, ["text"], label_cols=["year"])
    # and so do a model's labels when they are columns of the table (evaluating a 0/1 model)
    both = write_text(tmp_path / "b.csv", "text,subject_uris,a\none,<http://x/a>,1\n")
    assert load_examples(both, ["text"], labels=["a"]).y.tolist() == [[1.0]]
    assert load_examples(both, ["text"], labels=["http://x/a"]).y.tolist() == [[1.0]]


def test_labels_fix_the_order(tmp_path):
    path = write(small_frame(), tmp_path / "t.csv")
    ex = load_examples(path, ["TITLE"], labels=["Math", "Physics"])
    assert ex.labels == ["Math", "Physics"]
    np.testing.assert_array_equal(ex.y[:, 0], [0, 1, 1, 0])
    path = write_text(tmp_path / "l.csv", "TITLE,tags\na,x\nb,y|x\n")
    with pytest.warns(UserWarning, match="'z'"):
        ex = load_examples(path, ["TITLE"], labels_col="tags", labels=["y", "x", "z"])
    np.testing.assert_array_equal(ex.y, [[0, 1, 0], [1, 1, 0]])


def test_missing_label_column_for_model_labels(tmp_path):
    path = write(small_frame(), tmp_path / "test.csv")
    with pytest.raises(
        DataError, match=r"test.csv: no column for 1 of the model's 2 labels: Biology; .*Physics"
    ):
        load_examples(path, ["TITLE"], labels=["Physics", "Biology"])


def test_prediction_ignores_labels(tmp_path):
    df = small_frame()
    df["Physics"] = ["junk", 2, None, 1]
    ex = load_examples(write(df, tmp_path / "p.csv"), ["TITLE"], require_labels=False)
    assert ex.y is None and ex.labels == [] and len(ex) == 4
    ex = load_examples(df, ["TITLE"], labels=["Physics"], require_labels=False)
    assert ex.labels == ["Physics"] and ex.y is None


# ---------------------------------------------------------------- validation messages


def test_missing_file():
    with pytest.raises(DataError, match=r"^train.csv: file not found$"):
        load_examples("/nonexistent/dir/train.csv", ["TITLE"])


@pytest.mark.parametrize("name", ["train.xlsx", "train.parquet.gz", "train"])
def test_unsupported_extension_lists_formats(tmp_path, name):
    with pytest.raises(DataError, match=rf"^{name}: unsupported.*\.csv.*\.parquet"):
        read_table(write_text(tmp_path / name, "x"))


def test_not_utf8_says_where(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"ID,TITLE,y\n1,ok,1\n2,caf\xe9,0\n")
    with pytest.raises(DataError, match=r"train.csv: not UTF-8.*line 3.*0xe9"):
        load_examples(path, ["TITLE"])


def test_unparseable_file(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"^train.parquet: cannot read as parquet"):
        read_table(path)


def test_missing_column_suggests_closest(tmp_path):
    path = write(small_frame(), tmp_path / "train.csv")
    with pytest.raises(DataError) as err:
        load_examples(path, ["TITEL"])
    msg = str(err.value)
    assert "train.csv: column 'TITEL' not found" in msg
    assert "ID, TITLE, ABSTRACT, Physics, Math" in msg and "did you mean 'TITLE'" in msg
    assert msg.endswith("(--text-cols names them)")


@pytest.mark.parametrize(
    ("columns", "meant"),
    [
        (["id", "comment_text", "toxic", "threat"], "comment_text"),  # not the label 'threat'
        (["ID", "Tweet", "anger", "joy"], "Tweet"),  # the column of the longest texts
    ],
)
def test_a_missing_default_text_column_suggests_a_column_of_text(tmp_path, columns, meant):
    frame = pd.DataFrame(
        {columns[0]: ["a1", "a2"], columns[1]: ["a long text here", "another long text"]}
        | {label: [0, 1] for label in columns[2:]}
    )
    with pytest.raises(DataError, match=f"did you mean '{meant}'\\? \\(--text-cols names them\\)"):
        load_examples(write(frame, tmp_path / "train.csv"), ["text"])


def test_a_table_without_header_line_says_its_first_line_is_data(tmp_path):
    # GoEmotions' own files: text TAB label numbers TAB id, no header line
    rows = ["That game hurt and I will never watch them play again.\t3,27\teebbqej", "ok\t5\teeb"]
    path = write_text(tmp_path / "train.tsv", "\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        load_examples(path, ["text"])
    assert str(err.value).startswith(
        "train.tsv: column 'text' not found: the first line holds data, not column names "
        "('That game hurt"
    )
    assert str(err.value).endswith("add a first line that names the columns")


@pytest.mark.parametrize(
    ("value", "shown"), [("2", "2"), ("yes", "'yes'"), ("", "empty"), ("0.5", "0.5")]
)
def test_bad_label_value_names_file_row_column_value(tmp_path, value, shown):
    lines = ["ID,TITLE,Physics"] + [f"{i},t{i},{i % 2}" for i in range(5)]
    lines[3] = f"2,t2,{value}"  # data row 3
    path = write_text(tmp_path / "train.csv", "\n".join(lines) + "\n")
    fill = "; its other cells are 0 or 1: if an empty cell means 0, write 0 in it"
    with pytest.raises(DataError) as err:
        load_examples(path, ["TITLE"])
    assert str(err.value) == f"train.csv row 3: label 'Physics' is {shown}, expected 0 or 1" + (
        fill
        if value == ""
        else "; columns other than id and text are read as 0/1 labels: name a list column with "
        "--labels-col or choose columns with --label-cols"
    )
    with pytest.raises(DataError) as err:  # a named column is a 0/1 column on purpose
        load_examples(path, ["TITLE"], label_cols=["Physics"])
    assert str(err.value) == f"train.csv row 3: label 'Physics' is {shown}, expected 0 or 1" + (
        fill if value == "" else ""
    )


def test_unknown_labels_marked_minus_one_are_told_to_be_left_out(tmp_path):
    """A test set's -1 ('not scored', as Jigsaw's test labels mark it) in 0/1 columns."""
    lines = ["ID,TITLE,toxic"] + [f"{i},t{i},{-1 if i > 2 else i % 2}" for i in range(6)]
    with pytest.raises(DataError) as err:
        load_examples(write_text(tmp_path / "test.csv", "\n".join(lines) + "\n"), ["TITLE"])
    assert str(err.value) == (
        "test.csv row 4: label 'toxic' is -1, expected 0 or 1 (3 bad values in this column); "
        "its other cells are 0 or 1: if -1 means unknown, leave those rows out"
    )


LISTS = [["3", "5"], ["3"], ["5"], [], ["3", "5"], ["5"]]


@pytest.mark.parametrize(
    ("cells", "lists"),
    [
        (["sports", "news", "news", "sports", "news", "sports"], None),  # classes
        (["3|5", "3", "5", None, "3|5", "5"], LISTS),  # joined lists beside single numbers
        ([[3, 5], [3], [5], [], [3, 5], [5]], LISTS),  # real lists
        (["[3, 5]", "[3]", "[5]", "[]", "[3, 5]", "[5]"], LISTS),  # lists written as text
    ],
)
def test_the_one_column_left_holding_names_is_the_list_column(cells, lists):
    lists = lists or [[c] for c in cells]
    df = pd.DataFrame({"ID": [str(i) for i in range(6)], "TITLE": list("abcdef"), "tags": cells})
    ex = load_examples(df, ["TITLE"])
    assert ex.labels == sorted({n for names in lists for n in names})
    assert ex.y.tolist() == [[float(n in names) for n in ex.labels] for names in lists]
    # a table read with the model's labels (evaluate) finds it the same way
    assert load_examples(df, ["TITLE"], labels=ex.labels).y.tolist() == ex.y.tolist()
    if isinstance(cells[0], str) and "|" in cells[0]:  # and lists split at --label-sep
        df["tags"] = df["tags"].str.replace("|", ";")
        assert load_examples(df, ["TITLE"], label_sep=";").y.tolist() == ex.y.tolist()


@pytest.mark.parametrize(
    "cells",
    [
        ["first title", "second", "third", "fourth", "fifth", "sixth"],  # a text left over
        [0, 1, "yes", 1, 0, 1],  # a 0/1 column with a stray value
        [0, 2, 1, 1, 0, None],  # a 0/1 column with a stray value and an empty cell
    ],
)
def test_a_column_left_that_is_text_or_numbers_is_not_taken_for_names(cells):
    df = pd.DataFrame({"TITLE": list("abcdef"), "other": cells})
    with pytest.raises(
        DataError, match=r"label .other. is .*, expected 0 or 1.*; columns .*--labels-col"
    ):
        load_examples(df, ["TITLE"])


def test_a_column_left_of_class_numbers_is_named_as_the_list_column_to_use():
    """Class numbers are not guessed to be names, but the error says which option reads them;
    among several 0/1 columns (-1 for unscored rows) it says to leave those rows out."""
    df = pd.DataFrame({"TITLE": list("abcdefgh"), "Class Index": [1, 2, 3, 4, 4, 3, 2, 1]})
    with pytest.raises(DataError, match=r"is 2, expected 0 or 1 \(6 bad values in this column\); "
                       r"it holds class numbers \(1, 2, 3, 4\): --labels-col 'Class Index' reads"):  # fmt: skip
        load_examples(df, ["TITLE"])
    assert load_examples(df, ["TITLE"], labels_col="Class Index").labels == ["1", "2", "3", "4"]
    df = pd.DataFrame({"TITLE": list("abc"), "toxic": [-1, 0, 1], "threat": [-1, 0, 0]})
    with pytest.raises(DataError, match=r"is -1, expected 0 or 1; .* -1 means unknown, leave"):
        load_examples(df, ["TITLE"])


def test_bad_label_counts_other_bad_rows():
    df = pd.DataFrame({"TITLE": list("abcd"), "Physics": [0, 2, 3, 1]})
    with pytest.raises(DataError, match=r"row 2: label 'Physics' is 2.*\(2 bad values"):
        load_examples(df, ["TITLE"])


def test_empty_text_lists_rows(tmp_path):
    titles = ["a", "", "b"] + ["c"] * 10 + [""] * 11
    df = pd.DataFrame({"TITLE": titles, "ABSTRACT": [None] * len(titles), "y": 1})
    with pytest.raises(DataError) as err:
        load_examples(write(df, tmp_path / "train.csv"), ["TITLE", "ABSTRACT"])
    msg = str(err.value)
    assert msg.startswith("train.csv: 12 row(s) with empty or missing text in TITLE, ABSTRACT")
    assert "row 2, 14, 15, 16, 17, 18, 19, 20, 21, 22, ..." in msg


def test_partly_missing_text_is_kept():
    df = pd.DataFrame({"TITLE": ["a", None], "ABSTRACT": ["x", "y"]})
    assert join_texts(df, ["TITLE", "ABSTRACT"], "DataFrame") == ["a\nx", "y"]


def test_an_id_on_rows_of_different_texts_is_an_error(tmp_path):
    df = small_frame()
    df.loc[3, "ID"] = "a2"
    with pytest.raises(DataError) as err:
        load_examples(write(df, tmp_path / "train.csv"), ["TITLE", "ABSTRACT"])
    assert str(err.value) == (
        "train.csv: rows 2, 4 share ID 'a2' but not their text (ids name one text each)"
    )


@pytest.mark.parametrize("form", ["names", "lists", "0/1"])
def test_rows_of_one_text_and_its_labels_are_one_text(tmp_path, form):
    """One row per text and label (a database export), the text repeated: one text with the
    labels of all its rows, in order of first appearance, said in a warning."""
    df = pd.DataFrame({"ID": ["p1", "p2", "p3", "p1", "p3", "p2"], "TITLE": list("abcacb")})
    if form == "0/1":
        df = df.assign(Physics=[1, 0, 0, 0, 0, 0], Math=[0, 1, 1, 0, 1, 0], Bio=[0, 1, 0, 1, 0, 1])
    else:
        first = "Math" if form == "names" else "Math|Bio"
        df["subject"] = ["Physics", first, "Math", "Bio", "Math", "Bio"]
    with pytest.warns(UserWarning, match=r"train.csv: 6 rows hold 3 texts: rows that share ID"):
        ex = load_examples(write(df, tmp_path / "train.csv"), ["TITLE"])
    assert (ex.ids, ex.texts) == (["p1", "p2", "p3"], ["a", "b", "c"])
    assert dict(zip(ex.labels, ex.y.T.tolist())) == {
        "Bio": [1, 1, 0],
        "Math": [0, 1, 1],
        "Physics": [1, 0, 0],
    }


def test_rows_of_one_label_without_ids_are_one_text(tmp_path):
    """Without ids, a list column's rows of one label each that repeat a text with other labels
    are one text with all of them (a long export without ids), said in a warning; a class table
    whose repeats seldom disagree (under LONG_SHARE of its texts), and a 0/1 table, keep rows."""
    long = pd.DataFrame({"TITLE": list("abcacb"), "subject": ["P", "M", "M", "B", "M", "B"]})
    with pytest.warns(UserWarning, match=r"6 rows of one label each hold 3 texts \(2 with several"):
        ex = load_examples(write(long, tmp_path / "long.csv"), ["TITLE"])
    assert (ex.ids, ex.texts, ex.labels) == (["0", "1", "2"], ["a", "b", "c"], ["B", "M", "P"])
    assert ex.y.tolist() == [[1, 0, 1], [1, 1, 0], [0, 1, 0]]
    classes = pd.DataFrame(
        {"TITLE": [f"t{i}" for i in range(40)] + ["t0"], "subject": ["M"] * 40 + ["P"]}
    )
    assert len(load_examples(write(classes, tmp_path / "classes.csv"), ["TITLE"]).texts) == 41
    wide = pd.DataFrame({"TITLE": list("aab"), "P": [1, 0, 0], "M": [0, 1, 1]})
    assert len(load_examples(write(wide, tmp_path / "wide.csv"), ["TITLE"]).texts) == 3


def test_empty_id(tmp_path):
    path = write_text(tmp_path / "train.csv", "ID,TITLE,y\n1,a,1\n,b,0\n")
    with pytest.raises(DataError, match=r"train.csv row 2: column 'ID' is empty"):
        load_examples(path, ["TITLE"])


def test_no_rows(tmp_path):
    with pytest.raises(DataError, match=r"train.csv: no data rows"):
        load_examples(write_text(tmp_path / "train.csv", "ID,TITLE,y\n"), ["TITLE"])
    with pytest.raises(DataError, match=r"train.csv: no rows"):
        load_examples(write_text(tmp_path / "train.csv", ""), ["TITLE"])


def test_label_without_positive_warns(tmp_path):
    df = small_frame()
    df["Biology"] = 0
    with pytest.warns(
        UserWarning, match=r"train.csv: label\(s\) with no positive example: 'Biology'"
    ):
        load_examples(write(df, tmp_path / "train.csv"), ["TITLE", "ABSTRACT"])


def test_zero_one_columns_the_model_lacks_are_named_in_a_warning(tmp_path):
    """A validation or test table read with a model's labels: 0/1 columns that are not among
    them are labels it cannot score, named in a warning; other columns and named ones are not."""
    df = small_frame()
    labels = default_label_columns(df, "ID", ["TITLE", "ABSTRACT"])
    df["Biology"], df["year"] = [1, 0] * (len(df) // 2) + [0] * (len(df) % 2), 2020
    path = write(df, tmp_path / "val.csv")
    with pytest.warns(UserWarning) as caught:
        ex = load_examples(path, ["TITLE", "ABSTRACT"], labels=labels)
    assert ex.labels == labels
    assert [str(w.message) for w in caught] == [
        "val.csv: 0/1 column(s) 'Biology' are not labels of the model and are left out "
        "(its labels come from the training table)"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_examples(path, ["TITLE", "ABSTRACT"], label_cols=labels, labels=labels)
        load_examples(path, ["TITLE", "ABSTRACT"], labels=[*labels, "Biology"])


# ---------------------------------------------------------------- subset and split


def labelled(n: int, n_labels: int, seed: int = 0) -> Examples:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < 0.3).astype(np.float32)
    y[:2, -1], y[2:, -1] = 1, 0  # a rare label with exactly two positives
    ids = [str(i) for i in range(n)]
    return Examples(ids, [f"text {i}" for i in ids], [f"L{j}" for j in range(n_labels)], y, "t")


def test_subset_selects_rows():
    ex = labelled(10, 3)
    sub = ex.subset(np.array([4, 1]))
    assert sub.ids == ["4", "1"] and sub.texts == ["text 4", "text 1"]
    np.testing.assert_array_equal(sub.y, ex.y[[4, 1]])
    assert ex.subset([0]).labels == ex.labels and len(ex.subset([])) == 0


def test_split_is_deterministic_and_sized():
    ex = labelled(100, 5)
    train, val = split_examples(ex, 0.2, seed=3)
    again_train, again_val = split_examples(ex, 0.2, seed=3)
    assert (len(train), len(val)) == (80, 20)
    assert val.ids == again_val.ids and train.ids == again_train.ids
    assert sorted(train.ids + val.ids, key=int) == ex.ids
    assert split_examples(ex, 0.2, seed=4)[1].ids != val.ids


@pytest.mark.parametrize("seed", range(5))
def test_split_puts_every_repeated_label_on_both_sides(seed):
    ex = labelled(30, 6, seed=seed)
    train, val = split_examples(ex, 0.2, seed=seed)
    for j in np.flatnonzero(ex.y.sum(axis=0) >= 2):
        assert train.y[:, j].any() and val.y[:, j].any(), ex.labels[j]
    assert len(val) == 6


def test_split_of_a_single_label_stratifies_its_positives():
    ex = labelled(100, 1, seed=1)
    ex.y[:, 0] = np.arange(100) % 5 == 0  # 20 positives
    train, val = split_examples(ex, 0.25, seed=0)
    assert (len(train), len(val)) == (75, 25)
    assert (train.y.sum(), val.y.sum()) == (15, 5)  # the table's one in five on each side


def test_split_tiny_data():
    ex = labelled(2, 2)
    train, val = split_examples(ex, 0.01, seed=0)
    assert len(train) == len(val) == 1
    train, val = split_examples(labelled(3, 2), 0.99, seed=0)
    assert (len(train), len(val)) == (1, 2)
    with pytest.raises(DataError, match="at least 2 rows"):
        split_examples(ex.subset([0]), 0.5, seed=0)


def test_stratified_folds_draw_the_rows_iterstrat_draws():
    """The split's stratification is iterstrat's algorithm kept fast: the same seed gives the
    same validation rows, ties (rows without labels, labels of equal counts) included."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
    from scipy import sparse

    rng = np.random.default_rng(0)
    for _ in range(150):
        n, width = int(rng.integers(2, 150)), int(rng.integers(2, 10))
        y = (rng.random((n, width)) < rng.random() * 0.5).astype(np.float32)
        y[rng.random(n) < 0.2] = 0
        n_val, seed = int(rng.integers(1, n)), int(rng.integers(0, 50))
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
        want = next(splitter.split(np.zeros(n), y))[1]
        got = np.flatnonzero(stratified_folds(sparse.csr_matrix(y), n_val, seed) == 1)
        assert np.array_equal(got, want), (n, width, n_val, seed)


def test_split_of_many_rows_and_subjects_covers_them():
    """20,000 rows x 8,000 subjects: 5 s here, past the suite's 600 s timeout with iterstrat,
    which recounted a dense rows x labels matrix for every label it placed (its speed is
    measured by bench/subjects_scale.py, not asserted here)."""
    rng = np.random.default_rng(0)
    n, width = 20_000, 8_000
    y = np.zeros((n, width), dtype=np.float32)
    y[np.arange(n)[:, None], rng.zipf(1.3, size=(n, 3)) % width] = 1  # a long tail of subjects
    ex = Examples([str(i) for i in range(n)], ["t"] * n, [f"s{j}" for j in range(width)], y, "t")
    train, val = split_examples(ex, 0.15, seed=0)
    assert (len(train), len(val)) == (17_000, 3_000)
    repeated = ex.y.sum(axis=0) >= 2
    on_both = (train.y.sum(axis=0) > 0) & (val.y.sum(axis=0) > 0)
    assert on_both[repeated].mean() > 0.9


@pytest.mark.parametrize("frac", [0, 1, -0.1, 1.5])
def test_split_rejects_bad_fraction(frac):
    with pytest.raises(ValueError, match=f"val_frac.*got {frac}"):
        split_examples(labelled(10, 2), frac, seed=0)


# ---------------------------------------------------------------- the shipped data


def test_shipped_arxiv_data():
    ex = load_examples(REPO / "data" / "arxiv_topics.csv.gz", ["TITLE", "ABSTRACT"])
    assert len(ex) == 3907 and ex.y.shape == (3907, 6)
    assert ex.labels[:3] == ["Computer Science", "Physics", "Mathematics"]
    assert ex.ids[0] == "arxiv-2505.24861"
