"""UNet shapes per preset (tiny widths), conditioning, embeddings and the image-size check."""

import math

import pytest
import torch

from genlab.errors import ConfigError
from genlab.models.unet import ReferenceUNet, ResUNet, timestep_embedding
from genlab.recipes import RECIPES, build_modules, make_config

TINY = {"reference": (8, 8, 16, 16, 32), "default": (8, 16, 16)}
SHAPES = {"reference": [(3, 16, 16), (1, 32, 32)], "default": [(1, 8, 8), (1, 28, 28), (3, 16, 16)]}


PRESETS = {"ddpm": RECIPES["ddpm"].presets}


@pytest.mark.parametrize("preset", sorted(PRESETS["ddpm"]))
def test_output_shape_per_preset(preset: str) -> None:
    cfg = make_config("ddpm", preset, channels=TINY[preset])
    assert len(cfg.channels) == len(PRESETS["ddpm"][preset]["channels"])
    for shape in SHAPES[preset]:
        modules = build_modules(cfg, shape, 10)
        keeps_ema = bool(cfg.ema_decay or cfg.ema_sigma_rel)
        assert set(modules) == ({"model", "ema"} if keeps_ema else {"model"})
        ema = modules.get("ema", modules["model"])
        net = modules["model"]
        assert not keeps_ema or not any(p.requires_grad for p in ema.parameters())
        for a, b in zip(net.state_dict().values(), ema.state_dict().values()):
            assert torch.equal(a, b)
        x = torch.randn(2, *shape)
        out = net(x, torch.tensor([0, cfg.num_steps - 1]))
        assert out.shape == x.shape


def test_reference_network_size_matches_the_notebook() -> None:
    with torch.device("meta"):
        net = ReferenceUNet((3, 32, 32))
    params = sum(p.numel() for p in net.parameters())
    assert params == 62_438_883  # the notebook's SimpleUnet, as it prints its size
    assert len(net.downs) == 4 and len(net.ups) == 4
    assert net.downs[0].transform.kernel_size == (4, 4) and net.downs[0].transform.stride == (2, 2)
    assert isinstance(net.ups[0].transform, torch.nn.ConvTranspose2d)


def test_res_blocks_and_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    net = ResUNet((1, 8, 8), (8, 16), num_classes=3, res_blocks=2)
    x = torch.randn(4, 1, 8, 8)
    # the output layer starts at zero; perturb it so that gradients reach the whole network
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    for block in net.modules():
        if hasattr(block, "conv2"):
            torch.nn.init.normal_(block.conv2.weight, std=0.1)
    net(x, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3])).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_class_conditioning_and_null_label() -> None:
    torch.manual_seed(0)
    for net in [ResUNet((1, 8, 8), (8, 16), num_classes=3), ReferenceUNet((1, 8, 8), (8, 16), 3)]:
        for p in net.parameters():  # defeat zero initialisation so outputs depend on inputs
            torch.nn.init.normal_(p, std=0.2)
        net.eval()
        x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 3])
        assert net.null_label == 3
        out_none = net(x, t)
        assert torch.allclose(out_none, net(x, t, torch.tensor([3, 3])))
        assert not torch.allclose(net(x, t, torch.tensor([0, 0])), net(x, t, torch.tensor([1, 1])))
        assert not torch.allclose(net(x, t), net(x, torch.tensor([4, 4])))


def test_timestep_embedding_values() -> None:
    emb = timestep_embedding(torch.tensor([0, 1]), 4)
    # half = 2 frequencies: 1 and 1 / 10000
    expected = [[0, 0, 1, 1], [math.sin(1), math.sin(1e-4), math.cos(1), math.cos(1e-4)]]
    assert torch.allclose(emb, torch.tensor(expected), atol=1e-6)
    assert timestep_embedding(torch.tensor([5]), 5).shape == (1, 5)


def test_sizes_the_unet_cannot_divide() -> None:
    ref = make_config("ddpm", "reference")
    with pytest.raises(ConfigError, match=r"multiples of 16 \(e\.g\. 16, 32, 48, 64\); got 28x28"):
        build_modules(ref, (1, 28, 28), 10)
    with pytest.raises(ConfigError, match="at most 3 levels in --channels"):
        build_modules(ref, (1, 28, 28), 10)
    default = make_config("ddpm", "default", channels=(8, 8, 8))
    with pytest.raises(ConfigError, match="multiples of 4 .*got 30x30"):
        build_modules(default, (1, 30, 30), 10)
    unlabelled = make_config("ddpm", "default", channels=(8, 8), class_conditional=True)
    with pytest.raises(ConfigError, match="class_conditional needs a labelled dataset"):
        build_modules(unlabelled, (1, 8, 8), 1)
