"""Huge and compressed inputs through `predict_file`: time and peak RSS of each case.

    python bench/huge_inputs.py           # a 2 GiB field, 16 GiB bombs, 2 million streamed rows
    python bench/huge_inputs.py --quick   # the sizes tests/test_huge_inputs.py uses

Cases: a CSV whose second row is one field of 2 GiB (written to bench/_work/huge); .gz, .xz and
.bz2 decompression bombs (a header, then GiBs of "0" without a line end, as concatenated
compressed members of 64 MiB each); a .zip bomb (one deflate stream); a .gz of ordinary rows,
streamed. Every case runs in one fresh interpreter with a stub predictor (the reading is what is
measured), which reports the peak RSS while reading each file (reset between files through
/proc/self/clear_refs). The helpers are the test's (tests/test_huge_inputs.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchkit import WORK, machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_huge_inputs import (  # noqa: E402
    BLOCK,
    OPENERS,
    MiB,
    bomb,
    huge_field_csv,
    repeated,
    run_predict,
)

ROW = b"7,an ordinary short text\n"


def cases(folder: Path, quick: bool) -> dict[str, tuple[Path, int]]:
    """name -> (file, rows after which to stop)."""
    everything = 10**12
    gib, zip_gib, field_mib, rows = (4, 1, 200, 300_000) if quick else (16, 4, 2048, 2_000_000)
    found = {
        f"bomb{s} {gib} GiB": (bomb(folder, s, b"0" * BLOCK, gib), everything) for s in OPENERS
    }
    found[f"bomb.zip {zip_gib} GiB"] = (bomb(folder, ".zip", b"0" * BLOCK, zip_gib), everything)
    stream = folder / "rows.csv.gz"
    repeated(stream, b"ID,text\n", ROW * (BLOCK // len(ROW)), gib * 16, OPENERS[".gz"])
    found[f"{rows:,} rows of a {gib} GiB .csv.gz"] = (stream, rows)
    found[f"one {field_mib} MiB field"] = (huge_field_csv(folder, field_mib), everything)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the test's sizes")
    args = parser.parse_args()
    folder = WORK / "huge"
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = cases(folder, args.quick)
    print(f"{machine()}; inputs written in {time.perf_counter() - start:.0f} s")
    results = run_predict(list(runs.values()))
    print(
        f"{'case':<34} {'file MB':>9} {'seconds':>8} {'RSS before MB':>13} {'peak MB':>8}  outcome"
    )
    for (name, (path, _)), result in zip(runs.items(), results):
        size = path.stat().st_size / MiB
        outcome = (
            result["outcome"] if len(result["outcome"]) < 90 else result["outcome"][:87] + "..."
        )
        print(
            f"{name:<34} {size:>9.2f} {result['seconds']:>8.2f} {result['base_mb']:>13.0f} "
            f"{result['peak_mb']:>8.0f}  "
            f"{outcome} ({result['rows']:,} rows)"
        )
        path.unlink()
    print(json.dumps({name: r for name, r in zip(runs, results)}))


if __name__ == "__main__":
    main()
