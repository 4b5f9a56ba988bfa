"""The web page in headless Chromium, against `python -m mlabel serve` on a free loopback port."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY = "browser-test-key"
TITLE = "Random walks on expander graphs"
ABSTRACT = "We bound the mixing time of random walks on expanders using spectral methods."

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed"
)
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_tiny, tmp_path_factory):
    """The base URL of a server that needs an API key (given through MLABEL_API_KEY)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "MLABEL_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mlabel", "serve", str(trained_tiny), "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    pytest.fail(f"the server did not answer within {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def api_predict(url: str, body: dict) -> dict:
    headers = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{url}/predict", json=body, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()


def test_page_asks_for_the_key_then_tags_an_abstract(server, page, tmp_path):
    page.goto(server + "/")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Use key").click()
    page.get_by_label("Title").fill(TITLE)  # the inputs follow the model's text columns
    page.get_by_label("Abstract").fill(ABSTRACT)
    assert page.locator("#keybar").is_hidden()
    assert " on cpu" in page.locator("#meta").inner_text()  # engine and device, from /info
    page.get_by_role("button", name="Classify", exact=True).click()
    page.locator("#result").wait_for(state="visible")

    expected = api_predict(server, {"items": [{"title": TITLE, "abstract": ABSTRACT}]})
    result = expected["results"][0]
    assert page.locator("#tags .tag").all_inner_texts() == result["labels"]
    assert page.locator("#bars .track").count() == len(result["probabilities"])
    assert page.locator("#bars .name.hit").all_inner_texts() == sorted(
        result["labels"], key=lambda label: -result["probabilities"][label]
    )
    assert page.locator("#bars .tick").count() == len(result["probabilities"])
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_threshold_override_from_the_page(server, page):
    page.goto(f"{server}/?key={KEY}")
    assert "key=" not in page.url, "the key is taken out of the address bar"
    page.get_by_label("Abstract").fill(ABSTRACT)
    page.get_by_label("one threshold for all labels").check()
    page.get_by_label("threshold", exact=True).fill("0")
    page.get_by_role("button", name="Classify", exact=True).click()
    page.locator("#result").wait_for(state="visible")
    labels = httpx.get(f"{server}/labels", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert page.locator("#tags .tag").count() == len(labels["labels"])


def test_why_highlights_the_words_that_moved_a_label(server, page):
    page.goto(f"{server}/?key={KEY}")
    page.get_by_label("Title").fill(TITLE)
    page.get_by_label("Abstract").fill(ABSTRACT)
    page.get_by_label("one threshold for all labels").check()
    page.get_by_label("threshold", exact=True).fill("0")  # every label is given: a button each
    page.get_by_role("button", name="Classify", exact=True).click()
    page.locator("#result").wait_for(state="visible")
    button = page.locator("#tags button.why").first
    label = button.get_attribute("data-label")
    button.click()
    page.locator("#why").wait_for(state="visible")

    body = {"items": [{"title": TITLE, "abstract": ABSTRACT}], "labels": [label]}
    headers = {"Authorization": f"Bearer {KEY}"}
    answer = httpx.post(f"{server}/explain", json=body, headers=headers, timeout=60).json()
    words = answer["results"][0]["explanations"][0]["words"]
    assert page.locator("#whytitle").inner_text() == f"Why {label}?"
    assert page.locator("#whytext mark").all_inner_texts() == [w["word"] for w in words]
    assert page.locator("#whytext").inner_text() == f"{TITLE}\n{ABSTRACT}"
    strongest = max(words, key=lambda w: abs(w["weight"]))
    kind = "up" if strongest["weight"] > 0 else "down"
    colour = page.locator(f"#whytext mark.{kind}").evaluate_all(
        "marks => marks.map(m => getComputedStyle(m).backgroundColor)"
    )
    assert any(
        c.startswith("rgba(22, 163, 74" if kind == "up" else "rgba(220, 38, 38") for c in colour
    )


def test_csv_upload_shows_a_table_and_downloads_predictions(server, page, tmp_path):
    rows = [
        {"id": "p1", "title": TITLE, "abstract": ABSTRACT},
        {"id": "p2", "title": "Pricing, hedging", "abstract": 'Options under "rough"\nvolatility.'},
        {"id": "p3", "title": "Protein folding", "abstract": "Deep networks predict structures."},
    ]
    upload = tmp_path / "papers.csv"
    with upload.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "title", "abstract"])
        writer.writeheader()
        writer.writerows(rows)

    page.goto(f"{server}/?key={KEY}")
    page.get_by_role("tab", name="CSV file").click()
    page.set_input_files("#file", str(upload))
    page.get_by_role("button", name="Classify file").click()
    page.locator("#csvresult").wait_for(state="visible")
    assert page.locator("#csvbody tr").count() == 3

    expected = api_predict(server, {"items": rows})["results"]
    with page.expect_download() as download:
        page.get_by_text("Download predictions (CSV)").click()
    saved = tmp_path / "predictions.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "papers-predictions.csv"
    with saved.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["ID"] for r in table] == ["p1", "p2", "p3"]
    for row, want in zip(table, expected):
        assert row["labels"] == "|".join(want["labels"])
        for label, p in want["probabilities"].items():
            assert float(row[label]) == pytest.approx(p, abs=1e-5)
    page.screenshot(path=str(tmp_path / "serve-csv.png"), full_page=True)


def test_page_reports_a_missing_column(server, page, tmp_path):
    upload = tmp_path / "wrong.csv"
    upload.write_text("id,body\n1,some text\n")
    page.goto(f"{server}/?key={KEY}")
    page.get_by_role("tab", name="CSV file").click()
    page.set_input_files("#file", str(upload))
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "no column TITLE, ABSTRACT" in error.inner_text()
    assert page.get_by_role("button", name="Classify file").is_disabled()
