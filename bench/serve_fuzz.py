"""schemathesis against a running `mlabel serve`: every operation of its OpenAPI schema, valid and
invalid requests, with the API key and without it. Any 5xx is a failure; prints the requests made.

    python bench/serve_fuzz.py --model runs/x/model               # 500 examples per operation
    python bench/serve_fuzz.py --model runs/x/model --examples 2000
    python bench/serve_fuzz.py --url http://127.0.0.1:8000 --key KEY   # a server you started

With --model, the script starts `mlabel serve MODEL --api-key KEY` on a free port and stops it
with SIGTERM at the end (it must exit 0). tests/test_serve_fuzz.py is the short run of `fuzz`.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import subprocess
import sys
import time

import httpx
import schemathesis
from benchkit import free_port, wait_until_serving
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup


def fuzz(url: str, key: str | None, examples: int) -> tuple[int, list[str]]:
    """Requests made and the failures (operation, mode, what went wrong) over every operation."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = {"Authorization": f"Bearer {key}"} if key else None
    sent, failures = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(operation.as_strategy(generation_mode=mode))
            def call(case) -> None:
                nonlocal sent
                sent += 1
                case.call_and_validate(headers=headers, checks=[not_a_server_error])

            try:
                call()
            except Unsatisfiable:  # no invalid request exists for an operation without inputs
                pass
            except (Exception, FailureGroup) as exc:  # report it, go on with the others
                failures.append(f"{operation.label} ({mode.value}): {_summary(exc)}")
    return sent, failures


def _summary(exc: BaseException) -> str:
    """The failure and its reproducing curl command, without the traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    inner = [f"{type(e).__name__}: {e}" for e in getattr(exc, "exceptions", ())]
    return "; ".join([*lines, *inner])


def start_server(model: str, key: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "mlabel", "serve", model, "--port", str(port)]
    proc = subprocess.Popen([*command, "--api-key", key, "--log-level", "warning"])
    return wait_until_serving(proc, f"http://127.0.0.1:{port}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="model folder to serve")
    where.add_argument("--url", help="base URL of a running server")
    p.add_argument("--key", help="the server's API key (default with --model: a random one)")
    p.add_argument("--examples", type=int, default=500, help="per operation, mode and key")
    args = p.parse_args(argv)
    key = args.key or (secrets.token_hex(8) if args.model else None)
    proc, url = start_server(args.model, key) if args.model else (None, args.url)
    start = time.perf_counter()
    total, failures = 0, []
    for name, given_key in (("with the key", key), ("without a key", None)):
        sent, failed = fuzz(url, given_key, args.examples)
        print(f"{name}: {sent:,} requests, {len(failed)} failures")
        total, failures = total + sent, failures + failed
    print(f"schemathesis: {total:,} requests in {time.perf_counter() - start:.0f} s")
    for failure in failures:
        print(f"FAIL {failure}")
    alive = httpx.get(f"{url}/health", timeout=10).status_code == 200
    print(f"server {'still answers' if alive else 'DOES NOT ANSWER'} /health")
    code = 0
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        print(f"server exit status after SIGTERM: {code}")
    return 1 if failures or not alive or code else 0


if __name__ == "__main__":
    sys.exit(main())
