"""Training speed and quality: `mlabel train` against a Hugging Face `Trainer` on the same encoder.

    python bench/train.py          # 2 epochs on 1,000 abstracts, validated on 300 others
    python bench/train.py --quick  # smoke run: 1 epoch on 96 abstracts, validated on 48
    python bench/train.py --rows 3000   # more rows (validated on 30% as many), e.g. on a GPU

Both fine-tune the embedded all-MiniLM-L6-v2 with the same data, batch size (16), max length
(256, truncation), epochs, learning rate (8e-5, linear decay after 10% warmup), weight decay
(0.01), plain BCE loss, thread count and precision (what `--precision auto` picks here: bf16
autocast on CPUs with AMX or AVX-512 bf16, fp32 on the others); mlabel trains without its TF-IDF
ensemble member. The peer is the standard recipe:
AutoModelForSequenceClassification(problem_type="multi_label_classification"), autocast,
length-grouped sampling and DataCollatorWithPadding, evaluating each epoch as mlabel does, and
with freed memory kept for reuse as mlabel's training keeps it (`runtime.reuse_freed_memory`:
without it glibc maps and faults in every large tensor afresh, which slows both sides).
Samples/s is end to end: epochs x training rows / seconds from model load to the last evaluation.

Then, in the same run, `train_ceiling.floor_profile` profiles one epoch of mlabel's step on the
same batches: the floor is that epoch's seconds in matrix multiplies, softmax, GELU, LayerNorm
and AdamW. `train floor fraction` is mlabel's training speed (its epochs' training time, without
loading, tokenizing or validation) over the floor's speed; 1.0 would be every other operation free.
mlabel also trains once more with `--attention-dropout 0` (no dropout on the attention
probabilities, not the default), whose training speed and floor fraction print on lines of their
own; the speedup compares the defaults. On a machine with a GPU both train there (mlabel picks
it by itself; the Trainer is told), in the precision `auto` picks on it; the Trainer also trains
without cuDNN's attention (as mlabel does there) and the speedup is against its faster run; the
floor, a profile of the CPU step, is left out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from benchkit import LABELS, TEXT_COLS, WORK, arxiv, machine, texts_of
from train_ceiling import floor_profile, precision_name
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from mlabel.config import TrainConfig
from mlabel.data import load_examples
from mlabel.metrics import multilabel_metrics
from mlabel.model import resolve_encoder
from mlabel.runtime import attention_kernels, autocast_dtype, reuse_freed_memory
from mlabel.training import TrainResult, train

MAX_LEN, BATCH, LR, WARMUP, WEIGHT_DECAY = 256, 16, 8e-5, 0.1, 0.01


def micro_f1(y: np.ndarray, logits: np.ndarray) -> float:
    return multilabel_metrics(y, (logits >= 0).astype(int), LABELS)["micro_f1"]  # p >= 0.5


def run_peer(train_df, val_df, epochs: int, dtype: torch.dtype | None) -> tuple[float, float]:
    """Hugging Face Trainer: (seconds, validation micro-F1 after the last epoch)."""
    start = time.perf_counter()
    path = resolve_encoder("default")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(LABELS), problem_type="multi_label_classification"
    )
    train_ds, val_ds = (tokenized(tokenizer, df) for df in (train_df, val_df))
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(dir=WORK, prefix="hf-"),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=64,
        num_train_epochs=epochs,
        learning_rate=LR,
        warmup_steps=WARMUP,
        weight_decay=WEIGHT_DECAY,
        lr_scheduler_type="linear",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length",
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda p: {"micro_f1": micro_f1(p.label_ids, p.predictions)},
    )
    with reuse_freed_memory(model.device):  # glibc keeps freed memory, as in mlabel's training
        trainer.train()
        f1 = trainer.evaluate()["eval_micro_f1"]
    return time.perf_counter() - start, f1


def tokenized(tokenizer, df) -> list[dict]:
    enc = tokenizer(texts_of(df), truncation=True, max_length=MAX_LEN)
    y = df[LABELS].to_numpy(dtype=np.float32)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": labels}
        for ids, mask, labels in zip(enc["input_ids"], enc["attention_mask"], y.tolist())
    ]


def run_mlabel(train_df, val_df, epochs: int, **settings) -> tuple[float, TrainResult]:
    """`mlabel train` as a library call (`--precision auto`, plus `settings`): (seconds, its
    result)."""
    cfg = TrainConfig(
        text_cols=TEXT_COLS,
        max_len=MAX_LEN,
        epochs=epochs,
        batch_size=BATCH,
        lr=LR,
        warmup=WARMUP,
        weight_decay=WEIGHT_DECAY,
        pos_weight="none",
        ensemble=None,  # the peer trains no TF-IDF member; this compares the encoder's training
        patience=0,
        thresholds="fixed:0.5",
        seed=0,
        **settings,
    )
    start = time.perf_counter()
    train_ex = load_examples(train_df, TEXT_COLS, label_cols=LABELS)
    val_ex = load_examples(val_df, TEXT_COLS, label_cols=LABELS)
    result = train(cfg, train_ex, val_ex, tempfile.mkdtemp(dir=WORK, prefix="mlabel-"))
    return time.perf_counter() - start, result


def training_speed(result: TrainResult) -> float:
    """Samples/s over the epochs' training time alone (no loading, tokenizing or validation)."""
    return len(result.history) / sum(1 / r["samples_per_s"] for r in result.history)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=1000, help="training abstracts (default 1000)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    WORK.mkdir(parents=True, exist_ok=True)
    n_train, n_val, epochs = (96, 48, 1) if args.quick else (args.rows, int(0.3 * args.rows), 2)
    df = arxiv()
    train_df, val_df = df.iloc[:n_train], df.iloc[n_train : n_train + n_val]
    print(f"machine: {machine()}")
    print(f"{n_train} training / {n_val} validation abstracts, {epochs} epochs, batch {BATCH}")
    gpu = torch.cuda.is_available()
    dtype = autocast_dtype("auto", torch.device("cuda" if gpu else "cpu"))
    if gpu:
        print(f"device: {torch.cuda.get_device_name()} (both train there; no CPU floor)")
    print(f"precision (Trainer, mlabel and the floor alike): {precision_name(dtype)}")
    hf_s, hf_f1 = run_peer(train_df, val_df, epochs, dtype)
    print(
        f"hf Trainer: {epochs * n_train / hf_s:.2f} samples/s ({hf_s:.0f} s), micro-F1 {hf_f1:.4f}"
    )
    if gpu:  # the peer's best setting too: without cuDNN's attention, as mlabel trains
        with attention_kernels(torch.device("cuda")):
            off_s, off_f1 = run_peer(train_df, val_df, epochs, dtype)
        print(
            f"hf Trainer without cuDNN attention: {epochs * n_train / off_s:.2f} samples/s "
            f"({off_s:.0f} s), micro-F1 {off_f1:.4f}"
        )
        hf_s, hf_f1 = min((hf_s, hf_f1), (off_s, off_f1))  # the speedup is against the faster
    ml_s, result = run_mlabel(train_df, val_df, epochs)
    ml_f1, ml_train = result.history[-1]["micro_f1"], training_speed(result)
    print(
        f"mlabel:     {epochs * n_train / ml_s:.2f} samples/s ({ml_s:.0f} s), micro-F1 {ml_f1:.4f};"
        f" training alone {ml_train:.2f} samples/s"
    )
    _, no_attn = run_mlabel(train_df, val_df, epochs, attention_dropout=0.0)
    print(
        f"mlabel --attention-dropout 0 (not the default): training alone "
        f"{training_speed(no_attn):.2f} samples/s, micro-F1 {no_attn.history[-1]['micro_f1']:.4f}"
    )
    if gpu:
        print(f"micro-F1 difference (mlabel - hf): {ml_f1 - hf_f1:+.4f}")
        print(f"train speedup: {hf_s / ml_s:.2f}")
        return 0
    floor = floor_profile(n_train, dtype)
    print(
        f"floor (matrix multiplies, softmax, GELU, LayerNorm, AdamW of one epoch, profiled): "
        f"{floor.floor:.1f} s, {n_train / floor.floor:.2f} samples/s; matrix multiplies alone "
        f"{n_train / floor.matmul:.2f} samples/s; the profiled epoch {n_train / floor.wall:.2f}"
    )
    print(f"machine after: {machine()}")
    print(f"micro-F1 difference (mlabel - hf): {ml_f1 - hf_f1:+.4f}")
    print(
        f"floor fraction with --attention-dropout 0: "
        f"{training_speed(no_attn) / (n_train / floor.floor):.2f}"
    )
    print(f"train floor fraction: {ml_train / (n_train / floor.floor):.2f}")
    print(f"train speedup: {hf_s / ml_s:.2f}")
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
