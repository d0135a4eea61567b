"""Several processes on one machine: torchrun, the gloo backend, CPUs, the embedded digits.

The same training as one process at the global batch; stops that every process agrees on (a NaN
on one rank, a signal to one rank); exact resume on the same number of processes and a clear
refusal on another; one writer per run folder; two "nodes" on one box; every family. Each launch
of torchrun costs a few seconds of process start-up, so the launches are few and the runs tiny.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genlab import checkpoint, recipes
from genlab import training as train_mod
from genlab.cli import main
from genlab.distributed import launch_warning
from genlab.errors import ConfigError, RunError

SRC = Path(__file__).resolve().parents[1] / "src"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
VAE_RUN = ("train", "vae", "--preset", "reference", "--dataset", "digits", "--hidden", "16",
           "--latent-dim", "2", "--seed", "3", "--device", "cpu", "--precision", "fp32",
           "--num-threads", "1")
VAE = (*VAE_RUN, "--log-every", "4", "--checkpoint-every", "4")
# The denoiser with no discriminator and a noise far below one grey level (the rounding to whole
# grey levels gives back the clean image) is plain L1 regression: no randomness in its step.
DETERMINISTIC = ("train", "gan", "--dataset", "digits", "--arch", "unet", "--width", "8",
                 "--adv-weight", "0", "--noise", "gaussian", "--sigma", "1e-6", "--seed", "1",
                 "--device", "cpu", "--precision", "fp32", "--num-threads", "1",
                 "--log-every", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def weights(run: Path) -> dict[str, torch.Tensor]:
    flat, _ = checkpoint.load_weights(run)
    return {f"{m}.{k}": v for m, tensors in flat.items() for k, v in tensors.items()}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def curve(run: Path) -> list[tuple]:
    """The logged steps and loss terms (not the timings)."""
    return [tuple((k, v) for k, v in r.items() if k not in ("images_per_s", "train_seconds"))
            for r in checkpoint.read_log(run)]


# The job each process of a torchrun launch runs: genlab's CLI, command after command, with each
# command's exit code, stdout and stderr kept per rank in results-<rank>.json. One launch for all
# the two-process scenarios: each launch costs seconds of process start-up on 2 cores. The figures
# drawn after training (seconds each) are left out but for the one command whose env says FIGURES.
JOB = """import contextlib, io, json, os, sys, time
from genlab import figures
from genlab.cli import main
commands = json.load(open(sys.argv[1]))
results, plot_all = {}, figures.plot_all
for name, env, args in commands:
    figures.plot_all = plot_all if env.pop("FIGURES", None) else (lambda run_dir: [])
    os.environ.update(env)
    out, err, start = io.StringIO(), io.StringIO(), time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:
            code = exc.code
    for key in env:
        del os.environ[key]
    results[name] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                     "seconds": round(time.perf_counter() - start, 2)}
rank = os.environ["RANK"]
with open(os.path.join(os.path.dirname(sys.argv[1]), f"results-{rank}.json"), "w") as f:
    json.dump(results, f)
