"""Precision chosen by the hardware: 'auto' resolves to bf16 only where bf16 is native, and the
choice is recorded in config.json."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from conftest import run_cli

from genlab import training
from genlab.hardware import bf16_slowdown, native_bf16, resolve_precision
from genlab.recipes import load_run, make_config


def test_auto_follows_the_hardware_and_explicit_choices_stay():
    native = native_bf16("cpu")
    precision, reason = resolve_precision("auto", "cpu")
    assert precision == ("bf16" if native else "fp32")
    assert reason.startswith(f"precision auto -> {precision}")
    assert resolve_precision("fp32", "cpu")[0] == "fp32"
    precision, reason = resolve_precision("bf16", "cpu")
    assert precision == "bf16"
    assert ("warning" in reason and "slower than fp32" in reason) == (not native)


def test_gpus_without_bf16_get_fp16_with_gradient_scaling_and_cpus_never_do(monkeypatch):
    import genlab.hardware as hw
    from genlab.errors import ConfigError

    monkeypatch.setattr(hw, "native_bf16", lambda device_type="cpu": False)
    assert hw.resolve_precision("auto", "cuda")[0] == "fp16"
    assert "gradient scaling" in hw.resolve_precision("auto", "cuda")[1]
    assert hw.resolve_precision("auto", "cpu")[0] == "fp32"
    monkeypatch.setattr(hw, "native_bf16", lambda device_type="cpu": True)
    assert hw.resolve_precision("auto", "cuda")[0] == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        hw.resolve_precision("fp16", "cpu")
    code, _, err = run_cli("train", "vae", "--dataset", "digits", "--steps", "1",
                           "--precision", "fp16", "--device", "cpu")
    assert code == 2 and "fp16 needs a CUDA GPU" in err


def test_bf16_slowdown_is_measured():
    ratio = bf16_slowdown()
    assert ratio > 0
    if not native_bf16("cpu"):
        assert ratio > 2  # emulated bf16 is far slower than fp32


def test_auto_is_resolved_once_and_written_into_the_run(tmp_path, capsys):
    cfg = make_config("vae", "reference", dataset="digits", steps=2, batch_size=16,
                      hidden=(8,), run_dir=str(tmp_path / "r"))
    assert cfg.precision == "auto"
    run_dir = training.train(cfg, progress=False)
    saved = json.loads((run_dir / "config.json").read_text())["precision"]
    assert saved == "fp32"  # bf16 where native, but not for the MLP VAE (no convolutions)
    info = json.loads((run_dir / "data.json").read_text())
    assert info["precision_reason"].startswith("precision auto -> fp32")  # recorded in the run
    assert "CPU thread" in info["threads"]
    assert f"precision auto -> {saved}" in capsys.readouterr().err
    run = load_run(run_dir)
    assert run.config.precision == saved and run.model(torch.rand(2, 1, 8, 8))[0].dtype == \
        torch.float32


def test_runs_of_different_precision_train_one_after_another_in_one_process(tmp_path):
    """Accelerate keeps one mixed-precision setting per process; genlab resets it per run, so a
    notebook can train fp32, then bf16, then fp32 again, and the last run is the first one's
    twin (the bf16 run left nothing behind)."""
    from safetensors.torch import load_file

    def run(name: str, precision: str):
        cfg = make_config("vae", "reference", dataset="digits", steps=3, batch_size=16,
                          hidden=(8,), precision=precision, run_dir=str(tmp_path / name))
        return training.train(cfg, progress=False)

    def weights(run_dir):
        return load_file(sorted((run_dir / "checkpoints").rglob("*.safetensors"))[0])

    first, mixed, last = run("a", "fp32"), run("b", "bf16"), run("c", "fp32")
    assert json.loads((mixed / "config.json").read_text())["precision"] == "bf16"
    a, b, c = weights(first), weights(mixed), weights(last)
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # bf16 autocast did act on run b


# --- threads -------------------------------------------------------------------------------------


@contextlib.contextmanager
def spinners(n: int):
    """``n`` processes that keep a core busy each, until the block ends."""
    import os
    import signal
    import subprocess
    import sys
    import time

    burn = ("import multiprocessing as m, time\n"
            "def spin():\n    end = time.time() + 30\n    while time.time() < end: pass\n"
            f"ps = [m.Process(target=spin) for _ in range({n})]\n"
            "[p.start() for p in ps]; [p.join() for p in ps]\n")
    busy = subprocess.Popen([sys.executable, "-c", burn], start_new_session=True)
    try:
        time.sleep(0.6)  # the interpreters start
        yield
    finally:
        os.killpg(busy.pid, signal.SIGKILL)  # the spinning children too
        busy.wait()
        time.sleep(0.2)


def quiet_machine() -> None:
    from genlab.cores import others_busy

    busy = others_busy(0.3, confirm=0)
    if busy > 0.5:
        pytest.skip(f"other processes keep {busy:.1f} cores busy: the test needs them idle")


def test_openmp_threads_wait_passively_only_where_the_machine_is_busy_at_import():
    """OpenMP's own policy (spin briefly, then sleep) runs fast alone; genlab asks for passive
    waiting only where other processes already keep the cores busy, and never over a user's
    choice, once torch is loaded, or in a job whose processes divide the cores among them."""
    import os
    import subprocess
    import sys

    probe = "import os, {first}; print(os.environ.get('OMP_WAIT_POLICY'))"

    def policy(first: str = "genlab", **env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        done = subprocess.run([sys.executable, "-c", probe.format(first=first)],
                              env={**clean, **env}, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    quiet_machine()
    assert policy() == "None"
    with spinners(max(1, __import__("genlab.cores", fromlist=["x"]).usable_cores())):
        assert policy() == "PASSIVE"
        assert policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"  # the user's choice stays
        assert policy("torch, genlab") == "None"  # too late to matter: left alone
        assert policy(LOCAL_WORLD_SIZE="2") == "None"  # a job's processes see each other


def test_cgroup_quotas_in_both_formats(tmp_path):
    from genlab.cores import _cgroup_cores

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    _cgroup_cores.cache_clear()  # read once per process; each case rewrites the files
    assert _cgroup_cores(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    _cgroup_cores.cache_clear()
    assert _cgroup_cores(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    _cgroup_cores.cache_clear()
    assert _cgroup_cores(str(tmp_path)) == 4.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    _cgroup_cores.cache_clear()
    assert _cgroup_cores(str(tmp_path)) is None


def test_the_share_is_the_usable_cores_over_the_local_processes(monkeypatch):
    import genlab.cores as hw

    monkeypatch.setattr(hw, "usable_cpus", lambda: list(range(16)))
    monkeypatch.setattr(hw, "_cgroup_cores", lambda: None)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("GENLAB_LOCAL_JOBS", raising=False)
    assert hw.thread_share() == 16
    monkeypatch.setattr(hw, "_cgroup_cores", lambda: 2.5)  # a container's quota caps it
    assert hw.usable_cores() == 3 and hw.thread_share() == 3
    monkeypatch.setattr(hw, "_cgroup_cores", lambda: None)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun --nproc_per_node 4
    assert hw.thread_share() == 4
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("GENLAB_LOCAL_JOBS", "32")  # more jobs than cores: one thread each
    assert hw.thread_share() == 1


def test_core_share_gives_taken_cores_up_and_takes_freed_ones_back(monkeypatch):
    """Others' use = all CPU time on our cores less ours, per second of wall time."""
    from genlab.hardware import CoreShare

    clock = [0.0]
    counters = [0.0, 0.0]  # (every process, this one) in CPU seconds
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)

    def advance(seconds: float, mine: float, others: float) -> int:
        clock[0] += seconds
        counters[0] += (mine + others) * seconds
        counters[1] += mine * seconds
        return share.poll()

    share = CoreShare(4, 4, interval=0.5, read=lambda: tuple(counters), clock=lambda: clock[0])
    assert advance(0.2, 4, 0) == 4 and set_to == []         # no reading due yet
    assert advance(0.4, 4, 0.4) == 4                        # background noise: keep all four
    assert advance(0.5, 2, 2.0) == 2 and set_to == [2]      # a 2-thread job arrived
    assert advance(0.5, 2, 2.0) == 2                        # settled: half each
    assert advance(0.5, 2, 1.3) == 2                        # less than a clear core more: stay
    assert advance(0.5, 2, 0.5) == 3                        # a core clearly free again
    assert advance(0.5, 3, 0.0) == 4 and set_to == [2, 3, 4]  # alone again, at the share
    assert advance(0.5, 1, 9.0) == 1                        # never below one thread
    assert [threads for _, threads, _ in share.changes] == [2, 3, 4, 1]


