"""Annif itself as a client of `mlabel serve`: do its figures equal mlabel's own?

Builds everything in a work folder: trains a TF-IDF model (`mlabel train --model tfidf`, seconds;
`--model-dir` takes any trained model folder instead) on arXiv abstracts with
`--subject-uri-base`, holds out the last abstracts, serves the model (`mlabel serve`, Annif's
API under /v1), sets up an Annif project with the `http` backend on it (projects.cfg, a
vocabulary of the model's labels and URIs loaded with `annif load-vocab`), runs `annif suggest`
on one abstract and `annif eval` on the held-out ones, and `mlabel evaluate --json` on the same.
Then asks both Annif's REST API (its app, in its venv) and mlabel's the same `/v1/detect-language`
questions (four languages, an unknown code, an empty text) and compares the answers.

Which figures correspond (Annif's `annif/eval.py` against `mlabel.metrics`):
- at `--threshold T --limit L` (Annif keeps the L best suggestions scoring >= T;
  `mlabel evaluate --threshold T --top-k L --min-labels 0` keeps the same set):
  "F1 score (microavg)" = micro_f1, "Precision (microavg)" = micro_precision,
  "Recall (microavg)" = micro_recall, "F1 score (doc avg)" = samples_f1,
  "F1 score (subj avg)" = macro_f1 (sklearn's averages on both sides);
- at Annif's defaults (limit 10 >= the label count, threshold 0: the whole ranking):
  "Precision@k" = precision@k (k = 1, 3, 5), "F1@5" = f1@5, "NDCG@5" = ndcg@5. These agree when
  every document has a subject (mlabel leaves label-less rows out of ranking metrics, Annif
  counts them) and every label scores above 0 (Annif drops 0 scores); both hold here.

Needs Annif in its own venv (its pins clash with mlabel's):
    python3 -m venv .venv-annif && .venv-annif/bin/pip install annif
Run: .venv/bin/python bench/annif_check.py [--quick] [--model-dir DIR] [--work DIR]
Prints both sides' figures and "all figures match" (exit 0) or what differs (exit 1).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from benchkit import DATA, TEXT_COLS, arxiv, free_port, texts_of  # noqa: E402

ANNIF = ROOT / ".venv-annif" / "bin" / "annif"
PROJECT = "arxiv"
URI_BASE = "http://example.org/arxiv/"
TOLERANCE = 1e-6  # both sides score the same float32 probabilities; only float sums may differ
SET_METRICS = {
    "F1 score (microavg)": "micro_f1",
    "Precision (microavg)": "micro_precision",
    "Recall (microavg)": "micro_recall",
    "F1 score (doc avg)": "samples_f1",
    "F1 score (subj avg)": "macro_f1",
}
RANKING_METRICS = {
    "Precision@1": "precision@1",
    "Precision@3": "precision@3",
    "Precision@5": "precision@5",
    "F1@5": "f1@5",
    "NDCG@5": "ndcg@5",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", help="a trained model folder (default: train TF-IDF here)")
    p.add_argument("--work", help="work folder (default: a temporary one)")
    p.add_argument("--quick", action="store_true", help="100 held-out abstracts, not 500")
    p.add_argument("--threshold", type=float, default=0.3)
    p.add_argument("--limit", type=int, default=3)
    p.add_argument("--engine", default="torch", help="the engine both sides use")
    args = p.parse_args(argv)
    if not ANNIF.exists():
        sys.exit(
            f"{ANNIF} not found: python3 -m venv .venv-annif && .venv-annif/bin/pip install annif"
        )
    with tempfile.TemporaryDirectory() as tmp:
        return check(Path(args.work or tmp), args)


def check(work: Path, args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    heldout = split_data(work, 100 if args.quick else 500)
    model = Path(args.model_dir) if args.model_dir else train(work)
    uris = model_uris(model)
    write_annif_corpus(heldout, uris)
    print(f"model {model}; {heldout['n']} held-out abstracts from {DATA.name}")
    mine = mlabel_evaluate(model, heldout["mlabel"], args)
    port = free_port()
    server = serve(model, port, args.engine, work)
    try:
        annif_dir = annif_project(work, uris, port)
        show_suggest(annif_dir, heldout["first_text"])
        at_cut = annif_eval(annif_dir, heldout["annif"], args.limit, args.threshold)
        ranking = annif_eval(annif_dir, heldout["annif"], 10, 0.0)
        languages_match = compare_detect_language(annif_dir, port)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"\nat threshold {args.threshold}, limit {args.limit}:")
    ok = compare(at_cut, mine, SET_METRICS)
    print("ranking (annif eval defaults, limit 10 and threshold 0):")
    ok &= compare(ranking, mine, RANKING_METRICS)
    ok &= at_cut["Documents_evaluated"] == ranking["Documents_evaluated"] == heldout["n"]
    ok &= languages_match
    print(f"\n{'all figures match' if ok else 'FIGURES DIFFER'} "
          f"(tolerance {TOLERANCE}; {time.perf_counter() - t0:.0f} s in all)")  # fmt: skip
    return 0 if ok else 1


def split_data(work: Path, n_heldout: int) -> dict:
    """Training rows, and the last `n_heldout` rows held out."""
    df = arxiv()
    train_rows, held = df.iloc[:-n_heldout], df.iloc[-n_heldout:]
    train_rows.to_csv(work / "train.csv", index=False)
    held.to_csv(work / "heldout.csv", index=False)
    texts = texts_of(held)
    return {
        "n": len(held),
        "rows": held,
        "texts": texts,
        "mlabel": work / "heldout.csv",
        "annif": work / "heldout-annif.csv",
        "first_text": texts[0],
    }


def model_uris(model: Path) -> dict[str, str]:
    """The URIs the server answers with (the model's stored ones, else the default)."""
    from mlabel.folder import read
    from mlabel.subjects import serving_uris

    info = read(model)
    return serving_uris(info.labels, info.subject_uris, None, PROJECT)


def write_annif_corpus(heldout: dict, uris: dict[str, str]) -> None:
    """Annif's CSV corpus: `text` joined as mlabel joins its text columns, `subject_uris` a
    list of <uri>."""
    held = heldout["rows"]
    with open(heldout["annif"], "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["document_id", "text", "subject_uris"])
        for doc_id, text, (_, row) in zip(
            held["ID"], heldout["texts"], held[list(uris)].iterrows()
        ):
            out.writerow([doc_id, text, " ".join(f"<{uris[k]}>" for k in uris if row[k] == 1)])


def mlabel(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """The mlabel CLI as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mlabel", *argv],
        check=True,
        text=True,
        capture_output=True,
        **kwargs,
    )


def train(work: Path) -> Path:
    t0 = time.perf_counter()
    mlabel("train", str(work / "train.csv"), "--model", "tfidf", "--text-cols", *TEXT_COLS,
           "--out", str(work / "run"), "--subject-uri-base", URI_BASE)  # fmt: skip
    print(f"trained TF-IDF in {time.perf_counter() - t0:.1f} s")
    return work / "run" / "model"


def mlabel_evaluate(model: Path, table: Path, args: argparse.Namespace) -> dict:
    """`mlabel evaluate --json` at the threshold and cap Annif uses (its ranking metrics do not
    depend on them)."""
    answer = mlabel("evaluate", str(model), str(table), "--json", "--engine", args.engine,
                    "--threshold", str(args.threshold), "--top-k", str(args.limit),
                    "--min-labels", "0")  # fmt: skip
    return json.loads(answer.stdout)


def serve(model: Path, port: int, engine: str, work: Path) -> subprocess.Popen:
    log = open(work / "serve.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlabel", "serve", str(model), "--port", str(port),
         "--project-id", PROJECT, "--engine", engine, "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.2)
    server.kill()
    sys.exit(f"mlabel serve did not start: {(work / 'serve.log').read_text()[-2000:]}")


def annif_project(work: Path, uris: dict[str, str], port: int) -> Path:
    """projects.cfg with the http backend on mlabel, and the model's subjects as Annif's vocab."""
    annif_dir = work / "annif"
    annif_dir.mkdir(exist_ok=True)
    (annif_dir / "projects.cfg").write_text(
        f"[{PROJECT}]\n"
        "name=arXiv topics (mlabel)\n"
        "language=en\n"
        "backend=http\n"
        f"vocab={PROJECT}\n"
        f"endpoint=http://127.0.0.1:{port}/v1/projects/{PROJECT}/suggest\n"
    )
    with open(annif_dir / "vocab.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["uri", "label_en"])
        out.writerows([uri, label] for label, uri in uris.items())
    annif(annif_dir, "load-vocab", PROJECT, "vocab.csv")
    print(annif(annif_dir, "show-project", PROJECT).stdout.strip())
    return annif_dir


def annif(annif_dir: Path, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ANNIF_PROJECTS": str(annif_dir / "projects.cfg"),
        "ANNIF_DATADIR": str(annif_dir / "data"),
    }
    run = subprocess.run(
        [str(ANNIF), *argv], cwd=annif_dir, env=env, text=True, capture_output=True, **kwargs
    )
    if run.returncode != 0:
        sys.exit(f"annif {' '.join(argv)} failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return run


DETECT_CASES = [
    ("The quick brown fox jumps over the lazy dog", ["en", "fi"]),
    ("Kettu hyppäsi laiskan koiran yli ja juoksi metsään", ["en", "fi", "sv"]),
    ("Der schnelle braune Fuchs springt über den faulen Hund", ["de", "en", "nl"]),
    ("Ceci n'est pas une pipe", ["fr", "it", "es"]),
    ("hello world", ["xx"]),
    ("", ["en"]),
]
ANNIF_DETECT = """
import json, sys
import annif
client = annif.create_app(config_name="annif.default_config.Config").test_client()
for text, languages in json.loads(sys.stdin.read()):
    r = client.post("/v1/detect-language", json={"text": text, "languages": languages})
    print(json.dumps([r.status_code, r.json()]))
"""


def compare_detect_language(annif_dir: Path, port: int) -> bool:
    """The same /v1/detect-language questions to Annif's app and to mlabel serve."""
    python = ANNIF.parent / "python"
    run = subprocess.run(
        [str(python), "-c", ANNIF_DETECT], input=json.dumps(DETECT_CASES), cwd=annif_dir,
        text=True, capture_output=True, timeout=600,
    )  # fmt: skip
    if run.returncode != 0:
        sys.exit(f"Annif's detect-language failed:\n{run.stderr[-2000:]}")
    theirs = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("[")]
    ok = len(theirs) == len(DETECT_CASES)
    print("\n/v1/detect-language, Annif and mlabel:")
    for (text, languages), (status, annif_body) in zip(DETECT_CASES, theirs):
        mine_status, mine_body = post_json(port, "/v1/detect-language", text, languages)
        same = status == mine_status and (
            annif_body.get("results") == mine_body.get("results")
            if status == 200
            else annif_body.get("detail") == mine_body.get("detail")
        )
        ok &= same
        shown = mine_body.get("results") or mine_body.get("detail")
        print(
            f"  {text[:30]!r:34} {languages} {status}/{mine_status} {shown} {'match' if same else 'DIFFER'}"
        )
    return ok


def post_json(port: int, path: str, text: str, languages: list[str]) -> tuple[int, dict]:
    body = json.dumps({"text": text, "languages": languages}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def show_suggest(annif_dir: Path, text: str) -> None:
    answer = annif(annif_dir, "suggest", PROJECT, "--limit", "3", input=text)
    print(f"annif suggest {PROJECT} --limit 3 < first held-out abstract:")
    print("  " + answer.stdout.strip().replace("\n", "\n  "))


def annif_eval(annif_dir: Path, corpus: Path, limit: int, threshold: float) -> dict:
    t0 = time.perf_counter()
    out = annif_dir / f"eval-{limit}-{threshold}.json"
    annif(annif_dir, "eval", PROJECT, str(corpus), "--limit", str(limit),
          "--threshold", str(threshold), "--metrics-file", str(out))  # fmt: skip
    print(f"annif eval --limit {limit} --threshold {threshold}: {time.perf_counter() - t0:.1f} s")
    return json.loads(out.read_text())


def file_key(name: str) -> str:
    """A metric's key in `annif eval --metrics-file`: "F1 score (doc avg)" -> F1_score_doc_avg."""
    return re.sub(r"[ ()]+", "_", name).strip("_")


def compare(annif_figures: dict, mine: dict, pairs: dict[str, str]) -> bool:
    ok, worst = True, 0.0
    print(f"  {'Annif':<22} {'annif eval':>10}  {'mlabel':<16} {'mlabel evaluate':>15}  match")
    for theirs, ours in pairs.items():
        a, b = float(annif_figures[file_key(theirs)]), float(mine[ours])
        same = abs(a - b) <= TOLERANCE
        ok, worst = ok and same, max(worst, abs(a - b))
        print(f"  {theirs:<22} {a:>10.6f}  {ours:<16} {b:>15.6f}  {'yes' if same else 'NO'}")
    print(f"  largest difference {worst:.2e}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
