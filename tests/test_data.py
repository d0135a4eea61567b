from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shared_data, write_fer_csv

from genlab import batching, data
from genlab.errors import DataError
from genlab.images import to_float, to_uint8


def test_digits_is_embedded_and_scaled_to_uint8():
    train, test = data.load("digits", "train"), data.load("digits", "test")
    assert train.images.shape == (1500, 1, 8, 8) and test.images.shape == (297, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    from sklearn.datasets import load_digits

    raw = load_digits().images
    # every value is round(v * 255 / 16) of an original 0..16 value
    allowed = {round(v * 255 / 16) for v in range(17)}
    assert set(torch.unique(train.images).tolist()) <= allowed
    assert len(train) + len(test) == len(raw)


def test_float_range_round_trip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    f = to_float(x)
    assert f.min() == -1 and f.max() == 1 and f.dtype == torch.float32
    assert torch.equal(to_uint8(f), x)
    assert to_uint8(torch.tensor([2.0, -3.0])).tolist() == [255, 0]


def test_epoch_batches_are_a_seeded_permutation():
    a = batching.epoch_batches(10, 4, seed=3, epoch=1)
    b = batching.epoch_batches(10, 4, seed=3, epoch=1)
    c = batching.epoch_batches(10, 4, seed=3, epoch=2)
    assert [t.tolist() for t in a] == [t.tolist() for t in b]
    assert sorted(torch.cat(a).tolist()) == list(range(10)) and [len(t) for t in a] == [4, 4, 2]
    assert torch.cat(a).tolist() != torch.cat(c).tolist()
    shards = [torch.cat(batching.epoch_batches(10, 4, 3, 1, rank=r, world_size=3))
              for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == sorted(set(torch.cat(shards).tolist()))
    assert {len(s) for s in shards} == {3}
    assert batching.steps_per_epoch(10, 4) == 3
    assert batching.steps_per_epoch(10, 4, world_size=3) == 1


def test_mnist_idx_files(tiny_mnist):
    train = data.load("mnist", "train", tiny_mnist, download=False)
    test = data.load("mnist", "test", tiny_mnist, download=False)
    assert train.images.shape == (20, 1, 28, 28) and test.images.shape == (10, 1, 28, 28)
    assert train.labels.tolist() == [i % 10 for i in range(20)]


def test_missing_mnist_says_where_and_how(tmp_path):
    with pytest.raises(DataError, match=rf"mnist files not found under {tmp_path}.*download"):
        data.load("mnist", "train", tmp_path, download=False)


def test_fer_csv_splits_by_usage(tiny_fer):
    train = data.load("fer2013", "train", tiny_fer.parent)
    test = data.load("fer2013", "test", tiny_fer)
    val = data.load("fer2013", "val", tiny_fer)
    assert (len(train), len(test), len(val)) == (6, 3, 2)
    assert train.images.shape[1:] == (1, 48, 48)
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert data.load("fer2013", "train", tiny_fer).classes[3] == "happy"


def test_fer_kaggle_icml_header_with_spaces(tmp_path):
    px = np.arange(2304) % 256
    path = write_fer_csv(tmp_path / "icml_face_data.csv", [(3, px, "Training")],
                         header="emotion, Usage, pixels")
    # columns are emotion, Usage, pixels in this variant: write the row in that order
    path.write_text("emotion, Usage, pixels\n3,Training," + " ".join(map(str, px)) + "\n")
    d = data.load("fer2013", "train", tmp_path)
    assert d.images.flatten().tolist() == px.tolist()


@pytest.mark.parametrize(
    ("rows", "header", "match"),
    [
        ([(0, np.zeros(2304, int), "Training")], "emotion,Usage",
         r"missing column\(s\) \['pixels'\]"),
        ([(0, np.zeros(2304, int), "Training"), (1, np.zeros(2300, int), "Training")],
         "emotion,pixels,Usage", r"line 3: 2300 pixels is not a square"),
        ([(0, "1 2 x 4", "Training")], "emotion,pixels,Usage", r"line 2: non-integer"),
        ([(0, np.full(4, 300), "Training")], "emotion,pixels,Usage", r"line 2: pixel values"),
        ([(0, np.zeros(4, int), "Train")], "emotion,pixels,Usage", r"line 2: Usage 'Train'"),
    ],
)
def test_fer_bad_csv(tmp_path, rows, header, match):
    path = write_fer_csv(tmp_path / "fer2013.csv", rows, header=header)
    with pytest.raises(DataError, match=match):
        data.load("fer2013", "train", path)


def test_fer_missing_file_points_to_kaggle(tmp_path):
    with pytest.raises(DataError, match=r"fer2013 CSV not found.*kaggle"):
        data.load("fer2013", "train", tmp_path)


def test_image_folder_with_splits(tiny_folder):
    train = data.load(f"folder:{tiny_folder}", "train")
    test = data.load(f"folder:{tiny_folder}", "test")
    assert train.images.shape == (8, 3, 8, 8) and test.images.shape == (4, 3, 8, 8)
    assert train.classes == ("cat", "dog") and train.labels.tolist() == [0] * 4 + [1] * 4
    from PIL import Image

    first = np.array(Image.open(tiny_folder / "train" / "cat" / "0000.png"))
    assert torch.equal(train.images[0], torch.from_numpy(first).permute(2, 0, 1))


def test_image_folder_without_splits_holds_out_every_tenth(tmp_path):
    from PIL import Image

    for i in range(20):
        (tmp_path / "a").mkdir(exist_ok=True)
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(tmp_path / "a" / f"{i:02d}.png")
    train, test = data.load(f"folder:{tmp_path}", "train"), data.load(f"folder:{tmp_path}", "test")
    assert len(train) == 18 and test.images[:, 0, 0, 0].tolist() == [9, 19]


def test_image_folder_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no images; expected them directly in it"):
        data.load(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(DataError, match="contains no images"):
        data.load(f"folder:{tmp_path / 'empty'}")
    bad = tmp_path / "bad" / "cls"
    bad.mkdir(parents=True)
    (bad / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes.txt: not an image file"):
        data.load(f"folder:{tmp_path / 'bad'}")
    (bad / "notes.txt").unlink()
    (bad / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"broken.png: not a readable image"):
        data.load(f"folder:{tmp_path / 'bad'}")


def test_image_folder_mixed_sizes_named(tmp_path):
    from PIL import Image

    (tmp_path / "c").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "c" / "a.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "c" / "b.png")
    with pytest.raises(DataError, match=r"b.png: image is 4x5; expected 4x4"):
        data.load(f"folder:{tmp_path}", "train")


def test_unknown_dataset_lists_known():
    with pytest.raises(DataError, match=r"unknown dataset 'mnistt'.*'cifar10'.*'digits'"):
        data.load("mnistt")


def test_read_image_16_bit(tmp_path):
    from PIL import Image

    arr = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    out = data.read_image(tmp_path / "deep.png")
    assert out.dtype == np.uint16 and out.shape == (8, 8, 1) and int(out.max()) == 63000


# --- the real sample files (skipped when ../shared/data is absent) ------------------------------


def test_real_mnist_counts():
    root = shared_data("mnist")
    train, test = data.load("mnist", "train", root, False), data.load("mnist", "test", root, False)
    assert train.images.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert torch.bincount(test.labels).tolist()[:2] == [980, 1135]


def test_real_fer2013_counts():
    root = shared_data("fer2013")
    train, test = data.load("fer2013", "train", root), data.load("fer2013", "test", root)
    assert len(train) == 5000 and len(test) == 1000 and train.images.shape[1:] == (1, 48, 48)
    with pytest.raises(DataError, match="no rows with Usage"):
        data.load("fer2013", "val", root)


def test_real_cifar10_folder():
    root = shared_data("cifar10")
    test = data.load("cifar10", "test", root)
    assert test.images.shape == (1000, 3, 32, 32) and test.classes[0] == "airplane"
    assert torch.bincount(test.labels).tolist() == [100] * 10