"""

FAMILIES = {
    "vae": ("--hidden", "16", "--latent-dim", "2"),
    "gan": ("--disc", "reference", "--width", "8"),
    "dcgan": ("--width", "8", "--latent-dim", "8"),
    "ddpm": ("--channels", "8,16", "--num-steps", "10", "--ema-decay", "0.9"),
    "flow": ("--channels", "8,16"),
}
EVALUATE = {
    "vae": ("--k", "5", "--num-images", "40"),
    "gan": ("--num-images", "20", "--baselines", "nlm"),
    "dcgan": ("--num-samples", "20", "--feature-steps", "20"),
    "ddpm": ("--num-samples", "20", "--ddpm-samples", "4", "--ddim-steps", "3",
             "--feature-steps", "20"),
    "flow": ("--num-samples", "20", "--nfe", "2", "--feature-steps", "20"),
}


class Job:
    """The results of the two-process job: run folders under ``root``; ``result(name, rank)``."""

    def __init__(self, root: Path, results: list[dict[str, dict]]) -> None:
        self.root, self.results = root, results

    def result(self, name: str, rank: int = 0) -> dict:
        return self.results[rank][name]

    def messages(self, name: str, rank: int) -> list[str]:
        """The lines genlab itself printed on stderr (not the start-up notes)."""
        return [line for line in self.result(name, rank)["stderr"].splitlines()
                if line.startswith("genlab")]


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Job:
    """One torchrun launch of 2 processes (gloo, CPU) running every scenario in turn."""
    root = tmp_path_factory.mktemp("dist")
    vae = [*VAE, "--steps", "16", "--batch-size", "16", "--run-dir"]
    common = ("--dataset", "digits", "--steps", "3", "--batch-size", "8", "--device", "cpu",
              "--precision", "fp32", "--num-threads", "1", "--log-every", "3")
    commands = [
        ("vae", {}, [*vae, str(root / "vae-two")]),
        ("deterministic", {}, [*DETERMINISTIC, "--steps", "5", "--batch-size", "8", "--run-dir",
                               str(root / "gan-two")]),
        ("accumulated", {}, [*DETERMINISTIC, "--steps", "5", "--batch-size", "8", "--grad-accum",
                             "2", "--run-dir", str(root / "gan-two-accumulated")]),
        # rank 1 alone gets SIGTERM during step 8 (index 7); rank 0 must stop after it too
        ("preempted", {"GENLAB_TEST_SIGNAL_AT": "1:7"}, [*vae, str(root / "vae-preempted")]),
        ("resumed", {}, ["train", "--resume", str(root / "vae-preempted")]),
        ("nan", {"GENLAB_TEST_NAN_AT": "1:9"}, [*VAE, "--steps", "12", "--batch-size", "16",
                                                "--run-dir", str(root / "vae-nan")]),
        *[(f"train-{f}", {"FIGURES": "1"} if f == "dcgan" else {},
           ["train", f, *common, "--run-dir", str(root / f), *a]) for f, a in FAMILIES.items()],
        *[(f"evaluate-{f}", {}, ["evaluate", str(root / f), "--device", "cpu", *a])
          for f, a in EVALUATE.items()],
    ]
    (root / "job.py").write_text(JOB)
    (root / "commands.json").write_text(json.dumps(commands))
    cmd = [*TORCHRUN, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
           str(free_port()), str(root / "job.py"), str(root / "commands.json")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=environment(GENLAB_CACHE=str(root / "cache")))
    assert r.returncode == 0, r.stdout + r.stderr
    return Job(root, [json.loads((root / f"results-{rank}.json").read_text())
                      for rank in range(2)])


def test_two_processes_train_as_one_at_the_global_batch(tmp_path, job, one_thread):
    # a step without randomness: the same weights, up to the order of float sums
    assert job.result("deterministic")["code"] == 0
    two = job.root / "gan-two"
    one = train_mod.train(recipes.make_config(
        "gan", "default", dataset="digits", arch="unet", width=8, adv_weight=0.0,
        noise="gaussian", sigma=1e-6, seed=1, device="cpu", precision="fp32", num_threads=1,
        log_every=1, steps=5, batch_size=16, run_dir=str(tmp_path / "one")), progress=False)
    w1, w2 = weights(one), weights(two)
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5)
    log1, log2 = checkpoint.read_log(one), checkpoint.read_log(two)
    assert [r["step"] for r in log2] == [1, 2, 3, 4, 5]
    for a, b in zip(log1, log2):  # the log holds the mean over both processes' batches
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)

    # the VAE draws its noise per process: the same loss curve, within that noise
    assert job.result("vae")["code"] == 0
    vae_one = train_mod.train(recipes.make_config(
        "vae", "reference", dataset="digits", hidden=(16,), latent_dim=2, seed=3, device="cpu",
        precision="fp32", num_threads=1, log_every=4, checkpoint_every=4, steps=16,
        batch_size=32, run_dir=str(tmp_path / "vae-one")), progress=False)
    a, b = checkpoint.read_log(vae_one), checkpoint.read_log(job.root / "vae-two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [4, 8, 12, 16]
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=0.03)
        assert y["recon"] == pytest.approx(x["recon"], rel=0.03)
    state = checkpoint.load_state(job.root / "vae-two")
    assert state["world_size"] == 2 and len(state["gen_state"]) == 2
    assert not torch.equal(state["gen_state"][0], state["gen_state"][1])


def test_two_processes_accumulating_two_micro_batches_train_as_one(tmp_path, job, one_thread):
    """2 processes x 2 micro-batches of 4 (gradients all-reduced once, after the second) take the
    steps of one process at batch 16."""
    assert job.result("accumulated")["code"] == 0, job.result("accumulated")["stderr"]
    one = train_mod.train(recipes.make_config(
        "gan", "default", dataset="digits", arch="unet", width=8, adv_weight=0.0,
        noise="gaussian", sigma=1e-6, seed=1, device="cpu", precision="fp32", num_threads=1,
        log_every=1, steps=5, batch_size=16, run_dir=str(tmp_path / "one")), progress=False)
    two = job.root / "gan-two-accumulated"
    w1, w2 = weights(one), weights(two)
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5)
    assert [r["step"] for r in checkpoint.read_log(two)] == [1, 2, 3, 4, 5]
    for a, b in zip(checkpoint.read_log(one), checkpoint.read_log(two)):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)


def test_signal_to_one_rank_stops_all_with_a_checkpoint_and_resumes_exactly(job):
    run = job.root / "vae-preempted"
    assert [job.result("preempted", rank)["code"] for rank in (0, 1)] == [143, 143]
    assert job.messages("preempted", 0) == [
        f"genlab: preempted by SIGTERM at step 8; checkpoint written; resume with `torchrun "
        f"--nproc_per_node 2 -m genlab.cli train --resume {run}`"]
    assert job.messages("preempted", 1) == []  # printed once
    # resumed on two processes: the run it would have been, bit for bit
    assert job.result("resumed")["code"] == 0, job.result("resumed")["stderr"]
    assert_same_weights(run, job.root / "vae-two")
    assert curve(run) == curve(job.root / "vae-two")
    assert 8 in [r["step"] for r in checkpoint.read_log(run)]
    assert not checkpoint.lock_path(run).exists()
    # on one process: refused, saying how to continue
    with pytest.raises(RunError, match=r"was trained on 2 processes and this job has 1 process; "
                                       r"resume it on 2 \(`torchrun --nproc_per_node 2 "):
        train_mod.train(resume=run, progress=False)
    assert not checkpoint.lock_path(run).exists()


def test_nan_on_one_rank_stops_every_rank_with_one_message(job):
    run = job.root / "vae-nan"
    assert [job.result("nan", rank)["code"] for rank in (0, 1)] == [2, 2]
    assert job.messages("nan", 0) == [
        f"genlab: error: loss is nan at step 9 on rank 1; stopped, the last good checkpoint "
        f"(step 8) is kept in {run / 'checkpoints'}"]
    assert job.messages("nan", 1) == []
    assert checkpoint.latest_checkpoint(run)["step"] == 8
    assert recipes.load_run(run).step == 8
    assert not checkpoint.lock_path(run).exists()


def test_every_family_trains_on_two_processes_and_is_evaluated_once(job):
    for family in FAMILIES:
        run = job.root / family
        for rank in (0, 1):
            assert job.result(f"train-{family}", rank)["code"] == 0, job.result(
                f"train-{family}", rank)["stderr"]
            assert job.result(f"evaluate-{family}", rank)["code"] == 0
        assert checkpoint.load_state(run)["world_size"] == 2
        assert checkpoint.read_log(run)[-1]["step"] == 3
        assert json.loads(checkpoint.metrics_path(run).read_text())["family"] == family
        # the main process evaluated and wrote metrics.json; the other did nothing
        assert f"written: {checkpoint.metrics_path(run)}" in job.result(f"evaluate-{family}")[
            "stdout"]
        assert job.result(f"evaluate-{family}", 1)["stdout"] == ""
        assert job.result(f"train-{family}", 1)["stdout"] == ""
    assert (job.root / "dcgan" / "figures" / "samples.png").exists()  # drawn by the main process
    assert any(key.startswith("ema.") for key in weights(job.root / "ddpm"))


def test_sigterm_finishes_the_step_checkpoints_and_resumes_exactly(tmp_path, one_thread):
    """A real SIGTERM to a real `genlab train` process (one process)."""
    run = tmp_path / "vae-sigterm"
    cmd = [sys.executable, "-m", "genlab.cli", *VAE_RUN, "--log-every", "1", "--steps", "100000",
           "--checkpoint-every", "100000", "--batch-size", "16", "--run-dir", str(run)]
    proc = subprocess.Popen(cmd, env=environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(checkpoint.read_log(run)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    step = checkpoint.latest_checkpoint(run)["step"]
    assert (f"genlab: preempted by SIGTERM at step {step}; checkpoint written; resume with "
            f"`genlab train --resume {run}`") in err
    assert checkpoint.read_log(run)[-1]["step"] == step
    assert not checkpoint.lock_path(run).exists()

    train_mod.train(resume=run, steps=step + 5, progress=False)
    straight = train_mod.train(recipes.make_config(
        "vae", "reference", dataset="digits", hidden=(16,), latent_dim=2, seed=3, device="cpu",
        precision="fp32", num_threads=1, log_every=1, steps=step + 5, batch_size=16,
        run_dir=str(tmp_path / "straight")), progress=False)
    assert_same_weights(run, straight)
    assert curve(run) == curve(straight)


def signal_at(monkeypatch, at_step: int, times: int = 1, sig: int = signal.SIGINT) -> None:
    """The VAE's step sends this process ``sig`` ``times`` times at ``at_step``."""
    original = recipes.RECIPES["vae"]

    def step(s, x, y, step):
        if step == at_step:
            for _ in range(times):
                os.kill(os.getpid(), sig)
        return original.step(s, x, y, step)

    import dataclasses

    monkeypatch.setitem(recipes.RECIPES, "vae", dataclasses.replace(original, step=step))


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler, whatever the test was started with (a background job starts
    with SIGINT ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_finishes_the_step_and_twice_stops_at_once(tmp_path, monkeypatch, capsys,
                                                          python_sigint):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        signal_at(m, 4)
        code = main(["train", "vae", "--preset", "reference", "--dataset", "digits", "--hidden",
                     "8", "--steps", "20", "--device", "cpu", "--run-dir", str(run)])
    assert code == 130
    assert (f"genlab: preempted by SIGINT at step 5; checkpoint written; resume with `genlab "
            f"train --resume {run}`") in capsys.readouterr().err
    assert checkpoint.latest_checkpoint(run)["step"] == 5
    with monkeypatch.context() as m:  # a second Ctrl-C: at once, the checkpoint of step 5 kept
        signal_at(m, 7, times=2)
        with pytest.raises(KeyboardInterrupt):
            train_mod.train(resume=run, progress=False)
    assert checkpoint.latest_checkpoint(run)["step"] == 5
    assert not checkpoint.lock_path(run).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def tiny_vae(tmp_path: Path, steps: int = 2):
    return recipes.make_config("vae", "reference", dataset="digits", hidden=(8,), latent_dim=2,
                               steps=steps, batch_size=16, log_every=1, device="cpu",
                               run_dir=str(tmp_path / "run"))


def write_lock(run: Path, **held) -> None:
    checkpoint.lock_path(run).write_text(json.dumps(
        {"host": socket.gethostname(), "started": "2024-01-01T00:00:00", **held}))


def test_one_writer_per_run_folder(tmp_path, capsys):
    original = recipes.RECIPES["vae"]
    seen = []

    def step(s, x, y, step):
        seen.append(json.loads(checkpoint.lock_path(s.cfg.run_dir).read_text()))
        return original.step(s, x, y, step)

    import dataclasses

    recipes.RECIPES["vae"] = dataclasses.replace(original, step=step)
    try:
        run = train_mod.train(tiny_vae(tmp_path), progress=False)
    finally:
        recipes.RECIPES["vae"] = original
    assert {(h["host"], h["pid"]) for h in seen} == {(socket.gethostname(), os.getpid())}
    assert not checkpoint.lock_path(run).exists()  # released at the end

    # a live process holds it: a second writer is refused, in one line from the CLI
    write_lock(run, pid=os.getppid())
    with pytest.raises(RunError, match=f"in use by pid {os.getppid()} on {socket.gethostname()}"):
        train_mod.train(resume=run, steps=3, progress=False)
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("genlab")]
    assert len(err) == 1 and f"delete {checkpoint.lock_path(run)}" in err[0]
    write_lock(run, pid=1, host="another-host")  # not checkable from here: refused too
    with pytest.raises(RunError, match="in use by pid 1 on another-host"):
        train_mod.train(resume=run, steps=3, progress=False)

    # a dead process's lock on this host is stale: taken over
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_lock(run, pid=gone.pid)
    train_mod.train(resume=run, steps=3, progress=False)
    assert checkpoint.latest_checkpoint(run)["step"] == 3
    assert not checkpoint.lock_path(run).exists()


