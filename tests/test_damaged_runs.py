"""A run folder that lived through copies: damaged, missing or hostile files give a fallback or
one line (exit 2), never a traceback; a write that fails stops with exit 74, and the run resumes
exactly once space is freed."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import socket
import warnings
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from genlab import checkpoint, evaluation, featurenet, figures, files, recipes, reporting
from genlab import training as train_mod
from genlab.errors import FallbackWarning, RunError

STEPS, EVERY = 4, 2  # the tiny run keeps checkpoints of steps 2 and 4
CKPT_FILES = tuple(f"checkpoints/ckpt-{s:08d}.{kind}" for s in (EVERY, STEPS)
                   for kind in ("json", "safetensors", "state.pt"))
RUN_FILES = ("config.json", "data.json", "log.jsonl", "metrics.json", "lock.json",
             "checkpoints/latest.json", *CKPT_FILES)
KINDS = ("truncate", "bitflip", "empty", "delete", "wrong_type", "newer", "hostile")
VERBS = ("sample", "evaluate", "plot", "export", "train")
DAMAGES_PER_VERB = 60
TRAIN_FLAGS = ("--preset", "reference", "--dataset", "digits", "--batch-size", "16",
               "--log-every", "1", "--checkpoint-every", str(EVERY), "--hidden", "8",
               "--latent-dim", "2", "--seed", "1", "--device", "cpu", "--precision", "fp32")


def tiny_config(run_dir: Path, **changes):
    values = dict(dataset="digits", steps=STEPS, batch_size=16, log_every=1,
                  checkpoint_every=EVERY, hidden=(8,), latent_dim=2, seed=1, device="cpu",
                  precision="fp32", run_dir=str(run_dir))
    return recipes.make_config("vae", "reference", **{**values, **changes})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One tiny evaluated VAE run, trained once per session; tests damage copies of it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train_mod.train(tiny_config(tmp_path_factory.mktemp("tiny") / "run"),
                              progress=False)
        evaluation.evaluate(run, k=2, num_images=4, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="session")
def straight6(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The model weights of the same run trained straight to step 6, never interrupted."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train_mod.train(tiny_config(tmp_path_factory.mktemp("straight") / "run", steps=6),
                              progress=False)
    finally:
        torch.set_num_threads(threads)
    return checkpoint.load_checkpoint(run).weights["model"]


@pytest.fixture
def no_figures(monkeypatch, one_thread):
    """`genlab train` without the figures drawn after training (the plot verb draws them)."""
    monkeypatch.setattr(figures, "plot_all", lambda *a, **k: [])


def copy_run(tiny_run: Path, to: Path) -> Path:
    shutil.copytree(tiny_run, to)
    return to


def one_line(code: int, err: str) -> tuple[list[str], list[str]]:
    """The error and warning lines of stderr, after checking that it holds nothing else, no
    traceback, at most one warning, and for exit 2 exactly one error line, the last."""
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("genlab: error: ")]
    warned = [line for line in lines if line.startswith("genlab: warning: ")]
    assert "Traceback" not in err and len(errors) + len(warned) == len(lines), err
    assert len(warned) <= 1, err
    if code == 2:
        assert len(errors) == 1 and lines[-1] == errors[0], err
    else:
        assert code == 0 and not errors, (code, err)
    return errors, warned


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def stale_lock(run: Path) -> None:
    """The lock.json of a trainer killed on this host (a pid above pid_max: no such process)."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text()) if Path(
        "/proc/sys/kernel/pid_max").exists() else 4194304
    (run / "lock.json").write_text(json.dumps({"host": socket.gethostname(), "pid": pid_max + 1,
                                               "started": "2025-01-01T00:00:00+0000"}) + "\n")


