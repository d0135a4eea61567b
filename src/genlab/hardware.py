"""What the hardware runs natively and how many of its cores are this process's.

Precision: bf16 is fast where the hardware has it (AMX or AVX512-BF16 on CPUs, compute capability
8.0 and up on NVIDIA GPUs) and very slow where it is emulated: on an AVX2-only CPU a bf16 matmul
ran ~300x slower than fp32. So 'auto' picks bf16 only where it is native, and on CPUs only for
networks with convolutions: the MLP VAE ran no faster in bf16 on an AMX Xeon.

Threads: torch's CPU kernels run on an OpenMP pool whose idle threads spin briefly before they
sleep, which is what makes them fast alone. Two processes that each run as many threads as there
are cores oversubscribe the machine, and then the spinning threads steal each other's cores.
``cpu_threads`` treats that cause: a process runs its share of the cores it may use (affinity and
cgroup quota, divided among the processes of its job on this machine), and, polled from the loops
(``poll_threads``), lowers its thread count while other processes keep cores busy and raises it
when they leave. A user's OMP_NUM_THREADS wins over both.

Also: which process of a multi-process job (torchrun, ``accelerate launch``) this one is.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from typing import Any, TypeVar, cast

import torch
from torch import nn

from genlab.cores import cpu_seconds, local_processes, thread_share, usable_cores
from genlab.errors import ConfigError


@cache
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether bf16 matmuls and convolutions run in hardware on this kind of device."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo) and torch's vector capability."""
    name = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


@cache
def bf16_slowdown(size: int = 512, repeats: int = 2) -> float:
    """Measured time of a bf16 matmul over an fp32 one of the same size on this CPU (best of
    ``repeats``): below 1 where bf16 is native (AMX), 13 at 512 x 512 on an AVX2-only AMD EPYC
    (the gap grows with the size: small products are dominated by overheads)."""
    import time

    a = torch.randn(size, size)
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = a.to(dtype)
        x @ x  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            x @ x
            best = min(best, time.perf_counter() - start)
        times[dtype] = best
    return times[torch.bfloat16] / max(times[torch.float32], 1e-9)


def convolutional(modules: Iterable[nn.Module]) -> bool:
    """Whether any of the networks has a convolution: on CPUs bf16 pays only for those. Measured on
    an AMX Xeon (benchmarks/bench_precision.py): the UNets and the DCGAN train 1.5-2x faster in
    bf16, the MLP VAE (784-256-z, batch 128) no faster, as its small matmuls do not amortise the
    casts around them."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for net in modules for m in net.modules())


def resolve_precision(requested: str, device_type: str = "cpu",
                      modules: Iterable[nn.Module] | None = None) -> tuple[str, str]:
    """The precision to run (``'fp32'``, ``'bf16'`` or ``'fp16'``) for ``requested`` ('auto',
    'fp32', 'bf16', 'fp16') on a device type, and a one-line reason. ``modules``, the networks to
    train, let 'auto' keep networks without convolutions in fp32 on CPUs (``convolutional``).
    fp16 needs gradient scaling, which genlab (through Accelerate) does on CUDA only."""
    native = native_bf16(device_type)
    where = "this GPU" if device_type == "cuda" else cpu_name()
    if requested == "auto":
        if native and device_type == "cpu" and modules is not None \
                and not convolutional(modules):
            return "fp32", (f"precision auto -> fp32: bf16 is native on {where}, but these "
                            f"networks have no convolutions, which bf16 does not speed up on CPUs")
        if native:
            return "bf16", f"precision auto -> bf16: bf16 is native on {where}"
        if device_type == "cuda":
            return "fp16", (f"precision auto -> fp16 with gradient scaling: {where} has no "
                            f"native bf16")
        return "fp32", f"precision auto -> fp32: bf16 is emulated on {where}"
    if requested == "fp16" and device_type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA GPU (its gradient scaling runs there); "
                          f"on {where} use fp32, or auto")
    if requested == "bf16" and not native:
        slowdown = f"{bf16_slowdown():.0f}x" if device_type == "cpu" else "much"
        return "bf16", (f"warning: bf16 is emulated on {where}: a bf16 matmul measured "
                        f"{slowdown} slower than fp32 here; --precision auto would pick fp32")
    return requested, f"precision {requested} as asked"


def process_rank() -> int:
    """This process's global rank under torchrun or ``accelerate launch`` (which set RANK), else
    0. For the drivers that must act once per job (figures, evaluation, reports) and run before
    or after the training loop's own process group."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return process_rank() == 0


