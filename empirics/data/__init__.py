"""Offline data for the five architectures; nothing here downloads.

Environment variables (one prefix, BOF_): BOF_CACHE_DIR (decoded speech, KJV text, BPE
vocabularies; default ~/.cache/bugorfeature), BOF_FASHION_MNIST_DIR, BOF_SPEECH_CLEAN_DIR and
BOF_SPEECH_HELDOUT_DIR (directories read instead of the Debian packages' paths).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "BOF_CACHE_DIR"
# The held-out split of a text stream: its last tenth, contiguous (the KJV text, a FineWeb shard
# given without separate validation shards).
VAL_FRACTION = 0.1


class DataUnavailable(RuntimeError):
    """A data source is not installed; the message names the package that provides it."""


def default_cache_dir() -> Path:
    """Where decoded and derived data are cached: $BOF_CACHE_DIR, else ~/.cache/bugorfeature."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "bugorfeature"
