"""The table-reader fuzz tests (tests/test_fuzz_readers.py) with many more examples.

    python bench/fuzz.py                 # the `long` hypothesis profile: 4,000 per test, 24,000
    python bench/fuzz.py --profile ci    # what CI runs: 350 per test, 2,100

Prints the pytest outcome, the number of examples run per loader and the time taken.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="long", help="hypothesis profile (tests/conftest.py)")
    args = parser.parse_args()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "tests/test_fuzz_readers.py",
        "-p",
        "no:cacheprovider",
        f"--hypothesis-profile={args.profile}",
    ]
    start = time.perf_counter()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    counts = re.search(r"fuzz examples run: (\d+) \((.*)\)", done.stdout)
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    print(f"profile {args.profile}: pytest exit {done.returncode} ({tail})")
    if counts:
        print(f"examples run: {int(counts[1]):,} ({counts[2]}) in {seconds:.0f} s")
    if done.returncode:
        print(done.stdout[-5000:])
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
