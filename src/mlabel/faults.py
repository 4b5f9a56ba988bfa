"""Named kill points for the crash tests: `point(name)` kills the process with SIGKILL when the
environment variable MLABEL_KILL_AT names it.

`MLABEL_KILL_AT=checkpoint.state` stops a run the first time it reaches that point;
`MLABEL_KILL_AT=checkpoint.state:3` the third time (counted in this process). SIGKILL, as from
the OOM killer or a power cut: no handler, `finally` or atexit runs. Only tests set the variable
(tests/test_kill_matrix.py lists the points); unset, a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "MLABEL_KILL_AT"

_reached: Counter[str] = Counter()


def point(name: str) -> None:
    """Die here when MLABEL_KILL_AT is `name` (or `name:N` and this is the N-th time)."""
    target = os.environ.get(ENV)
    if not target:
        return
    wanted, _, nth = target.partition(":")
    if wanted != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
