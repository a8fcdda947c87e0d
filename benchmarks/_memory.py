"""Process memory readings for the benchmarks: RSS, its high-water mark and its reset (Linux)."""

import resource
import sys

__all__ = ["reset_peak_rss", "ru_maxrss_mib", "status_mib"]


def status_mib(key):
    """A ``/proc/self/status`` field in MiB (``"VmRSS"``, ``"VmHWM"``), or None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Reset this process's RSS high-water mark (Linux); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def ru_maxrss_mib():
    """The process's lifetime peak RSS in MiB (``getrusage``; bytes on macOS, KiB elsewhere)."""
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
