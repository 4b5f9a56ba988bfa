"""Are the explanations faithful? ERASER's comprehensiveness test (DeYoung et al. 2020).

    .venv/bin/python bench/explain.py [--model DIR] [--texts 60] [--steps 32]

For held-out arXiv abstracts and each one's top label, delete the 10% of its words with the
highest weight and measure the drop in that label's probability; then delete as many words
drawn at random (5 draws, averaged) and measure that drop. A faithful explanation makes the
first drop much larger. Prints both means with 95% bootstrap intervals, their ratio, the share
of texts where the attributed words beat the random ones, and the seconds of one explanation.

Without `--model` it trains one first: the embedded default encoder (all-MiniLM-L6-v2) blended
with TF-IDF, 1 epoch at max_len 128 on 400 abstracts (minutes on a CPU). The blend is tested,
and its encoder alone (`Explainer(member="encoder")`), since only the encoder's weights are
approximated. Each text is cut to the words the encoder sees (its first max_len tokens), so
deleting a word always reaches both members and random words are not wasted past the window.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import benchkit
import numpy as np
from benchkit import TEXT_COLS, WORK

from mlabel.explain import EncoderAttribution, Explainer, Explanation, MemberWeights

TRAIN_ROWS = 400
RANDOM_DRAWS = 5
SHARE = 0.10  # of the words, deleted


def train(out: Path) -> Path:
    from mlabel.classifier import fit_model
    from mlabel.config import TrainConfig

    cfg = TrainConfig(model="default", text_cols=TEXT_COLS, max_len=128, epochs=1, seed=0)
    rows = benchkit.arxiv().head(TRAIN_ROWS)
    return fit_model(cfg, rows, out).model_dir


def fit_window(explainer: Explainer, text: str) -> str:
    """The text cut after the last character of its first max_len tokens."""
    tokenizer = explainer.encoder.tokenizer
    enc = tokenizer(
        text, truncation=True, max_length=explainer.predictor.max_len, return_offsets_mapping=True
    )
    return text[: max(end for _, end in enc["offset_mapping"])]


def delete(text: str, spans: list[tuple[int, int]]) -> str:
    """The text without the characters of `spans` (the white space around them stays)."""
    keep, last = [], 0
    for start, end in sorted(spans):
        keep.append(text[last:start])
        last = end
    return "".join(keep) + text[last:]


def drops(
    explainer: Explainer, text: str, e: Explanation, k: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(drop after deleting the k words of highest weight, mean drop after k random words)."""
    words = [w for w in e.words if w.text[0].isalnum()]
    top = sorted(words, key=lambda w: -w.weight)[:k]
    draws = [rng.choice(len(words), size=k, replace=False) for _ in range(RANDOM_DRAWS)]
    variants = [delete(text, [(w.start, w.end) for w in top])]
    variants += [delete(text, [(words[i].start, words[i].end) for i in d]) for d in draws]
    column = explainer.labels.index(e.label)
    probs = explainer.predict_proba(variants)[:, column]
    return e.probability - probs[0], float(np.mean(e.probability - probs[1:]))


def bootstrap(values: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[float, float]:
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def measure_one(
    explainer: Explainer, text: str, label: str, rng: np.random.Generator
) -> tuple[float, float, float]:
    """(drop for the attributed words, mean drop for random ones, seconds to explain)."""
    start = time.perf_counter()
    [e] = explainer.explain([text], labels=[label])[0]
    seconds = time.perf_counter() - start
    k = max(1, math.ceil(SHARE * sum(w.text[0].isalnum() for w in e.words)))
    return (*drops(explainer, text, e, k, rng), seconds)


def report(name: str, rows: np.ndarray, timed: bool) -> None:
    """Both mean drops with 95% bootstrap intervals, their ratio, and the time per explanation."""
    rng = np.random.default_rng(1)
    top, rand, seconds = rows.T
    lo, hi = bootstrap(top, rng)
    rlo, rhi = bootstrap(rand, rng)
    dlo, dhi = bootstrap(top - rand, rng)
    print(f"{name}: {len(rows)} texts, top label, {SHARE:.0%} of the words deleted")
    print(f"  attributed words: mean drop {top.mean():.4f} [{lo:.4f}, {hi:.4f}]")
    print(f"  random words:     mean drop {rand.mean():.4f} [{rlo:.4f}, {rhi:.4f}]")
    print(f"  difference (paired): {(top - rand).mean():.4f} [{dlo:.4f}, {dhi:.4f}]")
    ratio = f"{top.mean() / rand.mean():.1f}x" if rand.mean() > 0 else "n/a (random: no drop)"
    print(f"  ratio {ratio}; attributed > random in {np.mean(top > rand):.0%} of the texts")
    if timed:  # the other explainer reuses the blend's integrated gradients
        print(f"  one explanation (one label): median {np.median(seconds):.2f} s")


class SharedAttribution:
    """The encoder's integrated gradients, run once per text and label for both explainers."""

    def __init__(self, attribution: EncoderAttribution):
        self.attribution, self.done = attribution, {}
        self.tokenizer, self.n_steps = attribution.tokenizer, attribution.n_steps

    def __call__(self, text: str, labels: list[int]) -> MemberWeights:
        key = (text, tuple(labels))
        if key not in self.done:
            self.done = {key: self.attribution(text, labels)}
        return self.done[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained model folder (default: train one)")
    parser.add_argument("--texts", type=int, default=60, help="held-out abstracts (default 60)")
    parser.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    args = parser.parse_args()
    print(benchkit.machine())
    start = time.perf_counter()
    model = args.model or train(WORK / "explain-run")
    print(f"model {model} ({time.perf_counter() - start:.0f} s to get it), {args.steps} steps")
    rng = np.random.default_rng(0)
    held_out = benchkit.arxiv().iloc[TRAIN_ROWS : TRAIN_ROWS + args.texts]
    blend = Explainer(model, n_steps=args.steps)
    info = blend.predictor.info
    print(f"  {info.kind}, max_len {info.max_len}, validation metrics {info.metrics}")
    alone = Explainer(model, n_steps=args.steps, member="encoder")
    blend.encoder = alone.encoder = SharedAttribution(blend.encoder)
    texts = [fit_window(blend, t) for t in benchkit.texts_of(held_out)]
    # Each text's top label by the blend, for both: one integrated-gradients run serves both.
    labels = [blend.labels[i] for i in np.argmax(blend.predict_proba(texts), axis=1)]
    results = {"blend (encoder + TF-IDF)": blend, "encoder alone": alone}
    found = {name: [] for name in results}
    for i, (text, label) in enumerate(zip(texts, labels), 1):
        for name, explainer in results.items():
            found[name].append(measure_one(explainer, text, label, rng))
        if i % 10 == 0:
            print(f"  {i} of {len(texts)} texts, {time.perf_counter() - start:.0f} s", flush=True)
    for name, rows in found.items():
        report(name, np.asarray(rows), timed=results[name] is blend)


if __name__ == "__main__":
    main()
