"""Load test of `mlabel serve` on loopback, next to offline `predict_proba` on the same texts.

    python bench/serve.py                          # trains a quick model first (a few minutes)
    python bench/serve.py --model runs/x/model     # or serve a model folder you have
    python bench/serve.py --requests 200 --concurrency 1 8   # a quick check
    python bench/serve.py --clients 64 256 --seconds 300     # floods: errors, p99, server RSS
    python bench/serve.py --first-request 5 --engine openvino   # the first request after a start

Each client thread keeps one connection open and sends one abstract per request. Clients,
server and the offline run share this machine's cores, so compare rows of one run only.
With --clients, each level is a flood of that many concurrent clients (aiohttp, one connection
each) for --seconds: answers other than 200 and 429/503 (refusals by design) count as errors,
and the server's RSS is sampled every second (first, peak and last are printed).
With --first-request N, the server is started N times with its warm-up and N times with
--no-warm-up, taking turns, and each start's first and second one-text requests are timed.
Without --model, a model is trained once (default encoder, 1 epoch, max_len 128, --train-rows
rows) into bench/_work/serve/ and reused by later runs; the texts sent are rows after those.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import benchkit
import httpx
import numpy as np
import psutil
from benchkit import DATA, TEXT_COLS, free_port, wait_until_serving

from mlabel import folder
from mlabel.data import join_texts
from mlabel.predict import load_predictor
from mlabel.tables import read_table

WORK = benchkit.WORK / "serve"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="model folder (default: train a quick one)")
    p.add_argument("--data", default=str(DATA), help="table with TITLE and ABSTRACT columns")
    p.add_argument("--train-rows", type=int, default=800, help="rows to train the quick model on")
    p.add_argument("--texts", type=int, default=500, help="distinct texts to send (default 500)")
    p.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--clients", type=int, nargs="+", help="flood with these many clients")
    p.add_argument("--seconds", type=float, default=300, help="length of each flood")
    p.add_argument("--texts-per-request", type=int, default=1, help="in floods (default 1)")
    p.add_argument("--max-queue", type=int, help="the server's --max-queue (default: its own)")
    p.add_argument("--first-request", type=int, metavar="N", help="time first requests, N starts")
    p.add_argument("--engine", default="auto")
    p.add_argument("--batch-wait-ms", type=float, default=0.0, help="the server's (default 0)")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def quick_model(data: str, rows: int) -> Path:
    """Train (once) the quick model the load test serves."""
    from mlabel.classifier import fit_model
    from mlabel.config import TrainConfig

    model_dir = WORK / "model"
    if (model_dir / "mlabel.json").exists():
        return model_dir
    WORK.mkdir(parents=True, exist_ok=True)
    train_csv = WORK / "train.csv"
    read_table(data).head(rows).to_csv(train_csv, index=False)
    print(f"training a quick model on {rows} rows into {WORK} (1 epoch, max_len 128)")
    cfg = TrainConfig(text_cols=TEXT_COLS, epochs=1, max_len=128)
    return Path(fit_model(cfg, train_csv, WORK).model_dir)


def bench_texts(data: str, skip: int, n: int, text_cols: list[str]) -> list[str]:
    """`n` texts from rows after the first `skip` (the quick model's training rows)."""
    table = read_table(data)
    rows = table.iloc[skip : skip + n] if len(table) >= skip + n else table.tail(n)
    return join_texts(rows, text_cols, Path(data).name)


def offline_docs_per_s(model: Path, engine: str, texts: list[str]) -> tuple[float, str]:
    """Docs/s of one predict_proba call on all texts (after a warm-up), and the engine."""
    predictor = load_predictor(model, engine)
    predictor.predict_proba(texts[:16])
    start = time.perf_counter()
    predictor.predict_proba(texts)
    return len(texts) / (time.perf_counter() - start), predictor.engine


def start_server(
    model: Path, args: argparse.Namespace, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "mlabel", "serve", str(model), "--port", str(port), *extra]
    command += ["--engine", args.engine, "--log-level", "warning"]
    command += ["--batch-wait-ms", str(args.batch_wait_ms), "--max-batch", str(args.max_batch)]
    if args.max_queue:
        command += ["--max-queue", str(args.max_queue)]
    proc = subprocess.Popen(command)
    return wait_until_serving(proc, f"http://127.0.0.1:{port}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def load_test(url: str, texts: list[str], requests: int, clients: int) -> dict:
    """Send `requests` one-text requests from `clients` threads; latency and error counts."""
    counter = itertools.count()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while (i := next(counter)) < requests:
                start = time.perf_counter()
                try:
                    ok = http.post(f"{url}/predict", json={"texts": [texts[i % len(texts)]]})
                    failed = ok.status_code != 200
                except httpx.HTTPError:
                    failed = True
                with lock:
                    latencies.append(time.perf_counter() - start)
                    errors[0] += failed

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": requests,
        "requests_per_s": requests / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors": errors[0],
    }


def batching(url: str) -> dict:
    return httpx.get(f"{url}/info", timeout=10).json()["batching"]


def run_levels(url: str, texts: list[str], args: argparse.Namespace) -> list[dict]:
    load_test(url, texts, 20, 2)  # warm-up
    results = []
    for clients in args.concurrency:
        before = batching(url)
        row = load_test(url, texts, args.requests, clients)
        after = batching(url)
        batches = after["batches"] - before["batches"]
        row["texts_per_batch"] = (after["texts"] - before["texts"]) / max(batches, 1)
        results.append(row)
        print_row(row)
    return results


def print_row(row: dict) -> None:
    print(
        f"{row['clients']:>7}  {row['requests_per_s']:>10.1f}  {row['p50_ms']:>8.1f}  "
        f"{row['p99_ms']:>8.1f}  {row['errors']:>6}  {row['texts_per_batch']:>13.1f}"
    )


# ----------------------------------------------------------------------------- floods
BUSY = {429, 503}  # refusals by design, not errors


class RssSampler:
    """The resident memory of a process, sampled every second in a thread."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.samples = [self.process.memory_info().rss]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stopped.wait(1.0):
            self.samples.append(self.process.memory_info().rss)

    def stop(self) -> dict:
        self.stopped.set()
        self.thread.join()
        mib = [s / 2**20 for s in self.samples]
        return {"rss_first_mib": mib[0], "rss_peak_mib": max(mib), "rss_last_mib": mib[-1]}


async def _flood(
    url: str, texts: list[str], clients: int, seconds: float, per_request: int
) -> tuple[list, Counter]:
    """Latencies of the 200 answers, and the count of each outcome (status or exception).

    A refused client asks again at once: a hostile flood ignores Retry-After. The clients use
    aiohttp: httpx's AsyncClient itself fails a few requests with ReadError at this concurrency
    (encode/httpx#3348), which would count as server errors.
    """
    latencies: list[float] = []
    outcomes: Counter = Counter()
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:

        async def client(i: int) -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                batch = [texts[(i + k) % len(texts)] for k in range(per_request)]
                try:
                    async with http.post("/predict", json={"texts": batch}) as answer:
                        await answer.read()
                        outcome: int | str = answer.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                if outcome == 200:
                    latencies.append(time.perf_counter() - start)
                outcomes[outcome] += 1
                i += clients

        await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, outcomes


def flood(url: str, pid: int, texts: list[str], clients: int, args: argparse.Namespace) -> dict:
    """One flood: throughput, latency, refusals, errors and the server's RSS."""
    rss = RssSampler(pid)
    start = time.perf_counter()
    run = _flood(url, texts, clients, args.seconds, args.texts_per_request)
    latencies, outcomes = asyncio.run(run)
    elapsed = time.perf_counter() - start
    ms = np.array(latencies or [np.nan]) * 1000
    errors = {str(k): v for k, v in outcomes.items() if k != 200 and k not in BUSY}
    return {
        "clients": clients,
        "seconds": elapsed,
        "answered": outcomes[200],
        "requests_per_s": outcomes[200] / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "busy": sum(outcomes[k] for k in BUSY),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        **rss.stop(),
    }


def run_floods(url: str, pid: int, texts: list[str], args: argparse.Namespace) -> list[dict]:
    load_test(url, texts, 20, 2)  # warm-up
    print(
        f"{'clients':>7}  {'seconds':>7}  {'answered':>8}  {'req/s':>7}  {'p50 ms':>7}  "
        f"{'p99 ms':>7}  {'429/503':>7}  {'errors':>6}  RSS MiB first/peak/last"
    )
    rows = []
    for clients in args.clients:
        row = flood(url, pid, texts, clients, args)
        rows.append(row)
        print(
            f"{row['clients']:>7}  {row['seconds']:>7.0f}  {row['answered']:>8}  "
            f"{row['requests_per_s']:>7.1f}  {row['p50_ms']:>7.1f}  {row['p99_ms']:>7.1f}  "
            f"{row['busy']:>7}  {row['errors']:>6}  "
            f"{row['rss_first_mib']:.0f}/{row['rss_peak_mib']:.0f}/{row['rss_last_mib']:.0f}",
            flush=True,
        )
        if row["error_kinds"]:
            print(f"         errors: {row['error_kinds']}")
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = Path(args.model) if args.model else quick_model(args.data, args.train_rows)
    text_cols = folder.read(model).text_cols
    texts = bench_texts(args.data, args.train_rows, args.texts, text_cols)
    if args.clients:
        return main_floods(model, texts, args)
    if args.first_request:
        return main_first_request(model, texts, args)
    docs_per_s, engine = offline_docs_per_s(model, args.engine, texts)
    print(f"model {model}, engine {engine}, {len(texts)} distinct texts")
    print(f"offline predict_proba: {docs_per_s:.1f} docs/s (one call on all texts)\n")
    proc, url = start_server(model, args)
    try:
        print(
            f"{'clients':>7}  {'requests/s':>10}  {'p50 ms':>8}  {'p99 ms':>8}  {'errors':>6}  texts/batch"
        )
        results = run_levels(url, texts, args)
    finally:
        stop(proc)
    best = max(r["requests_per_s"] for r in results)
    print(f"\nbest served throughput is {best / docs_per_s:.2f}x offline predict_proba")
    if args.json:
        summary = {"model": str(model), "engine": engine, "offline_docs_per_s": docs_per_s}
        Path(args.json).write_text(json.dumps({**summary, "levels": results}, indent=2))


def main_floods(model: Path, texts: list[str], args: argparse.Namespace) -> None:
    print(benchkit.machine())
    per_request = f"{args.texts_per_request} per request"
    print(f"model {model}, engine {args.engine}, {len(texts)} distinct texts, {per_request}")
    proc, url = start_server(model, args)
    try:
        rows = run_floods(url, proc.pid, texts, args)
    finally:
        stop(proc)
    print(f"server exit status after SIGTERM: {proc.returncode}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(model), "floods": rows}, indent=2))
    if any(row["errors"] for row in rows) or proc.returncode != 0:
        raise SystemExit(1)


def first_requests(model: Path, texts: list[str], args: argparse.Namespace, warm: bool) -> dict:
    """Start a server (with its warm-up or without), time its first two one-text requests."""
    start = time.perf_counter()
    proc, url = start_server(model, args, () if warm else ("--no-warm-up",))
    row = {"start_s": time.perf_counter() - start}
    try:
        with httpx.Client(timeout=300) as http:  # made before the clock starts
            for name, text in zip(("first_ms", "second_ms"), texts):
                start = time.perf_counter()
                http.post(f"{url}/predict", json={"texts": [text]}).raise_for_status()
                row[name] = (time.perf_counter() - start) * 1000
    finally:
        stop(proc)
    return row


def main_first_request(model: Path, texts: list[str], args: argparse.Namespace) -> None:
    print(benchkit.machine())
    print(f"model {model}, engine {args.engine}: one-text requests right after each start")
    rows: dict[bool, list[dict]] = {True: [], False: []}
    for i in range(args.first_request):
        for warm in (True, False):
            row = first_requests(model, texts[2 * i : 2 * i + 2], args, warm)
            rows[warm].append(row)
            name = "warm-up   " if warm else "no warm-up"
            print(
                f"start {i + 1}, {name}: serving after {row['start_s']:.1f} s, first request"
                f" {row['first_ms']:.1f} ms, second {row['second_ms']:.1f} ms"
            )
    median = {w: {k: np.median([r[k] for r in rows[w]]) for k in rows[w][0]} for w in rows}
    for warm, name in ((True, "warm-up"), (False, "no warm-up")):
        m = median[warm]
        print(
            f"median, {name}: serving after {m['start_s']:.1f} s, first request"
            f" {m['first_ms']:.1f} ms, second {m['second_ms']:.1f} ms"
        )
    print(
        f"first request, no warm-up / warm-up: {median[False]['first_ms'] / median[True]['first_ms']:.2f}"
    )


if __name__ == "__main__":
    main()
