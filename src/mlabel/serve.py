"""The HTTP server: a JSON API and a web page over a Predictor, with micro-batching and limits.

Concurrent requests are queued for one worker thread (`mlabel.batching`), which gathers them
into one `predict_proba` call, so the event loop never runs the model and throughput under load
approaches offline prediction; a full queue answers 503 with Retry-After. Input is checked where
it enters (`mlabel.limits` for size and read time): a bad request gets a 4xx answer that says
what is wrong and where, never a 500. SIGTERM finishes the requests under way, then exits 0.

With an API key, every endpoint but `/health`, the page at `/` and the docs needs
`Authorization: Bearer KEY`. The page asks for the key and keeps it in the browser's
localStorage; opening `/?key=KEY` stores it too and takes it out of the address bar. The server
never reads keys from URLs, so they stay out of access logs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import secrets
import signal
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from mlabel.annif_api import annif_project, annif_router
from mlabel.batching import MicroBatcher, Unavailable
from mlabel.data import join_text_parts
from mlabel.decision import DecisionRule
from mlabel.errors import ConfigError, ExtraMissing
from mlabel.explain import Explainer
from mlabel.folder import package_version
from mlabel.limits import BodyLimit, header_timeout_protocol
from mlabel.predict import Predictions, Predictor

PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)


@dataclasses.dataclass
class ServeSettings:
    """How the server listens, what it accepts and how it batches."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 2 * 1024 * 1024
    max_texts: int = 256
    max_chars: int = 100_000
    # 0: a batch takes what queued while the model ran the last one, and waits for nothing more
    batch_wait_ms: float = 0.0
    max_batch: int = 64
    max_queue: int = 4096  # texts waiting for the model; past it, 503 with Retry-After
    read_timeout_s: float = 30.0  # for a request's headers, and again for its body
    project_id: str | None = None  # Annif API (mlabel.annif_api): default, the model's name
    language: str = "en"  # Annif API: the language of the labels
    subject_uri_base: str | None = None  # Annif API: URIs base + label, over the model's own
    subject_uris: str | None = None  # or a label/URI table (mlabel.subjects), over the model's
    warm_up: bool = True  # run the engine on one text and on two before listening

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_texts", "max_chars", "max_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} is {getattr(self, name)}, expected 1 or more")
        if self.max_queue < self.max_texts:
            raise ConfigError(
                f"max_queue is {self.max_queue}, expected at least max_texts ({self.max_texts})"
            )
        if not 0 < self.read_timeout_s <= 3600:
            raise ConfigError(f"read_timeout_s is {self.read_timeout_s}, expected 0 to 3600")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port is {self.port}, expected 0 to 65535")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ConfigError(f"batch_wait_ms is {self.batch_wait_ms}, expected 0 to 1000")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty; give a key or leave it out")


class InputError(ValueError):
    """A request the server understood but cannot accept (answered with 422)."""


# ----------------------------------------------------------------------------- request bodies


