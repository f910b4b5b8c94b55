"""How many CPUs this process may use: the default for worker pools and thread counts."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs in this process's affinity mask (a container's or `taskset`'s limit), not the
    host's count, which can be far larger than what the process is allowed to run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1
