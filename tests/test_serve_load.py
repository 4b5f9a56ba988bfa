"""The server under abuse: SIGTERM during load (a real `mlabel serve` process) and slow clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import running

from mlabel.limits import header_timeout_protocol
from mlabel.predict import load_predictor
from mlabel.serve import ServeSettings, create_app

ABSTRACT = "We prove a bound on the spectral gap of random regular graphs. " * 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_process(model: Path, log: Path, *options: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m mlabel serve MODEL` on a free port, up and answering; killed if still alive."""
    port = free_port()
    command = [sys.executable, "-m", "mlabel", "serve", str(model), "--port", str(port), *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _answers(url):
            assert proc.poll() is None, f"the server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the server did not start:\n{log.read_text()}"
            time.sleep(0.2)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_sigterm_finishes_requests_in_flight_then_exits_0(trained_tiny, tmp_path):
    log = tmp_path / "server.log"
    # A one-second batch window holds the requests in the server when SIGTERM comes.
    options = ("--log-level", "warning", "--batch-wait-ms", "1000", "--max-batch", "256")
    with serve_process(trained_tiny, log, *options) as (proc, url):
        answers: list[tuple[int, float]] = []

        def ask(i: int) -> None:
            texts = [f"{ABSTRACT} Variant {i}-{j}." for j in range(32)]
            response = httpx.post(f"{url}/predict", json={"texts": texts}, timeout=120)
            answers.append((response.status_code, time.monotonic()))

        clients = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/info", timeout=10).json()["batching"]["waiting"] < 2 * 32:
            assert time.monotonic() < deadline, "the two requests never waited together"
            time.sleep(0.01)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for client in clients:
            client.join(120)
        code = proc.wait(timeout=120)
    assert [status for status, _ in answers] == [200] * 2, log.read_text()
    assert all(done > signalled for _, done in answers), "every request was in flight"
    assert code == 0, log.read_text()


# ----------------------------------------------------------------------------- slow clients
READ_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def live(trained_tiny) -> Iterator[tuple[str, int]]:
    """uvicorn in a thread as `mlabel serve` runs it (header deadline included): (url, port)."""
    settings = ServeSettings(read_timeout_s=READ_TIMEOUT_S)
    app = create_app(load_predictor(trained_tiny, engine="torch"), settings)
    with running(app, http=header_timeout_protocol(READ_TIMEOUT_S)) as url:
        yield url, int(url.rsplit(":", 1)[1])


def latencies(url: str, n: int) -> list[float]:
    """Seconds for each of `n` one-text requests, each on a new connection; all must be 200."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        response = httpx.post(f"{url}/predict", json={"texts": [f"text {i}"]}, timeout=30)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200
    return times


class Slowloris:
    """Sockets that each send one request a byte at a time: half trickle a header line, half a
    body (after complete headers announcing 10,000 bytes)."""

    def __init__(self, port: int, count: int):
        head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        body_head = f"{head}Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
        self.sockets = []
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(body_head.encode() if i % 2 == 0 else f"{head}X-Slow: ".encode())
            self.sockets.append(sock)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stopped.wait(0.05):
            for sock in self.sockets:
                try:
                    sock.sendall(b"a")
                except OSError:
                    pass  # closed by the server

    def answers(self) -> list[bytes]:
        """What each socket reads now: b"" when the server closed it without a word, "open"
        when it is still waiting."""
        self.stopped.set()
        self.thread.join()
        out = []
        for sock in self.sockets:
            sock.settimeout(0.5)
            try:
                out.append(sock.recv(4096))
            except TimeoutError:
                out.append(b"open")
            except OSError:  # reset
                out.append(b"")
            sock.close()
        return out


def test_slow_clients_do_not_slow_the_others_and_are_cut_off(live):
    url, port = live
    latencies(url, 3)  # warm-up
    usual = max(latencies(url, 5))
    loris = Slowloris(port, 50)
    time.sleep(0.5)
    during = latencies(url, 10)
    time.sleep(READ_TIMEOUT_S + 0.5)  # past the read deadline of every slow socket
    answers = loris.answers()
    assert max(during) < max(2.0, 5 * usual), (during, usual)
    bodies, heads = answers[::2], answers[1::2]
    assert all(a.startswith(b"HTTP/1.1 408") for a in bodies), bodies[:3]
    assert b'"the request body did not arrive within 1.5 s"' in bodies[0]
    assert heads == [b""] * len(heads), "a connection trickling its headers is closed, unanswered"
    assert max(latencies(url, 3)) < 2.0
