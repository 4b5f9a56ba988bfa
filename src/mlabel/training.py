"""The training loop: length-grouped batches, accumulation, clipping, evaluation, early stopping,
checkpoints and exact resume. Runs as one process or under torchrun (DistributedDataParallel)."""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from mlabel import checkpoint as ckpt
from mlabel import dropout
from mlabel.config import ConfigError, TrainConfig, from_dict, load_config, save_config
from mlabel.data import Examples
from mlabel.encoding import Encoded, collate, encode, load_tokenizer, pool_windows, training_batches
from mlabel.metrics import apply_thresholds, multilabel_metrics, tune_thresholds
from mlabel.model import (
    EncoderClassifier,
    attention,
    package_versions,
    read_meta,
    resolve_encoder,
    write_meta,
)
from mlabel.predict import batched_logits, sigmoid
from mlabel.reports.curves import plot_training_curves
from mlabel.runtime import Runtime, autocast_dtype, setup

console = Console(stderr=True)

# Settings a resumed run may change: how long it runs, when it stops early, where it saves or
# reports, and threads. A new `epochs` stretches the learning-rate schedule to the new total.
RESUMABLE = ("epochs", "patience", "threads", "save_steps", "keep", "track")


class Callback(Protocol):
    """Hooks for tuners and trackers; raising in `on_epoch_end` stops the run (e.g. Optuna pruning)."""

    def on_epoch_end(self, record: dict[str, Any]) -> None: ...

    def on_train_end(self, result: TrainResult) -> None: ...

    def on_train_abort(self, error: BaseException) -> None:
        """The run stopped on `error` (raised again afterwards): a pruning, Ctrl-C or a failure."""


@dataclass
class TrainResult:
    out_dir: Path
    model_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Data:
    encoded: Encoded
    y: np.ndarray
    examples: Examples


def train(
    cfg: TrainConfig,
    train_ex: Examples,
    val_ex: Examples | None,
    out_dir: str | Path,
    resume: bool = False,
    callbacks: tuple[Callback, ...] = (),
) -> TrainResult:
    """Fine-tune an encoder classifier; the best epoch ends in `out_dir/model`. Callbacks hear of
    each epoch, then of the end or of the error that stopped the run."""
    try:
        result = _train(cfg, train_ex, val_ex, Path(out_dir), resume, callbacks)
    except BaseException as error:
        for cb in callbacks:
            cb.on_train_abort(error)
        raise
    for cb in callbacks:
        cb.on_train_end(result)
    return result


