"""Held-out quality on three label sets: the mlabel default against TF-IDF, SetFit and a plain
Hugging Face Trainer fine-tune, with an ablation of the default's pieces.

    python bench/quality.py --dataset small             # train the runs missing, then report
    python bench/quality.py --dataset arxiv --only default trainer
    python bench/quality.py --dataset semeval --report  # the table from the stored runs only

Datasets: `arxiv` (3,907 abstracts, 6 topics), `semeval` (5,000 tweets, 11 emotions, 143 with
none), `small` (500 tweets drawn from SemEval's training part: rare emotions keep a few dozen
positives) and `small-arxiv` (500 abstracts drawn from arXiv's training part: long texts, and
the three rare topics keep about a dozen positives each). Each has one test split (20%,
iterative stratification, seed 0) that no choice sees; a small set is scored on the test split
of the set it is drawn from. Every run trains on the rest and splits its own validation off
it exactly as `mlabel train` does (`prepare_data`: val_frac 0.15, seed 42; the runs with another
seed draw their own split); the peers train on the same rows. A run stores its probabilities in
`probs.npz` (its validation labels; validation and test probabilities of the model, and of
mlabel's TF-IDF member), so the table is computed at report time: the blend weights and decision rule are chosen on the validation rows by
`mlabel.selection`, as `mlabel train` chooses them, and the ablation needs no retraining.
Runs are cached under bench/_work/quality/<dataset>/<run>: delete one to retrain it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from benchkit import ROOT, TEXT_COLS, WORK, machine
from sklearn.metrics import f1_score

from mlabel.classifier import fit_model, prepare_data
from mlabel.config import TrainConfig
from mlabel.data import Examples, load_examples
from mlabel.decision import decide
from mlabel.metrics import bootstrap_ci
from mlabel.model import resolve_encoder
from mlabel.predict import Predictor
from mlabel.selection import RuleChoice, blend_weights, label_less_share, tuned_rule
from mlabel.split import split_examples

SHARED = ROOT.parent / "shared" / "data"
SPLIT_SEED = 0
TEST_FRAC = 0.2
SMALL_TRAIN = 500
BOOTSTRAPS = 2000
SETFIT_PYTHON = ROOT / ".venv-setfit" / "bin" / "python"
SETFIT_ITERATIONS = 20  # pairs drawn per training text (SetFit's examples use 20)
# Contrastive steps of 16 pairs: the CPU budget, the same on every dataset (arXiv ran at 100 until a
# quiet machine made 500 affordable there: a step cost 5-9 s under the load of the first runs)
SETFIT_MAX_STEPS = {"small": 500, "small-arxiv": 500, "semeval": 500, "arxiv": 500}
# the runs every dataset has (the peers, the default, its adapt ablation and two more seeds of it)
COMMON = ("tfidf", "default", "trainer", "setfit", "adapt", "seed43", "seed44")
SEEDS = (42, 43, 44)


def three(name: str) -> tuple[str, str, str]:
    """A setting's runs at seeds 42, 43 and 44."""
    return (name, f"{name}-seed43", f"{name}-seed44")


# no attention dropout over three seeds everywhere
ATTN0 = three("attn0")
# emoji read as their names, over three seeds on the tweets (arXiv has no such symbols)
SPELL = three("spell")
# layer-wise learning-rate decay 0.9 (each layer down gets 0.9x the rate), three seeds everywhere
DECAY = three("decay09")
# one student distilled from the default's three seeds, itself over three seeds
DISTILL = three("distill")
# no early stopping (all 6 epochs, the best kept): it changes only the runs where it fired
PATIENCE0 = three("patience0")
DEFAULT_RUNS = {42: "default", 43: "seed43", 44: "seed44"}  # the default's runs at SEEDS
DEFAULT_SEEDS = tuple(DEFAULT_RUNS.values())  # (the teachers)
PLANS = {
    "small": (*COMMON, "epoch1", *ATTN0, *SPELL, *DECAY, *DISTILL),
    "semeval": (*COMMON, *ATTN0, *SPELL, *DECAY, *DISTILL),
    "small-arxiv": (*COMMON, "epoch1", *PATIENCE0),
    # max length 256 on abstracts only (tweets fit in the default 128 tokens); on arXiv, where
    # adapt gained most and the Trainer tied, a second seed of each tells those from seed noise
    "arxiv": (
        *COMMON,
        *three("maxlen256"),
        "adapt-seed43",
        "trainer-seed43",
        *ATTN0,
        *DECAY,
        *DISTILL,
        "patience0",  # seeds 43 and 44 did not stop early: the same runs as the default's
    ),
}


