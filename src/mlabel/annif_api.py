"""Annif's REST API (NatLibFi/Annif, `annif/openapi/annif.yaml`, v1) over a Predictor, so that
Annif's own `http` backend and the `annif-client` package use an mlabel model as a project.

The served model is one project; its subjects are the model's labels, named by URI (see
`mlabel.subjects`). Suggestions are the labels best first, at most `limit` of them, each with a
probability of at least `threshold` (Annif's defaults: 10 and 0); the model's own thresholds
and decision rule do not apply, as in Annif, where the client chooses the cut. Scores are the
model's probabilities as computed, unrounded, so a client that cuts at a threshold decides as
`mlabel evaluate --threshold T --top-k LIMIT` does. Errors answer as Annif's do
(`application/problem+json` with `type`, `title`, `status`, `detail`); the server's API key,
when it has one, guards this API too. `/v1/detect-language` answers as Annif's does, with the
same library (simplemma).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from mlabel.batching import MicroBatcher, Unavailable
from mlabel.data import join_text_parts
from mlabel.errors import ConfigError
from mlabel.folder import META_FILE, package_version
from mlabel.metrics import top_labels
from mlabel.predict import Predictor
from mlabel.subjects import check_uri_base, serving_subjects

BACKEND_ID = "mlabel"
MAX_DOCUMENTS = 32  # the spec's maxItems for suggest-batch
MAX_CANDIDATES = 5  # the spec's maxItems of detect-language's candidate languages
DEFAULT_LIMIT = 10
PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
LANGUAGE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")  # a BCP 47 tag such as en, fi, pt-BR


class Problem(Exception):
    """An error answered as Annif answers it (RFC 7807 problem details)."""

    def __init__(self, status: int, title: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers

    def response(self) -> JSONResponse:
        body = {"type": "about:blank", "title": self.title, "status": self.status}
        return JSONResponse(
            {**body, "detail": self.detail},
            self.status,
            self.headers,
            media_type="application/problem+json",
        )


def bad_request(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail)


def not_found(project_id: str) -> Problem:
    return Problem(404, "Project not found", f"Project '{project_id}' not found")


@dataclass
class AnnifProject:
    """What the API tells of the served model, and its subjects' URIs."""

    project_id: str
    name: str
    language: str
    uris: dict[str, str]
    names: dict[str, str]  # each label's readable name, the `label` of a suggestion
    modification_time: str | None = None

    def dump(self, n_labels: int) -> dict[str, Any]:
        """The spec's `Project` object."""
        return {
            "project_id": self.project_id,
            "name": self.name,
            "language": self.language,
            "backend": {"backend_id": BACKEND_ID},
            "vocab": self.vocab(n_labels),
            "vocab_language": self.language,
            "is_trained": True,
            "modification_time": self.modification_time,
        }

    def vocab(self, n_labels: int) -> dict[str, Any]:
        return {
            "vocab_id": self.project_id,
            "languages": [self.language],
            "size": n_labels,
            "loaded": True,
        }


def annif_project(
    predictor: Predictor,
    name: str,
    project_id: str | None = None,
    language: str = "en",
    subject_uri_base: str | None = None,
    subject_uris: str | Path | None = None,
) -> AnnifProject:
    """The served model as a project: its id defaults to the model's folder name (its run's,
    for a run's `model` folder), made URL-safe."""
    project_id = project_id or default_project_id(predictor.model_dir)
    if not PROJECT_ID.fullmatch(project_id):
        raise ConfigError(
            f"project_id is {project_id!r}, expected letters, digits, '-', '_' or '.'"
        )
    if not LANGUAGE.fullmatch(language):
        raise ConfigError(f"language is {language!r}, expected a language tag such as en")
    if subject_uri_base is not None:
        check_uri_base(subject_uri_base)
    if subject_uri_base is not None and subject_uris is not None:
        raise ConfigError("give subject_uri_base or subject_uris, not both")
    info, labels = predictor.info, predictor.labels
    stored = (info.subject_uris, info.subject_names)
    uris, names = serving_subjects(labels, stored, subject_uri_base, project_id, subject_uris)
    return AnnifProject(project_id, name, language, uris, names, _mtime(predictor.model_dir))