def _train(
    cfg: TrainConfig,
    train_ex: Examples,
    val_ex: Examples | None,
    out: Path,
    resume: bool,
    callbacks: tuple[Callback, ...],
) -> TrainResult:
    rt = setup(cfg.threads)
    _threshold_source(cfg, train_ex.labels, val_ex is not None)  # fail before training, not after
    if resume:
        _check_resumable(out, cfg)
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(resolve_encoder(cfg.model))
    tr = _encode(tokenizer, train_ex, cfg, rt, "train")
    va = _encode(tokenizer, val_ex, cfg, rt, "validation") if val_ex is not None else None
    model = EncoderClassifier.from_encoder(
        cfg.model, len(train_ex.labels), cfg.pooling, cfg.dropout
    )
    if rt.device.type == "cpu":
        dropout.use_fast_dropout(model)
    model.to(rt.device)
    net = _wrap(model, rt)
    steps_per_epoch = math.ceil(math.ceil(len(tr.y) / cfg.batch_size) / cfg.grad_accum)
    optimizer = _optimizer(model, cfg)
    scheduler = _scheduler(optimizer, cfg, steps_per_epoch * cfg.epochs)
    loss_fn = _loss_fn(cfg, tr.y, rt.device)
    state = {
        "epoch": 0,
        "batch": 0,
        "global_step": 0,
        "best": -1.0,
        "best_epoch": 0,
        "bad_epochs": 0,
        "epoch_loss": [0.0, 0.0],
        "history": [],
    }
    if resume:
        state = _resume(out, model, optimizer, scheduler, state, rt)
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        # metrics.jsonl is the checkpoint's history: epochs logged after it are run again
        _write_history(out, state["history"])
        save_config(cfg, out / "config.yaml")
    dtype = autocast_dtype(cfg.precision, rt.device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    best_probs = None
    while state["epoch"] < cfg.epochs and not _stopped(state, cfg, va):
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        with attention(model.encoder, _train_attention(rt)):
            train_loss = _train_epoch(
                net, tr, cfg, rt, optimizer, scheduler, loss_fn, dtype, scaler, state, out, model
            )
        record = {"epoch": epoch, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0]}
        record["samples_per_s"] = len(tr.y) / max(time.perf_counter() - t0, 1e-9)
        if va is not None:
            probs, val_loss = _evaluate(model, va, cfg, rt, loss_fn, dtype)
            y_val = va.examples.y  # one row per text (va.y has one per window when chunking)
            thresholds = tune_thresholds(y_val, probs, cfg.thresholds)
            scores = multilabel_metrics(y_val, apply_thresholds(probs, thresholds), train_ex.labels)
            record.update(
                val_loss=val_loss, **{k: v for k, v in scores.items() if k != "per_label"}
            )
            improved = record["micro_f1"] > state["best"]
        else:
            improved, probs = True, None
        record["seconds"] = time.perf_counter() - t0
        state.update(epoch=epoch, batch=0, epoch_loss=[0.0, 0.0])
        state["history"].append(record)
        if improved:
            state.update(best=record.get("micro_f1", 0.0), best_epoch=epoch, bad_epochs=0)
            best_probs = probs
        else:
            state["bad_epochs"] += 1
        rngs = _rng_states(rt)
        if rt.is_main:
            _log_epoch(out, record)
            if improved:
                _save_model(model, tokenizer, out / "model", cfg, train_ex.labels, record)
                if probs is not None:
                    np.save(out / "val_probs.npy", probs)
            _checkpoint(out, f"epoch-{epoch:03d}", model, optimizer, scheduler, state, cfg, rngs)
        for cb in callbacks:
            cb.on_epoch_end(record)
    return _finish(cfg, out, train_ex, va, best_probs, state, rt)


def _encode(tokenizer, ex: Examples, cfg: TrainConfig, rt: Runtime, name: str) -> _Data:
    enc = encode(tokenizer, ex.texts, cfg.max_len, cfg.long == "chunk", cfg.stride)
    if enc.n_truncated and cfg.long == "truncate" and rt.is_main:
        console.print(
            f"{name}: {enc.n_truncated} of {enc.n_texts} texts are longer than max_len {cfg.max_len} "
            "tokens and were truncated (use --long chunk to read them whole)"
        )
    return _Data(encoded=enc, y=ex.y[enc.owner].astype(np.float32), examples=ex)


def _train_attention(rt: Runtime) -> str | None:
    """On CPU, eager attention with mlabel's dropout: torch's CPU SDPA backward and dropout are
    slow there (bench/RESULTS.md, Training). Validation and inference keep SDPA, faster forward."""
    return dropout.ATTENTION if rt.device.type == "cpu" else None


def _wrap(model: torch.nn.Module, rt: Runtime) -> torch.nn.Module:
    if not rt.distributed:
        return model
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _layer_index(name: str, n_layers: int) -> int:
    """0 for embeddings, 1..n for encoder layers, n+1 for anything above them (the head)."""
    if name.startswith("head."):
        return n_layers + 1
    found = re.search(r"\.(?:layer|layers)\.(\d+)\.", name)
    if found:
        return int(found.group(1)) + 1
    return 0 if "embeddings" in name else n_layers