def damage(run: Path, name: str, kind: str, rng: random.Random, outside: Path) -> str:
    """Damage run/name in one way; returns what was done, for the failure message."""
    path = run / name
    if name == "lock.json":
        stale_lock(run)
    raw = path.read_bytes()
    if kind == "truncate":
        cut = rng.randrange(len(raw))
        path.write_bytes(raw[:cut])
        return f"truncated to {cut} of {len(raw)} bytes"
    if kind == "bitflip" or (kind == "newer" and not name.endswith((".json", ".jsonl"))):
        at, bit = rng.randrange(len(raw)), rng.randrange(8)
        path.write_bytes(raw[:at] + bytes([raw[at] ^ (1 << bit)]) + raw[at + 1:])
        return f"bit {bit} of byte {at} flipped"
    if kind == "empty":
        path.write_bytes(b"")
        return "emptied"
    if kind == "delete":
        path.unlink()
        return "deleted"
    if kind == "wrong_type":
        value = rng.choice(["[]", '"text"', "42", "null", "true", "{}", '{"step": "4"}'])
        if name == "log.jsonl":
            lines = raw.decode().splitlines()
            at = rng.randrange(len(lines))
            lines[at] = value
            path.write_text("\n".join(lines) + "\n")
            return f"line {at + 1} replaced by {value}"
        path.write_text(value + "\n")
        return f"replaced by {value}"
    if kind == "newer":
        if name == "log.jsonl":
            path.write_text(raw.decode() + json.dumps({"step": STEPS, "new_term": 1.5}) + "\n")
            return "a line with a new term appended"
        values = json.loads(raw)
        if name.startswith("checkpoints/"):
            values["format"] = checkpoint.FORMAT + 1
        else:
            values["field_of_a_newer_genlab"] = [1, 2]
        path.write_text(json.dumps(values))
        return "as a newer genlab writes it"
    assert kind == "hostile"
    if name.endswith(".json") and name.startswith("checkpoints/"):
        values = json.loads(raw)
        values["weights"] = rng.choice(["../../outside.safetensors", str(outside),
                                        "/etc/passwd"])
        path.write_text(json.dumps(values))
        return f"weights named {values['weights']!r}"
    target = outside.parent / f"outside-{path.name}"
    target.write_bytes(raw)
    path.unlink()
    path.symlink_to(target)
    return f"a link to {target}"


def run_verb(verb: str, run: Path, out: Path, rng: random.Random) -> tuple[int, str, str]:
    """One small call of ``verb`` on ``run``, in-process."""
    if verb == "sample":
        return run_cli("sample", str(run), "-n", "2", "--out", str(out), "--device", "cpu")
    if verb == "evaluate":
        return run_cli("evaluate", str(run), "--k", "2", "--num-images", "4", "--device", "cpu")
    if verb == "plot":
        kind = rng.choice(["curves", "samples"])
        return run_cli("plot", str(run), kind, "--out", str(out) + ".png", "--device", "cpu")
    if verb == "export":
        return run_cli("export", str(run), "--out", str(out))
    return run_cli("train", "--resume", str(run), "--steps", str(STEPS))