@dataclass
class Dataset:
    """The training part (a table) and the test split that no choice sees."""

    name: str
    train: pd.DataFrame
    test: Examples
    text_cols: list[str]


def load_dataset(name: str) -> Dataset:
    if name in ("arxiv", "small-arxiv"):
        df, cols = pd.read_csv(SHARED / "arxiv_topics.csv", dtype={"ID": str}), TEXT_COLS
    else:
        df = pd.read_csv(SHARED / "semeval_ec.tsv", sep="\t", dtype={"ID": str})
        cols = ["Tweet"]
    _, test = split_examples(load_examples(df, cols), TEST_FRAC, SPLIT_SEED)
    train = df[~df["ID"].isin(set(test.ids))].reset_index(drop=True)
    if name.startswith("small"):
        train = train.sample(SMALL_TRAIN, random_state=SPLIT_SEED).reset_index(drop=True)
    return Dataset(name, train, test, cols)


def base_config(ds: Dataset, threads: int | None = None, **settings) -> TrainConfig:
    return TrainConfig(text_cols=ds.text_cols, threads=threads, **settings)


# Training: each run returns (minutes, probabilities), the val_* arrays on prepare_data's rows.


def run_mlabel(ds: Dataset, out: Path, threads: int, **settings) -> tuple[float, dict]:
    """`mlabel train` with the default settings (plus `settings`); the encoder's and the TF-IDF
    member's probabilities apart."""
    cfg = base_config(ds, threads, **settings)
    start = time.perf_counter()
    fit_model(cfg, ds.train, out)
    minutes = (time.perf_counter() - start) / 60
    fit, val = prepare_data(cfg, ds.train)  # the run's own split (another seed draws another)
    own = {"val_y": val.y, "label_less": label_less_share(fit.y)}
    scorer = Predictor(out / "model").scorer
    if cfg.model == "tfidf":
        return minutes, own | {
            "val_probs": scorer.proba(val.texts),
            "test_probs": scorer.proba(ds.test.texts),
        }
    probs = own | {
        "val_probs": np.load(out / "val_probs.npy"),
        "test_probs": scorer.encoder.proba(ds.test.texts),
    }
    probs |= {
        "val_tfidf": scorer.tfidf.proba(val.texts),
        "test_tfidf": scorer.tfidf.proba(ds.test.texts),
    }
    return minutes, probs


def run_adapt(ds: Dataset, out: Path, threads: int, **settings) -> tuple[float, dict]:
    """The default (plus `settings`) after continued masked-LM training on the training part's
    own texts."""
    from mlabel.adapt import adapt_encoder

    cfg = base_config(ds, threads, **settings)
    texts = load_examples(ds.train, ds.text_cols).texts
    start = time.perf_counter()
    encoder = out / "adapted"
    if not (encoder / "config.json").is_file():
        adapt_encoder(
            texts, cfg.model, encoder, max_len=cfg.max_len, seed=cfg.seed, threads=threads
        )
    minutes, probs = run_mlabel(ds, out, threads, model=str(encoder), **settings)
    return (time.perf_counter() - start) / 60, probs


def run_distill(
    ds: Dataset, out: Path, threads: int, seed: int = 42, alpha: float = 0.5
) -> tuple[float, dict]:
    """One encoder trained on soft targets: `alpha` x the labels + (1 - alpha) x the mean
    probability the default's three seeds give its training rows (those runs must be there; each
    trained on its own split, so two teachers have seen most of the student's validation rows:
    its validation scores flatter it, the test split does not). The student is the
    encoder alone; the report blends it with the TF-IDF member of the default run of its seed,
    which trained on the same rows. Its minutes include the three teachers'."""
    from mlabel.training import train

    cfg = base_config(ds, threads, seed=seed, ensemble=None)
    fit, val = prepare_data(cfg, ds.train)
    teachers = [out.parent / name for name in DEFAULT_SEEDS]
    taught = np.mean([Predictor(t / "model").scorer.encoder.proba(fit.texts) for t in teachers], 0)
    soft = (alpha * fit.y + (1 - alpha) * taught).astype(np.float32)
    start = time.perf_counter()
    train(cfg, replace(fit, y=soft), val, out)
    minutes = (time.perf_counter() - start) / 60
    minutes += sum(float(np.load(t / "probs.npz")["minutes"]) for t in teachers)
    member = np.load(out.parent / DEFAULT_RUNS[seed] / "probs.npz")
    return minutes, {
        "val_y": val.y,
        "label_less": label_less_share(fit.y),
        "val_probs": np.load(out / "val_probs.npy"),
        "test_probs": Predictor(out / "model").scorer.proba(ds.test.texts),
        "val_tfidf": member["val_tfidf"],
        "test_tfidf": member["test_tfidf"],
    }


