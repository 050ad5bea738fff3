"""Fashion-MNIST from the Debian package `dataset-fashion-mnist`, and its synthetic twin.

Shared by the `mlp`, `resnet` and `vit` architectures through `image_batches`; nothing downloads.
Check it with `python -m empirics.data.images` (prints split sizes and the normalisation).
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from empirics.data import DataUnavailable

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
ROOT_ENV = "BOF_FASHION_MNIST_DIR"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
SPLITS = ("train", "val")
DATA_KINDS = ("real", "synthetic")
# The Debian package ships the official train (60k) and test (10k) files; "val" is the test file.
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Synthetic twin: a fixed finite set per split, so a model can fit (memorise) it like real data.
SYNTHETIC_SIZES = {"train": 10_000, "val": 2_000}
_SYNTHETIC_SEEDS = {"train": 0, "val": 1}
_IDX_MAGIC = {"images": 2051, "labels": 2049}


def data_root(root: str | Path | None = None) -> Path:
    """The Fashion-MNIST directory: the argument, else $BOF_FASHION_MNIST_DIR, else Debian's."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ROOT_ENV)
    return Path(env) if env else DEFAULT_ROOT


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def _read_idx(path: Path, kind: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    header = 16 if kind == "images" else 8
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes)")
    fields = np.frombuffer(raw[:header], dtype=">i4")
    if fields[0] != _IDX_MAGIC[kind]:
        raise ValueError(f"{path}: not an IDX {kind} file (magic {fields[0]})")
    shape = tuple(int(d) for d in fields[1:])
    body = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, body has {body.size} bytes")
    return body.reshape(shape)


