"""Images as users keep them: flat and nested folders, mixed sizes and modes, 16-bit files, and
the resolution / image_channels conversions applied to every dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data

from genlab import data
from genlab.errors import ConfigError, DataError
from genlab.images import to_float, to_uint8


def save(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def grey(value: int, size: tuple[int, int] = (4, 4)) -> np.ndarray:
    return np.full(size, value, np.uint8)


def test_flat_folder_is_one_unlabelled_class(tmp_path):
    for i in range(20):
        save(tmp_path / f"{i:02d}.png", grey(i))
    train, test = data.load(f"folder:{tmp_path}", "train"), data.load(f"folder:{tmp_path}", "test")
    assert train.classes == (data.UNLABELLED,) and set(train.labels.tolist()) == {0}
    assert len(train) == 18 and test.images[:, 0, 0, 0].tolist() == [9, 19]


def test_nested_class_folders_read_deeper_subfolders_in_sorted_order(tmp_path):
    save(tmp_path / "cat" / "b" / "x.png", grey(2))
    save(tmp_path / "cat" / "a" / "y.png", grey(1))
    save(tmp_path / "cat" / "z.png", grey(3))
    save(tmp_path / "dog" / "deep" / "er" / "w.png", grey(4))
    save(tmp_path / "cat" / ".hidden" / "skip.png", grey(99))
    (tmp_path / "README.md").write_text("class folders below")  # not an image: ignored here
    for i in range(6):
        save(tmp_path / "dog" / f"{i}.png", grey(10 + i))
    train = data.load(f"folder:{tmp_path}", "train")
    assert train.classes == ("cat", "dog")
    # sorted paths: cat/a/y, cat/b/x, cat/z, dog/0..5, dog/deep/er/w; the 10th is held out
    assert train.images[:, 0, 0, 0].tolist() == [1, 2, 3, 10, 11, 12, 13, 14, 15]
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert data.load(f"folder:{tmp_path}", "test").images[:, 0, 0, 0].tolist() == [4]


def test_split_folders_flat_or_with_classes_missing_from_one_split(tmp_path):
    flat = tmp_path / "flat"
    save(flat / "train" / "a.png", grey(1))
    save(flat / "test" / "b.png", grey(2))
    assert data.load(f"folder:{flat}", "test").classes == (data.UNLABELLED,)
    assert data.load(f"folder:{flat}", "val").images.flatten()[0] == 2  # val falls back to test
    nested = tmp_path / "nested"
    save(nested / "train" / "ant" / "a.png", grey(1))
    save(nested / "train" / "bee" / "b.png", grey(2))
    save(nested / "test" / "bee" / "c.png", grey(3))
    test = data.load(f"folder:{nested}", "test")
    assert test.classes == ("ant", "bee") and test.labels.tolist() == [1]  # bee is 1 in both


def test_loose_image_beside_class_folders_is_named(tmp_path):
    save(tmp_path / "cat" / "a.png", grey(1))
    loose = save(tmp_path / "stray.png", grey(2))
    with pytest.raises(DataError, match=rf"{loose}: an image beside the class folders"):
        data.load(f"folder:{tmp_path}")


def test_mixed_grey_and_rgb_name_the_file_unless_converted(tmp_path):
    from PIL import Image

    save(tmp_path / "a.png", grey(50))
    rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    bad = save(tmp_path / "b.png", rgb)
    for i in range(8):
        save(tmp_path / f"c{i}.png", grey(i))
    with pytest.raises(DataError, match=rf"{bad}: 8-bit RGB image; expected 8-bit grey like "
                                        rf".*a.png; pass --image-channels 1 or 3"):
        data.load(f"folder:{tmp_path}")
    as_rgb = data.load(f"folder:{tmp_path}", channels=3)
    assert as_rgb.images.shape == (9, 3, 4, 4)
    assert as_rgb.images[0].unique().tolist() == [50]  # grey copied into R, G and B
    as_grey = data.load(f"folder:{tmp_path}", channels=1)
    pil_l = np.array(Image.fromarray(rgb).convert("L")).astype(int)
    assert np.abs(as_grey.images[1, 0].numpy().astype(int) - pil_l).max() <= 1  # PIL's luma


def test_mixed_sizes_name_both_and_suggest_resolution(tmp_path):
    save(tmp_path / "c" / "a.png", grey(7, (4, 6)))   # 6 wide, 4 high
    bad = save(tmp_path / "c" / "b.png", grey(7, (8, 8)))
    with pytest.raises(DataError, match=rf"{bad}: image is 8x8; expected 6x4 like .*a.png; "
                                        r"pass --resolution N"):
        data.load(f"folder:{tmp_path}")
    out = data.load(f"folder:{tmp_path}", resolution=4)
    assert out.images.shape == (2, 1, 4, 4) and out.images.unique().tolist() == [7]


def test_resize_crop_by_hand_and_like_pil():
    # 2 high, 4 wide: the shorter side is already 2, so only the centre columns 1..2 remain
    x = torch.arange(8, dtype=torch.uint8).view(1, 1, 2, 4)
    assert data.resize_crop(x, 2).tolist() == [[[[1, 2], [5, 6]]]]
    # antialiased bilinear, as PIL's BILINEAR (torchvision's default Resize): 9x6 -> 6x4, then
    # the centre 4 columns
    from PIL import Image

    y = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 1, 6, 9), dtype=np.uint8))
    pil = np.array(Image.fromarray(y[0, 0].numpy()).resize((6, 4), Image.BILINEAR))[:, 1:5]
    assert np.abs(data.resize_crop(y, 4)[0, 0].numpy().astype(int) - pil).max() <= 1
    square = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    assert data.resize_crop(y, 0) is y and data.resize_crop(square, 4) is square
    z = data.resize_crop(torch.full((3, 1, 8, 8), 65535, dtype=torch.uint16), 16)
    assert z.shape == (3, 1, 16, 16) and z.dtype == torch.uint16 and int(z.int().min()) == 65535


def test_16_bit_folder_keeps_its_depth(tmp_path):
    deep = (np.arange(16, dtype=np.uint16) * 4369).reshape(4, 4)  # 0 .. 65535
    for i in range(3):
        save(tmp_path / f"{i}.png", deep)
    split = data.load(f"folder:{tmp_path}", "train")
    assert split.images.dtype == torch.uint16 and int(split.images.int().max()) == 65535
    x = to_float(split.images)
    assert x.min() == -1 and x.max() == 1 and x.dtype == torch.float32
    assert torch.allclose(x[0, 0].flatten(), torch.linspace(-1, 1, 16), atol=1e-6)
    assert to_uint8(x).dtype == torch.uint8
    assert to_float(torch.tensor([0.0, 255.0])).tolist() == [-1, 1]  # float grey levels
    bad = save(tmp_path / "3.png", grey(5))
    with pytest.raises(DataError, match=rf"{bad}: 8-bit grey image; expected 16-bit grey .*"
                                        r"convert the files to one bit depth"):
        data.load(f"folder:{tmp_path}", "train")


def test_resolution_and_channels_apply_to_named_datasets(tiny_mnist):
    resized = data.load("mnist", "train", tiny_mnist, download=False, resolution=32)
    assert resized.images.shape == (20, 1, 32, 32) and resized.images.dtype == torch.uint8
    rgb = data.load("digits", "test", channels=3)
    assert rgb.images.shape == (297, 3, 8, 8)
    assert torch.equal(rgb.images[:, 2], data.load("digits", "test").images[:, 0])


def test_bad_resolution_and_channels_are_refused():
    with pytest.raises(ConfigError, match="channels must be 0 .* got 2"):
        data.load("digits", channels=2)
    with pytest.raises(ConfigError, match="resolution must be >= 0"):
        data.load("digits", resolution=-8)
    from genlab.recipes import make_config

    with pytest.raises(ConfigError, match="image_channels must be 0 .* got 4"):
        make_config("vae", image_channels=4)
    with pytest.raises(ConfigError, match="resolution must be >= 0, got -1"):
        make_config("ddpm", resolution=-1)
    assert make_config("ddpm", resolution=32, image_channels=3).resolution == 32


def test_real_cifar10_folder_to_grey_16():
    root = shared_data("cifar10")
    test = data.load(f"folder:{root}", "test", resolution=16, channels=1)
    assert test.images.shape == (1000, 1, 16, 16) and test.classes[-1] == "truck"


def test_training_and_evaluation_use_the_resolution_and_channels(tmp_path, one_thread):
    """--resolution and --image-channels reach every split a run reads: training, figures and
    evaluation see 16x16 RGB digits."""
    import json

    from conftest import run_cli

    run = tmp_path / "r"
    code, _, err = run_cli("train", "vae", "--dataset", "digits", "--steps", "2",
                           "--batch-size", "16", "--resolution", "16", "--image-channels", "3",
                           "--run-dir", str(run))
    assert code == 0, err
    assert json.loads((run / "data.json").read_text())["image_shape"] == [3, 16, 16]
    code, out, err = run_cli("evaluate", str(run), "--k", "2")
    assert code == 0 and "nll_iwae_nats" in out, err
