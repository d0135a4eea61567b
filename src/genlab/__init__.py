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

from genlab.comparison import compare
from genlab.evaluation import evaluate
from genlab.experiments import demo, sweep, train
from genlab.exporting import export
from genlab.figures import plot
from genlab.inference import denoise_files, sample, save_samples
from genlab.recipes import RECIPES, load_run, make_config
from genlab.reporting import report

__all__ = ["RECIPES", "compare", "demo", "denoise_files", "evaluate", "export", "load_run",
           "make_config", "plot", "report", "sample", "save_samples", "sweep", "train"]
__version__ = "0.3.1"