def run_trainer(ds: Dataset, out: Path, threads: int, **settings) -> tuple[float, dict]:
    """The plain Hugging Face recipe (bench/train.py's run_peer) with mlabel's default epochs,
    max_len, batch, learning rate, warmup and weight decay (plus `settings`, e.g. a seed):
    AutoModelForSequenceClassification, multi_label_classification (BCE), dynamic padding, no
    validation during training."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from mlabel.runtime import cpu_has_fast_bf16

    torch.set_num_threads(threads)
    cfg = base_config(ds, threads, **settings)
    fit, val = prepare_data(cfg, ds.train)
    start = time.perf_counter()
    path = resolve_encoder(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(fit.labels), problem_type="multi_label_classification"
    )
    args = TrainingArguments(
        output_dir=str(out / "hf"),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        bf16=cpu_has_fast_bf16(),
        use_cpu=True,
        train_sampling_strategy="group_by_length",
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        seed=cfg.seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_hf_rows(tokenizer, fit, cfg.max_len),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    minutes = (time.perf_counter() - start) / 60
    # Under group_by_length, transformers 5 sorts prediction rows by length too: keep row order.
    trainer.args.train_sampling_strategy = "random"
    logits = {
        f"{name}_probs": trainer.predict(_hf_rows(tokenizer, ex, cfg.max_len)).predictions
        for name, ex in (("val", val), ("test", ds.test))
    }
    return minutes, {"val_y": val.y} | {k: 1 / (1 + np.exp(-v)) for k, v in logits.items()}


def _hf_rows(tokenizer, ex: Examples, max_len: int) -> list[dict]:
    enc = tokenizer(ex.texts, truncation=True, max_length=max_len)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": labels}
        for ids, mask, labels in zip(enc["input_ids"], enc["attention_mask"], ex.y.tolist())
    ]


def run_setfit(ds: Dataset, out: Path, threads: int) -> tuple[float, dict]:
    """SetFit 1.2.0 in .venv-setfit (bench/setfit_peer.py) on the same body and rows."""
    cfg = base_config(ds, threads)
    fit, val = prepare_data(cfg, ds.train)
    job = {
        "model": str(resolve_encoder(cfg.model)),
        "train_texts": fit.texts,
        "train_y": fit.y.astype(int).tolist(),
        "score": {"val_probs": val.texts, "test_probs": ds.test.texts},
        "num_iterations": SETFIT_ITERATIONS,
        "max_steps": SETFIT_MAX_STEPS[ds.name],
        "max_length": cfg.max_len,
        "seed": cfg.seed,
        "threads": threads,
        "out": str(out / "setfit.npz"),
    }
    (out / "job.json").write_text(json.dumps(job), encoding="utf-8")
    subprocess.run([SETFIT_PYTHON, ROOT / "bench" / "setfit_peer.py", out / "job.json"], check=True)
    result = dict(np.load(out / "setfit.npz"))
    return float(result.pop("seconds")) / 60, result


Runner = Callable[[Dataset, Path, int], tuple[float, dict]]


def seeded(name: str, runner: Runner = run_mlabel, **settings) -> dict[str, Runner]:
    """TRAINERS entries for `runner` with `settings` at seeds 42, 43 and 44 (`three(name)`)."""
    return {run: partial(runner, seed=seed, **settings) for seed, run in zip(SEEDS, three(name))}


TRAINERS: dict[str, Runner] = {
    "tfidf": partial(run_mlabel, model="tfidf"),
    "default": run_mlabel,
    "seed43": partial(run_mlabel, seed=43),
    "seed44": partial(run_mlabel, seed=44),
    "trainer": run_trainer,
    "trainer-seed43": partial(run_trainer, seed=43),
    "setfit": run_setfit,
    "adapt": run_adapt,
    "adapt-seed43": partial(run_adapt, seed=43),
    "epoch1": partial(run_mlabel, epochs=1),
    **seeded("maxlen256", max_len=256),
    **seeded("attn0", attention_dropout=0.0),
    **seeded("spell", spell_symbols=True),
    **seeded("decay09", layer_decay=0.9),
    **seeded("distill", run_distill),
    **seeded("patience0", patience=0),
}
RUNS = tuple(TRAINERS)


def train_run(ds: Dataset, name: str, out: Path, threads: int) -> None:
    """Train run `name` into `out` and store its probabilities, unless they are there."""
    if (out / "probs.npz").is_file():
        return
    print(f"training {ds.name}/{name}", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    minutes, probs = TRAINERS[name](ds, out, threads)
    _, val = prepare_data(base_config(ds, threads), ds.train)
    np.savez(out / "probs.npz", minutes=minutes, **({"val_y": val.y} | probs))
    print(f"  {name}: {minutes:.1f} min", flush=True)


# The report: decisions from stored probabilities.


def mix(encoder: np.ndarray, tfidf: np.ndarray, w: np.ndarray | float) -> np.ndarray:
    """The blend with encoder weight `w` (per label or one)."""
    return w * encoder + (1 - w) * tfidf


def weights(run: dict, blend: str) -> np.ndarray | float:
    """The encoder's blend weight: `learned` on the validation rows, or `50/50`."""
    if blend == "learned":
        return blend_weights(run["val_y"], run["val_probs"], run["val_tfidf"])
    return 0.5


