"""The training loop: length-grouped batches, accumulation, clipping, evaluation, early stopping,
checkpoints and exact resume. Runs as one process or under torchrun (DistributedDataParallel):
every rank trains, rank 0 alone writes the run folder, prints and calls the callbacks
(`@_main_only`). The console table and the curves plot are callbacks the callers add."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from tqdm.auto import tqdm

from mlabel import checkpoint as ckpt
from mlabel import dropout, faults, folder, runlock
from mlabel.atomic import replace_on_success, write_text_atomic
from mlabel.config import TrainConfig, from_dict, load_config, save_config
from mlabel.data import Examples
from mlabel.decision import decide
from mlabel.distributed import gather_rows, global_sum, rng_states, share, wrap
from mlabel.encoding import (
    Encoded,
    collate,
    encode,
    load_tokenizer,
    pool_windows,
    spell_out_symbols,
    training_batches,
)
from mlabel.engines import batched_logits, sigmoid
from mlabel.errors import ConfigError
from mlabel.finalize import (
    TrainResult,
    finalize_thresholds,
    model_info,
    small_validation,
    threshold_source,
    train_tfidf,
)
from mlabel.metrics import multilabel_metrics
from mlabel.model import EncoderClassifier, attention, resolve_encoder
from mlabel.optim import build_optimizer, build_scheduler, loss_function
from mlabel.runtime import (
    Runtime,
    attention_kernels,
    autocast_dtype,
    checked_autocast,
    reuse_freed_memory,
    setup,
)
from mlabel.selection import tuned_rule
from mlabel.subjects import training_subjects

__all__ = ["RESUMABLE", "TrainResult", "TrainState", "finalize_thresholds", "train", "train_tfidf"]

# messages, one line each however long (a log is read with grep); paths may hold [brackets]
console = Console(stderr=True, markup=False, soft_wrap=True)

LOSS_ROWS = 1024  # validation rows per block of the loss

# Settings a resumed run may change: how long it runs, when it stops early, where it saves or
# reports, and threads. A new `epochs` stretches the learning-rate schedule to the new total.
RESUMABLE = ("epochs", "patience", "max_minutes", "threads", "save_steps", "keep", "track")

T = TypeVar("T")


@dataclass
class TrainState:
    """Where a run stands: each checkpoint's state.json, from which a resumed run goes on."""

    epoch: int = 0  # epochs done
    batch: int = 0  # batches of the next epoch done (a step checkpoint falls mid-epoch)
    global_step: int = 0
    best: float = -1.0  # the best validation micro-F1
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one
    epoch_loss: list[float] = field(default_factory=lambda: [0.0, 0.0])  # summed loss, elements
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch

    def end_epoch(self, record: dict[str, Any], improved: bool) -> None:
        self.epoch, self.batch, self.epoch_loss = record["epoch"], 0, [0.0, 0.0]
        self.history.append(record)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = record.get("micro_f1", 0.0), self.epoch, 0
        else:
            self.bad_epochs += 1


@dataclass
class _Data:
    encoded: Encoded
    y: np.ndarray  # one row per window when chunking long texts
    examples: Examples


def _main_only(method: Callable[..., T]) -> Callable[..., T | None]:
    """Rank 0's side effects (files, console, callbacks) go through here: other ranks skip them."""

    @functools.wraps(method)
    def on_rank_0(self, *args: Any, **kwargs: Any) -> T | None:
        return method(self, *args, **kwargs) if self.rt.is_main else None

    return on_rank_0


