"""Memory checks of the optimal-transport code: estimates, before allocating, against a limit.

A pool too large for a method's memory must fail with a clear error naming the
knob to change, not with an out-of-memory kill minutes later. Each method
estimates its peak bytes from the problem's sizes (its own formula, next to the
code it describes) and calls :func:`check_memory`, which compares them with
``max_memory`` (GiB) or, by default, the memory available on the machine now.
"""

import os

__all__ = ["available_bytes", "check_max_memory", "check_memory"]

_GIB = 2.0**30


def available_bytes():
    """Memory available to a new allocation now (``MemAvailable``), or None if unknown.

    Examples
    --------
    >>> b = available_bytes()
    >>> b is None or b > 0
    True
    """
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_max_memory(max_memory):
    """Validate a ``max_memory`` parameter: a positive number of GiB or None."""
    if max_memory is None:
        return None
    if isinstance(max_memory, bool) or not isinstance(max_memory, (int, float)) \
            or not max_memory > 0:
        raise ValueError(
            f"max_memory must be a positive number of GiB or None, got {max_memory!r}.")
    return float(max_memory)


def check_memory(need, max_memory, what, advice):
    """Raise ValueError when an estimated peak of ``need`` bytes exceeds the limit.

    Parameters
    ----------
    need : float
        Estimated peak bytes of the method.
    max_memory : float or None
        Limit in GiB; None: the memory available now (no check when unknown).
    what : str
        The problem, e.g. ``"WassersteinCoreSet on N=160000 points of d=84"``.
    advice : str
        The knobs to change, e.g. ``"lower max_candidates or raise max_memory"``.

    Examples
    --------
    >>> check_memory(2**20, 1.0, "a test", "nothing")
    >>> try:
    ...     check_memory(3 * 2**30, 1.0, "a test", "raise max_memory")
    ... except ValueError as e:
    ...     print(e)
    a test needs about 3.0 GiB, more than max_memory=1 GiB: raise max_memory.
    """
    max_memory = check_max_memory(max_memory)
    if max_memory is None:
        avail = available_bytes()
        if avail is None or need <= avail:
            return
        raise ValueError(
            f"{what} needs about {need / _GIB:.1f} GiB, more than the {avail / _GIB:.1f} GiB "
            f"available now (max_memory=None): {advice}."
        )
    if need > max_memory * _GIB:
        raise ValueError(
            f"{what} needs about {need / _GIB:.1f} GiB, more than max_memory={max_memory:g} GiB: "
            f"{advice}."
        )
