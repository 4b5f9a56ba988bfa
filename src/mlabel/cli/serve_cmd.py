"""`mlabel serve MODEL_DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--engine auto]`;
mlabel's JSON API and Annif's REST API under /v1 (`--project-id`, `--language`)."""

from __future__ import annotations

import argparse
import os

from mlabel import extras
from mlabel.cli.common import add_engine_option

# Options left out keep the defaults of mlabel.serve.ServeSettings (imported only when serving).
SETTINGS = {
    "host": (str, "address to listen on (default: 127.0.0.1, this machine only)"),
    "port": (int, "port (default: 8000)"),
    "api_key": (
        str,
        "require `Authorization: Bearer KEY` (default: env MLABEL_API_KEY, else none)",
    ),
    "batch_wait_ms": (
        float,
        "how long a batch waits for more requests (default: 0, it takes what queued while the "
        "model ran)",
    ),
    "max_batch": (int, "most texts in one model call (default: 64)"),
    "max_body_bytes": (int, "largest request body (default: 2097152, 2 MiB)"),
    "max_texts": (int, "most texts or items in one request (default: 256)"),
    "max_chars": (int, "most characters in one text (default: 100000)"),
    "max_queue": (int, "most texts waiting for the model; past it, 503 (default: 4096)"),
    "read_timeout_s": (float, "seconds a client may take to send headers, then body (default: 30)"),
    "project_id": (str, "Annif API (/v1): the project id (default: the model folder's name)"),
    "language": (str, "Annif API: the language of the labels (default: en)"),
    "subject_uri_base": (
        str,
        "Annif API: subject URIs are this + the url-quoted label (default: the URIs stored at "
        "training, else urn:mlabel:PROJECT:LABEL)",
    ),
    "subject_uris": (
        str,
        "Annif API: a CSV/TSV of label and uri columns, or Annif's `<uri>` TAB label vocabulary, "
        "giving the labels' URIs and, for labels that are URIs, their names",
    ),
}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="serve a model folder: JSON API, web page, OpenAPI docs")
    p.add_argument("model_dir")
    for name, (kind, help_text) in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)
    p.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        default=argparse.SUPPRESS,
        help="listen at once; the first requests pay the engine's first-call costs",
    )
    add_engine_option(p)
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn log level; `warning` hides the access log (default: info)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    extras.require("serve", "mlabel serve")
    from mlabel.serve import ServeSettings, serve

    values = {name: getattr(args, name) for name in [*SETTINGS, "warm_up"] if hasattr(args, name)}
    values.setdefault("api_key", os.environ.get("MLABEL_API_KEY") or None)
    serve(
        args.model_dir,
        ServeSettings(**values),
        engine=args.engine,
        device=args.device,
        log_level=args.log_level,
    )
    return 0
