"""The Fashion-MNIST loader (empirics/data/images.py) and the image task's batches
(empirics/tasks/images.py) for mlp, resnet and vit.

`.venv/bin/python -m pytest -q tests/test_data_images.py`
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from empirics.data import DataUnavailable
from empirics.data import images as image_data
from empirics.models import get_arch
from empirics.tasks import images as image_task


def write_idx(directory: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images/labels as gzip IDX files, byte by byte the format Debian ships."""
    image_file, label_file = image_data._FILES[split]
    n, h, w = images.shape
    header = np.array([2051, n, h, w], dtype=">i4").tobytes()
    (directory / image_file).write_bytes(gzip.compress(header + images.astype(np.uint8).tobytes()))
    header = np.array([2049, n], dtype=">i4").tobytes()
    (directory / label_file).write_bytes(gzip.compress(header + labels.astype(np.uint8).tobytes()))


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("val", 10)):
        write_idx(tmp_path, split, rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
    return tmp_path


def test_loader_reads_idx_files_exactly(tiny_root: Path) -> None:
    images, labels = image_data.load_fashion_mnist("train", root=tiny_root)
    rng = np.random.default_rng(0)
    assert np.array_equal(images, rng.integers(0, 256, (40, 28, 28)).astype(np.uint8))
    assert np.array_equal(labels, rng.integers(0, 10, 40))
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    mean, std = image_data.normalisation(tiny_root)
    scaled = images.astype(np.float64) / 255
    assert (mean, std) == pytest.approx((scaled.mean(), scaled.std()), rel=1e-12)


def test_missing_directory_names_the_debian_package(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DataUnavailable, match="dataset-fashion-mnist"):
        image_data.load_fashion_mnist("train", root=tmp_path / "nowhere")
    monkeypatch.setenv(image_data.ROOT_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataUnavailable, match="dataset-fashion-mnist"):
        image_task.make_data(
            "real", get_arch("mlp").Config(), split="train", batch_size=4, generator=None
        )


def test_corrupt_idx_file_is_rejected(tmp_path: Path) -> None:
    write_idx(tmp_path, "val", np.zeros((3, 28, 28)), np.zeros(3))
    image_file = tmp_path / image_data._FILES["val"][0]
    image_file.write_bytes(gzip.compress(np.array([1234, 3, 28, 28], ">i4").tobytes()))
    with pytest.raises(ValueError, match="IDX"):
        image_data.load_fashion_mnist("val", root=tmp_path)


@pytest.mark.parametrize("arch", ["mlp", "resnet", "vit"])
def test_real_batches_are_standardised_with_the_right_shapes(
    arch: str, tiny_root: Path, monkeypatch
) -> None:
    monkeypatch.setenv(image_data.ROOT_ENV, str(tiny_root))
    cfg = get_arch(arch).Config()  # the task reads input_shape, n_classes and val_size
    gen = torch.Generator().manual_seed(1)
    x, y = next(image_task.make_data("real", cfg, split="train", batch_size=8, generator=gen))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == ((8, 784) if arch == "mlp" else (8, 1, 28, 28))
    # One pass over the 40 training images in order reproduces the standardised data exactly.
    images, labels = image_data.load_fashion_mnist("train", root=tiny_root)
    mean, std = image_data.normalisation(tiny_root)
    val = list(image_task.make_data("real", cfg, split="val", batch_size=8, generator=None))
    vx = torch.cat([b[0] for b in val]).reshape(-1, 28, 28)
    vimages, vlabels = image_data.load_fashion_mnist("val", root=tiny_root)
    expected = (torch.from_numpy(vimages.astype(np.float32)) / 255 - mean) / std
    assert torch.allclose(vx, expected, atol=1e-6)
    assert torch.equal(torch.cat([b[1] for b in val]), torch.from_numpy(np.array(vlabels)))
    assert set(y.tolist()) <= set(labels.tolist())


def test_train_iterator_reshuffles_each_epoch_and_is_seeded(tiny_root: Path) -> None:
    def epochs(seed: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        it = image_data.image_batches(
            "real", split="train", batch_size=10, generator=gen, flatten=True, root=tiny_root
        )
        # Identify examples by their first 8 pixels (distinct for random images).
        rows = [tuple(x[:, :8].tolist()[i]) for x, _ in itertools.islice(it, 8) for i in range(10)]
        return [rows[:40], rows[40:]]

    first, second = epochs(3)
    assert sorted(first) == sorted(second) and len(set(first)) == 40  # each epoch covers all
    assert first != second  # reshuffled (equal orders: chance 1/40!)
    assert epochs(3) == [first, second]
    assert epochs(4) != [first, second]


def test_synthetic_twin_is_fixed_gaussian_with_random_labels() -> None:
    images, labels = image_data.synthetic_fashion_mnist("train")
    assert images.shape == (image_data.SYNTHETIC_SIZES["train"], 28, 28)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) <= 9
    again, _ = image_data.synthetic_fashion_mnist("train")
    val, _ = image_data.synthetic_fashion_mnist("val")
    assert torch.equal(images, again)
    assert not torch.equal(images[: len(val)], val)
    # 7.84M N(0,1) draws: mean within 5 standard errors (1/sqrt(n)); false alarm ~ 6e-7.
    n = images.numel()
    assert abs(images.mean().item()) < 5 / n**0.5
    assert abs(images.std().item() - 1) < 5 / (2 * n) ** 0.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"data": "imagenet"}, "data"),
        ({"split": "test"}, "split"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_data_arguments_are_rejected(kwargs: dict, field: str) -> None:
    module = get_arch("vit")
    args = {"data": "synthetic", "split": "train", "batch_size": 4, **kwargs}
    data = args.pop("data")
    with pytest.raises(ValueError, match=field):
        image_task.make_data(data, module.Config(), generator=None, **args)


@pytest.mark.data
@pytest.mark.skipif(
    not image_data.DEFAULT_ROOT.is_dir(), reason="Debian dataset-fashion-mnist not installed"
)
def test_debian_fashion_mnist_has_the_official_shapes() -> None:
    train_x, train_y = image_data.load_fashion_mnist("train", root=image_data.DEFAULT_ROOT)
    val_x, val_y = image_data.load_fashion_mnist("val", root=image_data.DEFAULT_ROOT)
    assert train_x.shape == (60_000, 28, 28) and val_x.shape == (10_000, 28, 28)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64
    assert np.bincount(train_y).tolist() == [6000] * 10
    assert np.bincount(val_y).tolist() == [1000] * 10


@pytest.mark.parametrize(
    ("arch", "field"), [("mlp", "in_dim"), ("resnet", "in_channels"), ("vit", "image_size")]
)
def test_real_data_refuses_a_model_shape_at_config_time(arch: str, field: str) -> None:
    from empirics.train.config import ConfigError, TrainConfig, resolve

    bad = {"in_dim": 100, "in_channels": 3, "image_size": 14}[field]
    cfg = TrainConfig(arch=arch, data="real", preset="smoke", model={field: bad})
    with pytest.raises(ConfigError, match=rf"data: .*{field}={bad}.*--data synthetic"):
        resolve(cfg)
    resolve(cfg.replace(data="synthetic"))  # the same model on its synthetic twin is fine
