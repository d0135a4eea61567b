"""What the hardware runs natively: the precision a run asks for as 'auto' resolves here.

bf16 is fast where the hardware has it (AMX or AVX512-BF16 on CPUs, compute capability 8.0 and up
on NVIDIA GPUs) and very slow where it is emulated: on an AVX2-only CPU a bf16 matmul ran ~300x
slower than fp32. So genlab uses bf16 only where it is native.

Also: which process of a multi-process job (torchrun, ``accelerate launch``) this one is.
"""

from __future__ import annotations

import os
from functools import cache

import torch

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


def resolve_precision(requested: str, device_type: str = "cpu") -> tuple[str, str]:
    """The precision to run (``'fp32'``, ``'bf16'`` or ``'fp16'``) for ``requested`` ('auto',
    'fp32', 'bf16', 'fp16') on a device type, and a one-line reason. fp16 needs gradient
    scaling, which genlab (through Accelerate) does on CUDA only."""
    native = native_bf16(device_type)
    where = "this GPU" if device_type == "cuda" else cpu_name()
    if requested == "auto":
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
