"""genlab: train, sample, evaluate and explain VAEs, GANs, diffusion, flow-matching and
autoregressive (PixelCNN) models.

The public API (the CLI's verbs, as functions)::

    import genlab
    cfg = genlab.make_config("vae", "reference", dataset="digits", epochs=5)
    run_dir = genlab.train(cfg)                  # -> runs/<name>/
    run = genlab.load_run(run_dir)               # .config, .model ready for inference
    images = genlab.sample(run_dir, n=64)        # float in [-1, 1], (N, C, H, W)
    metrics = genlab.evaluate(run_dir)           # also written to run_dir/metrics.json
    genlab.plot(run_dir, "reconstructions")      # run_dir/figures/reconstructions.png
    genlab.export(run_dir, "my-vae")             # weights, config, sample grid, model card
    genlab.load_run("my-vae")                    # an exported folder loads like its run

The families are the recipes in ``genlab.RECIPES`` (the same dict as ``genlab.recipes.RECIPES``).
"""

import os as _os
import sys as _sys

from genlab import cores as _cores

# torch's CPU kernels run on an OpenMP pool whose idle threads spin briefly before they sleep:
# fast alone, but beside a process that already keeps the cores busy the spinning threads steal
# its cores and it steals theirs (benchmarks/bench_threads.py: DDIM sampling 2.8x and training
# 1.7x faster there with passive waiting, which on an idle machine cost the reference VAE 2.1x).
# So the policy follows the machine as genlab finds it: passive where other processes keep half
# a core or more busy (over 30 ms, confirmed over 200 ms), OpenMP's own otherwise; contention
# that arrives later lowers the thread count instead (hardware.cpu_threads). The policy is read
# once, when torch loads its OpenMP runtime: it is set only before torch is loaded, never over a
# user's, and not in the processes of a job that divides the cores among them (torchrun,
# compare --jobs), which would see each other starting. A run that starts beside a process that
# is about to end keeps the passive policy for its whole life; OMP_WAIT_POLICY=ACTIVE undoes it.
if ("torch" not in _sys.modules and "OMP_WAIT_POLICY" not in _os.environ
        and _cores.local_processes() == 1):
    _busy = _cores.others_busy()
    if _busy >= 0.5:
        _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        _os.environ["GENLAB_WAIT_POLICY_REASON"] = (
            f"other processes kept {_busy:.1f} cores busy when genlab started")

from genlab.comparison import compare  # noqa: E402
from genlab.evaluation import evaluate  # noqa: E402
from genlab.experiments import demo, sweep, train  # noqa: E402
from genlab.exporting import export  # noqa: E402
from genlab.figures import plot  # noqa: E402
from genlab.inference import denoise_files, sample, save_samples  # noqa: E402
from genlab.recipes import RECIPES, load_run, make_config  # noqa: E402
from genlab.reporting import report  # noqa: E402

__all__ = ["RECIPES", "compare", "demo", "denoise_files", "evaluate", "export", "load_run",
           "make_config", "plot", "report", "sample", "save_samples", "sweep", "train"]
__version__ = "0.3.1"