@dataclass
class _Callbacks:
    rt: Runtime
    callbacks: Sequence[Any]

    @_main_only
    def __call__(self, event: str, arg: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(arg)


def train(
    cfg: TrainConfig,
    train_ex: Examples,
    val_ex: Examples | None,
    out_dir: str | Path,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    runtime: Runtime | None = None,
) -> TrainResult:
    """Fine-tune an encoder classifier; the best epoch ends in `out_dir/model`. `callbacks`
    (`mlabel.callbacks.Callback`) hear of each epoch, then of the end or of the error that stopped
    the run. `runtime` is the process's `setup()` (made here when not given). Rank 0 holds
    `out_dir`'s run lock throughout: a second run into the same folder stops (`RunLocked`)."""
    rt = runtime or setup(cfg.threads)
    notify = _Callbacks(rt, callbacks)
    lock = runlock.held(out_dir, console.print) if rt.is_main else contextlib.nullcontext()
    with lock:
        try:
            # Fail before training, not after it: thresholds_from and the URI table must fit.
            threshold_source(cfg, train_ex.labels, val_ex is not None)
            training_subjects(train_ex.labels, cfg.subject_uri_base, cfg.subject_uris)
            if resume:
                _check_resumable(Path(out_dir), cfg)
            run = _Run(cfg, train_ex, val_ex, Path(out_dir), rt)
            run.start(resume)
            result = run.fit(notify)
        except BaseException as error:
            notify("on_train_abort", error)
            raise
        notify("on_train_end", result)
    return result


class _Run:
    """One training run: the model on this rank's device, what trains it, its data and where it
    stands. Built right after seeding, so the new head's weights depend on the seed alone."""

    def __init__(
        self, cfg: TrainConfig, train_ex: Examples, val_ex: Examples | None, out: Path, rt: Runtime
    ):
        self.cfg, self.rt, self.out, self.state = cfg, rt, out, TrainState()
        torch.manual_seed(cfg.seed)
        self.tokenizer = load_tokenizer(resolve_encoder(cfg.model))
        if cfg.spell_symbols:
            spell_out_symbols(self.tokenizer, train_ex.texts)
        self.train = _encode(self.tokenizer, train_ex, cfg)
        self.val = _encode(self.tokenizer, val_ex, cfg) if val_ex is not None else None
        self.model = EncoderClassifier.from_encoder(
            cfg.model, len(train_ex.labels), cfg.pooling, cfg.dropout, cfg.attention_dropout
        )
        if rt.device.type == "cpu":
            dropout.use_fast_dropout(self.model)
        self.model.to(rt.device)
        self.net = wrap(self.model, rt)  # in DDP under torchrun
        steps_per_epoch = math.ceil(math.ceil(len(self.train.y) / cfg.batch_size) / cfg.grad_accum)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, steps_per_epoch * cfg.epochs)
        self.loss_fn = loss_function(cfg, self.train.y, rt.device)
        sample = collate(self.train.encoded, np.arange(min(2, len(self.train.y))))
        self.dtype, note = checked_autocast(  # None: fp32
            self.model,
            {k: v.to(rt.device) for k, v in sample.items()},
            autocast_dtype(cfg.precision, rt.device),
            cfg.precision,
        )
        if note and rt.is_main:
            self._say(note)
        # fp16 needs loss scaling; disabled, the scaler passes everything through unchanged
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    def start(self, resume: bool) -> None:
        """Report truncated texts and a small validation split, restore the newest checkpoint,
        write the run folder's start."""
        self._note_truncation()
        if note := small_validation(self.val.examples if self.val is not None else None):
            self._say(note)
        if resume:
            self._resume()
        self._start_folder()

    def _note_truncation(self) -> None:
        for name, data in (("train", self.train), ("validation", self.val)):
            enc = data.encoded if data is not None else None
            if enc and enc.n_truncated and self.cfg.long == "truncate":
                self._say(
                    f"{name}: {enc.n_truncated} of {enc.n_texts} texts are longer than max_len "
                    f"{self.cfg.max_len} tokens and were truncated (use --long chunk to read them whole)"
                )

    def fit(self, notify: _Callbacks) -> TrainResult:
        """Epochs until the last one, early stopping or the time budget; then thresholds for the
        best epoch."""
        with reuse_freed_memory(self.rt.device):
            best_probs = self._epochs(notify)
        return self._finish(best_probs)

    def _epochs(self, notify: _Callbacks) -> np.ndarray | None:
        """The epochs; returns the best epoch's validation probabilities (None: no validation)."""
        state, best_probs = self.state, None
        started, longest = time.perf_counter(), 0.0
        while (
            state.epoch < self.cfg.epochs
            and not self._stopped()
            and not self._out_of_time(time.perf_counter() - started, longest)
        ):
            t0 = time.perf_counter()
            with attention(self.model.encoder, _train_attention(self.rt)):
                with attention_kernels(self.rt.device):
                    train_loss = self._train_epoch()
            lr = self.scheduler.get_last_lr()[0]
            record = {"epoch": state.epoch + 1, "train_loss": train_loss, "lr": lr}
            record["samples_per_s"] = len(self.train.y) / max(time.perf_counter() - t0, 1e-9)
            probs = self._validate(record) if self.val is not None else None
            improved = probs is None or record["micro_f1"] > state.best
            record["seconds"] = time.perf_counter() - t0
            state.end_epoch(record, improved)
            if improved:
                best_probs = probs
            self._save_epoch(record, improved, probs, rng_states(self.rt))
            notify("on_epoch_end", record)
            longest = max(longest, time.perf_counter() - t0)
        return best_probs

    def _train_epoch(self) -> float:
        """One pass over the data (the rest of it when resuming mid-epoch); returns the true
        mean loss per label and example."""
        cfg, rt, state = self.cfg, self.rt, self.state
        generator = torch.Generator().manual_seed(cfg.seed * 1_000 + state.epoch)
        batches = training_batches(self.train.encoded.lengths, cfg.batch_size, generator)
        self.net.train()
        # (summed loss, elements) of this rank; rank 0 carries what a resumed epoch summed before
        loss_sum = torch.tensor(state.epoch_loss if rt.is_main else [0.0, 0.0], dtype=torch.float64)
        skip, done, t0 = state.batch, 0, time.perf_counter()
        desc = f"epoch {state.epoch + 1}/{cfg.epochs}"
        bar = tqdm(
            total=len(batches), initial=skip, desc=desc, disable=not rt.is_main, unit="batch"
        )
        for first in range(0, len(batches), cfg.grad_accum):
            group = batches[first : first + cfg.grad_accum]
            if done < skip:  # resuming mid-epoch: these batches were trained before the checkpoint
                done += len(group)
                continue
            step_rows = sum(len(b) for b in group)
            for i, batch in enumerate(group):
                mine, weight = share(batch, rt)
                sync = i == len(group) - 1 or not rt.distributed
                with self.net.no_sync() if not sync else contextlib.nullcontext():
                    loss = self._micro_step(mine, weight, step_rows, loss_sum)
                done += 1
                bar.update(1)
            self._optimizer_step()
            state.global_step += 1
            state.batch = done
            rate = (done - skip) * cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.1f}")
            if cfg.save_steps and state.global_step % cfg.save_steps == 0 and done < len(batches):
                state.epoch_loss = global_sum(loss_sum, rt)
                self._checkpoint(f"step-{state.global_step:07d}", rng_states(rt))
        bar.close()
        loss, elements = global_sum(loss_sum, rt)
        return loss / max(elements, 1)

    def _micro_step(
        self, rows: np.ndarray, weight: float, step_rows: int, loss_sum: torch.Tensor
    ) -> float:
        """Forward and backward for this rank's share; the loss is scaled so gradients are a
        global mean. Adds (summed loss, elements) to `loss_sum`; returns the batch's mean loss."""
        device = self.rt.device
        inputs = {k: v.to(device) for k, v in collate(self.train.encoded, rows).items()}
        target = torch.from_numpy(self.train.y[rows]).to(device, torch.float32)
        with torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.net(**inputs)
        per_element = self.loss_fn(logits.float(), target)
        total = per_element.sum()
        # DDP averages gradients over ranks, so scale by world to get the mean over the global batch.
        scaled = weight * total * self.rt.world / (step_rows * target.shape[1])
        self.scaler.scale(scaled).backward()
        faults.point("train.backward")
        loss_sum += weight * torch.tensor([total.item(), per_element.numel()], dtype=torch.float64)
        return total.item() / max(per_element.numel(), 1)

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)  # clip the true gradients
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _validate(self, record: dict[str, Any]) -> np.ndarray:
        """Add validation loss and metrics (thresholds tuned on this epoch) to `record`."""
        probs, val_loss = self._evaluate()
        y_val = self.val.examples.y  # one row per text (val.y has one per window when chunking)
        train_y = self.train.examples.y
        cut = tuned_rule(y_val, probs, self.cfg.thresholds, self.cfg.rule(), train_y=train_y)
        hits = decide(probs, cut.thresholds, cut.rule)
        scores = multilabel_metrics(y_val, hits, self.train.examples.labels)
        record.update(val_loss=val_loss, **{k: v for k, v in scores.items() if k != "per_label"})
        return probs

    def _evaluate(self) -> tuple[np.ndarray, float]:
        """Validation probabilities per text (fresh each epoch) and the true mean loss; ranks
        share the work."""
        va, rt = self.val, self.rt
        self.model.eval()
        rows = np.arange(len(va.y))[rt.rank :: rt.world]
        logits = batched_logits(self.model, va.encoded, rows, self.dtype, rt.device)
        faults.point("train.validate")
        rows, logits = gather_rows(rows, logits, rt)
        if rt.distributed:  # the ranks' rows interleave
            logits = logits[np.argsort(rows)]
        val_loss = self._mean_loss(logits, va.y)
        probs = pool_windows(
            sigmoid(logits, out=logits), va.encoded.owner, va.encoded.n_texts, self.cfg.long_pool
        )
        self.model.train()
        return probs, val_loss

    @torch.no_grad()
    def _mean_loss(self, logits: np.ndarray, y: np.ndarray) -> float:
        """The loss per (row, label), averaged; a block of rows at a time: the loss and float
        targets of a whole validation split of many subjects would be two more copies of its
        logits."""
        total = 0.0
        for start in range(0, len(y), LOSS_ROWS):
            part = slice(start, start + LOSS_ROWS)
            found = torch.from_numpy(logits[part]).to(self.rt.device)
            target = torch.from_numpy(y[part]).to(self.rt.device, torch.float32)
            total += float(self.loss_fn(found, target).double().sum())
        return total / max(logits.size, 1)

    def _stopped(self) -> bool:
        """Early stopping on validation micro-F1 (never without a validation split)."""
        patience = self.cfg.patience
        return self.val is not None and patience > 0 and self.state.bad_epochs >= patience

    def _out_of_time(self, elapsed: float, longest: float) -> bool:
        """Whether the next epoch, if it lasts as long as the `longest` so far (seconds), would
        end past `max_minutes` of this process's training (`elapsed` so far). The first epoch
        always runs; every rank stops when one would."""
        if self.cfg.max_minutes is None or longest == 0:
            return False
        late = elapsed + longest > self.cfg.max_minutes * 60
        late = global_sum(torch.tensor([float(late)]), self.rt)[0]
        if late:
            self._say(
                f"stopping after epoch {self.state.epoch} of {self.cfg.epochs}: the next would end "
                f"past max_minutes {self.cfg.max_minutes:g}"
            )
        return bool(late)

    def _resume(self) -> None:
        """Every rank restores the newest complete checkpoint: weights, optimizer, its RNG, state."""
        directory = self.out / "checkpoints"
        found = ckpt.list_checkpoints(directory)
        if not found:
            self._say(f"no complete checkpoint in {directory}; starting from scratch")
            return
        self._say(f"resuming from {found[-1]}")
        parts = (self.model, self.optimizer, self.scheduler)
        # a state.json without a newer field (epoch_loss) keeps that field's default
        self.state = TrainState(**ckpt.load_checkpoint(found[-1], *parts, self.rt.rank))

    def _finish(self, best_probs: np.ndarray | None) -> TrainResult:
        state = self.state
        result = TrainResult(self.out, self.out / "model", state.history, state.best_epoch)
        self._finalize_model(result, best_probs)
        if self.rt.distributed:
            dist.barrier()  # other ranks return once the model folder is complete
        return result

    # ------------------------------------------------------------ rank 0: files and console

    @_main_only
    def _say(self, message: str) -> None:
        console.print(message)

    @_main_only
    def _start_folder(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        folder.restore_interrupted(self.out / "model")  # a kill mid-swap: the previous model
        # metrics.jsonl is the checkpoint's history: epochs logged after it are run again
        lines = [json.dumps(r) + "\n" for r in self.state.history]
        write_text_atomic(self.out / "metrics.jsonl", "".join(lines))
        save_config(self.cfg, self.out / "config.yaml")

    @_main_only
    def _save_epoch(
        self, record: dict, improved: bool, probs: np.ndarray | None, rngs: list[dict]
    ) -> None:
        """Log the epoch, keep the model when it is the best so far, and checkpoint."""
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if improved:
            with folder.staged(self.out / "model") as tmp:
                self.model.save(tmp)
                self.tokenizer.save_pretrained(tmp)
                folder.write(model_info(self.cfg, self.train.examples.labels, record), tmp)
            if probs is not None:
                with replace_on_success(self.out / "val_probs.npy") as tmp:
                    np.save(tmp, probs)
            faults.point("train.model_saved")
        self._checkpoint(f"epoch-{record['epoch']:03d}", rngs)

    @_main_only
    def _checkpoint(self, name: str, rngs: list[dict]) -> None:
        """Save checkpoint `name` (with every rank's `rngs`), then keep the newest `cfg.keep`
        and the best epoch's."""
        directory, state = self.out / "checkpoints", self.state
        parts = (self.model, self.optimizer, self.scheduler)
        ckpt.save_checkpoint(directory, name, *parts, dataclasses.asdict(state), rngs)
        ckpt.prune_checkpoints(directory, self.cfg.keep, f"epoch-{state.best_epoch:03d}")

    @_main_only
    def _finalize_model(self, result: TrainResult, best_probs: np.ndarray | None) -> None:
        """Tune thresholds on the best epoch's validation predictions (or take them from
        elsewhere) and record them in the model folder."""
        if self.val is not None and best_probs is None:  # the best epoch ran before a resume
            best_probs = np.load(self.out / "val_probs.npy", allow_pickle=False)
        val_ex = self.val.examples if self.val else None
        update = finalize_thresholds(
            self.cfg, result.model_dir, self.train.examples, val_ex, best_probs
        )
        info = folder.read(result.model_dir)
        info = dataclasses.replace(info, **update, best_epoch=self.state.best_epoch)
        faults.point("finalize.before_write")
        folder.write(info, result.model_dir)
        faults.point("finalize.after_write")
        result.metrics = info.metrics


def _encode(tokenizer, ex: Examples, cfg: TrainConfig) -> _Data:
    enc = encode(tokenizer, ex.texts, cfg.max_len, cfg.long == "chunk", cfg.chunk_stride())
    # one window per text: the texts' own labels, not a copy (60,000 x 18,645 subjects: 1.1 GB)
    y = ex.y if len(enc.owner) == enc.n_texts else ex.y[enc.owner]
    return _Data(encoded=enc, y=y, examples=ex)


def _train_attention(rt: Runtime) -> str | None:
    """On CPU, eager attention with mlabel's dropout: torch's CPU SDPA backward and dropout are
    slow there (bench/RESULTS.md, Training). Validation and inference keep SDPA, faster forward."""
    return dropout.ATTENTION if rt.device.type == "cpu" else None


def changed_settings(saved: TrainConfig, now: TrainConfig) -> list[str]:
    """The settings (`RESUMABLE` aside) that differ between a run's and a resume's, each with
    both values; the stride compared as the windows it makes: the one used, and only with
    `--long chunk` (a run saved before the stride became automatic recorded 64)."""
    before, after = (
        c.to_dict() | {"stride": c.chunk_stride() if c.long == "chunk" else None}
        for c in (saved, now)
    )
    return [
        f"{key} (run {before[key]!r}, now {value!r})"
        for key, value in after.items()
        if key not in RESUMABLE and before[key] != value
    ]


def _check_resumable(out: Path, cfg: TrainConfig) -> None:
    """Refuse to resume a run with settings that would change its training (`RESUMABLE` aside)."""
    path = out / "config.yaml"
    if not path.is_file() or not ckpt.list_checkpoints(out / "checkpoints"):
        return  # nothing to resume: the run starts afresh with these settings
    changed = changed_settings(from_dict(load_config(path), source=str(path)), cfg)
    if changed:
        raise ConfigError(
            f"{out}: cannot resume with other settings: {'; '.join(changed)}. Resume with the "
            f"run's settings ({path}) or train into a new folder"
        )
