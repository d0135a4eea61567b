"""The rules module docstrings state, checked where code can check them: objectives only compute
values, the image samplers return [-1, 1], the image convention is written in genlab.images
only, and the run folder's file names in genlab.checkpoint only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from genlab import images, samplers
from genlab.diffusion import NoiseSchedule

SRC = Path(__file__).resolve().parents[1] / "src" / "genlab"


def _tree(name: str) -> ast.Module:
    return ast.parse((SRC / name).read_text())


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_objectives_only_compute_values_and_losses_return_loss_and_logs():
    tree = _tree("objectives.py")
    called = {node.func.attr for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert not called & {"backward", "step", "zero_grad"}
    losses = [f for f in tree.body if isinstance(f, ast.FunctionDef)
              and f.name.endswith("_loss") and not f.name.startswith("_")]
    assert {f.name for f in losses} >= {"vae_loss", "gan_d_loss", "gan_g_loss", "ddpm_loss",
                                        "flow_loss"}
    for f in losses:
        assert f.returns is not None and ast.unparse(f.returns).startswith(
            "tuple[torch.Tensor, dict["), f.name


class Overshoot(nn.Module):
    """A network whose every output is 50 times too large, with the attributes the samplers
    read (latent size, stride, channels)."""

    latent_dim, stride, in_channels, num_classes = 4, 1, 1, 0

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(50.0))

    def forward(self, x: torch.Tensor, *rest) -> torch.Tensor:
        if x.dim() == 2:  # a latent: a 1x4x4 image of it
            return self.w * x.view(-1, 1, 2, 2).repeat(1, 1, 2, 2)
        return self.w * (x + 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward(z)


def test_every_image_sampler_returns_images_in_minus_one_to_one_whatever_the_network_outputs():
    net, gen = Overshoot(), torch.Generator().manual_seed(0)
    schedule = NoiseSchedule("linear", 20)
    shape = (3, 1, 4, 4)
    drawn = {
        "sample_vae": samplers.sample_vae(net, 3, gen),
        "sample_gan": samplers.sample_gan(net, 3, gen),
        "denoise": samplers.denoise(net, torch.rand(shape) * 2 - 1),
        "ancestral": samplers.ancestral(net, schedule, shape, gen=gen, clip_x0=False),
        "ddim": samplers.ddim(net, schedule, shape, steps=5, gen=gen, clip_x0=False),
        "flow_ode": samplers.flow_ode(net, shape, nfe=4, solver="euler", gen=gen),
    }
    for name, x in drawn.items():
        assert x.abs().max() <= 1.0, name
        assert x.abs().max() == pytest.approx(1.0), name  # the network did overshoot


# numbers that are the image convention: white levels and the [-1, 1] scale of each depth
RANGE_NUMBERS = {255, 65535, 127.5, 32767.5, 1 / 255, 2 / 255}
# named constants equal to one of them that are not an image range (with the reason)
NOT_A_RANGE = {("corruption.py", "REFERENCE_PEAK")}  # a photon count, documented there


def test_the_image_convention_is_written_in_genlab_images_only():
    found = []
    for path in _sources():
        if path.name == "images.py":
            continue
        tree = ast.parse(path.read_text())
        named = {id(node.value) for node in ast.walk(tree)
                 if isinstance(node, ast.Assign) and len(node.targets) == 1
                 and isinstance(node.targets[0], ast.Name)
                 and (path.name, node.targets[0].id) in NOT_A_RANGE}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and type(node.value) in (int, float)
                    and node.value in RANGE_NUMBERS and id(node) not in named):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value}")
    assert found == [], "use genlab.images (WHITE, WHITE_8, to_float, ...) instead"
    assert images.WHITE == {torch.uint8: 255, torch.uint16: 65535}


RUN_FILES = {"config.json", "data.json", "log.jsonl", "metrics.json", "latest.json", "lock.json"}


def test_the_run_folders_file_names_are_written_in_checkpoint_only():
    found = []
    for path in _sources():
        if path.name == "checkpoint.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in RUN_FILES:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
            # run_dir / "checkpoints": the checkpoint folder of a run
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                    and isinstance(node.right, ast.Constant) and node.right.value == "checkpoints"
                    and "run" in ast.unparse(node.left)):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert found == [], "use genlab.checkpoint's functions for the run folder's files"


def test_image_files_round_trip_through_the_convention_at_both_depths():
    import numpy as np

    for dtype, np_dtype in ((torch.uint8, np.uint8), (torch.uint16, np.uint16)):
        white = images.white_level(dtype)
        arr = np.array([[[0], [1]], [[white - 1], [white]]], dtype=np_dtype)  # (H, W, C)
        x, depth = images.from_array(arr)
        assert depth == dtype and x.min() == -1 and x.max() == 1
        assert np.array_equal(images.to_array(x, depth), arr)
        levels = torch.from_numpy(arr).permute(2, 0, 1)
        assert torch.allclose(images.to_float(levels), x)
        assert images.bits(dtype) == (8 if dtype == torch.uint8 else 16)