def test_random_damages_fall_back_or_stop_in_one_line(tiny_run, tmp_path, no_figures):
    """Seeded random damages (truncated, bit-flipped, emptied, deleted, of the wrong JSON type,
    as a newer genlab writes them, or hostile: names out of the folder, links out of it) of each
    run-folder file. Running every verb on every damage costs too much, so the verbs are spread
    over them: each verb gets DAMAGES_PER_VERB (60) of the 300 damages, every (file, kind) pair
    comes three times, and `train --resume RUN --steps 4` runs without the figures drawn after
    training (the plot verb draws them: curves or samples, cheap ones). Each call
    exits 0 (a fallback: at most one warning line) or 2 (one line), never with a traceback; the
    checkpoints left undamaged stay byte for byte and load to the same tensors; an export holds
    the tensors of the checkpoint it took, and a resume that fell back to step 2 ends with the
    weights of step 4 bit for bit."""
    rng = random.Random(20)
    pairs = [(name, kind) for name in RUN_FILES for kind in KINDS] * 3
    pairs += [(rng.choice(RUN_FILES), rng.choice(KINDS))
              for _ in range(DAMAGES_PER_VERB * len(VERBS) - len(pairs))]
    rng.shuffle(pairs)
    original = {name: (tiny_run / name).read_bytes() for name in CKPT_FILES}
    weights = {s: checkpoint.load_checkpoint(tiny_run, step=s).weights for s in (EVERY, STEPS)}
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(original[CKPT_FILES[1]])
    codes: dict[str, list[int]] = {verb: [] for verb in VERBS}
    for i, (name, kind) in enumerate(pairs):
        verb = VERBS[i % len(VERBS)]
        run = copy_run(tiny_run, tmp_path / f"d{i}")
        what = damage(run, name, kind, rng, outside)
        code, _, err = run_verb(verb, run, tmp_path / f"out{i}", rng)
        context = f"{verb} on {name} {what}: exit {code}, stderr {err!r}"
        assert code in (0, 2), context
        one_line(code, err)
        codes[verb].append(code)
        if name == "checkpoints/latest.json" and kind == "hostile":
            assert code == 2 and "refusing" in err, context
        if verb != "train":
            for other, raw in original.items():
                assert other == name or (run / other).read_bytes() == raw, context
            for step, expected in weights.items():
                if name != "checkpoints/latest.json" and f"{step:08d}" not in name:
                    loaded = checkpoint.load_checkpoint(run, step=step).weights
                    assert all(same_weights(loaded[m], expected[m]) for m in expected), context
        if verb == "export" and code == 0:
            exported = checkpoint.load_checkpoint(tmp_path / f"out{i}")
            assert all(same_weights(w, weights[exported.step][m])
                       for m, w in exported.weights.items()), context
        if verb == "train" and code == 0 and name != "config.json":
            final = checkpoint.load_checkpoint(run, step=STEPS).weights
            assert same_weights(final["model"], weights[STEPS]["model"]), context
            steps = [r["step"] for r in checkpoint.read_log(run)]
            assert steps == sorted(set(steps)), context
        shutil.rmtree(run)
    assert all(len(c) == DAMAGES_PER_VERB for c in codes.values())
    assert all(0 in c and 2 in c for c in codes.values()), codes  # both outcomes are exercised


@pytest.mark.parametrize("kind", ["safetensors", "state.pt"])
def test_resume_falls_back_from_a_truncated_newest_checkpoint_and_stays_exact(
        tiny_run, tmp_path, straight6, kind, no_figures):
    run = copy_run(tiny_run, tmp_path / "run")
    newest = run / "checkpoints" / f"ckpt-{STEPS:08d}.{kind}"
    newest.write_bytes(newest.read_bytes()[:1000])
    code, out, err = run_cli("train", "--resume", str(run), "--steps", "6")
    _, warned = one_line(code, err)
    assert code == 0 and len(warned) == 1 and str(newest) in warned[0]
    assert "resuming from step 2: steps 3-4 will be trained again" in warned[0]
    assert same_weights(checkpoint.load_checkpoint(run).weights["model"], straight6)
    assert [r["step"] for r in checkpoint.read_log(run)] == [1, 2, 3, 4, 5, 6]


