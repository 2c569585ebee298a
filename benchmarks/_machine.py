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
