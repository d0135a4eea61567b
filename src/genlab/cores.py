"""The cores this process may use, and how busy other processes keep them. No torch here: the
package's ``__init__`` asks ``others_busy`` before torch loads its OpenMP runtime, whose wait
policy is read once, then.
"""

from __future__ import annotations

import math
import os
import time
from functools import cache
from pathlib import Path


@cache
def _cgroup_cores(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us``), or None where there is none. Read once: every reading of the
    counters asks for it."""
    for quota_file, period_file in (("cpu.max", None),
                                    ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            text = Path(root, quota_file).read_text().split()
            quota = text[0]
            period = text[1] if period_file is None else Path(root, period_file).read_text()
            if quota not in ("max", "-1"):
                return int(quota) / int(period)
        except (OSError, ValueError, IndexError):
            continue
    return None


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def usable_cores() -> int:
    """How many cores this process may keep busy: its affinity mask, capped by its cgroup's CPU
    quota (a container given 2 of a host's 64 CPUs sees all 64 in its affinity)."""
    cores = len(usable_cpus())
    quota = _cgroup_cores()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def local_processes() -> int:
    """The processes of this job on this machine, which share its cores: torchrun's
    LOCAL_WORLD_SIZE, or GENLAB_LOCAL_JOBS (runs started side by side by one command)."""
    for name in ("LOCAL_WORLD_SIZE", "GENLAB_LOCAL_JOBS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def thread_share() -> int:
    """This process's share of the cores: usable cores over the job's local processes."""
    return max(1, usable_cores() // local_processes())


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds spent so far (since boot) by every process on this process's cores, and by
    this process. Lower-priority (niced) processes yield their cores and are left out, unless
    this process is niced itself or the kernel groups processes by session (autogroup: there a
    niced process of another session competes as an equal). Where a cgroup quota limits the
    cores, the first counts the cgroup's processes (``cpu.stat``/``cpuacct.usage``) rather than
    the whole host's."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    mine = (int(fields[11]) + int(fields[12])) / tick  # utime, stime of every thread
    if _cgroup_cores() is not None:
        for path, scale in (("/sys/fs/cgroup/cpu.stat", 1e-6),
                            ("/sys/fs/cgroup/cpuacct/cpuacct.usage", 1e-9)):
            try:
                text = Path(path).read_text()
            except OSError:
                continue
            if path.endswith("cpu.stat"):
                usage = next(int(line.split()[1]) for line in text.splitlines()
                             if line.startswith("usage_usec"))
            else:
                usage = int(text.split()[0])
            return usage * scale, mine
    wanted = {f"cpu{i}" for i in usable_cpus()}
    niced = os.getpriority(os.PRIO_PROCESS, 0) > 0 or _autogroups()
    busy = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        # user nice system idle iowait irq softirq steal: idle, iowait and steal are time not
        # spent on the core, and nice is that of lower-priority processes, which yield it to us
        if name in wanted:
            ticks = [int(v) for v in values[:8]]
            busy += ticks[0] + ticks[2] + ticks[5] + ticks[6] + (ticks[1] if niced else 0)
    return busy / tick, mine


@cache
def _autogroups() -> bool:
    """Whether the scheduler shares the CPUs between sessions first (Linux autogroup), which
    makes a process's niceness count only within its own session."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def others_busy(seconds: float = 0.03, confirm: float = 0.2) -> float:
    """Cores that processes other than this one kept busy over the next ``seconds`` (in cores,
    0 on an idle machine); where that looks busy (half a core or more), measured again over
    ``confirm`` seconds and the smaller taken, so that a passing blip (a process that is just
    ending) is not taken for a busy machine."""
    def measure(window: float) -> float:
        (busy0, mine0), start = cpu_seconds(), time.monotonic()
        time.sleep(window)
        (busy1, mine1), end = cpu_seconds(), time.monotonic()
        return max(0.0, (busy1 - busy0) - (mine1 - mine0)) / (end - start)

    try:
        first = measure(seconds)
        return min(first, measure(confirm)) if first >= 0.5 and confirm > 0 else first
    except (OSError, ValueError, StopIteration):  # no /proc (macOS, Windows): cannot tell
        return 0.0