# four interpreters start (two agents, two workers): about 30-45 s on 2 cores; issue 11 asks
# for this proof in the default suite
def test_two_nodes_on_one_machine_train_one_run(tmp_path, job):
    """Two torchrun agents, one process each, meeting at a c10d rendezvous on loopback: the
    same run as two processes under one agent, through the real `genlab` command."""
    run = tmp_path / "vae-nodes"
    port = free_port()
    cmd = [*TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
           "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "two-nodes", "--local_addr",
           "127.0.0.1", "-m", "genlab.cli", *VAE, "--steps", "16", "--batch-size", "16",
           "--run-dir", str(run)]
    nodes = [subprocess.Popen([*cmd[:3], "--node_rank", str(i), *cmd[3:]], env=environment(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    try:
        results = [node.communicate(timeout=180) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], results
    state = checkpoint.load_state(run)
    assert state["world_size"] == 2 and state["num_nodes"] == 2
    assert_same_weights(run, job.root / "vae-two")


def test_sync_batchnorm_is_refused_on_cpu(tmp_path):
    cfg = recipes.make_config("dcgan", "default", dataset="digits", width=8, steps=1,
                              batch_size=8, device="cpu", sync_batchnorm=True,
                              run_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="sync_batchnorm needs CUDA"):
        train_mod.train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_accelerate_launch_cpu_running_one_process_is_detected():
    """`accelerate launch --cpu --num_processes 2` sets MASTER_ADDR and ACCELERATE_USE_CPU but
    starts one process, with no WORLD_SIZE."""
    launched = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert "use `torchrun --nproc_per_node N" in launch_warning(launched, 1)
    assert launch_warning({**launched, "WORLD_SIZE": "2"}, 2) is None  # torchrun
    assert launch_warning({"ACCELERATE_USE_CPU": "True"}, 1) is None  # --num_processes 1
    assert launch_warning({}, 1) is None
