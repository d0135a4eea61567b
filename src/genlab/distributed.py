"""The processes of one training job (torchrun, ``accelerate launch``), as the training loop
meets them beside Accelerate.

Each process trains on its own share of every batch; the loop stays one plain function because
what must agree across processes is done here: ``on_main`` runs a step on the main process alone
and gives every process its outcome (a result, or the same error), ``any_process`` and
``global_means`` combine the flags and the logged terms, ``per_process`` gathers each process's
RNG state for the checkpoint, and ``StopSignals`` turns SIGTERM and SIGINT into a request to
stop after the step. ``resume_command`` and ``launch_warning`` say how a job continues, or was
started wrong, in its own processes and machines. With one process each is local and
communicates nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genlab.errors import GenlabError, on_every_rank


def on_main(accelerator, fn: Callable[[], Any]) -> Any:
    """``fn()`` on the main process only; every process returns its result or raises its
    GenlabError, so that all of them go on, or stop, together."""
    outcome: list[Any] = [None, None]
    if accelerator.is_main_process:
        try:
            outcome = [fn(), None]
        except GenlabError as err:
            outcome = [None, err]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(outcome, from_process=0)
    if outcome[1] is not None:
        raise on_every_rank(outcome[1])
    return outcome[0]


def any_process(accelerator, flags: list[float]) -> list[float]:
    """The largest value of each flag over the processes (a flag raised by any of them)."""
    t = torch.tensor([float(f) for f in flags], device=accelerator.device)
    return accelerator.reduce(t, "max").tolist()


def global_means(accelerator, sums: dict[str, float], count: int, seen: int
                 ) -> tuple[dict[str, float], int]:
    """Per-step means of the logged terms over every process's batches, and the images that
    all processes saw (partial last batches counted as they are)."""
    if accelerator.num_processes == 1:
        return {k: v / count for k, v in sums.items()}, seen
    keys = sorted(sums)  # every process logs the same terms
    t = torch.tensor([sums[k] for k in keys] + [float(seen)], dtype=torch.float64,
                     device=accelerator.device)
    t = accelerator.reduce(t, "sum").tolist()
    steps = count * accelerator.num_processes
    return {k: t[j] / steps for j, k in enumerate(keys)}, int(t[-1])


def per_process(acc, t: torch.Tensor) -> list[torch.Tensor]:
    """Every process's copy of a small CPU tensor (an RNG state), indexed by rank."""
    if acc.num_processes == 1:
        return [t]
    gathered = acc.gather(t.to(acc.device)[None])
    return [g.cpu().clone() for g in gathered]  # rows, not views of one


class StopSignals:
    """Within ``with``: SIGTERM and SIGINT (a scheduler's preemption, Ctrl-C) only set
    ``received``; the loop reads it after each step, writes a checkpoint and stops. Signals that
    follow are absorbed too (torchrun forwards the one it gets to workers that may have had it
    already), except a second Ctrl-C outside torchrun, which stops at once (KeyboardInterrupt);
    SIGKILL always does. The previous checkpoint is kept either way."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # only there can they be set
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if (self.received and signum == signal.SIGINT
                and "TORCHELASTIC_RUN_ID" not in os.environ):
            raise KeyboardInterrupt
        self.received = self.received or signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def describe_processes(n: int) -> str:
    """'1 process', '4 processes'."""
    return f"{n} process" + ("es" if n > 1 else "")


def job_nodes(world: int) -> int:
    """Machines of this job, from torchrun's LOCAL_WORLD_SIZE (processes per machine)."""
    return max(1, world // int(os.environ.get("LOCAL_WORLD_SIZE", world)))


def resume_command(run_dir: Path, world: int, num_nodes: int = 1) -> str:
    """The command that continues ``run_dir`` on ``world`` processes over ``num_nodes``
    machines."""
    if world == 1:
        return f"genlab train --resume {run_dir}"
    if num_nodes == 1:
        return f"torchrun --nproc_per_node {world} -m genlab.cli train --resume {run_dir}"
    return (f"torchrun --nnodes {num_nodes} --nproc_per_node {world // num_nodes} "
            f"--rdzv_backend c10d --rdzv_endpoint HOST:PORT -m genlab.cli train --resume "
            f"{run_dir}, on each machine")


def launch_warning(env: dict[str, str], world: int) -> str | None:
    """A warning when ``accelerate launch --cpu --num_processes N`` (N > 1) started this as one
    process: without mpirun its --cpu launcher runs a single process, saying nothing. It leaves
    MASTER_ADDR set and ACCELERATE_USE_CPU true, but no WORLD_SIZE."""
    if (world == 1 and env.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1")
            and "MASTER_ADDR" in env and "WORLD_SIZE" not in env):
        return ("warning: `accelerate launch --cpu` started one process, not the several asked "
                "for (it runs several on CPUs only through mpirun); use `torchrun "
                "--nproc_per_node N -m genlab.cli train ...` instead")
    return None


def wait_for_other_processes() -> None:
    """Under torch.distributed, meet every other process of the job here (the CLI, after an error
    that all of them raised, so that the launcher tears none down before the main process has
    reported it); otherwise nothing."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
