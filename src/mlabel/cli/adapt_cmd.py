"""`mlabel adapt TEXTS --out DIR`: continue masked-LM training of the encoder on unlabelled texts."""

from __future__ import annotations

import argparse
import json

from mlabel.cli.common import DATA, HELP, whole


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "adapt",
        help="adapt the encoder to unlabelled texts (masked-LM), for `train --model DIR`",
        description="Continue the encoder's masked-LM pre-training on unlabelled texts of the "
        "task (task-adaptive pre-training) and save it as a Hugging Face folder that "
        "`mlabel train --model DIR` trains from. An encoder without a masked-LM head "
        "(the default all-MiniLM-L6-v2) gets a new, random one.",
    )
    p.add_argument("texts", help=f"unlabelled texts (a .txt file: one text a line): {DATA}")
    p.add_argument("--out", "-o", required=True, help="folder to write the adapted encoder to")
    p.add_argument(
        "--model",
        default="default",
        help="encoder name or path, or `default` (embedded all-MiniLM-L6-v2; the default)",
    )
    p.add_argument(
        "--text-cols", nargs="+", default=["text"], help=f"{HELP['text_cols']} (default: text)"
    )
    p.add_argument("--epochs", type=whole(1), default=1, help="passes over the texts (default: 1)")
    p.add_argument("--max-len", type=whole(8), default=128, help="tokens per text (default: 128)")
    p.add_argument("--batch-size", type=whole(1), default=32, help="texts a step (default: 32)")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default: 5e-5)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    p.add_argument("--threads", type=whole(1), help="CPU threads (default: torch's choice)")
    return p


def run(args: argparse.Namespace) -> int:
    from mlabel.adapt import RECORD, adapt_encoder, read_texts

    texts = read_texts(args.texts, args.text_cols)
    out = adapt_encoder(
        texts,
        args.model,
        args.out,
        epochs=args.epochs,
        max_len=args.max_len,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
    )
    losses = json.loads((out / RECORD).read_text(encoding="utf-8"))["loss"]
    print(f"adapted on {len(texts)} texts, masked-LM loss by epoch {losses}")
    print(f"encoder saved to {out}; train from it with `mlabel train DATA --model {out}`")
    return 0