def default_project_id(model_dir: Path) -> str:
    path = Path(model_dir).resolve()
    name = path.parent.name if path.name == "model" else path.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._") or "mlabel"


def _mtime(model_dir: Path) -> str | None:
    try:
        stamp = (Path(model_dir) / META_FILE).stat().st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- documentation


class SuggestionResult(BaseModel):
    uri: str
    label: str
    notation: str | None = None
    score: float


class SuggestionResultList(BaseModel):
    results: list[SuggestionResult]


class BatchSuggestionResult(SuggestionResultList):
    document_id: str | None = None


PROBLEM = {"content": {"application/problem+json": {}}}
ERRORS = {
    400: {"description": "Bad Request", **PROBLEM},
    404: {"description": "Project not found", **PROBLEM},
    503: {"description": "Service Unavailable", **PROBLEM},
}


def _body(media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An operation's required request body, as the OpenAPI page shows it."""
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}


FORM_BODY = _body(
    "application/x-www-form-urlencoded",
    {
        "type": "object",
        "required": ["text"],
        "properties": {
            "text": {"type": "string"},
            "limit": {"type": "integer", "default": DEFAULT_LIMIT, "minimum": 0},
            "threshold": {"type": "number", "default": 0, "minimum": 0, "maximum": 1},
            "language": {"type": "string"},
        },
        "additionalProperties": {
            "type": "string",
            "description": "metadata_<field>: a field the model was trained on",
        },
    },
)
DOCUMENT = {
    "type": "object",
    "required": ["text"],
    "properties": {
        "text": {"type": "string"},
        "document_id": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
BATCH_BODY = _body(
    "application/json",
    {
        "type": "object",
        "required": ["documents"],
        "properties": {
            "documents": {"type": "array", "maxItems": MAX_DOCUMENTS, "items": DOCUMENT}
        },
    },
)
DETECT_BODY = _body(
    "application/json",
    {
        "type": "object",
        "required": ["text", "languages"],
        "properties": {
            "text": {"type": "string"},
            "languages": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_CANDIDATES,
                "items": {"type": "string", "minLength": 2, "maxLength": 3},
            },
        },
    },
)


class DetectedLanguage(BaseModel):
    language: str | None
    score: float


class DetectedLanguages(BaseModel):
    results: list[DetectedLanguage]


# ----------------------------------------------------------------------------- the router


def annif_router(
    predictor: Predictor,
    batcher: MicroBatcher,
    project: AnnifProject,
    max_chars: int,
    dependencies: list | None = None,
) -> APIRouter:
    """`/v1/...`: Annif's API for one project, scored through the server's batcher."""
    router = APIRouter(prefix="/v1", tags=["Annif REST API"], dependencies=dependencies or [])
    suggester = _Suggester(predictor, batcher, project, max_chars)

    @router.get("/", summary="The API's title and version")
    def info() -> dict[str, str]:
        return {"title": "Annif REST API (mlabel)", "version": package_version("mlabel")}

    @router.get("/vocabs", summary="The project's vocabulary: the model's labels")
    def vocabs() -> dict[str, Any]:
        return {"vocabs": [project.vocab(len(predictor.labels))]}

    @router.get("/projects", summary="The served model, as Annif's one project")
    def projects() -> dict[str, Any]:
        return {"projects": [project.dump(len(predictor.labels))]}

    @router.get("/projects/{project_id}", summary="The project", responses=ERRORS)
    def show_project(project_id: str) -> Any:
        if project_id != project.project_id:
            return not_found(project_id).response()
        return project.dump(len(predictor.labels))

    @router.post(
        "/projects/{project_id}/suggest",
        summary="Subjects for a text, best first",
        response_model=SuggestionResultList,
        responses=ERRORS,
        openapi_extra=FORM_BODY,
    )
    async def suggest(project_id: str, request: Request) -> Any:
        try:
            _known(project, project_id)
            form = await request.form()
            limit, threshold = _cut(form, "form field")
            _check_language(form.get("language"), project)
            text = model_text(_form_text(form), _form_metadata(form), predictor.text_cols)
            results = await suggester.suggest([text], limit, threshold)
        except Problem as problem:
            return problem.response()
        return results[0]

    @router.post(
        "/projects/{project_id}/suggest-batch",
        summary=f"Subjects for up to {MAX_DOCUMENTS} documents",
        response_model=list[BatchSuggestionResult],
        responses=ERRORS,
        openapi_extra=BATCH_BODY,
    )
    async def suggest_batch(project_id: str, request: Request) -> Any:
        try:
            _known(project, project_id)
            limit, threshold = _cut(request.query_params, "query parameter")
            _check_language(request.query_params.get("language"), project)
            documents = _documents(await request.body())
            texts = [
                model_text(d["text"], d.get("metadata") or {}, predictor.text_cols)
                for d in documents
            ]
            results = await suggester.suggest(texts, limit, threshold)
        except Problem as problem:
            return problem.response()
        return [{**r, "document_id": d.get("document_id")} for r, d in zip(results, documents)]

    @router.post(
        "/detect-language",
        summary="The share of a text's words in each candidate language, best first",
        response_model=DetectedLanguages,
        responses={400: ERRORS[400], 503: ERRORS[503]},
        openapi_extra=DETECT_BODY,
    )
    async def detect_language(request: Request) -> Any:
        try:
            text, languages = _detect_request(await request.body(), max_chars)
            return {"results": await run_in_threadpool(detected_languages, text, languages)}
        except Problem as problem:
            return problem.response()

    @router.post("/projects/{project_id}/learn", summary="Not supported", responses=ERRORS)
    def learn(project_id: str) -> Any:
        if project_id != project.project_id:
            return not_found(project_id).response()
        detail = f"Project '{project_id}' is not configured to allow learning via API"
        return Problem(
            403, "Learning not allowed", detail + " (retrain it with mlabel train)"
        ).response()

    return router


class _Suggester:
    """Scores texts through the batcher and turns probabilities into Annif's results."""

    def __init__(
        self, predictor: Predictor, batcher: MicroBatcher, project: AnnifProject, max_chars: int
    ):
        self.labels = predictor.labels
        self.uris = [project.uris[label] for label in predictor.labels]
        self.names = [project.names[label] for label in predictor.labels]
        self.batcher = batcher
        self.max_chars = max_chars

    async def suggest(
        self, texts: list[str], limit: int, threshold: float
    ) -> list[dict[str, list]]:
        texts = [self._checked(t.strip(), i) for i, t in enumerate(texts)]
        scored = [i for i, t in enumerate(texts) if t]  # an empty text has no subjects
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if scored and limit > 0:
            try:
                probs[scored] = await self.batcher.predict_async([texts[i] for i in scored])
            except Unavailable as exc:
                raise Problem(
                    503, "Service unavailable", str(exc), {"Retry-After": str(exc.retry_after_s)}
                ) from None
        return [{"results": self._results(row, limit, threshold)} for row in probs]

    def _results(self, row: np.ndarray, limit: int, threshold: float) -> list[dict[str, Any]]:
        """The `limit` best labels scoring at least `threshold` (and above 0, as Annif's sparse
        results never hold a 0), best first; ties rank as in `mlabel evaluate`."""
        if limit == 0:
            return []
        best = top_labels(row[None, :], limit)[0]
        return [
            {"uri": self.uris[j], "label": self.names[j], "notation": None, "score": float(row[j])}
            for j in best
            if row[j] >= threshold and row[j] > 0
        ]

    def _checked(self, text: str, index: int) -> str:
        if len(text) > self.max_chars:
            raise bad_request(
                f"text {index}: {len(text):,} characters, the limit is {self.max_chars:,}"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise bad_request(
                f"text {index}: character {exc.start + 1} is an unpaired surrogate"
            ) from None
        return text


# ----------------------------------------------------------------------------- input checks


def _known(project: AnnifProject, project_id: str) -> None:
    if project_id != project.project_id:
        raise not_found(project_id)


def _check_language(language: str | None, project: AnnifProject) -> None:
    if language and language != project.language:
        raise bad_request(f'language "{language}" not supported by vocabulary')


def _cut(values: Any, kind: str) -> tuple[int, float]:
    """`limit` (default 10, 0 or more) and `threshold` (default 0, 0 to 1) from a form or query."""
    limit, threshold = values.get("limit"), values.get("threshold")
    try:
        limit = DEFAULT_LIMIT if limit in (None, "") else int(limit)
    except ValueError:
        raise bad_request(f"{kind} limit is {limit!r}, expected a whole number") from None
    try:
        threshold = 0.0 if threshold in (None, "") else float(threshold)
    except ValueError:
        raise bad_request(f"{kind} threshold is {threshold!r}, expected a number") from None
    if limit < 0:
        raise bad_request(f"{kind} limit is {limit}, expected 0 or more")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise bad_request(f"{kind} threshold is {threshold}, expected 0 to 1")
    return limit, threshold


def _form_text(form: Any) -> str:
    text = form.get("text")
    if text is None:
        raise bad_request("'text' is a required property (send it as a form field)")
    if not isinstance(text, str):
        raise bad_request("text is a file upload, expected a form field")
    return text


def _documents(body: bytes) -> list[dict[str, Any]]:
    """`{"documents": [{"text": ..., "document_id": ...}, ...]}`, checked as the spec says."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON ({exc})") from None
    documents = doc.get("documents") if isinstance(doc, dict) else None
    if not isinstance(documents, list):
        raise bad_request('expected a JSON object {"documents": [{"text": ...}, ...]}')
    if len(documents) > MAX_DOCUMENTS:
        raise bad_request(f"documents has {len(documents)} entries, the limit is {MAX_DOCUMENTS}")
    for i, d in enumerate(documents):
        if not isinstance(d, dict) or not isinstance(d.get("text"), str):
            raise bad_request(f"documents[{i}]: expected an object with a string `text`")
        if not isinstance(d.get("document_id", ""), str):
            raise bad_request(f"documents[{i}].document_id: expected a string")
        metadata = d.get("metadata") or {}
        if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
            raise bad_request(f"documents[{i}].metadata: expected an object of strings")
    return documents


def _form_metadata(form: Any) -> dict[str, str]:
    """Annif's `metadata_<field>` form fields, by field."""
    prefix = "metadata_"
    return {
        key[len(prefix) :]: value
        for key, value in form.items()
        if key.startswith(prefix) and isinstance(value, str)
    }


def model_text(text: str, metadata: dict[str, str], text_cols: list[str]) -> str:
    """What the model reads: Annif's `text`, and for a model trained on more columns beside a
    `text` one (an Annif JSON corpus' `title` and `text`), the metadata fields of those names,
    joined in the training's order as training joined them."""
    if "text" not in text_cols or len(text_cols) == 1:
        return text
    parts = (text if col == "text" else metadata.get(col, "") for col in text_cols)
    return join_text_parts(part.strip() for part in parts)


def _detect_request(body: bytes, max_chars: int) -> tuple[str, tuple[str, ...]]:
    """`{"text": ..., "languages": ["en", "fi"]}`, checked as the spec says."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise bad_request('expected a JSON object {"text": ..., "languages": ["en", ...]}')
    languages = doc.get("languages")
    if not (isinstance(languages, list) and 1 <= len(languages) <= MAX_CANDIDATES):
        raise bad_request(f"languages: expected a list of 1 to {MAX_CANDIDATES} language codes")
    if not all(isinstance(code, str) and 2 <= len(code) <= 3 for code in languages):
        raise bad_request("languages: expected codes of 2 or 3 letters such as en")
    if len(doc["text"]) > max_chars:
        raise bad_request(f"text has {len(doc['text'])} characters, the limit is {max_chars}")
    return doc["text"], tuple(languages)


def detected_languages(text: str, languages: tuple[str, ...]) -> list[dict[str, Any]]:
    """Annif's language detection: simplemma's share of the text's words known in each
    candidate language, best first; `None` for the share in none of them. The first call for a
    language loads its dictionary (seconds)."""
    try:
        from simplemma import LanguageDetector
    except ImportError:
        raise Problem(
            503, "Service unavailable", "language detection needs simplemma: pip install simplemma"
        ) from None
    try:
        shares = LanguageDetector(lang=languages).proportion_in_each_language(text)
    except ValueError:
        raise bad_request("unsupported candidate languages") from None
    ranked = sorted(shares.items(), key=lambda item: item[1], reverse=True)
    return [{"language": None if lang == "unk" else lang, "score": score} for lang, score in ranked]