def _optimizer(model: EncoderClassifier, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Parameter groups with layer-wise learning-rate decay and no weight decay on biases/norms."""
    n_layers = getattr(model.encoder.config, "num_hidden_layers", 12)
    groups: dict[tuple[int, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decay = param.ndim > 1 and cfg.optimizer == "adamw"
            groups.setdefault((_layer_index(name, n_layers), decay), []).append(param)
    param_groups = []
    for (depth, decay), params in sorted(groups.items()):
        lr = (
            cfg.lr * cfg.layer_decay ** (n_layers - depth)
            if depth <= n_layers
            else cfg.head_lr or cfg.lr
        )
        wd = cfg.weight_decay if decay else 0.0
        param_groups.append({"params": params, "lr": lr, "weight_decay": wd})
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    try:
        return cls(param_groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):
        return cls(param_groups, lr=cfg.lr)


def _scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup for `warmup` of the steps, then linear decay to zero."""
    warm = int(cfg.warmup * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        return max(0.0, (total - step) / max(1, total - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _loss_fn(cfg: TrainConfig, y: np.ndarray, device: torch.device):
    """Per-element loss (summed by the caller): BCE with optional pos_weight, or focal."""
    pos_weight = None
    if cfg.pos_weight == "auto":
        pos = y.sum(0).clip(min=1)
        pos_weight = torch.tensor(
            np.sqrt((len(y) - pos) / pos).clip(1.0, 50.0), dtype=torch.float32, device=device
        )

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=pos_weight, reduction="none"
        )
        if cfg.loss == "focal":
            p = torch.sigmoid(logits)
            p_t = p * target + (1 - p) * (1 - target)
            bce = bce * (1 - p_t) ** cfg.focal_gamma
        return bce

    return loss


def _train_epoch(
    net,
    tr: _Data,
    cfg,
    rt: Runtime,
    optimizer,
    scheduler,
    loss_fn,
    dtype,
    scaler,
    state,
    out,
    model,
) -> float:
    """One pass over the data; returns the true mean loss per label and example."""
    epoch = state["epoch"]
    generator = torch.Generator().manual_seed(cfg.seed * 1_000 + epoch)
    batches = training_batches(tr.encoded.lengths, cfg.batch_size, generator)
    net.train()
    # (summed loss, elements) of this rank; rank 0 carries what a resumed epoch summed before
    loss_sum = torch.tensor(state["epoch_loss"] if rt.is_main else [0.0, 0.0], dtype=torch.float64)
    skip = state["batch"]
    steps = [batches[i : i + cfg.grad_accum] for i in range(0, len(batches), cfg.grad_accum)]
    bar = tqdm(
        total=len(batches),
        initial=skip,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not rt.is_main,
        unit="batch",
    )
    done, t0 = 0, time.perf_counter()
    for group in steps:
        if done < skip:  # resuming mid-epoch: these batches were trained before the checkpoint
            done += len(group)
            continue
        step_rows = sum(len(b) for b in group)
        for i, batch in enumerate(group):
            mine, weight = _share(batch, rt)
            sync = i == len(group) - 1 or not rt.distributed
            with net.no_sync() if not sync else contextlib.nullcontext():
                loss = _micro_step(
                    net, tr, mine, weight, step_rows, rt, loss_fn, dtype, scaler, loss_sum
                )
            done += 1
            bar.update(1)
        _optimizer_step(model, optimizer, scheduler, scaler, cfg)
        state["global_step"] += 1
        state["batch"] = done
        rate = (done - skip) * cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.1f}")
        if cfg.save_steps and state["global_step"] % cfg.save_steps == 0 and done < len(batches):
            state["epoch_loss"] = _global_sum(loss_sum, rt)
            rngs = _rng_states(rt)
            if rt.is_main:
                name = f"step-{state['global_step']:07d}"
                _checkpoint(out, name, model, optimizer, scheduler, state, cfg, rngs)
    bar.close()
    loss, elements = _global_sum(loss_sum, rt)
    return loss / max(elements, 1)


def _checkpoint(
    out: Path, name: str, model, optimizer, scheduler, state: dict, cfg, rngs: list[dict]
) -> None:
    """Save checkpoint `name`, then keep the newest `cfg.keep` and the best epoch's."""
    ckpt.save_checkpoint(out / "checkpoints", name, model, optimizer, scheduler, state, rngs)
    ckpt.prune_checkpoints(out / "checkpoints", cfg.keep, f"epoch-{state['best_epoch']:03d}")


def _rng_states(rt: Runtime) -> list[dict]:
    """Every rank's generator states, for rank 0's checkpoint: each rank draws its own dropout."""
    mine = ckpt.rng_state()
    if not rt.distributed:
        return [mine]
    states: list = [None] * rt.world
    dist.all_gather_object(states, {k: v.cpu() for k, v in mine.items()})
    return states


def _global_sum(values: torch.Tensor, rt: Runtime) -> list[float]:
    """The sum over ranks, leaving `values` as it is."""
    if not rt.distributed:
        return values.tolist()
    total = values.clone().to(rt.device)  # NCCL reduces only GPU tensors
    dist.all_reduce(total)
    return total.cpu().tolist()


def _share(batch: np.ndarray, rt: Runtime) -> tuple[np.ndarray, float]:
    """This rank's rows of a global batch, and their weight in the loss.

    A batch smaller than the world leaves some ranks without rows; they run its first row with
    weight 0 instead, so that every rank joins DDP's gradient all-reduce (else it would hang).
    """
    mine = batch[rt.rank :: rt.world]
    return (mine, 1.0) if len(mine) else (batch[:1], 0.0)


def _micro_step(
    net, tr: _Data, rows, weight, step_rows, rt, loss_fn, dtype, scaler, loss_sum
) -> float:
    """Forward and backward for this rank's share; the loss is scaled so gradients are a global mean."""
    inputs = {k: v.to(rt.device) for k, v in collate(tr.encoded, rows).items()}
    target = torch.from_numpy(tr.y[rows]).to(rt.device)
    autocast = torch.autocast(rt.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    with autocast:
        logits = net(**inputs)
    per_element = loss_fn(logits.float(), target)
    total = per_element.sum()
    # DDP averages gradients over ranks, so scale by world to get the mean over the global batch.
    scaled = weight * total * rt.world / (step_rows * target.shape[1])
    (scaler.scale(scaled) if scaler else scaled).backward()
    loss_sum += weight * torch.tensor([total.item(), per_element.numel()], dtype=torch.float64)
    return total.item() / max(per_element.numel(), 1)


def _optimizer_step(model, optimizer, scheduler, scaler, cfg: TrainConfig) -> None:
    if scaler:
        scaler.unscale_(optimizer)
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _evaluate(
    model, va: _Data, cfg: TrainConfig, rt: Runtime, loss_fn, dtype
) -> tuple[np.ndarray, float]:
    """Validation probabilities per text (fresh each epoch) and the true mean loss; ranks share the work."""
    model.eval()
    rows = np.arange(len(va.y))[rt.rank :: rt.world]
    logits = batched_logits(model, va.encoded, rows, dtype, rt.device)
    if rt.distributed:
        parts: list = [None] * rt.world
        dist.all_gather_object(parts, (rows, logits))
        rows = np.concatenate([p[0] for p in parts])
        logits = np.concatenate([p[1] for p in parts])
    full = np.zeros((len(va.y), logits.shape[1]), dtype=np.float32)
    full[rows] = logits
    with torch.no_grad():
        val_loss = float(
            loss_fn(
                torch.from_numpy(full).to(rt.device), torch.from_numpy(va.y).to(rt.device)
            ).mean()
        )
    probs = pool_windows(sigmoid(full), va.encoded.owner, va.encoded.n_texts, cfg.long_pool)
    model.train()
    return probs, val_loss


def _stopped(state: dict, cfg: TrainConfig, va: _Data | None) -> bool:
    """Early stopping on validation micro-F1 (never without a validation split)."""
    return va is not None and cfg.patience > 0 and state["bad_epochs"] >= cfg.patience


def _check_resumable(out: Path, cfg: TrainConfig) -> None:
    """Refuse to resume a run with settings that would change its training (`RESUMABLE` aside)."""
    path = out / "config.yaml"
    if not path.is_file() or not ckpt.list_checkpoints(out / "checkpoints"):
        return  # nothing to resume: the run starts afresh with these settings
    saved = from_dict(load_config(path), source=str(path)).to_dict()
    changed = [
        f"{key} (run {saved[key]!r}, now {value!r})"
        for key, value in cfg.to_dict().items()
        if key not in RESUMABLE and saved[key] != value
    ]
    if changed:
        raise ConfigError(
            f"{out}: cannot resume with other settings: {'; '.join(changed)}. Resume with the "
            f"run's settings ({path}) or train into a new folder"
        )


def _resume(out: Path, model, optimizer, scheduler, state: dict, rt: Runtime) -> dict:
    """The trainer state of the newest complete checkpoint, with model, optimizer and RNG restored."""
    found = ckpt.list_checkpoints(out / "checkpoints")
    if not found:
        if rt.is_main:
            console.print(f"no complete checkpoint in {out / 'checkpoints'}; starting from scratch")
        return state
    if rt.is_main:
        console.print(f"resuming from {found[-1]}")
    return {**state, **ckpt.load_checkpoint(found[-1], model, optimizer, scheduler, rt.rank)}


def _write_history(out: Path, history: list[dict]) -> None:
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))


def _log_epoch(out: Path, record: dict) -> None:
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    keys = ["epoch", "train_loss", "val_loss", "micro_f1", "macro_f1", "samples_per_s"]
    table = Table(*[k for k in keys if k in record], title=None, box=None)
    table.add_row(*[_fmt(record[k]) for k in keys if k in record])
    console.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _save_model(
    model, tokenizer, directory: Path, cfg: TrainConfig, labels: list[str], record: dict
) -> None:
    """Write a sibling temp folder, move the old model aside, rename: a complete model is always on disk."""
    tmp, old = (
        directory.with_name(directory.name + ".tmp"),
        directory.with_name(directory.name + ".old"),
    )
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    tokenizer.save_pretrained(tmp)
    write_meta(tmp, _meta(cfg, labels, [0.5] * len(labels), "fixed:0.5", "default", record))
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def _meta(cfg: TrainConfig, labels, thresholds, method: str, source: str, metrics: dict) -> dict:
    return {
        "format": 1,
        "kind": "transformer",
        "labels": list(labels),
        "thresholds": [float(t) for t in thresholds],
        "threshold_method": method,
        "threshold_source": source,
        "max_len": cfg.max_len,
        "text_cols": cfg.text_cols,
        "pooling": cfg.pooling,
        "long": cfg.long,
        "stride": cfg.stride,
        "long_pool": cfg.long_pool,
        "metrics": metrics,
        "config": cfg.to_dict(),
        "versions": package_versions(),
        "ensemble": None,
    }


def _finish(
    cfg: TrainConfig,
    out: Path,
    train_ex: Examples,
    va: _Data | None,
    best_probs,
    state,
    rt: Runtime,
) -> TrainResult:
    """Tune thresholds on the best epoch's validation predictions (or take them from elsewhere)."""
    model_dir = out / "model"
    result = TrainResult(out, model_dir, state["history"], state["best_epoch"])
    if rt.is_main:
        meta = read_meta(model_dir)
        if va is not None and best_probs is None:
            best_probs = np.load(out / "val_probs.npy", allow_pickle=False)
        meta.update(
            finalize_thresholds(cfg, model_dir, train_ex, va.examples if va else None, best_probs)
        )
        meta["best_epoch"] = state["best_epoch"]
        write_meta(model_dir, meta)
        result.metrics = meta.get("metrics", {})
        plot_training_curves(out / "metrics.jsonl", out / "training_curves.png")
    if rt.distributed:
        dist.barrier()
    return result


def finalize_thresholds(
    cfg: TrainConfig, model_dir: Path, train_ex: Examples, val_ex: Examples | None, probs
) -> dict:
    """Thresholds, their source, the optional TF-IDF ensemble and the validation metrics for mlabel.json."""
    update: dict[str, Any] = {}
    source = _threshold_source(cfg, train_ex.labels, val_ex is not None)
    if cfg.ensemble == "tfidf":
        from mlabel.baseline import TfidfModel

        tfidf = TfidfModel().fit(train_ex.texts, train_ex.y)
        tfidf.save(model_dir / "tfidf")
        update["ensemble"] = {"kind": "tfidf", "weight": 0.5}
        if val_ex is not None:
            probs = 0.5 * probs + 0.5 * tfidf.predict_proba(val_ex.texts)
    if source is not None:
        thresholds = np.asarray(source["thresholds"])
        update.update(
            threshold_method=source["threshold_method"], threshold_source=str(cfg.thresholds_from)
        )
    elif val_ex is None:
        thresholds = tune_thresholds(
            np.zeros((1, len(train_ex.labels))), np.zeros((1, len(train_ex.labels))), cfg.thresholds
        )
        update.update(threshold_method=cfg.thresholds, threshold_source="fixed")
    else:
        thresholds = tune_thresholds(val_ex.y, probs, cfg.thresholds)
        update.update(threshold_method=cfg.thresholds, threshold_source="validation split")
    update["thresholds"] = [float(t) for t in thresholds]
    # Without a validation split there is nothing to score (not the last epoch's training record).
    update["metrics"] = (
        multilabel_metrics(val_ex.y, apply_thresholds(probs, thresholds), train_ex.labels)
        if val_ex is not None
        else {}
    )
    return update


def _threshold_source(cfg: TrainConfig, labels: list[str], has_val: bool) -> dict | None:
    """The model folder `thresholds_from` names (its mlabel.json), checked against this run."""
    if cfg.thresholds_from:
        source = read_meta(cfg.thresholds_from)
        if source["labels"] != labels:
            raise ConfigError(
                f"thresholds_from {cfg.thresholds_from}: its labels {source['labels']} differ "
                f"from this data's {labels}"
            )
        return source
    if not has_val and not cfg.thresholds.startswith("fixed"):
        raise ConfigError(
            f"thresholds {cfg.thresholds!r} are tuned on a validation split and this run has "
            "none (all_data); pass thresholds_from=<a trained model folder> or a fixed threshold"
        )
    return None


def train_tfidf(
    cfg: TrainConfig, train_ex: Examples, val_ex: Examples | None, out_dir: str | Path
) -> TrainResult:
    """The built-in baseline: TF-IDF + logistic regression, saved as the same kind of model folder."""
    from mlabel.baseline import TfidfModel

    out = Path(out_dir)
    model_dir = out / "model"
    t0 = time.perf_counter()
    tfidf = TfidfModel().fit(train_ex.texts, train_ex.y)
    shutil.rmtree(model_dir, ignore_errors=True)
    tfidf.save(model_dir / "tfidf")
    probs = tfidf.predict_proba(val_ex.texts) if val_ex is not None else None
    meta = _meta(cfg, train_ex.labels, [], "", "", {})
    meta.update(kind="tfidf", pooling=None, max_len=None)
    meta.update(finalize_thresholds(cfg.replace(ensemble=None), model_dir, train_ex, val_ex, probs))
    write_meta(model_dir, meta)
    save_config(cfg, out / "config.yaml")
    record = {"epoch": 1, "seconds": time.perf_counter() - t0}
    record.update({k: v for k, v in meta.get("metrics", {}).items() if k != "per_label"})
    (out / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    return TrainResult(out, model_dir, [record], 1, meta.get("metrics", {}))