def test_a_missing_newest_weights_file_falls_back_with_a_warning(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    (run / "checkpoints" / f"ckpt-{STEPS:08d}.safetensors").unlink()
    code, _, err = run_cli("sample", str(run), "-n", "2", "--out", str(tmp_path / "s"),
                           "--device", "cpu")
    _, warned = one_line(code, err)
    assert code == 0 and "ckpt-00000004.safetensors not found; using the newest intact " \
                          "checkpoint, step 2" in warned[0]
    code, _, err = run_cli("sample", str(run), "-n", "2", "--out", str(tmp_path / "s"),
                           "--step", "4", "--device", "cpu")
    assert code == 2 and "ckpt-00000004.safetensors not found" in one_line(code, err)[0][0]


def test_no_intact_checkpoint_is_one_line(tiny_run, tmp_path, no_figures):
    run = copy_run(tiny_run, tmp_path / "run")
    for step in (EVERY, STEPS):
        path = run / "checkpoints" / f"ckpt-{step:08d}.safetensors"
        path.write_bytes(path.read_bytes()[:100])
    for args in (("sample", str(run), "-n", "2", "--out", str(tmp_path / "s")),
                 ("train", "--resume", str(run), "--steps", "6")):
        code, _, err = run_cli(*args)
        errors, _ = one_line(code, err)
        assert code == 2 and f"{run} has no intact checkpoint" in errors[0]


def test_train_resume_takes_the_runs_family(tiny_run, tmp_path, no_figures):
    run = copy_run(tiny_run, tmp_path / "run")
    code, out, err = run_cli("train", "--resume", str(run), "--max-minutes", "5", "--steps", "5")
    assert code == 0 and not err and "(step 5," in out
    for flag, message in ((("--lr", "0.5"), "lr (saved 0.001, given 0.5)"),
                          (("--beta", "2"), "beta (saved 0.1, given 2.0)")):
        code, _, err = run_cli("train", "--resume", str(run), *flag)
        assert code == 2 and message in one_line(code, err)[0][0]
    code, _, err = run_cli("train", "--resume", str(tmp_path / "nothing"), "--steps", "5")
    assert code == 2 and "not a genlab run folder" in one_line(code, err)[0][0]


def test_a_full_disk_stops_with_exit_74_and_the_run_resumes_exactly(tmp_path, monkeypatch,
                                                                    straight6, no_figures):
    run = tmp_path / "run"
    replace = os.replace

    def full(src, dst, *args, **kwargs):
        if "ckpt-00000004" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device")
        return replace(src, dst, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(files.os, "replace", full)
        code, _, err = run_cli("train", "vae", *TRAIN_FLAGS, "--steps", "6", "--run-dir",
                               str(run))
    said = [line for line in err.splitlines() if line.startswith("genlab")]
    assert code == 74 and "Traceback" not in err and said == [err.splitlines()[-1]]
    assert said[0].startswith("genlab: error: could not write") and "No space left" in said[0]
    assert "the checkpoint of step 2 is intact" in said[0]
    assert f"genlab train --resume {run}" in said[0]
    assert checkpoint.latest_checkpoint(run)["step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "ckpt-00000002.json", "ckpt-00000002.safetensors", "ckpt-00000002.state.pt",
        "latest.json"]  # nothing half-written, no temporary file
    code, _, err = run_cli("train", "--resume", str(run))
    assert code == 0 and not err
    assert same_weights(checkpoint.load_checkpoint(run).weights["model"], straight6)
    assert [r["step"] for r in checkpoint.read_log(run)] == [1, 2, 3, 4, 5, 6]


def test_names_and_links_out_of_the_run_folder_are_refused(tiny_run, tmp_path):
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes((tiny_run / CKPT_FILES[1]).read_bytes())
    for i, (name, value) in enumerate((("../../secret.safetensors", None), (str(secret), None),
                                       (None, secret))):
        run = copy_run(tiny_run, tmp_path / f"run{i}")
        if value is None:
            latest = json.loads((run / "checkpoints/latest.json").read_text())
            (run / "checkpoints/latest.json").write_text(json.dumps({**latest, "weights": name}))
        else:
            (run / CKPT_FILES[4]).unlink()
            (run / CKPT_FILES[4]).symlink_to(value)
        code, _, err = run_cli("sample", str(run), "-n", "2", "--out", str(tmp_path / "s"))
        errors, _ = one_line(code, err)
        assert code == 2 and "refusing to read it" in errors[0]


class Payload:
    """A pickle that would run a command when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_state_file_with_code_in_it_is_not_run(tiny_run, tmp_path, no_figures):
    """A stranger's folder can carry a state file whose pickle runs code, with a manifest that
    matches it: it is read with weights_only, refused as damaged, and the older one is used."""
    run = copy_run(tiny_run, tmp_path / "run")
    marker = tmp_path / "ran"
    state = run / "checkpoints" / f"ckpt-{STEPS:08d}.state.pt"
    torch.save({"step": STEPS, "optimizers": {}, "gen_state": Payload(marker)}, state)
    manifest = run / "checkpoints" / f"ckpt-{STEPS:08d}.json"
    values = json.loads(manifest.read_text())
    raw = state.read_bytes()
    values["files"][state.name] = {"bytes": len(raw), "sha256": files.sha256(raw)}
    manifest.write_text(json.dumps(values))
    code, _, err = run_cli("train", "--resume", str(run), "--steps", str(STEPS))
    _, warned = one_line(code, err)
    assert code == 0 and not marker.exists() and "not a readable training state" in warned[0]


def test_folders_without_manifests_still_load(tiny_run, tmp_path):
    """Runs written before manifests: no checksum to check, structure only."""
    run = copy_run(tiny_run, tmp_path / "run")
    for path in (run / "checkpoints").glob("ckpt-*.json"):
        path.unlink()
    latest = json.loads((run / "checkpoints/latest.json").read_text())
    del latest["format"]
    (run / "checkpoints/latest.json").write_text(json.dumps(latest))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        loaded, step = checkpoint.load_weights(run)
    assert step == STEPS and same_weights(loaded["model"],
                                          checkpoint.load_checkpoint(tiny_run).weights["model"])
    weights = run / "checkpoints" / f"ckpt-{STEPS:08d}.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.warns(FallbackWarning, match="not a readable safetensors file"):
        loaded, step = checkpoint.load_weights(run)
    older = checkpoint.load_checkpoint(tiny_run, step=EVERY).weights
    assert step == EVERY and same_weights(loaded["model"], older["model"])


def test_files_of_a_newer_genlab_are_refused_naming_the_file(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    values = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**values, "guidance_warp": 2}))
    code, _, err = run_cli("sample", str(run), "-n", "2", "--out", str(tmp_path / "s"))
    errors, _ = one_line(code, err)
    assert code == 2 and "config.json has fields this genlab does not know" in errors[0]
    run = copy_run(tiny_run, tmp_path / "run2")
    for path in (run / "checkpoints").glob("*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "format": 2}))
    code, _, err = run_cli("sample", str(run), "-n", "2", "--out", str(tmp_path / "s"))
    errors, _ = one_line(code, err)
    assert code == 2 and "written by a newer genlab" in errors[0]


def test_a_log_line_cut_by_a_kill_is_skipped_and_a_damaged_one_named(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    log = run / "log.jsonl"
    whole = log.read_text()
    log.write_text(whole + '{"step": 5, "loss": 1.')
    assert [r["step"] for r in checkpoint.read_log(run)] == [1, 2, 3, 4]
    lines = whole.splitlines()
    log.write_text("\n".join([lines[0], lines[1][:-3], *lines[2:]]) + "\n")
    with pytest.raises(RunError, match=r"log.jsonl, line 2: expected a JSON object"):
        checkpoint.read_log(run)


def test_a_damaged_feature_network_cache_is_trained_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    calls = []
    train = featurenet._train
    monkeypatch.setattr(featurenet, "_train", lambda *a, **k: calls.append(1) or train(*a, **k))
    _, info = featurenet.feature_network("digits", steps=5, resolution=12)
    folder = Path(info["path"])
    for name, broken in (("weights.safetensors", b"\0" * 10), ("info.json", b"[]"),
                         ("info.json", b"{\"widths\": ")):
        (folder / name).write_bytes(broken)
        with pytest.warns(FallbackWarning, match=f"{name}.*training the feature network again"):
            _, again = featurenet.feature_network("digits", steps=5, resolution=12)
        assert again["weights_sha1"] == info["weights_sha1"]  # the same recipe, seeded
    assert len(calls) == 4


def test_the_report_escapes_what_runs_hold(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "<b>run")
    values = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**values, "dataset": "<script>x()</script>"}))
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "<img src=x>": "<i>bold</i>",
                                                  "nll_elbo_nats": "<script>y()</script>"}))
    page = reporting.report([run], tmp_path / "report.html").read_text()
    assert "<script>" not in page and "<img src=x>" not in page and "<b>run" not in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
