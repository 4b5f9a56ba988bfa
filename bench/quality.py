"""Held-out quality: TF-IDF vs the seed recipe vs the default recipe (alone and with the TF-IDF ensemble).

    python bench/quality.py                 # train what is missing, print and write the table
    python bench/quality.py --seeds 3       # also repeat the transformer runs with seeds 43, 44
    python bench/quality.py --only default  # train one recipe (runs are cached under --work)
    python bench/quality.py --report        # tables from the runs there are, finished or not

The data is split 80/20 once (iterative stratification, fixed seed); every model trains on
the 80% (transformer recipes split their own validation off it, as `mlabel train` does) and is
scored on the 20%. Runs are cached: delete a run folder to retrain it. The default recipe is
trained once (with its default ensemble=tfidf); the encoder alone is one row, the blend the
"ensemble" row (the blend is linear, so the encoder's probabilities are recovered exactly).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from benchkit import DATA, ROOT, TEXT_COLS, WORK
from safetensors.torch import load_file

from mlabel import folder
from mlabel.baseline import TfidfModel
from mlabel.classifier import fit_model
from mlabel.config import TrainConfig, load_config
from mlabel.data import Examples, load_examples, split_examples
from mlabel.decision import decide
from mlabel.metrics import bootstrap_ci, multilabel_metrics, tune_thresholds
from mlabel.model import EncoderClassifier
from mlabel.predict import Predictor
from mlabel.reports.curves import read_metrics_jsonl

SPLIT_SEED = 0
TEST_FRAC = 0.2
BOOTSTRAPS = 2000
ENSEMBLE_WEIGHT = 0.5  # what finalize_thresholds stores for ensemble="tfidf"
METHODS = ("fixed:0.5", "global", "shrunk", "per-label")
ENCODER_ROW = "default, encoder alone (ensemble none)"
DEFAULT_ROW = "default (ensemble tfidf)"


def recipes() -> dict[str, dict]:
    """Settings per trained recipe (TrainConfig keys); `keep` only keeps epoch checkpoints."""
    return {
        "tfidf": {"model": "tfidf", "text_cols": TEXT_COLS, "all_data": True},
        "seed": load_config(ROOT / "recipes" / "seed.yaml"),
        # ensemble=tfidf (the default) also yields the encoder alone: see held_out_probs.
        "default": {"text_cols": TEXT_COLS, "ensemble": "tfidf", "keep": 10},
    }


def split_data(path: Path = DATA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fixed 80/20 split of the table, as two DataFrames in file order."""
    df = pd.read_csv(path, dtype={"ID": str})
    _, test = split_examples(load_examples(df, TEXT_COLS), TEST_FRAC, SPLIT_SEED)
    is_test = df["ID"].isin(set(test.ids))
    return df[~is_test].reset_index(drop=True), df[is_test].reset_index(drop=True)


def train_recipe(settings: dict, seed: int, threads: int, train_df: pd.DataFrame, out: Path):
    """Train one recipe into `out` unless a finished run is there; record wall-clock minutes."""
    if (out / "minutes.json").is_file():
        return
    cfg = TrainConfig(**{**settings, "seed": seed, "threads": threads})
    t0 = time.perf_counter()
    fit_model(cfg, train_df, out)
    (out / "minutes.json").write_text(json.dumps({"minutes": (time.perf_counter() - t0) / 60}))


@dataclass
class Run:
    """One trained run's probabilities: internal validation and held-out, encoder and TF-IDF member."""

    name: str
    seed: int
    minutes: float
    finished: bool
    method: str
    threads: int | None
    val_frac: float
    labels: list[str]
    val: Examples | None
    val_probs: np.ndarray | None
    test_probs: np.ndarray
    test_y: np.ndarray
    tfidf_val: np.ndarray | None = None
    tfidf_test: np.ndarray | None = None


