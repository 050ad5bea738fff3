"""FineWeb token shards: the `.bin` files of the paper's GPT trainer (a 256-int header, then
uint16 token ids), read memory-mapped and cut into training windows.

`python -m empirics.data.text --shard PATH` summarises one; the GPT-nano task reads them through
`fineweb_splits` and `shard_windows` when `data=fineweb`.
"""

from __future__ import annotations

import functools
import glob
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from empirics.data import VAL_FRACTION
from empirics.outputs import atomic_open

# ------------------------------------------------------------------ FineWeb token shards

# modded-nanogpt's shard format: 256 little-endian int32 (magic, version, token count, zeros),
# then the tokens as little-endian uint16 (GPT-2 ids < 50257).
SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4


class ShardError(ValueError):
    """A token shard that cannot be used; the message names the file and what is wrong."""


def write_shard(path: str | Path, tokens: np.ndarray | Sequence[int]) -> Path:
    """Write tokens (ids < 65536) as a modded-nanogpt `.bin` shard, atomically."""
    toks = np.asarray(tokens)
    if toks.ndim != 1 or toks.size == 0:
        raise ValueError("tokens: expected a non-empty 1-D sequence")
    if toks.min() < 0 or toks.max() >= 2**16:
        raise ValueError(f"tokens: ids must lie in [0, 65536), got {toks.min()}..{toks.max()}")
    header = np.zeros(SHARD_HEADER_INTS, dtype="<i4")
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, toks.size)
    with atomic_open(path, "wb") as fh:
        fh.write(header.tobytes())
        fh.write(toks.astype("<u2").tobytes())
    return Path(path)


def read_shard(path: str | Path) -> np.ndarray:
    """The tokens of one shard, memory-mapped (uint16, read-only); ShardError if the file is
    not a complete shard of this format."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = np.frombuffer(fh.read(SHARD_HEADER_BYTES), dtype="<i4")
    except OSError as exc:
        raise ShardError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head.size < SHARD_HEADER_INTS:
        raise ShardError(
            f"{path}: truncated: {size} bytes, shorter than the {SHARD_HEADER_BYTES}-byte header"
        )
    magic, version, count = (int(v) for v in head[:3])
    if magic != SHARD_MAGIC:
        raise ShardError(
            f"{path}: not a FineWeb token shard: magic number {magic}, expected {SHARD_MAGIC}"
        )
    if version != SHARD_VERSION:
        raise ShardError(f"{path}: shard format version {version}; this reader knows version 1")
    if count <= 0:
        raise ShardError(f"{path}: header announces {count} tokens; expected at least one")
    body = size - SHARD_HEADER_BYTES
    if body < 2 * count:
        raise ShardError(
            f"{path}: truncated: header announces {count} tokens ({2 * count} bytes), the file "
            f"holds {body} bytes of tokens"
        )
    if body > 2 * count:
        raise ShardError(
            f"{path}: {body - 2 * count} bytes beyond the {count} tokens its header announces"
        )
    return np.memmap(path, dtype="<u2", mode="r", offset=SHARD_HEADER_BYTES, shape=(count,))


def shard_paths(pattern: str | Path) -> list[Path]:
    """A shard file, a directory (its *.bin files) or a glob pattern -> sorted shard paths."""
    text = str(pattern)
    if not text.strip():
        raise ShardError("data_path: expected a shard file, a directory or a glob, got ''")
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.bin"))
    elif any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(path)))
    else:
        found = [path] if path.exists() else []
    if not found:
        raise ShardError(f"data_path: no token shard at {text!r} (a .bin file, directory or glob)")
    return found


class TokenShards:
    """Several shards read as one token sequence: random or evenly spaced windows over a range
    of it, each window gathered by slicing the memory maps (nothing loaded whole)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.shards = [read_shard(p) for p in self.paths]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])

    @classmethod
    def open(cls, pattern: str | Path) -> TokenShards:
        return cls(shard_paths(pattern))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of the concatenation, across shard ends if needed."""
        parts, pos, end = [], start, start + length
        k = int(np.searchsorted(self.offsets, pos, side="right")) - 1
        while pos < end:
            lo = pos - int(self.offsets[k])
            take = min(end - pos, len(self.shards[k]) - lo)
            parts.append(self.shards[k][lo : lo + take])
            pos += take
            k += 1
        return np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0])

    def batch(self, starts: torch.Tensor, span: int, vocab_size: int) -> torch.Tensor:
        w = np.stack([self.window(int(s), span) for s in starts]).astype(np.int64)  # (B, T+1)
        top = int(w.max())
        if top >= vocab_size:
            raise ShardError(
                f"{self.paths[0]}{' ...' if len(self.paths) > 1 else ''}: token id {top} >= "
                f"vocab_size={vocab_size}; set --set vocab_size to the shards' vocabulary "
                "(50257 for GPT-2 tokens)"
            )
        return torch.from_numpy(w)


def shard_windows(
    shards: TokenShards,
    *,
    lo: int,
    hi: int,
    block_size: int,
    batch_size: int,
    vocab_size: int,
    generator: torch.Generator | None,
    n_windows: int | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Windows of tokens [lo, hi): endless random ones (n_windows None, training) or
    n_windows evenly spaced ones (validation); y is x shifted left by one."""
    span = block_size + 1
    if hi - lo < span:
        raise ShardError(
            f"{shards.paths[0]}: {hi - lo} tokens in this split, fewer than block_size + 1 = {span}"
        )
    if n_windows is None:
        while True:
            starts = torch.randint(lo, hi - span + 1, (batch_size,), generator=generator)
            w = shards.batch(starts, span, vocab_size).to(device)  # (B, T+1)
            yield w[:, :-1], w[:, 1:]
    n = min(n_windows, hi - lo - span + 1)
    starts = torch.linspace(lo, hi - span, n).round().long()
    for i in range(0, n, batch_size):
        w = shards.batch(starts[i : i + batch_size], span, vocab_size).to(device)  # (b, T+1)
        yield w[:, :-1], w[:, 1:]


def fineweb_splits(
    data_path: str, val_path: str | None
) -> tuple[tuple[TokenShards, int, int], tuple[TokenShards, int, int]]:
    """((shards, lo, hi) for train, the same for val): val_path's shards when given (the
    paper's setup: separate val shards), else the last VAL_FRACTION of data_path's tokens."""
    train = _open_shards(data_path)
    if val_path:
        val = _open_shards(val_path)
        return (train, 0, len(train)), (val, 0, len(val))
    cut = int(len(train) * (1.0 - VAL_FRACTION))
    return (train, 0, cut), (train, cut, len(train))


@functools.lru_cache(maxsize=8)
def _open_shards(pattern: str) -> TokenShards:
    return TokenShards.open(pattern)
