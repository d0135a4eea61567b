"""genlab: train, sample, evaluate and explain VAEs, GANs, diffusion and flow-matching models.

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

The families are the recipes in ``genlab.recipes.RECIPES``: vae, gan (the denoiser), dcgan, ddpm
and flow.
"""

import os as _os
import sys as _sys

# torch's CPU kernels run on an OpenMP pool whose idle threads spin before sleeping (libgomp's
# default). Beside another busy process (a second run, a notebook) the spinning threads of both
# steal each other's cores: benchmarks/bench_threads.py measured DDIM sampling 23x and training
# 1.6x faster there with passive waiting, for 3-22% less on an idle 2-core machine. The policy
# is read when torch loads its OpenMP runtime, so it is set only when torch is not loaded yet,
# and a value the user set wins.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
