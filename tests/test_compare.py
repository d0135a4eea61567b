"""`genlab compare`: verdicts computed from the numbers, a tiny end-to-end comparison that resumes
without retraining, and the report rendered in a real browser (when Chromium is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from genlab import checkpoint, comparison
from genlab.comparison import compare, summary, verdicts
from genlab.errors import ConfigError


def state_with(values: dict[str, list[dict[str, float]]], seeds: int) -> dict:
    runs = {}
    for family, finals in values.items():
        for seed, final in enumerate(finals):
            runs[f"{family}-seed{seed}"] = {"family": family, "seed": seed, "legs": [],
                                            "final": final}
    return {"settings": {"families": list(values), "seeds": seeds}, "runs": runs}


def test_verdicts_follow_the_numbers_and_their_spread():
    # DDPM covers the modes far better than the GAN on every seed, with fewer spikes: supported
    good = state_with({
        "ddpm": [dict(coverage=0.9, recall=0.8, class_entropy=2.3, loss_spikes=0, fid=5.0,
                      precision=0.8, flops_per_sample=5e9, seconds_per_sample=0.1),
                 dict(coverage=0.88, recall=0.82, class_entropy=2.29, loss_spikes=1, fid=6.0,
                      precision=0.79, flops_per_sample=5e9, seconds_per_sample=0.12)],
        "dcgan": [dict(coverage=0.4, recall=0.3, class_entropy=1.5, loss_spikes=9,
                       seconds_per_sample=0.001),
                  dict(coverage=0.5, recall=0.35, class_entropy=1.7, loss_spikes=12,
                       seconds_per_sample=0.001)],
        "vae": [dict(fid=30.0, precision=0.3, flops_per_sample=1e6, seconds_per_sample=1e-4),
                dict(fid=32.0, precision=0.32, flops_per_sample=1e6, seconds_per_sample=1e-4)],
    }, seeds=2)
    found = {v["claim"][:30]: v["verdict"] for v in verdicts(good)}
    stable = next(v for v in verdicts(good) if v["claim"].startswith("Diffusion models train"))
    assert [p["verdict"] for p in stable["parts"]] == ["supported", "not settled at this budget"]
    assert found["Diffusion models train more st"] == (
        "mixed: covers the modes better supported; trains more stably not settled at this budget")
    assert found["Diffusion models give higher-q"] == "supported"
    assert found["Diffusion models are slow to s"] == "supported"
    assert found["GANs give finer control over t"] == "not measured"
    # the spreads overlap: not settled; the numbers go the other way: contradicted
    overlap = state_with({"ddpm": [dict(fid=10.0), dict(fid=30.0)],
                          "vae": [dict(fid=15.0), dict(fid=25.0)]}, seeds=2)
    overlap["runs"]["ddpm-seed0"]["final"].update(precision=0.5, flops_per_sample=1e9,
                                                  seconds_per_sample=0.1)
    for name in ("ddpm-seed1", "vae-seed0", "vae-seed1"):
        overlap["runs"][name]["final"].update(precision=0.5, flops_per_sample=1e9,
                                              seconds_per_sample=0.1)
    assert verdicts(overlap)[0]["verdict"] == "not settled at this budget"
    worse = state_with({"ddpm": [dict(seconds_per_sample=0.001)],
                        "vae": [dict(seconds_per_sample=0.5)]}, seeds=1)
    slow = [v for v in verdicts(worse) if v["claim"].startswith("Diffusion models are slow")]
    assert slow[0]["verdict"] == "contradicted"
    table = summary(good)
    assert table["best"]["fid"] == "ddpm" and table["best"]["seconds_per_sample"] == "vae"
    assert table["families"]["ddpm"]["coverage"]["std"] == pytest.approx(0.01414, rel=1e-3)


def test_resuming_checks_the_feature_network_it_resolves_to_not_the_flag():
    path = Path("cmp/compare.json")
    old = {"dataset": "mnist", "minutes": 5, "feature_steps": 1500, "feature_net": "abc"}
    # 0 (the shipped network) and 1500 (its step count) name the same weights: accepted
    comparison.check_settings(path, old, {**old, "feature_steps": 0})
    comparison.check_settings(path, {**old, "inception_weights": None},
                              {**old, "inception_weights": "w.pth"})  # only adds a measure
    with pytest.raises(ConfigError, match="another feature network.*sha1 abc, now def"):
        comparison.check_settings(path, old, {**old, "feature_net": "def"})
    with pytest.raises(ConfigError, match="minutes=5, now 10"):
        comparison.check_settings(path, old, {**old, "minutes": 10})
    unrecorded = {k: v for k, v in old.items() if k != "feature_net"}  # an older genlab's file
    comparison.check_settings(path, unrecorded, {**old, "feature_net": "def"})


def test_a_tiny_comparison_runs_resumes_and_renders(tmp_path: Path, one_thread, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    args = dict(dataset="digits", minutes=0.03, seeds=1, families=("vae", "flow"), out=out,
                num_samples=150, leg_samples=150, feature_steps=60, nfe_sweep=(2, 4))
    page = compare(**args)
    state = json.loads((out / "compare.json").read_text())
    for name in ("vae-seed0", "flow-seed0"):
        record = state["runs"][name]
        assert [leg["fraction"] for leg in record["legs"]] == [0.25, 0.5, 1.0]
        final = record["final"]
        for key in ("fid", "kid", "precision", "recall", "density", "coverage",
                    "class_entropy", "nn_distance_ratio", "seconds_per_sample",
                    "flops_per_sample", "nfe", "params", "train_images_per_s"):
            assert key in final, key
        assert sum(final["class_counts"]) == 150
    assert state["runs"]["vae-seed0"]["final"]["nfe"] == 1
    assert state["runs"]["flow-seed0"]["final"]["nfe"] == 20  # heun, 20 evaluations
    assert "likelihood" in state["runs"]["vae-seed0"]["final"]
    assert [r["nfe"] for r in state["runs"]["flow-seed0"]["nfe_sweep"]] == [2, 4]
    assert {v["verdict"] for v in state["verdicts"]} <= {
        "supported", "contradicted", "not settled at this budget", "not measured"}
    for name in ("vae-seed0", "flow-seed0"):
        assert state["runs"][name]["final"]["path_length"] > 0
    lines = len(checkpoint.read_log(out / "flow-seed0"))
    compare(**args)  # everything is there: nothing is trained again
    assert len(checkpoint.read_log(out / "flow-seed0")) == lines
    # measures an older genlab did not take, and the Inception FID asked for later, are added
    # on resume without training anything
    assert state["runs"]["flow-seed0"]["final"]["pr_num_real"] == 150  # as many reals as fakes
    old = json.loads(json.dumps(state))
    for record in state["runs"].values():
        record["final"].pop("path_length")
        record["final"].pop("pr_num_real")
        record["final"]["coverage"] = -1.0
    (out / "compare.json").write_text(json.dumps(state))
    calls = []
    monkeypatch.setattr(comparison, "inception_fid",
                        lambda real, fake, weights: calls.append((len(fake), weights)) or 12.5)
    compare(**args, inception_weights="weights.pth")
    again = json.loads((out / "compare.json").read_text())
    assert len(checkpoint.read_log(out / "flow-seed0")) == lines
    assert calls == [(150, "weights.pth")] * 2
    for name in ("vae-seed0", "flow-seed0"):
        final = again["runs"][name]["final"]
        assert final["inception_fid"] == 12.5
        before = old["runs"][name]["final"]
        for key in ("path_length", "coverage", "recall", "pr_num_real"):  # the same again
            assert final[key] == pytest.approx(before[key], rel=1e-6), key
    text = page.read_text()
    assert "Summary" in text and "lower is better" in text and "class='best'" in text
    for img in ("figures/fid_vs_training_minutes.png", "figures/flow-samples.png",
                "figures/vae-interpolation.png", "figures/fid_vs_nfe.png"):
        assert img in text and (out / img).is_file()
    with pytest.raises(Exception, match="other settings"):
        compare(**{**args, "minutes": 0.5})
    with pytest.raises(ConfigError, match="another feature network"):  # the shipped one
        compare(**{**args, "feature_steps": 0})
    check_in_browser(page)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Page check in the browser: every image loaded, something on the page, no horizontal overflow
# at 1280 px. The result is written into the document title, which --dump-dom returns.
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);
  const wide = document.documentElement.scrollWidth > window.innerWidth + 1;
  const blank = document.body.innerText.trim().length < 50;
  document.title = 'PROBE ' + JSON.stringify({images: imgs.length, broken, wide, blank,
    width: document.documentElement.scrollWidth});
});</script>"""


