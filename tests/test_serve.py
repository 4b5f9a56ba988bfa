"""The HTTP server through FastAPI's TestClient: endpoints, limits, API key, micro-batching."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import re
import threading
import time
import urllib.error
import urllib.request

import httpx
import numpy as np
import pytest
from conftest import running
from fastapi.testclient import TestClient

from mlabel.batching import MicroBatcher, Unavailable
from mlabel.cli import build_parser
from mlabel.errors import ConfigError
from mlabel.limits import BodyLimit
from mlabel.predict import load_predictor
from mlabel.serve import ServeSettings, create_app

ABSTRACT = "We prove a bound on the spectral gap of random regular graphs."
TITLE = "Spectral gaps of random graphs"


@pytest.fixture(scope="module")
def predictor(trained_tiny):
    return load_predictor(trained_tiny, engine="torch", device="cpu")  # GPU or not: /info says cpu


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, ServeSettings())) as c:
        yield c


def small_client(predictor, **settings) -> TestClient:
    return TestClient(create_app(predictor, ServeSettings(**settings)))


def post_raw(client: TestClient, body: bytes, content_type: str = "application/json"):
    return client.post("/predict", content=body, headers={"content-type": content_type})


# ----------------------------------------------------------------------------- endpoints


def test_health_labels_info(client, predictor):
    assert client.get("/health").json() == {"status": "ok"}
    labels = client.get("/labels").json()
    assert labels["labels"] == predictor.labels
    assert list(labels["thresholds"]) == predictor.labels
    info = client.get("/info").json()
    assert info["labels"] == predictor.labels
    assert info["text_cols"] == ["TITLE", "ABSTRACT"]
    assert info["engine"] == "torch" and info["device"] == "cpu"
    assert info["kind"] == "transformer"
    assert "micro_f1" in info["metrics"]
    assert "torch" in info["versions"]
    assert info["limits"] == {
        "max_body_bytes": 2 * 1024 * 1024,
        "max_texts": 256,
        "max_chars": 100_000,
        "max_queue": 4096,
    }
    assert info["auth"] is False


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert "<script" in html and "/predict" in html and "/info" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), (
        "the page loads nothing external"
    )
    assert "@import" not in html and "url(http" not in html


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/labels", "/info", "/health"} <= set(schema["paths"])


def test_predict_texts_match_the_predictor(client, predictor):
    texts = [f"{TITLE}\n{ABSTRACT}", "Option pricing with stochastic volatility"]
    data = client.post("/predict", json={"texts": texts}).json()
    expected = predictor.predict_proba(texts)
    assert len(data["results"]) == 2
    for result, probs in zip(data["results"], expected):
        assert result["id"] is None
        assert list(result["probabilities"]) == predictor.labels
        got = np.array(list(result["probabilities"].values()))
        np.testing.assert_allclose(got, probs, atol=1e-4)
        hits = [
            label for label, p, t in zip(predictor.labels, probs, predictor.thresholds) if p >= t
        ]
        assert result["labels"] == hits
    assert list(data["thresholds"].values()) == pytest.approx(predictor.thresholds.tolist())


def test_items_match_text_columns_case_insensitively(client):
    by_text = client.post("/predict", json={"texts": [f"{TITLE}\n{ABSTRACT}"]}).json()
    item = {"ID": "a-1", "title": f"  {TITLE} ", "Abstract": ABSTRACT}
    by_item = client.post("/predict", json={"items": [item]}).json()
    result = by_item["results"][0]
    assert result["id"] == "a-1"
    assert result["probabilities"] == by_text["results"][0]["probabilities"]
    only_abstract = client.post("/predict", json={"items": [{"id": 7, "ABSTRACT": ABSTRACT}]})
    assert only_abstract.status_code == 200
    assert only_abstract.json()["results"][0]["id"] == 7


def test_threshold_override(client, predictor):
    everything = client.post("/predict", json={"texts": [ABSTRACT], "threshold": 0.0}).json()
    assert everything["results"][0]["labels"] == predictor.labels
    assert set(everything["thresholds"].values()) == {0.0}
    nothing = client.post("/predict", json={"texts": [ABSTRACT], "threshold": 1.0}).json()
    assert nothing["results"][0]["labels"] == []


def test_top_k_and_min_labels_override_the_rule(client, predictor):
    def labels(**rule) -> list[list[str]]:
        response = client.post("/predict", json={"texts": [ABSTRACT, TITLE], **rule})
        assert response.status_code == 200, response.text
        return [r["labels"] for r in response.json()["results"]]

    probs = predictor.predict_proba([ABSTRACT, TITLE])
    best = [[predictor.labels[j] for j in sorted(np.argsort(-row)[:2])] for row in probs]
    assert labels(threshold=0.0, top_k=2) == best  # label lists keep the labels' order
    assert labels(threshold=1.0, min_labels=1) == [
        [predictor.labels[row.argmax()]] for row in probs
    ]
    assert labels(threshold=0.0, top_k=0) == [predictor.labels] * 2
    response = client.post("/predict", json={"texts": ["a"], "top_k": 1, "min_labels": 2})
    assert response.status_code == 422 and "min_labels (2) is above top_k (1)" in response.text
    response = client.post("/predict", json={"texts": ["a"], "top_k": -1})
    assert response.status_code == 422 and "top_k" in response.text


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "body, where",
    [
        ({}, "either `texts`"),
        ({"texts": ["a"], "items": [{"title": "b"}]}, "either `texts`"),
        ({"texts": []}, "texts is empty"),
        ({"items": []}, "items is empty"),
        ({"texts": "just a string"}, "texts: Input should be a valid list"),
        ({"texts": ["ok", 3]}, "texts[1]: Input should be a valid string"),
        ({"texts": ["ok", None]}, "texts[1]"),
        ({"texts": ["ok", "   "]}, "texts[1]: the text is empty"),
        ({"items": ["title"]}, "items[0]: Input should be a valid dictionary"),
        ({"items": [{"title": "x"}, {"titel": "y"}]}, "items[1]: unknown field 'titel'"),
        ({"items": [{"title": 5}]}, "items[0].title: expected a string, got int"),
        ({"items": [{"title": "a", "TITLE": "b"}]}, "items[0]: TITLE is given twice"),
        ({"items": [{"ID": "a", "id": "b", "title": "x"}]}, "items[0]: id is given twice"),
        ({"items": [{"id": [1], "title": "x"}]}, "items[0].id: expected a string or an integer"),
        ({"items": [{"id": 1, "title": "", "abstract": None}]}, "items[0]: the text is empty"),
        ({"texts": ["a"], "threshold": 1.5}, "threshold: Input should be less than or equal to 1"),
        ({"texts": ["a"], "threshold": "high"}, "threshold"),
        ({"texts": ["a"], "text": "b"}, "text: Extra inputs are not permitted"),
        ([["a"]], "body: Input should be a valid dictionary"),
    ],
)
def test_bad_bodies_get_422_saying_where(client, body, where):
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert where in response.json()["detail"]


@pytest.mark.parametrize(
    "raw, where",
    [
        (b'{"texts": ["a",', "malformed JSON: Expecting value at line 1 column 16"),
        (b'{"texts":\n ["a" "b"]}', "malformed JSON: Expecting ',' delimiter at line 2 column 7"),
        (b'{"texts": ["\xc3\x28"]}', "error parsing the body"),  # not UTF-8
    ],
)
def test_malformed_json_is_400(client, raw, where):
    response = post_raw(client, raw)
    assert response.status_code == 400
    assert where in response.json()["detail"]


def test_lone_surrogate_is_422(client):
    # Valid JSON, but no tokenizer takes it; it must not fail the batch it would join.
    response = post_raw(client, b'{"texts": ["ok", "a\\ud800b"]}')
    assert response.status_code == 422
    assert "texts[1]: character 2 is an unpaired surrogate" in response.json()["detail"]


def test_deeply_nested_json_is_4xx(client):
    body = b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with TestClient(client.app, raise_server_exceptions=False) as c:
        assert 400 <= post_raw(c, body).status_code < 500


def test_wrong_content_type_or_no_body(client):
    response = post_raw(client, b'{"texts": ["a"]}', "text/plain")
    assert response.status_code == 422
    assert "Content-Type: application/json" in response.json()["detail"]
    assert post_raw(client, b"").status_code == 422


def test_limits(predictor):
    with small_client(predictor, max_texts=3, max_chars=50, max_body_bytes=2000) as c:
        too_many = c.post("/predict", json={"texts": ["a"] * 4})
        assert too_many.status_code == 422
        assert too_many.json()["detail"] == "texts has 4 entries, the limit is 3"
        too_long = c.post("/predict", json={"items": [{"title": "t", "abstract": "x" * 49}]})
        assert too_long.status_code == 422
        assert "items[0]: the text has 51 characters, the limit is 50" in too_long.json()["detail"]
        too_big = c.post("/predict", json={"texts": ["x" * 3000]})
        assert too_big.status_code == 413
        assert "2,000 bytes" in too_big.json()["detail"]
        chunked = c.post("/predict", content=iter([b'{"texts": ["', b"x" * 3000, b'"]}']))
        assert chunked.status_code == 413
        assert c.post("/predict", json={"texts": ["x" * 50]}).status_code == 200
        assert c.get("/health").status_code == 200


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="max_texts is 0"):
        ServeSettings(max_texts=0)
    with pytest.raises(ConfigError, match="api_key is empty"):
        ServeSettings(api_key=" ")
    with pytest.raises(ConfigError, match=r"max_queue is 10, expected at least max_texts \(256\)"):
        ServeSettings(max_queue=10)
    with pytest.raises(ConfigError, match="read_timeout_s is 0"):
        ServeSettings(read_timeout_s=0)


# ----------------------------------------------------------------------------- oversized bodies
OVER_LIMIT = "request body over the limit of 2,097,152 bytes"


@pytest.fixture(scope="module")
def live_url(predictor):
    """`/predict` on uvicorn in a thread: only a real socket shows whether a client reads a 413."""
    with running(create_app(predictor)) as url:
        yield f"{url}/predict"


@pytest.mark.parametrize("megabytes", [3, 5, 50])
def test_oversized_body_gets_413_not_a_reset(live_url, megabytes):
    """urllib and httpx send the whole body before they read the answer, unlike curl."""
    body = b'{"texts": ["' + b"x" * (megabytes * 10**6) + b'"]}'
    headers = {"Content-Type": "application/json"}
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(urllib.request.Request(live_url, body, headers), timeout=30)
    assert answer.value.code == 413
    assert json.loads(answer.value.read())["detail"] == OVER_LIMIT
    chunked = (body[i : i + 2**16] for i in range(0, len(body), 2**16))  # no Content-Length
    for content in (body, chunked):
        response = httpx.post(live_url, content=content, headers=headers, timeout=30)
        assert response.status_code == 413 and response.json()["detail"] == OVER_LIMIT
    assert httpx.post(live_url, json={"texts": ["a"]}, timeout=30).status_code == 200


def body_limit_reads(receive, headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """The status BodyLimit (limit 1,000 bytes) answers a fake client, and its receive() calls."""
    sent, calls = [], 0

    async def counted():
        nonlocal calls
        calls += 1
        return await receive()

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        raise AssertionError("an oversized body reached the app")

    limit = BodyLimit(app, max_bytes=1000)
    asyncio.run(limit({"type": "http", "headers": headers}, counted, send))
    return sent[0]["status"], calls


async def endless_body():
    return {"type": "http.request", "body": b"x" * 2**20, "more_body": True}


def test_body_limit_stops_discarding_at_its_bounds(monkeypatch):
    # A streamed body is read no further than 64 MiB, a declared larger one not at all.
    status, calls = body_limit_reads(endless_body, [])
    assert status == 413 and calls == 65
    assert body_limit_reads(endless_body, [(b"content-length", b"67108865")]) == (413, 0)
    # A client waiting for `100 Continue` never sends the body.
    expect = [(b"content-length", b"5000"), (b"expect", b"100-continue")]
    assert body_limit_reads(endless_body, expect) == (413, 0)

    async def trickle():
        await asyncio.sleep(0.01)
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}

    monkeypatch.setattr(BodyLimit, "DISCARD_S", 0.2)
    start = time.monotonic()
    assert body_limit_reads(trickle, [(b"content-length", b"5000000")])[0] == 413
    assert time.monotonic() - start < 1


# ----------------------------------------------------------------------------- API key


def test_api_key(predictor):
    with small_client(predictor, api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200  # the page loads, then asks for the key
        assert c.get("/docs").status_code == 200
        for path in ("/info", "/labels"):
            missing = c.get(path)
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer KEY" in missing.json()["detail"]
        wrong = c.post("/predict", json={"texts": ["a"]}, headers=bearer("nope"))
        assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong API key"
        assert c.post("/predict", json={"texts": ["a"]}).status_code == 401
        good = c.post("/predict", json={"texts": ["a"]}, headers=bearer("s3cret"))
        assert good.status_code == 200
        assert c.get("/info", headers=bearer("s3cret")).json()["auth"] is True


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ----------------------------------------------------------------------------- micro-batching


def test_concurrent_requests_are_merged_and_answered_correctly(predictor):
    slow = copy.copy(predictor)  # a slow model call lets the queue fill while it runs
    slow.predict_proba = lambda texts: (time.sleep(0.05), predictor.predict_proba(texts))[1]
    texts = [f"{ABSTRACT} Variant {i}." for i in range(12)]
    results: dict[int, dict] = {}
    start = threading.Barrier(len(texts))
    with small_client(slow, batch_wait_ms=20, max_batch=64) as c:

        def ask(i: int) -> None:
            start.wait()
            results[i] = c.post("/predict", json={"texts": [texts[i], "second text"]}).json()

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = c.get("/info").json()["batching"]
    assert stats["requests"] == len(texts) and stats["texts"] == 2 * len(texts)
    assert stats["batches"] < len(texts), "some requests were merged"
    expected = predictor.predict_proba(texts)
    for i, probs in enumerate(expected):
        got = list(results[i]["results"][0]["probabilities"].values())
        np.testing.assert_allclose(got, probs, atol=1e-4)


def slow_echo(texts: list[str]) -> np.ndarray:
    """A fake model: one row per text holding its length."""
    if any("boom" in t for t in texts):
        raise RuntimeError("boom")
    time.sleep(0.02)
    return np.array([[len(t)] for t in texts], dtype=np.float32)


def test_batcher_respects_max_batch_and_keeps_order():
    batcher = MicroBatcher(slow_echo, max_batch=8, wait_ms=30)
    jobs = [["x" * (i + 1)] * 3 for i in range(10)] + [["y"] * 20]
    futures = [batcher.submit(job) for job in jobs]
    results = [f.result(timeout=30) for f in futures]
    batcher.close()
    for job, result in zip(jobs, results):
        assert result[:, 0].tolist() == [len(t) for t in job]
    assert batcher.stats["largest_batch"] == 20  # a request above max_batch runs alone
    assert batcher.stats["batches"] < len(jobs)
    assert batcher.stats["texts"] == 50


def test_without_a_wait_requests_queued_behind_a_running_batch_are_merged():
    started, gate = threading.Event(), threading.Event()

    def gated(texts: list[str]) -> np.ndarray:
        started.set()
        gate.wait(30)
        return slow_echo(texts)

    batcher = MicroBatcher(gated, max_batch=64, wait_ms=ServeSettings().batch_wait_ms)
    first = batcher.submit(["a"])
    assert started.wait(30)  # the model is busy with the first request alone
    queued = [batcher.submit(["b" * i]) for i in range(1, 6)]
    gate.set()
    assert first.result(timeout=30)[0, 0] == 1
    assert [f.result(timeout=30)[0, 0] for f in queued] == [1, 2, 3, 4, 5]
    batcher.close()
    assert batcher.stats["batches"] == 2 and batcher.stats["largest_batch"] == 5


@pytest.mark.parametrize("wait_ms", [0, 1])
def test_batcher_never_waits_past_its_window(wait_ms):
    batcher = MicroBatcher(slow_echo, max_batch=64, wait_ms=wait_ms)
    for _ in range(20):  # a lone request is answered without another one arriving
        assert batcher.submit(["abc"]).result(timeout=5)[0, 0] == 3
    batcher.close()


def test_batcher_isolates_a_failing_request():
    batcher = MicroBatcher(slow_echo, max_batch=64, wait_ms=50)
    good, bad, also_good = (batcher.submit(t) for t in (["a"], ["boom"], ["ccc"]))
    assert good.result(timeout=30)[0, 0] == 1
    assert also_good.result(timeout=30)[0, 0] == 3
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(timeout=30)
    assert batcher.submit(["after"]).result(timeout=30)[0, 0] == 5
    batcher.close()


def test_full_queue_answers_503_with_retry_after_and_queued_requests_finish(predictor):
    started, gate = threading.Event(), threading.Event()
    slow = copy.copy(predictor)  # the model call blocks until the test lets it go
    slow.predict_proba = lambda texts: (
        started.set(),
        gate.wait(30),
        predictor.predict_proba(texts),
    )[2]
    answers = []
    with small_client(slow, max_texts=4, max_queue=8, max_batch=4, batch_wait_ms=0) as c:
        running = threading.Thread(
            target=lambda: answers.append(c.post("/predict", json={"texts": ["a"]}))
        )
        running.start()
        assert started.wait(30)
        batcher = c.app.state.batcher
        queued = [batcher.submit(["b"] * 4), batcher.submit(["c"] * 4)]  # 8 texts wait
        refused = c.post("/predict", json={"texts": ["d"]})
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert "8 texts are waiting (the limit is 8)" in refused.json()["detail"]
        gate.set()
        running.join(30)
        assert [f.result(timeout=30).shape for f in queued] == [(4, len(predictor.labels))] * 2
        assert answers[0].status_code == 200
        assert c.post("/predict", json={"texts": ["e"]}).status_code == 200
        assert c.get("/info").json()["batching"]["refused"] == 1


def test_batcher_close_finishes_the_queue_then_refuses():
    batcher = MicroBatcher(slow_echo, max_batch=2, wait_ms=0)
    futures = [batcher.submit(["x" * i]) for i in range(1, 11)]
    batcher.close()
    assert [f.result(timeout=0)[0, 0] for f in futures] == list(range(1, 11))
    with pytest.raises(Unavailable, match="shutting down"):
        batcher.submit(["late"])


def test_retry_after_follows_the_measured_throughput():
    batcher = MicroBatcher(slow_echo, max_batch=64, wait_ms=0, max_queue=10)
    assert batcher.retry_after_s() == 1  # nothing measured yet
    batcher.submit(["a"] * 10).result(timeout=30)
    batcher._waiting = 10**6  # as if a million texts were queued: capped at a minute
    assert batcher.retry_after_s() == 60
    batcher._waiting = 0
    batcher.close()


# ----------------------------------------------------------------------------- command line


def test_cli_builds_settings(monkeypatch):
    import mlabel.serve

    seen = {}
    monkeypatch.setattr(mlabel.serve, "serve", lambda *a, **k: seen.update(args=a, kwargs=k))
    monkeypatch.setenv("MLABEL_API_KEY", "from-env")
    argv = ["serve", "MODEL", "--port", "9001", "--max-texts", "8", "--max-queue", "100"]
    args = build_parser().parse_args([*argv, "--read-timeout-s", "2.5"])
    assert args.run(args) == 0
    model_dir, settings = seen["args"]
    assert model_dir == "MODEL"
    expected = ServeSettings(port=9001, max_texts=8, max_queue=100, read_timeout_s=2.5)
    assert settings == dataclasses.replace(expected, api_key="from-env")
    assert seen["kwargs"] == {"engine": "auto", "device": "auto", "log_level": "info"}
    args = build_parser().parse_args(["serve", "MODEL", "--api-key", "given"])
    args.run(args)
    assert seen["args"][1].api_key == "given" and seen["args"][1].host == "127.0.0.1"
    assert seen["args"][1].warm_up  # on unless asked off
    args = build_parser().parse_args(["serve", "MODEL", "--no-warm-up"])
    args.run(args)
    assert not seen["args"][1].warm_up
