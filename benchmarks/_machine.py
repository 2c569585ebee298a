"""What the benchmarks report about the machine they run on: the CPU's name and the whole machine's
CPU time (to tell whether a variant ran alone)."""

from __future__ import annotations

import os
import platform

#: clock ticks per second of /proc/stat
HZ = os.sysconf("SC_CLK_TCK")


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_jiffies() -> tuple[int, int]:
    """(busy, steal) jiffies of the whole machine since boot, from the first line of /proc/stat
    (busy leaves out idle, iowait and steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    steal = v[7] if len(v) > 7 else 0
    return sum(v[:8]) - idle - steal, steal


def others_and_steal(before: tuple[int, int], after: tuple[int, int], cpu: float, wall: float) -> dict:
    """What the rest of the machine did while this process used ``cpu`` seconds of CPU in ``wall``
    seconds, from two :func:`cpu_jiffies` readings: ``others`` = cores used by every other process,
    ``steal`` = cores the hypervisor took. Both near 0 mean the timed work ran alone."""
    return {
        "others": max(0.0, ((after[0] - before[0]) / HZ - cpu) / wall),
        "steal": (after[1] - before[1]) / HZ / wall,
    }
