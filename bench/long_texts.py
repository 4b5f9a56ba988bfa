"""Long documents read at a short max_len: mlabel's tokenization against the call Trainer users
make, in the same run.

    .venv/bin/python bench/long_texts.py [--docs 2000] [--words 5000] [--max-len 128] [--rounds 3]

The documents are arXiv abstracts joined end to end to `--words` words each (full texts, as
Annif's document corpora hold). The peer is `tokenizer(batch, truncation=True,
max_length=max_len)` over batches of 1,000 texts, as `datasets.map(batched=True)` feeds it for
the Trainer: its Rust tokenizer reads every text whole and keeps the rest as overflowing
windows. mlabel's `encode` reads a piece of each text's start. Each side runs in a process of
its own, `--rounds` times, alternating: seconds and peak memory (ru_maxrss), the medians, and
whether both gave the same token ids (a digest of every text's ids).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "true"  # as in mlabel's CLI: the Rust tokenizer's threads

import numpy as np  # noqa: E402
from benchkit import arxiv, machine, texts_of  # noqa: E402

from mlabel.encoding import encode, load_tokenizer  # noqa: E402
from mlabel.model import resolve_encoder  # noqa: E402

PEER_BATCH = 1000  # datasets.map's default batch size


def documents(n: int, words: int) -> list[str]:
    """`n` texts of `words` words: shuffled arXiv abstracts joined end to end."""
    abstracts = texts_of(arxiv())
    rng = np.random.default_rng(0)
    docs = []
    for _ in range(n):
        parts: list[str] = []
        while sum(len(p.split()) for p in parts) < words:
            parts.append(abstracts[rng.integers(len(abstracts))])
        docs.append(" ".join(" ".join(parts).split()[:words]))
    return docs


def digest(rows) -> str:
    """One hash of every row's token ids, in order."""
    h = hashlib.sha256()
    for row in rows:
        h.update(np.asarray(row, dtype=np.int64).tobytes() + b"|")
    return h.hexdigest()[:16]


def side(name: str, docs: list[str], max_len: int) -> dict:
    """Tokenize `docs` as `name` does; seconds, peak memory of this process, digest."""
    tokenizer = load_tokenizer(resolve_encoder("default"))
    start = time.perf_counter()
    if name == "peer":
        rows = []
        for i in range(0, len(docs), PEER_BATCH):
            out = tokenizer(docs[i : i + PEER_BATCH], truncation=True, max_length=max_len)
            rows.extend(out["input_ids"])
    else:
        enc = encode(tokenizer, docs, max_len)
        rows = [ids[:n] for ids, n in zip(enc.ids, enc.lengths, strict=True)]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"seconds": seconds, "peak_gib": peak, "digest": digest(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--words", type=int, default=5000)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", choices=["peer", "mlabel"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, documents(args.docs, args.words), args.max_len)))
        return
    print(machine())
    print(f"{args.docs} documents x {args.words} words, max_len {args.max_len}")
    runs: dict[str, list[dict]] = {"peer": [], "mlabel": []}
    for round_ in range(1, args.rounds + 1):
        for name in runs:
            command = [sys.executable, __file__, *sys.argv[1:], "--side", name]
            result = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
            runs[name].append(result)
            print(
                f"round {round_} {name:6s}: {result['seconds']:6.1f} s, "
                f"peak {result['peak_gib']:5.2f} GiB, ids {result['digest']}"
            )
    same = len({r["digest"] for results in runs.values() for r in results}) == 1
    median = {
        name: {key: statistics.median(r[key] for r in results) for key in ("seconds", "peak_gib")}
        for name, results in runs.items()
    }
    for name, m in median.items():
        print(f"median {name:6s}: {m['seconds']:6.1f} s, peak {m['peak_gib']:5.2f} GiB")
    print(f"same token ids: {same}")
    print(
        f"memory ratio (peer / mlabel): {median['peer']['peak_gib'] / median['mlabel']['peak_gib']:.1f}"
    )
    print(f"long texts speedup: {median['peer']['seconds'] / median['mlabel']['seconds']:.1f}")


if __name__ == "__main__":
    main()