def test_cpu_threads_takes_its_share_restores_and_leaves_a_user_setting(monkeypatch):
    import genlab.hardware as hw

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(hw, "thread_share", lambda: 1)
    before = torch.get_num_threads()
    with hw.cpu_threads() as share:
        assert torch.get_num_threads() == 1 and share is None  # one thread: nothing to adapt
    assert torch.get_num_threads() == before
    with hw.cpu_threads(fixed=3):
        assert torch.get_num_threads() == 3
        hw.poll_threads()  # a fixed count is not adapted
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    monkeypatch.setattr(hw, "thread_share", lambda: 64)
    torch.set_num_threads(1)  # the caller's own count caps the share
    try:
        with hw.cpu_threads():
            assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(2)
        with hw.cpu_threads() as share:  # the user's OMP setting wins: left as it is
            assert share is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(__import__("genlab.cores", fromlist=["x"]).usable_cores() < 2,
                    reason="needs two usable cores")
def test_a_busy_process_beside_us_is_seen_and_takes_our_threads_down():
    """Real counters (/proc): processes that keep every core busy show as the others' use of
    about every core and take the count to one; once they end they are no longer seen."""
    import time

    from genlab.cores import others_busy, usable_cores
    from genlab.hardware import CoreShare

    quiet_machine()
    cores = usable_cores()
    before = torch.get_num_threads()
    try:
        with spinners(cores):
            busy_use = others_busy(0.6, confirm=0)
            share = CoreShare(cores, cores, interval=0.3)
            deadline = time.monotonic() + 10
            while share.poll() > 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert share.threads == 1, share.changes
    finally:
        torch.set_num_threads(before)
    assert busy_use > 0.7 * cores
    assert others_busy(0.6, confirm=0) < busy_use - 0.7 * cores


def test_auto_precision_keeps_networks_without_convolutions_in_fp32(monkeypatch):
    """On a CPU with native bf16 the MLP VAE stays fp32 (it gains nothing there) and the
    convolutional networks get bf16; the reason says which."""
    import genlab.hardware as hw
    from genlab.models.vae import MLPVAE, ConvVAE

    monkeypatch.setattr(hw, "native_bf16", lambda device_type="cpu": True)
    mlp, conv = MLPVAE((1, 8, 8), 2, (8,)), ConvVAE((1, 8, 8), 2, (8, 8))
    precision, reason = hw.resolve_precision("auto", "cpu", [mlp])
    assert precision == "fp32" and "no convolutions" in reason
    assert hw.resolve_precision("auto", "cpu", [conv])[0] == "bf16"
    assert hw.resolve_precision("auto", "cuda", [mlp])[0] == "bf16"  # GPUs: bf16 pays for both
    assert hw.resolve_precision("bf16", "cpu", [mlp])[0] == "bf16"   # asked for: as asked
