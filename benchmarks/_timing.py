"""Shared timing helper for the benchmark scripts (importable because each script's folder is on sys.path)."""

from __future__ import annotations

import time


def best_time(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` after one warm-up call (JIT compilation)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
