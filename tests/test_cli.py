"""Every CLI command end to end, through `main([...])`, on the tiny model."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import LABELS

from mlabel.cli import main
from mlabel.tables import read_table


@pytest.fixture(scope="module")
def run(tiny_encoder, small_csv, tmp_path_factory):
    """`mlabel train` with a config file whose epochs the command line overrides."""
    out = tmp_path_factory.mktemp("cli-run")
    config = out / "recipe.yaml"
    config.write_text("epochs: 3\nbatch_size: 8\nseed: 3\nprecision: fp32\nval_frac: 0.25\n")
    argv = ["train", str(small_csv), "--text-cols", "TITLE", "ABSTRACT", "--model", tiny_encoder]
    argv += ["--epochs", "1", "--max-len", "32", "--threads", "2", "--config", str(config)]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([*argv, "--out", str(out / "run")]) == 0
    return out / "run", stdout.getvalue()


@pytest.fixture(scope="module")
def rows(arxiv, tmp_path_factory):
    """30 rows in a shuffled order, with the labels and an extra column the model never saw."""
    table = arxiv.sample(30, random_state=0).assign(extra="ignored")
    path = tmp_path_factory.mktemp("predict") / "rows.csv"
    table.to_csv(path, index=False)
    return path, table


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *phrases: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(p in lines[0] for p in phrases), lines[0]


def test_train_writes_a_run_folder(run):
    run_dir, stdout = run
    assert f"model saved to {run_dir / 'model'}" in stdout
    assert "micro-F1" in stdout
    assert (run_dir / "model" / "mlabel.json").is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["epochs"] == 1  # the command line wins over the config file
    assert saved["batch_size"] == 8 and saved["seed"] == 3  # the file wins over defaults
    assert saved["text_cols"] == ["TITLE", "ABSTRACT"] and saved["max_len"] == 32
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    meta = json.loads((run_dir / "model" / "mlabel.json").read_text())
    assert meta["labels"] == LABELS


def test_evaluate_text_and_json(run, small_csv, capsys):
    code, out, _ = cli(capsys, "evaluate", run[0] / "model", small_csv)
    assert code == 0 and "micro-F1" in out and "Physics" in out
    code, out, _ = cli(capsys, "evaluate", run[0] / "model", small_csv, "--json")
    metrics = json.loads(out)
    assert code == 0 and 0 <= metrics["micro_f1"] <= 1
    assert set(metrics["per_label"]) == set(LABELS)


def test_predict_csv(run, rows, tmp_path, capsys):
    path, table = rows
    code, out, _ = cli(capsys, "predict", run[0] / "model", path, "-o", tmp_path / "p.csv")
    assert code == 0 and "wrote 30 rows" in out
    pred = pd.read_csv(tmp_path / "p.csv", dtype={"ID": str})
    assert list(pred.columns) == ["ID", *LABELS]
    assert pred["ID"].tolist() == table["ID"].tolist()
    assert set(np.unique(pred[LABELS].to_numpy())) <= {0, 1}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_predict_other_formats_match_csv(run, rows, tmp_path, capsys, suffix):
    model = run[0] / "model"
    assert cli(capsys, "predict", model, rows[0], "-o", tmp_path / "p.csv")[0] == 0
    assert cli(capsys, "predict", model, rows[0], "-o", tmp_path / f"p{suffix}")[0] == 0
    expected = read_table(tmp_path / "p.csv")
    pd.testing.assert_frame_equal(read_table(tmp_path / f"p{suffix}"), expected, check_dtype=False)


def test_predict_proba(run, rows, tmp_path, capsys):
    out = tmp_path / "p.parquet"
    assert cli(capsys, "predict", run[0] / "model", rows[0], "--proba", "-o", out)[0] == 0
    values = read_table(out)[LABELS].to_numpy()
    assert values.dtype.kind == "f" and ((values >= 0) & (values <= 1)).all()
    assert len(np.unique(values)) > 2


def test_predict_without_id_column_uses_row_numbers(run, rows, tmp_path, capsys):
    rows[1].drop(columns="ID").to_csv(tmp_path / "no_id.csv", index=False)
    code, _, _ = cli(
        capsys, "predict", run[0] / "model", tmp_path / "no_id.csv", "-o", tmp_path / "p.csv"
    )
    assert code == 0
    assert pd.read_csv(tmp_path / "p.csv")["ID"].tolist() == list(range(30))


def test_predict_keeps_an_id_column_spelled_id(run, rows, tmp_path, capsys):
    table = rows[1].rename(columns={"ID": "id"}).assign(id=lambda t: "00" + t["id"].astype(str))
    table.to_csv(tmp_path / "lower.csv", index=False)
    out = tmp_path / "p.csv"
    assert cli(capsys, "predict", run[0] / "model", tmp_path / "lower.csv", "-o", out)[0] == 0
    written = pd.read_csv(out, dtype=str)
    assert list(written.columns)[0] == "id" and written["id"].tolist() == table["id"].tolist()


def test_predict_one_text(run, capsys):
    code, out, _ = cli(capsys, "predict", run[0] / "model", "--text", "Quantum spin chains")
    assert code == 0
    assert "tags:" in out and all(label in out for label in LABELS)


def test_predict_reads_one_text_from_standard_input(run, capsys, monkeypatch):
    """`--text -` reads a whole document from stdin (as `annif suggest` does): the same result."""
    text = "Quantum spin chains\nand their entanglement"
    code, direct, _ = cli(capsys, "predict", run[0] / "model", "--text", text)
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code, piped, _ = cli(capsys, "predict", run[0] / "model", "--text", "-")
    assert code == 0 and piped == direct and "text: Quantum spin chains" in piped


def test_predict_prints_a_few_rows_without_output(run, rows, capsys, tmp_path):
    code, out, _ = cli(capsys, "predict", run[0] / "model", rows[0], "--limit", "2")
    assert code == 0 and out.count("tags:") == 2
    table = pd.read_csv(rows[0], dtype={"ID": str}).head(3)
    table.loc[1, ["TITLE", "ABSTRACT"]] = None  # a row without text is shown, not scored
    table.to_csv(tmp_path / "gap.csv", index=False)
    code, out, _ = cli(capsys, "predict", run[0] / "model", tmp_path / "gap.csv", "--limit", "3")
    assert code == 0 and out.count("tags:") == 3
    assert f"{table['ID'][1]}: (no text)\n  tags: (none: not scored)\n{table['ID'][2]}: " in out


@pytest.mark.parametrize(
    "make, phrases",
    [
        (lambda t, d: d / "missing.csv", ["missing.csv: file not found"]),
        (
            lambda t, d: t.rename(columns={"ABSTRACT": "abstract"}),
            ["column 'ABSTRACT' not found", "did you mean 'abstract'?"],
        ),
        (lambda t, d: d / "notes.docx", ["notes.docx: unsupported file type"]),
        (lambda t, d: d / "books.xlsx", ["unsupported file type", "save a spreadsheet as CSV"]),
    ],
)
def test_predict_data_errors(run, rows, tmp_path, capsys, make, phrases):
    data = make(rows[1], tmp_path)
    if isinstance(data, pd.DataFrame):
        data.to_csv(tmp_path / "bad.csv", index=False)
        data = tmp_path / "bad.csv"
    code, _, err = cli(capsys, "predict", run[0] / "model", data, "-o", tmp_path / "p.csv")
    assert_user_error(code, err, *phrases)
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("command", ["predict", "evaluate", "explain", "inspect", "train", "tune"])
def test_an_id_column_the_table_lacks_is_an_error(run, rows, tmp_path, capsys, command):
    """Its ids would otherwise be row numbers, silently; the default ID may be absent."""
    data = ["inspect", "train", "tune"]
    head = [command, rows[0]] if command in data else [command, run[0] / "model", rows[0]]
    out = ["--out", tmp_path / "o"] if command in data else ["-o", tmp_path / "o.csv"]
    args = [*head, "--text-cols", "TITLE", "ABSTRACT", *out[: 2 if command != "evaluate" else 0]]
    code, _, err = cli(capsys, *args, "--id-col", "doi")
    assert_user_error(code, err, "rows.csv: column 'doi' not found", "(--id-col names them)")
    assert not list(tmp_path.iterdir())
    if command in ("predict", "evaluate"):  # an id column it has (in any case) is read
        assert cli(capsys, *args, "--id-col", "id")[0] == 0


def test_ray_prediction_checks_a_local_tables_columns_first(run, rows, tmp_path, capsys):
    """Before starting Ray, whose workers failed on them with pages of logs."""
    pytest.importorskip("ray")
    args = ["predict", run[0] / "model", rows[0], "--engine", "ray", "-o", tmp_path / "o.csv"]
    code, _, err = cli(capsys, *args, "--id-col", "doi")
    assert_user_error(code, err, "rows.csv: column 'doi' not found", "(--id-col names them)")
    code, _, err = cli(capsys, *args, "--text-cols", "TITLE", "summary")
    assert_user_error(code, err, "rows.csv: column 'summary' not found", "(--text-cols names them)")
    assert not list(tmp_path.iterdir())


def test_a_small_validation_split_is_said_to_be_rough(tiny_csv, tiny_encoder, tmp_path, capsys):
    argv = ["train", tiny_csv, "--text-cols", "TITLE", "ABSTRACT", "--model", tiny_encoder]
    argv += ["--epochs", "1", "--max-len", "16", "--ensemble", "none", "--out", tmp_path / "r"]
    code, _, err = cli(capsys, *argv)
    assert code == 0 and "validation: 7 rows only: its F1 and the thresholds tuned on it" in err
    code, _, err = cli(capsys, *argv[:-1], tmp_path / "all", "--all-data")
    assert code == 0 and "rows only" not in err
    code, _, err = cli(capsys, *argv[:5], "--model", "tfidf", "--out", tmp_path / "tfidf")
    assert code == 0 and "validation: 7 rows only" in err, err  # the baseline figures too


def test_bad_label_value(run, rows, tmp_path, capsys, tiny_encoder):
    table = rows[1].copy()
    table.iloc[3, table.columns.get_loc("Physics")] = 2
    table.to_csv(tmp_path / "bad.csv", index=False)
    code, _, err = cli(capsys, "evaluate", run[0] / "model", tmp_path / "bad.csv")
    assert_user_error(code, err, "bad.csv row 4: label 'Physics' is 2, expected 0 or 1")
    code, _, err = cli(capsys, "train", tmp_path / "bad.csv", "--text-cols", "TITLE", "ABSTRACT",
                       "--model", tiny_encoder, "--out", tmp_path / "run")  # fmt: skip
    assert_user_error(code, err, "label 'Physics' is 2")


def test_usage_errors(run, capsys, tmp_path):
    code, _, err = cli(capsys, "predict", run[0] / "model")
    assert_user_error(code, err, "give DATA or --text")
    code, _, err = cli(capsys, "evaluate", tmp_path, "x.csv")
    assert_user_error(code, err, "not an mlabel model folder")
    code, _, err = cli(
        capsys, "predict", run[0] / "model", "--text", "x", "--engine", "ray", "--device", "cpu"
    )
    assert_user_error(code, err, "--device does not apply to --engine ray")
    if not torch.cuda.is_available():
        code, _, err = cli(capsys, "predict", run[0] / "model", "--text", "x", "--device", "cuda")
        assert_user_error(code, err, "device 'cuda': no GPU is available here")


def test_train_bad_config_file(small_csv, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("epochz: 2\n")
    code, _, err = cli(capsys, "train", small_csv, "--config", tmp_path / "bad.yaml")
    assert_user_error(code, err, "bad.yaml: unknown setting 'epochz' (did you mean 'epochs'?)")
    code, _, err = cli(capsys, "train", small_csv, "--dropout", "3")
    assert_user_error(code, err, "options: dropout is 3.0, expected 0.0 to 1.0")


def test_resume_with_other_settings_is_a_user_error(run, small_csv, tiny_encoder, capsys):
    argv = ["train", small_csv, "--text-cols", "TITLE", "ABSTRACT", "--model", tiny_encoder]
    argv += ["--max-len", "32", "--epochs", "2", "--out", run[0], "--resume"]  # no config file
    code, _, err = cli(capsys, *argv)
    assert_user_error(code, err, "cannot resume with other settings", "batch_size (run 8, now 16)")
    assert "epochs" not in err  # training longer is allowed


def test_a_max_len_past_the_encoders_limit_is_a_user_error(
    small_csv, tiny_encoder, tmp_path, capsys
):
    """Past 512 positions the encoder failed in its first step with a traceback."""
    argv = ["train", small_csv, "--text-cols", "TITLE", "ABSTRACT", "--model", tiny_encoder]
    code, _, err = cli(capsys, *argv, "--max-len", "600", "--out", tmp_path / "run")
    assert_user_error(code, err, "max_len 600 is over the encoder's limit of 512 tokens")
    texts = tmp_path / "texts.txt"
    texts.write_text("one text\nanother text\n")
    code, _, err = cli(
        capsys, "adapt", texts, "--model", tiny_encoder, "--max-len", "513", "--out", tmp_path / "a"
    )
    assert_user_error(code, err, "max_len 513 is over the encoder's limit of 512 tokens")


def test_python_m_mlabel_help():
    done = subprocess.run(
        [sys.executable, "-m", "mlabel", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    assert all(cmd in done.stdout for cmd in ("train", "evaluate", "predict"))


def test_every_training_option_is_explained():
    from mlabel.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    bare = [o.option_strings[0] for o in train._actions if (o.help or "(default").startswith("(")]
    assert bare == []
    helps = {a.dest: a.help for a in train._actions}
    assert helps["pooling"].startswith("mean or cls") and "(default: mean)" in helps["pooling"]
    assert "None" not in helps["head_lr"] + helps["stride"] + helps["attention_dropout"]


@pytest.fixture(scope="module")
def ruled(small_csv, tmp_path_factory):
    """A TF-IDF model folder trained with a stored rule: at most 2 labels, at least 1."""
    out = tmp_path_factory.mktemp("cli-rule")
    argv = ["train", small_csv, "--model", "tfidf", "--text-cols", "TITLE", "ABSTRACT"]
    assert main([str(a) for a in [*argv, "--top-k", "2", "--min-labels", "1", "--out", out]]) == 0
    return out / "model"


def test_predict_uses_the_stored_rule_and_options_override_it(ruled, rows, tmp_path, capsys):
    assert json.loads((ruled / "mlabel.json").read_text())["rule"] == {"top_k": 2, "min_labels": 1}

    def tags_per_row(*options: str) -> pd.Series:
        out = tmp_path / "p.csv"
        assert cli(capsys, "predict", ruled, rows[0], "-o", out, *options)[0] == 0
        return pd.read_csv(out)[LABELS].sum(axis=1)

    assert tags_per_row("--threshold", "0").eq(2).all()  # the stored cap
    assert tags_per_row("--threshold", "1").eq(1).all()  # the stored minimum
    assert tags_per_row("--threshold", "0", "--top-k", "3").eq(3).all()
    assert tags_per_row("--threshold", "0", "--top-k", "0").eq(len(LABELS)).all()  # no cap
    assert tags_per_row("--threshold", "1", "--min-labels", "0").eq(0).all()


def test_predict_long_format(run, rows, tmp_path, capsys):
    model, long_csv, wide_csv = run[0] / "model", tmp_path / "long.csv", tmp_path / "wide.csv"
    options = ["--format", "long", "--top-k", "3", "--threshold", "0"]
    code, out, _ = cli(capsys, "predict", model, rows[0], "-o", long_csv, *options)
    assert code == 0 and "wrote the labels of 30 rows" in out
    long = pd.read_csv(long_csv, dtype={"ID": str})
    assert list(long.columns) == ["ID", "label", "score"]
    assert long.groupby("ID").size().eq(3).all()
    assert set(long["ID"]) == set(rows[1]["ID"].astype(str))
    assert cli(capsys, "predict", model, rows[0], "-o", wide_csv, "--proba")[0] == 0
    wide = pd.read_csv(wide_csv, dtype={"ID": str}).set_index("ID")
    expected = [wide.at[i, label] for i, label in zip(long["ID"], long["label"])]
    np.testing.assert_allclose(long["score"], expected, atol=1e-5)
    # --min-labels 1: every text gets its best label, even when no label passes its threshold.
    options = ["--format", "long", "--min-labels", "1", "--threshold", "1"]
    assert cli(capsys, "predict", model, rows[0], "-o", long_csv, *options)[0] == 0
    best = pd.read_csv(long_csv, dtype={"ID": str}).set_index("ID")["label"]
    assert len(best) == 30 and (best == wide.loc[best.index].idxmax(axis=1)).all()


def test_evaluate_shows_ranking_metrics_and_the_rule(run, small_csv, capsys):
    model = run[0] / "model"
    code, out, _ = cli(capsys, "evaluate", model, small_csv, "--json")
    plain = json.loads(out)
    assert code == 0 and plain["ranking_rows"] == len(pd.read_csv(small_csv))
    for key in ("precision@1", "recall@3", "f1@5", "ndcg@5", "lrap"):
        assert 0 <= plain[key] <= 1, key
    assert 1 <= plain["coverage_error"] <= len(LABELS)
    code, out, _ = cli(capsys, "evaluate", model, small_csv, "--json", "--top-k", "1")
    capped = json.loads(out)
    assert capped["lrap"] == plain["lrap"]  # the ranking does not depend on the decisions
    assert capped["micro_recall"] <= plain["micro_recall"]
    code, out, _ = cli(capsys, "evaluate", model, small_csv, "--top-k", "1")
    assert "(rule: top-k 1)" in out and "LRAP" in out and "nDCG" in out


def test_rule_option_errors(run, small_csv, capsys, tmp_path):
    model = run[0] / "model"
    code, _, err = cli(capsys, "predict", model, small_csv, "-o", tmp_path / "p.csv",
                       "--format", "long", "--proba")  # fmt: skip
    assert_user_error(code, err, "--proba does not apply to --format long")
    code, _, err = cli(capsys, "predict", model, "--text", "x", "--top-k", "1", "--min-labels", "2")
    assert_user_error(code, err, "min_labels (2) is above top_k (1)")
    code, _, err = cli(capsys, "train", small_csv, "--model", "tfidf", "--top-k", "0")
    assert_user_error(code, err, "top_k is 0, expected 1 or more")
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(model), "--text", "x", "--top-k", "-1"])
    assert exc.value.code == 2 and "-1 is below 0" in capsys.readouterr().err


def test_predict_evaluate_and_explain_read_a_table_with_other_column_names(
    run, rows, small_csv, tmp_path, capsys
):
    model, path = run[0] / "model", tmp_path / "renamed.csv"
    rows[1].rename(columns={"ID": "doc", "TITLE": "title", "ABSTRACT": "body"}).to_csv(path)
    code, _, err = cli(capsys, "predict", model, path, "-o", tmp_path / "p.csv")
    assert_user_error(code, err, "column 'TITLE' not found")
    assert cli(capsys, "predict", model, rows[0], "-o", tmp_path / "same.csv", "--proba")[0] == 0
    options = ["--text-cols", "title", "body", "--id-col", "doc"]
    assert (
        cli(capsys, "predict", model, path, "-o", tmp_path / "p.csv", "--proba", *options)[0] == 0
    )
    expected = pd.read_csv(tmp_path / "same.csv", dtype={"ID": str}).rename(columns={"ID": "doc"})
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "p.csv", dtype={"doc": str}), expected)
    scores = [
        json.loads(cli(capsys, "evaluate", model, table, "--json", *more)[1])["micro_f1"]
        for table, more in ((rows[0], []), (path, options))
    ]
    assert scores[0] == scores[1]
    out = tmp_path / "words.csv"
    assert cli(capsys, "explain", model, path, "-o", out, "--steps", "2", *options)[0] == 0
    assert set(pd.read_csv(out, dtype={"doc": str})["doc"]) == set(rows[1]["ID"].astype(str))


def test_predict_names_ids_by_the_models_id_column(small_csv, tmp_path, capsys):
    table = pd.read_csv(small_csv, dtype={"ID": str}).rename(columns={"ID": "doc"})
    table.to_csv(tmp_path / "train.csv", index=False)
    argv = ["train", tmp_path / "train.csv", "--model", "tfidf", "--text-cols", "TITLE", "ABSTRACT"]
    assert cli(capsys, *argv, "--id-col", "doc", "--out", tmp_path / "run")[0] == 0
    out = tmp_path / "p.csv"
    assert (
        cli(capsys, "predict", tmp_path / "run" / "model", tmp_path / "train.csv", "-o", out)[0]
        == 0
    )
    written = pd.read_csv(out, dtype=str)
    assert list(written.columns)[0] == "doc" and written["doc"].tolist() == table["doc"].tolist()


def test_a_reader_that_stops_early_ends_the_command_quietly(small_csv, tmp_path):
    """`mlabel predict ... | head -1`: no traceback when the reader closes the pipe."""
    argv = ["train", small_csv, "--model", "tfidf", "--text-cols", "TITLE", "ABSTRACT"]
    assert main([str(a) for a in [*argv, "--out", tmp_path / "run"]]) == 0
    command = [sys.executable, "-m", "mlabel", "predict", str(tmp_path / "run" / "model")]
    command += [str(small_csv), "--limit", "160"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        child.stdout.close()  # before the command has printed anything
        err = child.stderr.read().decode()
        assert child.wait(timeout=120) == 141
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_evaluate_names_the_macro_f1_without_the_labels_a_table_lacks(
    run, small_csv, tmp_path, capsys
):
    model, lacking = run[0] / "model", tmp_path / "no-finance.csv"
    table = pd.read_csv(small_csv, dtype={"ID": str})
    table[table["Quantitative Finance"] == 0].to_csv(lacking, index=False)
    code, out, _ = cli(capsys, "evaluate", model, lacking, "--json", "--threshold", "1")
    metrics = json.loads(out)  # at threshold 1 no label is given, so Finance is not seen
    assert code == 0 and metrics["labels_seen"] == len(LABELS) - 1  # the sums: test_metrics.py
    code, out, _ = cli(capsys, "evaluate", model, lacking, "--threshold", "1")
    assert "macro-F1 over the 5 labels the table holds or that were given" in out
    code, out, _ = cli(capsys, "evaluate", model, small_csv)
    assert code == 0 and "labels the table holds" not in out
