"""Loaded by a benchmarked server process (its PYTHONPATH names this directory, bench/stream.py):
the cyclic collector's figures, written to POLAR_BENCH_GC_FILE on SIGUSR1.

- `objects`: the objects a full collection traverses now (gc.get_objects(): the frozen ones,
  gc.freeze(), are not among them), the most common kinds (coroutines by function), and
  `frozen`;
- per generation, since the process started: collections, seconds spent in them, and the
  longest since the previous report (a pause of the event loop, as long as it lasts).

Nothing here runs unless that variable is set; the server's code is not changed.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import signal
import time
import types
from types import FrameType
from typing import Any

_FILE = os.environ.get("POLAR_BENCH_GC_FILE")
_started = 0.0
_count = [0, 0, 0]
_seconds = [0.0, 0.0, 0.0]
_longest = [0.0, 0.0, 0.0]
_reports = 0


def _timed(phase: str, info: dict[str, Any]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
        return
    generation = info["generation"]
    took = time.perf_counter() - _started
    _count[generation] += 1
    _seconds[generation] += took
    _longest[generation] = max(_longest[generation], took)


def _kind(o: object) -> str:
    if isinstance(o, types.CoroutineType):  # which function
        return f"coroutine {o.cr_code.co_qualname}"
    return type(o).__qualname__


def _report(signum: int, frame: FrameType | None) -> None:
    global _reports
    assert _FILE is not None
    _reports += 1
    objects = gc.get_objects()
    kinds = collections.Counter(_kind(o) for o in objects)
    report = {
        "report": _reports,
        "objects": len(objects),
        "kinds": dict(kinds.most_common(60)),
        "frozen": gc.get_freeze_count(),
        "threshold": gc.get_threshold(),
        "collections": list(_count),
        "seconds": [round(s, 4) for s in _seconds],
        "longest": [round(s, 4) for s in _longest],
    }
    _longest[:] = [0.0, 0.0, 0.0]
    with open(_FILE + ".tmp", "w") as out:
        json.dump(report, out)
    os.replace(_FILE + ".tmp", _FILE)


if _FILE:
    gc.callbacks.append(_timed)
    signal.signal(signal.SIGUSR1, _report)