def check_in_browser(page: Path) -> dict:
    """Render ``page`` in headless Chromium at 1280 px; fail on broken images, a blank page or
    horizontal overflow. Skips when Chromium is not installed."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    probe = page.with_name(page.stem + "-probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--window-size=1280,900", "--virtual-time-budget=5000",
                           "--allow-file-access-from-files", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    probe.unlink()
    marker = done.stdout.split("<title>PROBE ", 1)
    assert len(marker) == 2, done.stderr[-2000:]
    result = json.loads(marker[1].split("</title>", 1)[0].replace("&quot;", '"'))
    assert result["images"] > 0 and not result["broken"], result
    assert not result["blank"] and not result["wide"], result
    return result


def test_run_report_renders_in_a_browser(tmp_path: Path, one_thread):
    """`genlab report` on runs of two families: grouped tables, no overflow, no broken image."""
    from genlab.recipes import make_config
    from genlab.reporting import report
    from genlab.training import train

    runs = [train(make_config(family, "default", dataset="digits", steps=2, batch_size=16,
                              run_dir=str(tmp_path / family), **extra), progress=False)
            for family, extra in (("vae", {}), ("ddpm", dict(channels=(8, 16), num_steps=20)))]
    page = report(runs, tmp_path / "report.html")
    text = page.read_text()
    assert text.count("<h2>vae: ") == 1 and text.count("<h2>ddpm: ") == 1
    check_in_browser(page)


def test_path_length_is_zero_for_a_constant_map_and_scales_with_the_square_of_the_map():
    identity = comparison.path_length(lambda z: z.float(), lambda x: x, (16,), pairs=200)
    doubled = comparison.path_length(lambda z: 2 * z.float(), lambda x: x, (16,), pairs=200)
    constant = comparison.path_length(lambda z: torch.ones_like(z), lambda x: x, (16,))
    assert constant["path_length"] == 0
    assert doubled["path_length"] == pytest.approx(4 * identity["path_length"], rel=1e-3)
    # on the identity, |d slerp / dt|^2 = omega^2 |z|^2 ~ (pi/2)^2 * 16 for 16-d Gaussians
    assert 20 < identity["path_length"] < 60


def test_compare_set_flags_parse_as_json_values():
    from genlab.cli import _preset_changes
    from genlab.errors import ConfigError

    assert _preset_changes(["ddpm.class_conditional=true", "flow.channels=[16,32]",
                       "vae.beta=0.5", "ddpm.schedule=linear"]) == {
        "ddpm": {"class_conditional": True, "schedule": "linear"},
        "flow": {"channels": [16, 32]}, "vae": {"beta": 0.5}}
    with pytest.raises(ConfigError, match="FAMILY.FIELD=VALUE"):
        _preset_changes(["class_conditional=true"])


def test_a_claim_whose_parts_disagree_is_mixed():
    state = state_with({"ddpm": [dict(fid=100.0, precision=0.2, flops_per_sample=1e9,
                                      seconds_per_sample=0.5)],
                        "vae": [dict(fid=20.0, precision=0.9, flops_per_sample=1e6,
                                     seconds_per_sample=1e-4)]}, seeds=1)
    quality = next(v for v in verdicts(state) if v["claim"].startswith("Diffusion models give"))
    assert quality["verdict"] == "mixed: higher quality contradicted; more resources supported"
    close = state_with({"ddpm": [dict(seconds_per_sample=0.9)],
                        "vae": [dict(seconds_per_sample=1.0)]}, seeds=1)
    slow = next(v for v in verdicts(close) if v["claim"].startswith("Diffusion models are"))
    assert slow["verdict"] == "not settled at this budget"  # one seed: 10% is within noise