def cuts(run: dict, probs: np.ndarray, method: str) -> RuleChoice:
    """Thresholds and rule on the validation rows, as `mlabel train` tunes them (finalize):
    by the default threshold method, or by `method`."""
    cfg = TrainConfig()
    method = cfg.thresholds if method == "default" else method
    return tuned_rule(run["val_y"], probs, method, cfg.rule(), label_less=run["label_less"])


def decisions(run: dict, blend: str, method: str) -> np.ndarray:
    """Test-row 0/1 decisions; blend `none` scores the model (or encoder) alone."""
    val_p, test_p = run["val_probs"], run["test_probs"]
    if blend != "none":
        w = weights(run, blend)
        val_p, test_p = mix(val_p, run["val_tfidf"], w), mix(test_p, run["test_tfidf"], w)
    choice = cuts(run, val_p, method)
    return decide(test_p, choice.thresholds, choice.rule)


# (row, run, blend, threshold method); the first three rows after the peers are the default.
DEFAULT = "**mlabel default**"
PEERS = [
    ("TF-IDF + LR, tuned cut (global)", "tfidf", "none", "global"),
    ("TF-IDF + LR, 0.5", "tfidf", "none", "fixed:0.5"),
    ("SetFit (one-vs-rest head), 0.5", "setfit", "none", "fixed:0.5"),
    ("HF Trainer fine-tune, 0.5", "trainer", "none", "fixed:0.5"),
    ("HF Trainer fine-tune, 0.5, seed 43", "trainer-seed43", "none", "fixed:0.5"),
    (DEFAULT, "default", "learned", "default"),
]
ABLATION = [
    ("encoder alone (no TF-IDF blend)", "default", "none", "default"),
    ("blend 50/50 instead of learned", "default", "50/50", "default"),
    ("thresholds fixed 0.5", "default", "learned", "fixed:0.5"),
    ("encoder alone, 0.5 (the old default)", "default", "none", "fixed:0.5"),
    ("+ adapt (masked-LM on the training texts, 1 epoch)", "adapt", "learned", "default"),
    ("1 epoch", "epoch1", "learned", "default"),
    ("1 epoch, encoder alone, 0.5", "epoch1", "none", "fixed:0.5"),
    ("max length 256 instead of 128", "maxlen256", "learned", "default"),
    (
        "the default again, seed 43 (its own validation split and order)",
        "seed43",
        "learned",
        "default",
    ),
    ("the default again, seed 44", "seed44", "learned", "default"),
    ("+ adapt, seed 43", "adapt-seed43", "learned", "default"),
    ("no attention dropout", "attn0", "learned", "default"),
    ("no attention dropout, seed 43", "attn0-seed43", "learned", "default"),
    ("no attention dropout, seed 44", "attn0-seed44", "learned", "default"),
    ("emoji read as their names (`--spell-symbols`)", "spell", "learned", "default"),
    ("emoji read as their names, seed 43", "spell-seed43", "learned", "default"),
    ("emoji read as their names, seed 44", "spell-seed44", "learned", "default"),
    ("layer-wise learning-rate decay 0.9", "decay09", "learned", "default"),
    ("layer-wise learning-rate decay 0.9, seed 43", "decay09-seed43", "learned", "default"),
    ("layer-wise learning-rate decay 0.9, seed 44", "decay09-seed44", "learned", "default"),
    ("distilled from the default's three seeds", "distill", "learned", "default"),
    ("distilled from the three seeds, seed 43", "distill-seed43", "learned", "default"),
    ("distilled from the three seeds, seed 44", "distill-seed44", "learned", "default"),
    ("max length 256, seed 43", "maxlen256-seed43", "learned", "default"),
    ("max length 256, seed 44", "maxlen256-seed44", "learned", "default"),
    ("no early stopping (all 6 epochs, the best kept)", "patience0", "learned", "default"),
    ("no early stopping, seed 43", "patience0-seed43", "learned", "default"),
    ("no early stopping, seed 44", "patience0-seed44", "learned", "default"),
]