def load_run(out: Path, name: str, seed: int, train_df, test_df, model_dir: Path | None = None):
    """Read a run folder (finished or still training: then its best epoch so far)."""
    cfg = load_config(out / "config.yaml")
    model_dir = model_dir or out / "model"
    info = folder.read(model_dir)
    val = None
    if not cfg.get("all_data"):
        ex = load_examples(train_df, cfg["text_cols"], label_cols=info.labels)
        inner_train, val = split_examples(ex, cfg["val_frac"], cfg["seed"])
    finished = (out / "minutes.json").is_file()
    if finished:
        minutes = json.loads((out / "minutes.json").read_text())["minutes"]
    else:
        records = read_metrics_jsonl(out / "metrics.jsonl")
        minutes = sum(r["seconds"] for r in records) / 60
    run = Run(
        name,
        seed,
        minutes,
        finished,
        cfg.get("thresholds", "fixed:0.5"),
        cfg.get("threads"),
        cfg.get("val_frac", 0.0),
        info.labels,
        val,
        np.load(out / "val_probs.npy") if val is not None else None,
        held_out_probs(model_dir, test_df),
        load_examples(test_df, info.text_cols, label_cols=info.labels).y.astype(int),
    )
    if cfg.get("ensemble") == "tfidf":
        tfidf_dir = model_dir / "tfidf"
        tfidf = (
            TfidfModel.load(tfidf_dir)
            if tfidf_dir.is_dir()
            else TfidfModel().fit(inner_train.texts, inner_train.y)
        )
        run.tfidf_val = tfidf.predict_proba(val.texts)
        run.tfidf_test = tfidf.predict_proba(_test_texts(test_df, info))
    return run


def _test_texts(test_df: pd.DataFrame, info: folder.ModelInfo) -> list[str]:
    return load_examples(test_df, info.text_cols, label_cols=info.labels).texts


def held_out_probs(model_dir: Path, test_df: pd.DataFrame) -> np.ndarray:
    """The model's held-out probabilities (the encoder's alone for an ensemble), cached."""
    stamp = (model_dir / "mlabel.json").stat().st_mtime_ns  # a run still training moves on
    cache = model_dir.parent / f"test_probs-{model_dir.name}-{stamp}.npy"
    if cache.is_file():
        return np.load(cache)
    predictor = Predictor(model_dir)
    texts = _test_texts(test_df, predictor.info)
    probs = predictor.predict_proba(texts)
    ensemble = predictor.info.ensemble
    if ensemble:
        w = np.asarray(ensemble.weight)
        tfidf = TfidfModel.load(folder.tfidf_dir(model_dir))
        probs = (probs - w * tfidf.predict_proba(texts)) / (1 - w)
    np.save(cache, probs)
    return probs


def checkpoint_model(out: Path, epoch: int) -> Path:
    """A model folder holding epoch `epoch`'s weights (from the run's checkpoint), encoder only."""
    dest = out / f"model-epoch-{epoch}"
    if (dest / "mlabel.json").is_file():
        return dest
    tmp = Path(tempfile.mkdtemp(dir=out))
    shutil.copytree(out / "model", tmp, dirs_exist_ok=True)
    shutil.rmtree(tmp / "tfidf", ignore_errors=True)
    info = folder.read(tmp)
    model = EncoderClassifier.load(tmp, info.pooling, len(info.labels))
    model.load_state_dict(
        load_file(str(out / "checkpoints" / f"epoch-{epoch:03d}" / "model.safetensors"))
    )
    model.save(tmp)
    info.ensemble, info.best_epoch = None, epoch
    folder.write(info, tmp)
    tmp.rename(dest)
    return dest


def blend(enc: np.ndarray, tfidf: np.ndarray, weight: float = ENSEMBLE_WEIGHT) -> np.ndarray:
    return (1 - weight) * enc + weight * tfidf


def predictions(run: Run, ensemble: bool, method: str | None = None) -> np.ndarray:
    """Held-out 0/1 predictions with thresholds tuned on the run's validation split."""
    method = method or run.method
    val_p, test_p = run.val_probs, run.test_probs
    if ensemble:
        val_p, test_p = blend(val_p, run.tfidf_val), blend(test_p, run.tfidf_test)
    y_val = run.val.y if run.val is not None else None  # fixed cuts need no validation
    cuts = tune_thresholds(y_val, test_p if y_val is None else val_p, method)
    return decide(test_p, cuts)