class PredictRequest(BaseModel):
    """Either `texts` or `items` (objects with the model's text columns), not both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"texts": ["Deep networks for protein folding\nWe train ..."]},
                {"items": [{"id": "1", "title": "A title", "abstract": "An abstract"}]},
            ]
        },
    )
    texts: list[StrictStr] | None = None
    items: list[dict[str, Any]] | None = None
    threshold: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    top_k: Annotated[int | None, Field(ge=0)] = None  # 0 lifts the model's cap
    min_labels: Annotated[int | None, Field(ge=0)] = None


class PredictResult(BaseModel):
    id: str | int | None = None
    labels: list[str]
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    thresholds: dict[str, float]
    results: list[PredictResult]


EXPLAIN_MAX_TEXTS = 16  # each text costs about 32 forward and backward passes per label


class ExplainRequest(PredictRequest):
    """A /predict body, plus the labels to explain (default: those predicted, else the best)
    and how many of the strongest words to answer (default: every word, in text order)."""

    labels: list[StrictStr] | None = None
    top: Annotated[int | None, Field(ge=1)] = None


def explanations(
    explainer: Explainer, req: ExplainRequest, ids: list[Any], texts: list[str], rule: DecisionRule
) -> dict[str, Any]:
    """What /explain answers: per text, its text and per label the probability and the words'
    weights with their character spans in that text."""
    found = explainer.explain(texts, req.labels, req.threshold, rule)
    return {
        "results": [
            {"id": i, "text": text, "explanations": [e.record(req.top) for e in per_label]}
            for i, text, per_label in zip(ids, texts, found)
        ]
    }


def request_texts(
    req: PredictRequest, text_cols: list[str], settings: ServeSettings
) -> tuple[list[Any], list[str]]:
    """Ids (None for `texts`) and the texts to classify, checked against the limits."""
    if (req.texts is None) == (req.items is None):
        raise InputError("give either `texts` (a list of strings) or `items`, not both")
    field = "texts" if req.items is None else "items"
    count = len(req.texts if req.items is None else req.items)
    if count == 0:
        raise InputError(f"{field} is empty; send at least one")
    if count > settings.max_texts:
        raise InputError(f"{field} has {count} entries, the limit is {settings.max_texts}")
    if req.items is None:
        ids, texts = [None] * count, [t.strip() for t in req.texts]
    else:
        ids, texts = zip(*(item_text(item, i, text_cols) for i, item in enumerate(req.items)))
    check_texts(list(texts), field, settings.max_chars)
    return list(ids), list(texts)


def item_text(item: dict[str, Any], index: int, text_cols: list[str]) -> tuple[Any, str]:
    """An item's id and its text columns (matched case-insensitively) joined with newlines."""
    where = f"items[{index}]"
    by_name = {c.lower(): c for c in text_cols}
    fields: dict[str, Any] = {}
    item_id = None
    for key, value in item.items():
        name = key.lower()
        if name == "id":
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise InputError(f"{where}.{key}: expected a string or an integer id")
            if item_id is not None:
                raise InputError(f"{where}: id is given twice (names ignore case)")
            item_id = value
        elif name in by_name:
            if by_name[name] in fields:
                raise InputError(f"{where}: {by_name[name]} is given twice (names ignore case)")
            if value is not None and not isinstance(value, str):
                raise InputError(f"{where}.{key}: expected a string, got {type(value).__name__}")
            fields[by_name[name]] = (value or "").strip()
        else:
            expected = ", ".join(["id", *text_cols])
            raise InputError(f"{where}: unknown field {key!r}; expected {expected}")
    return item_id, join_text_parts(fields.get(c, "") for c in text_cols)


def check_texts(texts: list[str], field: str, max_chars: int) -> None:
    for i, text in enumerate(texts):
        if not text:
            raise InputError(f"{field}[{i}]: the text is empty")
        if not text.isascii() and _surrogate(text) is not None:
            raise InputError(
                f"{field}[{i}]: character {_surrogate(text) + 1} is an unpaired surrogate; "
                "send valid Unicode"
            )
        if len(text) > max_chars:
            raise InputError(
                f"{field}[{i}]: the text has {len(text):,} characters, the limit is {max_chars:,}"
            )