def scored(y: np.ndarray, pred: np.ndarray, default: np.ndarray | None, metric: str) -> str:
    """`score [low, high]` and the paired interval of default - this row (none without one)."""
    if default is None or pred is default:
        r = bootstrap_ci(y, pred, metric=metric, n=BOOTSTRAPS)
        return f"{r['estimate']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | "
    r = bootstrap_ci(y, default, pred, metric, BOOTSTRAPS)
    diff = r["estimate"] - r["estimate_b"]
    return (
        f"{r['estimate_b']:.3f} [{r['low_b']:.3f}, {r['high_b']:.3f}] | "
        f"{diff:+.3f} [{r['diff_low']:+.3f}, {r['diff_high']:+.3f}]"
    )


TABLE_HEAD = [
    "| row | micro-F1 [95% CI] | default − row | macro-F1 [95% CI] | default − row | train min |",
    "|---|---|---|---|---|---|",
]


def row_line(
    name: str, pred: np.ndarray, y: np.ndarray, default: np.ndarray | None, minutes: float
) -> str:
    micro, macro = (scored(y, pred, default, m) for m in ("micro_f1", "macro_f1"))
    return f"| {name} | {micro} | {macro} | {minutes:.1f} |"


def table(
    rows: list[tuple], runs: dict[str, dict], y: np.ndarray, default: np.ndarray | None
) -> str:
    lines = list(TABLE_HEAD)
    for name, run, blend, method in rows:
        if run not in runs:
            continue
        pred = default if name == DEFAULT else decisions(runs[run], blend, method)
        lines.append(row_line(name, pred, y, default, float(runs[run]["minutes"])))
    return "\n".join(lines)


# What averaging trained runs would give (not a product setting): (row, runs), each run's own
# decisions as the default takes them, a label kept where most runs keep it.
VOTES = [("majority vote of the default's three seeds", DEFAULT_SEEDS)]


def vote_table(runs: dict[str, dict], y: np.ndarray, default: np.ndarray) -> str:
    lines = list(TABLE_HEAD)
    for name, members in VOTES:
        if not all(m in runs for m in members):
            continue
        votes = np.mean([decisions(runs[m], "learned", "default") for m in members], axis=0)
        minutes = sum(float(runs[m]["minutes"]) for m in members)
        lines.append(row_line(name, (votes > 0.5).astype(int), y, default, minutes))
    return "\n".join(lines)


# Runs that differ only by seed, averaged in the report's last table: (row, runs, blend, method).
SEED_GROUPS = [
    ("mlabel default", DEFAULT_SEEDS, "learned", "default"),
    ("no attention dropout", ATTN0, "learned", "default"),
    ("emoji read as their names", SPELL, "learned", "default"),
    ("layer-wise learning-rate decay 0.9", DECAY, "learned", "default"),
    ("distilled from the default's three seeds", DISTILL, "learned", "default"),
    ("max length 256", three("maxlen256"), "learned", "default"),
    ("no early stopping", PATIENCE0, "learned", "default"),
    ("+ adapt", ("adapt", "adapt-seed43"), "learned", "default"),
    ("HF Trainer fine-tune, 0.5", ("trainer", "trainer-seed43"), "none", "fixed:0.5"),
]


