"""schemathesis fuzzes every operation of the live server's OpenAPI schema, with the API key and
without it: no answer is a 5xx and the server stays up. `bench/serve_fuzz.py` is the long run."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import running

from mlabel.limits import header_timeout_protocol
from mlabel.predict import load_predictor
from mlabel.serve import ServeSettings, create_app

pytest.importorskip("schemathesis")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from serve_fuzz import fuzz  # noqa: E402

KEY = "fuzz-key"
EXAMPLES = 15  # per operation and mode (11 operations: about 300 requests a pass)
SENT: Counter = Counter()  # requests made, by whether they carried the key


@pytest.fixture(scope="module")
def live(trained_tiny) -> Iterator[str]:
    """uvicorn in a thread, serving the tiny model with an API key, as `mlabel serve` does."""
    predictor = load_predictor(trained_tiny, engine="torch")
    app = create_app(predictor, ServeSettings(api_key=KEY, max_texts=16))
    with running(app, http=header_timeout_protocol(30)) as url:
        yield url


@pytest.mark.parametrize("key", [KEY, None], ids=["with the key", "without a key"])
def test_no_operation_answers_5xx(live, key):
    sent, failures = fuzz(live, key, EXAMPLES)
    SENT[key is not None] += sent
    assert not failures, "\n".join(failures)
    assert sent >= EXAMPLES, "the fuzzer ran"


def test_the_server_survived_the_fuzzing(live):
    assert httpx.get(f"{live}/health", timeout=10).json() == {"status": "ok"}
    answer = httpx.post(
        f"{live}/predict", json={"texts": ["a"]}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert answer.status_code == 200
    print(f"schemathesis requests with the key {SENT[True]}, without {SENT[False]}")