@functools.lru_cache(maxsize=4)
def _load_cached(split: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = (root / name for name in _FILES[split])
    missing = [str(p) for p in (image_file, label_file) if not p.is_file()]
    if missing:
        raise DataUnavailable(
            f"Fashion-MNIST {split} files not found ({', '.join(missing)}): install the Debian "
            f"package {DEBIAN_PACKAGE} (apt-get install {DEBIAN_PACKAGE}, or `make data`), "
            f"or point ${ROOT_ENV} at a directory holding the IDX .gz files"
        )
    images = _read_idx(image_file, "images")
    labels = _read_idx(label_file, "labels").astype(np.int64)
    if images.shape[1:] != IMAGE_SHAPE or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split} in {root}: images {images.shape} do not match labels "
            f"{labels.shape} or the 28x28 shape"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_fashion_mnist(split: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) for split "train" (60k) or "val" (10k).

    Read-only arrays, cached in memory. Raises DataUnavailable naming the Debian package when
    the files are missing.
    """
    _check_split(split)
    return _load_cached(split, data_root(root).resolve())


def normalisation(root: str | Path | None = None) -> tuple[float, float]:
    """Pixel mean and std (in [0, 1] units) of the real training split, for standardising."""
    return _normalisation_cached(data_root(root).resolve())


@functools.lru_cache(maxsize=4)
def _normalisation_cached(root: Path) -> tuple[float, float]:
    images, _ = load_fashion_mnist("train", root)
    # From the pixel histogram: exact, and no float copy of the 47M pixels. Counted in chunks of
    # 2^20 pixels: bincount widens its input to int64, and one 376 MB temporary cost about 1 s
    # per training run (about 10x the chunked count).
    flat = images.reshape(-1)
    counts = np.zeros(256, dtype=np.float64)
    for start in range(0, flat.size, 1 << 20):
        counts += np.bincount(flat[start : start + (1 << 20)], minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = float((counts * values).sum() / counts.sum())
    var = float((counts * (values - mean) ** 2).sum() / counts.sum())
    if var == 0.0:
        raise ValueError(
            f"Fashion-MNIST training images in {root} are constant: cannot standardise"
        )
    return mean, var**0.5


def synthetic_fashion_mnist(
    split: str,
    *,
    n: int | None = None,
    n_classes: int = N_CLASSES,
    shape: tuple[int, ...] = IMAGE_SHAPE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random N(0, 1) float32 images [N, *shape] with uniform random labels, fixed per split.

    The synthetic twin for `data="synthetic"` (the paper's "drift is not from the data" check):
    same shapes and label range as the real set, already standardised, no structure to learn.
    """
    _check_split(split)
    size = SYNTHETIC_SIZES[split] if n is None else n
    if size < 1:
        raise ValueError(f"n must be >= 1, got {size}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    return _synthetic_cached(split, size, n_classes, tuple(shape))


@functools.lru_cache(maxsize=8)
def _synthetic_cached(
    split: str, n: int, n_classes: int, shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(_SYNTHETIC_SEEDS[split])
    images = torch.randn((n, *shape), generator=gen, dtype=torch.float32)
    labels = torch.randint(0, n_classes, (n,), generator=gen, dtype=torch.int64)
    return images, labels


def _check_batches_args(data: str, split: str, batch_size: int) -> None:
    if data not in DATA_KINDS:
        raise ValueError(f"data must be one of {', '.join(DATA_KINDS)}, got {data!r}")
    _check_split(split)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def image_batches(
    data: str,
    *,
    split: str,
    batch_size: int,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
    flatten: bool = False,
    n_classes: int = N_CLASSES,
    synthetic_shape: tuple[int, ...] = IMAGE_SHAPE,
    val_size: int | None = None,
    root: str | Path | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (x float32, y int64) on `device`; x is [B, 1, 28, 28], or [B, 784] if `flatten`.

    Real pixels are standardised with the training split's mean/std. split "train": an endless
    iterator reshuffled each epoch with `generator` (incomplete last batch dropped, so every step
    sees `batch_size` examples); split "val": one fixed pass in file order (first `val_size`).
    Arguments are checked, and missing data raises DataUnavailable, before the first batch.
    """
    _check_batches_args(data, split, batch_size)
    if data == "real":
        if n_classes != N_CLASSES:
            raise ValueError(
                f"n_classes must be {N_CLASSES} for real Fashion-MNIST, got {n_classes}"
            )
        images_np, labels_np = load_fashion_mnist(split, root)
        mean, std = normalisation(root)
        # Keep uint8 on the device (4x less memory) and standardise batch by batch.
        images = torch.from_numpy(np.array(images_np)).to(device)
        labels = torch.from_numpy(np.array(labels_np)).to(device)
    else:
        images, labels = synthetic_fashion_mnist(split, n_classes=n_classes, shape=synthetic_shape)
        images, labels = images.to(device), labels.to(device)
        mean, std = None, None
    if split == "val" and val_size is not None:
        if val_size < 1:
            raise ValueError(f"val_size must be >= 1, got {val_size}")
        images, labels = images[:val_size], labels[:val_size]
    if split == "train" and batch_size > len(labels):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(labels)} training examples")
    return _iterate(images, labels, split, batch_size, generator, mean, std, flatten)


def _iterate(
    images: torch.Tensor,
    labels: torch.Tensor,
    split: str,
    batch_size: int,
    generator: torch.Generator | None,
    mean: float | None,
    std: float | None,
    flatten: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    def prepare(idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        x = images[idx]
        if mean is not None:
            x = (x.to(torch.float32) / 255.0 - mean) / std
        if flatten:
            x = x.reshape(x.shape[0], -1)  # (B, 784)
        elif x.dim() == 3:
            x = x.unsqueeze(1)  # (B, 1, H, W)
        return x, labels[idx]

    n = len(labels)
    if split == "val":
        for start in range(0, n, batch_size):
            yield prepare(slice(start, start + batch_size))
        return
    while True:
        # randperm on the CPU so a CPU generator drives it whatever the data's device.
        order = torch.randperm(n, generator=generator).to(labels.device)
        for start in range(0, n - batch_size + 1, batch_size):
            yield prepare(order[start : start + batch_size])


if __name__ == "__main__":
    for part in SPLITS:
        imgs, labs = load_fashion_mnist(part)
        print(
            f"{part}: images {imgs.shape} {imgs.dtype}, labels {labs.shape}, classes "
            f"{np.bincount(labs).tolist()}"
        )
    print("train pixel mean/std (0..1 units): {:.4f} / {:.4f}".format(*normalisation()))
