"""Timing helper shared by the benchmark scripts."""

import time

__all__ = ["best_time"]


def best_time(fn, repeats):
    """Fastest wall-clock seconds of ``repeats`` calls of ``fn()``.

    The minimum, not the mean: on a shared machine the other runs only add noise.
    """
    best = float("inf")
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
