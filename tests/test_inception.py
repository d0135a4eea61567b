"""The standard Inception FID on user-supplied weights: file checks, and the wrapping (range and
channels) against torchmetrics fed the same images as 8-bit RGB. The weights here are a random
Inception-v3 in torch-fidelity's layout (nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch

from genlab.errors import DataError
from genlab.metrics import inception_fid


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory) -> str:
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    with pytest.MonkeyPatch.context() as mp:  # build the network without its download
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return str(path)


def test_missing_and_unsafe_weight_files_are_refused(tmp_path):
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(DataError, match="no such file"):
        inception_fid(x, x, tmp_path / "absent.pth")
    pytest.importorskip("torch_fidelity")
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"w": torch.zeros(1), "obj": DataError("not a tensor")}, unsafe)
    with pytest.raises(DataError, match="not a weights-only state dict"):
        inception_fid(x, x, unsafe)
    wrong = tmp_path / "wrong.pth"
    torch.save({"w": torch.zeros(1)}, wrong)
    with pytest.raises(DataError, match="do not fit"):
        inception_fid(x, x, wrong)


@pytest.mark.slow  # three Inception-v3 passes at 299x299 and 2048-d FIDs: minutes on 2 cores
def test_inception_fid_matches_torchmetrics_on_8bit_rgb(random_inception, one_thread):
    from torchmetrics.image.fid import FrechetInceptionDistance

    gen = torch.Generator().manual_seed(0)
    real = torch.rand(6, 1, 16, 16, generator=gen) * 2 - 1
    fake = (real + 0.5 * torch.rand(6, 1, 16, 16, generator=gen)).clamp(-1, 1)
    ours = inception_fid(real, fake, random_inception)
    assert ours > 0
    assert inception_fid(real, real, random_inception) == pytest.approx(0.0, abs=1e-2)
    reference = FrechetInceptionDistance(feature=2048,
                                         feature_extractor_weights_path=random_inception)
    for images, is_real in ((real, True), (fake, False)):
        rgb = ((images + 1) / 2 * 255).byte().expand(-1, 3, -1, -1)  # the metric's own cast
        reference.update(rgb, real=is_real)
    assert ours == pytest.approx(float(reference.compute()), rel=1e-3)