def launched_processes() -> int:
    """The number of processes torchrun or ``accelerate launch`` started (WORLD_SIZE), else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


# --- CPU threads ---------------------------------------------------------------------------------


class CoreShare:
    """torch's CPU thread count, kept at this process's share of the cores while the machine is
    otherwise idle and lowered while other processes use some of them.

    Every ``interval`` seconds (on a ``poll``) it reads how many cores the other processes kept
    busy since the last reading (``cpu_seconds``), and runs about as many threads as they left
    free, within [1, share]. It lowers the count once half a core fewer is free than it runs,
    and raises it only once three quarters of a core more is free, so that two processes that
    share the machine settle on half of it each instead of taking turns."""

    def __init__(self, share: int, cores: int, interval: float = 0.5,
                 read: Callable[[], tuple[float, float]] = cpu_seconds,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.share, self.cores, self.interval = share, cores, interval
        self.read, self.clock = read, clock
        self.threads = share
        self.changes: list[tuple[float, int, float]] = []  # (time, threads, others' cores)
        self._last = (clock(), *read())
        self._due = self._last[0] + interval

    def poll(self) -> int:
        """Adjust the thread count when a reading is due; returns the count."""
        now = self.clock()
        if now < self._due:
            return self.threads
        busy, mine = self.read()
        then, busy0, mine0 = self._last
        self._last, self._due = (now, busy, mine), now + self.interval
        others = max(0.0, (busy - busy0) - (mine - mine0)) / max(now - then, 1e-9)
        free, threads = self.cores - others, self.threads
        if free < threads - 0.5:        # cores were taken: give them up
            threads = max(1, round(free))
        elif free > threads + 0.75:     # a whole core came free, clearly
            threads = min(self.share, math.floor(free + 0.25))
        if threads != self.threads:
            self.threads = threads
            torch.set_num_threads(threads)
            self.changes.append((now, threads, round(others, 2)))
        return self.threads


_SHARES: list[CoreShare | None] = []  # the active cpu_threads contexts, innermost last


@contextmanager
def cpu_threads(fixed: int = 0) -> Iterator[CoreShare | None]:
    """Within: torch's CPU threads are this process's share of the cores (``thread_share``),
    adapted to the other processes' use of them by ``poll_threads``; ``fixed`` > 0 runs exactly
    that many instead. The count found on entry is restored on exit. Never more threads than
    torch had on entry (a caller's ``torch.set_num_threads`` caps it), and a user's
    OMP_NUM_THREADS leaves the count alone unless ``fixed`` asks for one. Where OpenMP's threads
    wait passively (the package's ``__init__`` chose it on a busy machine, or the user did), they
    cost the other processes nothing while they wait, and the count stays at the share."""
    before = torch.get_num_threads()
    share: CoreShare | None = None
    if fixed > 0:
        torch.set_num_threads(fixed)
    elif "OMP_NUM_THREADS" not in os.environ:
        threads = min(before, thread_share())
        torch.set_num_threads(threads)
        # passive threads share the cores as they are; without /proc (macOS, Windows) the
        # others' use cannot be read, and the count stays at the share
        if threads > 1 and not waits_passively() and os.path.exists("/proc/stat"):
            share = CoreShare(threads, usable_cores())
    _SHARES.append(share)
    try:
        yield share
    finally:
        _SHARES.pop()
        torch.set_num_threads(before)


def waits_passively() -> bool:
    """Whether OpenMP's idle threads sleep at once (OMP_WAIT_POLICY=PASSIVE) rather than spin."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def threads_note(share: CoreShare | None = None) -> str:
    """One line on the CPU threads a run uses and why, for its start message."""
    threads, cores = torch.get_num_threads(), usable_cores()
    line = f"{threads} CPU thread{'s' if threads > 1 else ''} of {cores} usable cores"
    if local_processes() > 1:
        line += f" shared by {local_processes()} local processes"
    if "OMP_NUM_THREADS" in os.environ:
        line += " (OMP_NUM_THREADS is set)"
    if waits_passively():
        why = os.environ.get("GENLAB_WAIT_POLICY_REASON", "OMP_WAIT_POLICY=PASSIVE is set")
        line += f"; OpenMP threads wait passively: {why}"
    elif share is not None:
        line += "; fewer while other processes keep cores busy"
    return line


F = TypeVar("F", bound=Callable[..., Any])


def shares_cores(fn: F) -> F:
    """Run a driver (evaluate, sample, plot, ...) within ``cpu_threads()``."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with cpu_threads():
            return fn(*args, **kwargs)
    return cast(F, wrapper)


def poll_threads() -> None:
    """Let the innermost ``cpu_threads`` adapt the thread count (cheap when no reading is due).
    Called from the training loop and the samplers' loops."""
    if _SHARES and _SHARES[-1] is not None:
        _SHARES[-1].poll()