def table_rows(runs: dict[str, list[Run]]) -> dict[str, list[tuple[Run, np.ndarray]]]:
    """(run, held-out predictions) per table row."""
    rows = {
        "TF-IDF (0.5)": [(r, predictions(r, False, "fixed:0.5")) for r in runs["tfidf"]],
        "seed recipe": [(r, predictions(r, False)) for r in runs["seed"]],
        ENCODER_ROW: [(r, predictions(r, False)) for r in runs["default"]],
        DEFAULT_ROW: [(r, predictions(r, True)) for r in runs["default"]],
    }
    return {name: pairs for name, pairs in rows.items() if pairs}


def spread(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def interval(y: np.ndarray, pred: np.ndarray, metric: str) -> str:
    r = bootstrap_ci(y, pred, metric=metric, n=BOOTSTRAPS)
    return f"[{r['low']:.3f}, {r['high']:.3f}]"


def quality_table(rows, test: Examples, n_train: int) -> str:
    """The markdown report: one row per model, then the paired comparisons with TF-IDF."""
    y = test.y.astype(int)
    head = ["model", "micro-F1", "95% CI", "macro-F1", "95% CI", *test.labels, "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, pairs in rows.items():
        scores = [multilabel_metrics(y, pred, test.labels) for _, pred in pairs]
        interim = "" if all(r.finished for r, _ in pairs) else " (interim: best epoch so far)"
        cells = [
            f"{name}{interim}",
            spread([s["micro_f1"] for s in scores]),
            interval(y, pairs[0][1], "micro_f1"),
            spread([s["macro_f1"] for s in scores]),
            interval(y, pairs[0][1], "macro_f1"),
            *[spread([s["per_label"][lab]["f1"] for s in scores]) for lab in test.labels],
            spread([r.minutes for r, _ in pairs], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({r.seed for pairs in rows.values() for r, _ in pairs})
    support = ", ".join(f"{lab} {int(test.y[:, j].sum())}" for j, lab in enumerate(test.labels))
    lines += [
        "",
        f"Held-out 20%: {len(test)} texts (positives: {support}); trained on the other {n_train}.",
        f"Transformer seeds: {', '.join(map(str, seeds))} (cells are mean ± sd when more than one);"
        f" the CIs are the first seed's, {BOOTSTRAPS} bootstrap resamples of the held-out rows.",
        f"'{ENCODER_ROW}' and '{DEFAULT_ROW}' come from one training run: the first scores its"
        " encoder alone, the second the 50/50 blend with TF-IDF that the model folder serves.",
        "train min: wall-clock minutes of the whole fit (tokenizing, epochs, validation, TF-IDF"
        " member) on 2 CPU cores shared with other jobs; torch threads per run:"
        f" {', '.join(sorted({str(r.threads) for r in _transformer_runs(rows)}))}.",
        "",
    ]
    baseline = rows["TF-IDF (0.5)"][0][1]
    for name in [n for n in (ENCODER_ROW, DEFAULT_ROW) if n in rows]:
        for metric in ("micro_f1", "macro_f1"):
            r = bootstrap_ci(y, rows[name][0][1], baseline, metric, BOOTSTRAPS)
            lines.append(
                f"- P({name} beats TF-IDF on {metric}) = {r['p_a_better']:.3f}"
                f" (paired bootstrap; {r['estimate']:.3f} vs {r['estimate_b']:.3f})"
            )
    return "\n".join(lines) + "\n"


def held_out_score(run: Run, weight: float, method: str, rows=None) -> tuple[float, float]:
    """Held-out (micro, macro) F1 of a blend, thresholds tuned on (some) validation rows."""
    rows = np.arange(len(run.val)) if rows is None else rows
    val_p = blend(run.val_probs, run.tfidf_val, weight)[rows]
    test_p = blend(run.test_probs, run.tfidf_test, weight)
    cuts = tune_thresholds(run.val.y[rows], val_p, method)
    m = multilabel_metrics(run.test_y, decide(test_p, cuts), run.labels)
    return m["micro_f1"], m["macro_f1"]


def smaller_validation(run: Run, weight: float, method: str, share: float, repeats: int) -> str:
    """Mean held-out scores when tuning on random validation subsets of `share` of the 80%."""
    k = round(len(run.val) / run.val_frac * share)
    rng = np.random.default_rng(0)
    scores = [
        held_out_score(run, weight, method, rng.choice(len(run.val), k, replace=False))
        for _ in range(repeats)
    ]
    return _pair(np.mean(scores, axis=0))


def _pair(score) -> str:
    return f"{score[0]:.3f} / {score[1]:.3f}"


def _transformer_runs(rows) -> list[Run]:
    return [r for pairs in rows.values() for r, _ in pairs if r.name != "tfidf"]


def threshold_table(runs: list[Run], share: float = 0.10, repeats: int = 20) -> str:
    """Each threshold method and blend weight, tuned on validation, scored on held-out rows."""
    first = runs[0]
    k = round(len(first.val) / first.val_frac * share)
    seeds = [f"seed {r.seed}" for r in runs]
    head = ["encoder + TF-IDF", "method", *seeds, "mean", f"tuned on {k} (seed {first.seed})"]
    lines = [
        "Thresholds tuned on each run's internal validation split"
        f" ({len(first.val)} texts = val_frac {first.val_frac}), scored on the held-out"
        f" {len(first.test_y)}; cells are held-out micro-F1 / macro-F1. The last column tunes"
        f" on {repeats} random validation subsets of {k} texts (val_frac {share}) instead.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for weight in (0.0, 0.25, 0.5, 0.75, 1.0):
        for method in METHODS:
            scores = [held_out_score(r, weight, method) for r in runs]
            fewer = (
                ""
                if method.startswith("fixed")
                else smaller_validation(first, weight, method, share, repeats)
            )
            cells = [f"{1 - weight:.2f} + {weight:.2f}", method, *map(_pair, scores)]
            cells += [_pair(np.mean(scores, axis=0)), fewer]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def epoch_table(outs: list[Path], test_df: pd.DataFrame, test: Examples) -> str:
    """Held-out micro / macro-F1 of each saved epoch checkpoint (encoder alone, 0.5), per run."""
    y = test.y.astype(int)
    columns = {}
    for out in outs:
        for ckpt in sorted((out / "checkpoints").glob("epoch-*")):
            epoch = int(ckpt.name.split("-")[1])
            probs = held_out_probs(checkpoint_model(out, epoch), test_df)
            m = multilabel_metrics(y, decide(probs, 0.5), test.labels)
            columns.setdefault(epoch, []).append(_pair((m["micro_f1"], m["macro_f1"])))
    head = ["epoch", *[out.name for out in outs]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [f"| {e} | " + " | ".join(cells) + " |" for e, cells in sorted(columns.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, default=1, help="transformer runs per recipe (seeds 42, 43, ...)"
    )
    parser.add_argument(
        "--only", choices=["tfidf", "seed", "default"], help="train this recipe only"
    )
    parser.add_argument(
        "--report", action="store_true", help="train nothing; report the runs there are"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads per training run")
    parser.add_argument("--work", type=Path, default=WORK / "quality")
    args = parser.parse_args(argv)
    seeds = [42 + i for i in range(args.seeds)]
    train_df, test_df = split_data()
    plan = {name: (seeds[:1] if name == "tfidf" else seeds) for name in recipes()}
    if not args.report:
        for name, settings in recipes().items():
            for seed in plan[name] if args.only in (None, name) else []:
                print(f"training {name} seed {seed}", file=sys.stderr, flush=True)
                train_recipe(settings, seed, args.threads, train_df, args.work / f"{name}-s{seed}")
        if args.only:
            return
    runs = {
        name: [
            load_run(args.work / f"{name}-s{seed}", name, seed, train_df, test_df)
            for seed in seed_list
            if (args.work / f"{name}-s{seed}" / "model" / "mlabel.json").is_file()
        ]
        for name, seed_list in plan.items()
    }
    test = load_examples(test_df, TEXT_COLS)
    command = f"python bench/quality.py --seeds {args.seeds} --threads {args.threads}"
    report = f"## Quality\n\n`{command}`\n\n" + quality_table(table_rows(runs), test, len(train_df))
    if runs["default"]:
        report += "\n### Thresholds\n\n" + threshold_table(runs["default"])
        report += "\n### Held-out micro-F1 / macro-F1 by epoch (encoder alone, 0.5)\n\n"
        report += epoch_table([args.work / f"default-s{s}" for s in seeds], test_df, test)
    print(report)
    (args.work.parent / "quality.md").write_text(report)


if __name__ == "__main__":
    main()