def _surrogate(text: str) -> int | None:
    """The position of the first lone UTF-16 surrogate (valid JSON, but no tokenizer takes it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def request_rule(req: PredictRequest, predictor: Predictor) -> DecisionRule:
    """The model's decision rule with the request's `top_k` and `min_labels` in its place."""
    try:
        return predictor.decision_rule(req.top_k, req.min_labels)
    except ConfigError as exc:  # e.g. min_labels above top_k
        raise InputError(str(exc)) from None


def prediction_response(preds: Predictions, ids: list[Any]) -> dict[str, Any]:
    thresholds = {label: round(t, 6) for label, t in zip(preds.labels, preds.thresholds.tolist())}
    return {"thresholds": thresholds, "results": preds.records(ids)}


# ----------------------------------------------------------------------------- the app


def require_key(api_key: str | None) -> Callable:
    """A dependency that checks `Authorization: Bearer KEY` when the server has a key."""
    bearer = HTTPBearer(auto_error=False, description="the key given to `mlabel serve`")

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if api_key is None:
            return
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            reason = "wrong API key" if given else "this server needs `Authorization: Bearer KEY`"
            raise HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})

    return check


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app for one predictor; run it with uvicorn or test it with TestClient."""
    settings = settings or ServeSettings()
    project = annif_project(  # checked before the batcher's thread starts
        predictor,
        model_name(predictor.model_dir),
        settings.project_id,
        settings.language,
        settings.subject_uri_base,
        settings.subject_uris,
    )
    batcher = MicroBatcher(
        predictor.predict_proba, settings.max_batch, settings.batch_wait_ms, settings.max_queue
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(
        title="mlabel",
        summary=f"Multi-label topics from the model {model_name(predictor.model_dir)}",
        version=package_version("mlabel"),
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.batcher = batcher
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, read_timeout_s=settings.read_timeout_s
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(Unavailable, _unavailable)
    _add_routes(app, predictor, settings, batcher)
    keyed = [Depends(require_key(settings.api_key))]
    app.include_router(annif_router(predictor, batcher, project, settings.max_chars, keyed))
    return app


def _add_routes(
    app: FastAPI, predictor: Predictor, settings: ServeSettings, batcher: MicroBatcher
) -> None:
    keyed = [Depends(require_key(settings.api_key))]
    page = resources.files("mlabel").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/health", summary="Liveness check (never needs the key)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/labels", dependencies=keyed, summary="The labels and their thresholds")
    def labels() -> dict[str, Any]:
        return {"labels": predictor.labels, "thresholds": _thresholds(predictor)}

    @app.get("/info", dependencies=keyed, summary="The model, its validation metrics, the server")
    def info() -> dict[str, Any]:
        return model_info(predictor, settings, batcher)

    @app.post(
        "/predict",
        dependencies=keyed,
        response_model=PredictResponse,
        summary="Labels and probabilities for texts or items",
    )
    async def predict(req: PredictRequest) -> dict[str, Any]:
        ids, texts = request_texts(req, predictor.text_cols, settings)
        rule = request_rule(req, predictor)
        probs = await batcher.predict_async(texts)
        return prediction_response(predictor.decisions(probs, req.threshold, rule), ids)

    explainer = LazyExplainer(predictor.model_dir)
    explain_limits = dataclasses.replace(
        settings, max_texts=min(settings.max_texts, EXPLAIN_MAX_TEXTS)
    )

    @app.post("/explain", dependencies=keyed, summary="Why each label: words' weights and spans")
    def explain(req: ExplainRequest) -> dict[str, Any]:
        ids, texts = request_texts(req, predictor.text_cols, explain_limits)
        unknown = [label for label in req.labels or () if label not in predictor.labels]
        if unknown:
            raise InputError(f"labels: {unknown[0]!r} is not one of the model's labels")
        rule = request_rule(req, predictor)
        return explainer.run(lambda e: explanations(e, req, ids, texts, rule))


class LazyExplainer:
    """The model's Explainer (a second copy of the model, in fp32), loaded by the first
    /explain; one explanation runs at a time, since each keeps the CPU busy."""

    def __init__(self, model_dir: Path):
        self.model_dir, self.lock, self.explainer = model_dir, threading.Lock(), None

    def run(self, job: Callable[[Explainer], Any]) -> Any:
        with self.lock:
            if self.explainer is None:
                try:
                    self.explainer = Explainer(self.model_dir)
                except ExtraMissing as exc:
                    raise HTTPException(501, str(exc)) from None
            return job(self.explainer)


def _thresholds(predictor: Predictor) -> dict[str, float]:
    return {label: round(t, 6) for label, t in zip(predictor.labels, predictor.thresholds.tolist())}


def model_info(
    predictor: Predictor, settings: ServeSettings, batcher: MicroBatcher
) -> dict[str, Any]:
    """What /info answers: the model folder's record plus the server's limits and counters."""
    info = predictor.info
    return _finite(
        {
            "model": model_name(predictor.model_dir),
            "kind": info.kind,
            "labels": predictor.labels,
            "thresholds": _thresholds(predictor),
            "threshold_method": info.threshold_method,
            "text_cols": predictor.text_cols,
            "max_len": predictor.max_len,
            "metrics": info.metrics,
            "engine": predictor.engine,
            "device": str(predictor.device),
            "versions": {
                **info.versions,
                "mlabel (serving)": package_version("mlabel"),
            },
            "limits": {
                "max_body_bytes": settings.max_body_bytes,
                "max_texts": settings.max_texts,
                "max_chars": settings.max_chars,
                "max_queue": settings.max_queue,
            },
            "batching": {
                "max_batch": settings.max_batch,
                "batch_wait_ms": settings.batch_wait_ms,
                "waiting": batcher.waiting,
                **batcher.stats,
            },
            "auth": settings.api_key is not None,
        }
    )


def model_name(model_dir: Path) -> str:
    """The folder's name, with its run's name when it is a run's `model` folder."""
    path = model_dir.resolve()
    return f"{path.parent.name}/{path.name}" if path.name == "model" else path.name


def _finite(value: Any) -> Any:
    """NaN and infinity as null, since JSON has neither."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- error answers


def _where(loc: tuple) -> str:
    """('body', 'texts', 2) -> 'texts[2]'."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "body"


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Malformed JSON is 400; a body of the wrong shape is 422; both say where."""
    errors = exc.errors()
    first = errors[0]
    if first["type"] == "json_invalid":
        detail = _json_error(exc.body, first)
        return JSONResponse({"detail": detail}, 400)
    if first["loc"] == ("body",) and "json" not in request.headers.get("content-type", ""):
        detail = "send a JSON object with `Content-Type: application/json`"
    else:
        detail = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors[:5])
    safe = [{k: e[k] for k in ("type", "loc", "msg")} for e in errors]
    return JSONResponse({"detail": detail, "errors": safe}, 422)


def _json_error(doc: Any, error: dict) -> str:
    reason = error.get("ctx", {}).get("error", "cannot be parsed")
    pos = error["loc"][-1] if isinstance(error["loc"][-1], int) else None
    if pos is None or not isinstance(doc, str):
        return f"malformed JSON: {reason}"
    line = doc.count("\n", 0, pos) + 1
    column = pos - (doc.rfind("\n", 0, pos) + 1) + 1
    return f"malformed JSON: {reason} at line {line} column {column}"


def _input_error(request: Request, exc: InputError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 422)


def _unavailable(request: Request, exc: Unavailable) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 503, {"Retry-After": str(exc.retry_after_s)})


# ----------------------------------------------------------------------------- running


def serve(
    model_dir: str,
    settings: ServeSettings,
    engine: str = "auto",
    device: str = "auto",
    log_level: str = "info",
):
    """Load the model and serve it with uvicorn until interrupted."""
    import uvicorn

    from mlabel.predict import load_predictor

    predictor = load_predictor(model_dir, engine, device)
    app = create_app(predictor, settings)
    if settings.warm_up:
        print(f"warmed up in {warm_up(predictor):.1f} s")
    url = f"http://{_url_host(settings.host)}:{settings.port}"
    key = "API key required" if settings.api_key else "no API key"
    print(
        f"serving {model_dir} (engine {predictor.engine} on {predictor.device}, {key}) at {url}  docs: {url}/docs"
    )
    if not settings.api_key and not _is_loopback(settings.host):
        print(f"warning: listening on {settings.host} without an API key (--api-key)")
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        http=header_timeout_protocol(settings.read_timeout_s),
    )
    _exit_zero_on_sigterm()
    uvicorn.Server(config).run()


def warm_up(predictor: Predictor) -> float:
    """Run the engine once on one text and once on two, so that the first requests pay no
    first-call costs (OpenVINO compiles its one-row model then; bench/serve.py --first-request
    measures it). Returns the seconds it took."""
    start = time.perf_counter()
    for n in (1, 2):
        predictor.predict_proba(["warm-up"] * n)
    return time.perf_counter() - start


def _exit_zero_on_sigterm() -> None:
    """Let SIGTERM end the process with status 0 after uvicorn's graceful shutdown.

    uvicorn catches SIGTERM, lets the requests under way finish, then raises the signal again
    under the handler that was there before; the default one would kill the process (-15).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: None)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