def best_epoch(out: Path) -> dict | None:
    """The epoch `mlabel train` kept: the best validation micro-F1 (none for the peers)."""
    path = out / "metrics.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return max(records, key=lambda r: r["micro_f1"])


def seed_means(groups: list, runs: dict, y: np.ndarray, work: Path) -> str:
    """Per group of seeds: the mean validation micro/macro-F1 of the kept epochs (the encoder
    under its epoch's rule, as training judged it) and the mean test scores."""
    lines = [
        "| runs | seeds | validation micro-F1 / macro-F1 (kept epoch) | test micro-F1 / macro-F1 |",
        "|---|---|---|---|",
    ]
    for name, members, blend, method in groups:
        present = [n for n in members if n in runs]
        if len(present) < 2:
            continue
        test = [decisions(runs[n], blend, method) for n in present]
        micro = np.mean([f1_score(y, p, average="micro") for p in test])
        macro = np.mean([f1_score(y, p, average="macro", zero_division=0) for p in test])
        kept = [best_epoch(work / n) for n in present]
        val = (
            f"{np.mean([k['micro_f1'] for k in kept]):.3f} / {np.mean([k['macro_f1'] for k in kept]):.3f}"
            if all(kept)
            else "(not recorded)"
        )
        lines.append(f"| {name} | {len(present)} | {val} | {micro:.3f} / {macro:.3f} |")
    return "\n".join(lines)


def choices(run: dict, labels: list[str]) -> str:
    """What the default chose on the validation rows: blend weights and rule."""
    w = np.broadcast_to(weights(run, "learned"), (len(labels),))
    blended = mix(run["val_probs"], run["val_tfidf"], w)
    rule = cuts(run, blended, "default").method
    weights_text = ", ".join(f"{lab} {x:.2f}" for lab, x in zip(labels, w))
    return f"encoder weight per label: {weights_text}; rule: {rule}"


def report(ds: Dataset, work: Path) -> str:
    fit, _ = prepare_data(base_config(ds), ds.train)
    share = label_less_share(fit.y)  # as finalize gives it to the rule choice, unless stored
    runs = {
        n: {"label_less": share, **np.load(work / n / "probs.npz")}
        for n in RUNS
        if (work / n / "probs.npz").is_file()
    }
    y = ds.test.y.astype(int)
    if "default" not in runs:
        return f"### {ds.name} (no default run)\n\n{table(PEERS, runs, y, None)}\n"
    default = decisions(runs["default"], "learned", "default")
    n_val = len(runs["default"]["val_y"])
    support = ", ".join(f"{lab} {int(n)}" for lab, n in zip(ds.test.labels, y.sum(axis=0)))
    return "\n".join(
        [
            f"### {ds.name}",
            "",
            f"Test split: {len(y)} rows ({support}; {int((y.sum(1) == 0).sum())} without a"
            f" label). Training part: {len(ds.train)} rows, of which {n_val} validate.",
            f"Default's choices on validation: {choices(runs['default'], ds.test.labels)}.",
            "",
            table(PEERS, runs, y, default),
            "",
            "Ablation (each row changes one piece of the default):",
            "",
            table(ABLATION, runs, y, default),
            "",
            "Means over seeds (each seed its own validation split; the same test split):",
            "",
            seed_means(SEED_GROUPS, runs, y, work),
            "",
            "Seeds together (three trainings, and three encoders to run at prediction):",
            "",
            vote_table(runs, y, default),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(PLANS), required=True)
    parser.add_argument("--only", nargs="+", choices=RUNS, help="train these runs only")
    parser.add_argument(
        "--report", action="store_true", help="train nothing; report the runs there are"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--work", type=Path, default=WORK / "quality")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    ds = load_dataset(args.dataset)
    work = args.work / ds.name
    if not args.report:
        for name in args.only or PLANS[ds.name]:
            train_run(ds, name, work / name, args.threads)
    text = report(ds, work)
    print(text)
    (work / "report.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
