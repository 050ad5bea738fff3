"""Bad input to the command lines: exit code 2, a message naming the field and the value, nothing
written and nothing large allocated. One table per entry point, run in-process through `main`.

Run: `.venv/bin/python -m pytest -q tests/test_bad_inputs.py` (well under a minute).
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest
import torch

from empirics import train as T
from empirics.montecarlo import cli as MC

# A bad input may import modules and build a model on the meta device, never allocate: peak
# resident memory may not grow by more than this while it is refused.
MAX_RSS_GROWTH_KB = 256 * 1024

PWNED = "/tmp/bof-bad-input-pwned"


def _peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _refused(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run main(argv), assert it exits 2 without growing memory; return its stderr."""
    before = _peak_rss_kb()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert _peak_rss_kb() - before < MAX_RSS_GROWTH_KB
    return err


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# (id, extra argv, substrings the message must contain). The base is a synthetic mlp smoke run.
TRAIN_CASES = [
    ("arch", ["--arch", "lstm"], ["arch", "'lstm'", "mlp"]),
    ("activation-unknown", ["--activation", "nope"], ["activation", "'nope'", "relu"]),
    ("activation-empty", ["--activation", ""], ["activation", "''"]),
    ("activation-junk", ["--activation", "f=x+"], ["activation", "x+"]),
    ("activation-other-var", ["--activation", "f=x*y"], ["activation", "y"]),
    ("data", ["--data", "imagenet"], ["data", "'imagenet'", "synthetic"]),
    ("preset", ["--preset", "huge"], ["preset", "'huge'", "smoke"]),
    ("optimizer", ["--optimizer", "lion"], ["optimizer", "'lion'", "muon"]),
    ("schedule", ["--schedule", "exp"], ["schedule", "'exp'", "cosine"]),
    ("steps-zero", ["--steps", "0"], ["steps", "greater than or equal to 1", "0"]),
    ("steps-negative", ["--steps", "-5"], ["steps", "-5"]),
    ("steps-text", ["--steps", "abc"], ["--steps", "'abc'"]),
    ("steps-fraction", ["--steps", "1.5"], ["--steps", "'1.5'"]),
    ("batch-zero", ["--batch-size", "0"], ["batch_size", "0"]),
    ("lr-negative", ["--lr", "-1"], ["lr", "greater than 0", "-1.0"]),
    ("lr-nan", ["--lr", "nan"], ["lr", "finite", "nan"]),
    ("lr-inf", ["--lr", "inf"], ["lr", "finite", "inf"]),
    ("adam-lr-zero", ["--adam-lr", "0"], ["adam_lr", "0.0"]),
    ("momentum-one", ["--momentum", "1.0"], ["momentum", "less than 1", "1.0"]),
    ("betas-one-value", ["--betas", "0.9"], ["betas", "0.9"]),
    ("betas-range", ["--betas", "0.9,1.5"], ["betas.1", "less than 1", "1.5"]),
    ("weight-decay-negative", ["--weight-decay", "-0.1"], ["weight_decay", "-0.1"]),
    ("warmup-longer-than-run", ["--steps", "10", "--warmup", "50"], ["warmup", "50", "steps=10"]),
    ("warmup-negative", ["--warmup", "-1"], ["warmup", "-1"]),
    ("decay-frac", ["--decay-frac", "1.5"], ["decay_frac", "1.5"]),
    ("min-lr-frac", ["--min-lr-frac", "-0.1"], ["min_lr_frac", "-0.1"]),
    ("seed-negative", ["--seed", "-1"], ["seed", "-1"]),
    ("seed-beyond-64-bits", ["--seed", str(2**64 + 1)], ["seed", str(2**64 + 1)]),
    ("device", ["--device", "tpu"], ["device", "'tpu'", "cuda"]),
    ("run-escapes", ["--run", "../../x"], ["run", "'../../x'"]),
    ("run-slash", ["--run", "a/b"], ["run", "'a/b'"]),
    ("run-hidden", ["--run", ".hidden"], ["run", "'.hidden'"]),
    ("early-steps", ["--early-steps", "-1"], ["early_steps", "-1"]),
    ("log-every-early", ["--log-every-early", "0"], ["log_every_early", "0"]),
    ("log-every-late", ["--log-every-late", "0"], ["log_every_late", "0"]),
    ("eval-every", ["--eval-every", "-1"], ["eval_every", "-1"]),
    ("eval-batches", ["--eval-batches", "0"], ["eval_batches", "0"]),
    ("threads", ["--threads", "0"], ["threads", "0"]),
    ("checkpoint-every", ["--checkpoint-every", "-1"], ["checkpoint_every", "-1"]),
    ("grad-accum-zero", ["--grad-accum", "0"], ["grad_accum", "0"]),
    ("grad-accum-split", ["--grad-accum", "3"], ["batch_size", "32", "grad_accum 3"]),
    ("precision", ["--precision", "fp8"], ["precision", "'fp8'", "bf16"]),
    ("unknown-flag", ["--widht", "3"], ["--widht"]),
    ("set-unknown-key", ["--set", "wdith=3"], ["'wdith'", "width"]),
    ("set-no-equals", ["--set", "width"], ["--set", "'width'"]),
    ("set-wrong-type", ["--set", "width=wide"], ["width", "'wide'"]),
    ("set-negative", ["--set", "width=-4"], ["width", "-4"]),
    ("set-activation", ["--set", "activation=relu"], ["'activation'"]),
    ("set-init", ["--set", "init=ones"], ["init", "'ones'"]),
    ("gpt-head-split", ["--arch", "gpt_nano", "--set", "n_embd=30"], ["n_embd", "30"]),
    ("width-1e8", ["--set", "width=100000000"], ["memory", "GiB", "width=100000000"]),
    (
        "gpt-n-embd-1e5",
        ["--arch", "gpt_nano", "--set", "n_embd=100000"],
        ["memory", "GiB", "n_embd=100000"],
    ),
    ("huge-batch", ["--batch-size", "1000000000"], ["memory", "GiB", "batch_size"]),
    # An expression is parsed by a whitelist, never run: the payload must not touch PWNED.
    (
        "activation-code",
        ["--activation", f"f=__import__('os').system('touch {PWNED}')"],
        ["activation"],
    ),
    ("activation-pole", ["--activation", "f=1/(x-0.5)"], ["activation", "0.5"]),
]


def _case_id(case: object) -> str:
    return case[0] if isinstance(case, tuple) else str(case)


@pytest.mark.parametrize(("name", "extra", "expected"), TRAIN_CASES, ids=_case_id)
def test_train_refuses(
    name: str, extra: list[str], expected: list[str], tmp_path: Path, capsys
) -> None:
    Path(PWNED).unlink(missing_ok=True)
    out = tmp_path / "out"
    base = ["--arch", "mlp", "--preset", "smoke", "--data", "synthetic", "--no-progress"]
    try:
        err = _refused(T.main, [*base, "--out", str(out), *extra], capsys)
    finally:
        ran_code = Path(PWNED).exists()
        Path(PWNED).unlink(missing_ok=True)
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    assert len(err.strip().splitlines()) <= 3, err  # the usage line and one or two lines
    assert _files(tmp_path) == set()
    assert not (tmp_path.parent / "x").exists()  # --run ../../x wrote nothing beside us
    assert not ran_code, "the activation expression ran code"


def test_train_refuses_cuda_without_cuda(tmp_path: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    out = tmp_path / "out"
    argv = ["--preset", "smoke", "--data", "synthetic", "--device", "cuda", "--out", str(out)]
    err = _refused(T.main, argv, capsys)
    assert "device" in err and "cuda" in err and "not available" in err
    assert not out.exists()


def test_train_refuses_an_out_that_is_a_file_or_under_one(tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    base = ["--preset", "smoke", "--data", "synthetic", "--no-progress"]
    err = _refused(T.main, [*base, "--out", str(afile)], capsys)
    assert "out" in err and str(afile) in err and "is a file" in err
    err = _refused(T.main, [*base, "--out", str(afile / "sub")], capsys)
    assert "out" in err and "which is a file" in err
    assert afile.read_text() == "keep me\n" and _files(tmp_path) == {afile}


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_train_refuses_an_unwritable_out(tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        base = ["--preset", "smoke", "--data", "synthetic"]
        err = _refused(T.main, [*base, "--out", str(locked / "run")], capsys)
        assert "out" in err and "not writable" in err
    finally:
        locked.chmod(0o700)


def _old_run(out: Path, identity: object) -> dict[Path, str]:
    out.mkdir(parents=True)
    files = {
        out / "config.json": json.dumps({"identity": identity}),
        out / "records.csv": "run,step,layer,metric,value\nold,0,model,loss,1.0\n",
        out / "summary.json": json.dumps({"status": "completed"}),
    }
    for path, text in files.items():
        path.write_text(text)
    return files


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ({"arch": "mlp", "lr": 0.5}, ["out", "holds a different run", "lr"]),
        (None, ["out", "holds a different run", "no comparable config"]),
    ],
)
def test_train_refuses_an_out_holding_a_different_run(
    tmp_path: Path, capsys, identity: object, expected: list[str]
) -> None:
    out = tmp_path / "old"
    files = _old_run(out, identity)
    argv = ["--preset", "smoke", "--data", "synthetic", "--no-progress", "--out", str(out)]
    err = _refused(T.main, argv, capsys)
    for text in expected:
        assert text in err, err
    assert {p: p.read_text() for p in files} == files  # the old run is untouched
    assert _files(tmp_path) == {out, *files}


def test_train_refuses_an_out_with_a_corrupt_config(tmp_path: Path, capsys) -> None:
    out = tmp_path / "old"
    files = _old_run(out, None)
    (out / "config.json").write_text("{not json")
    files[out / "config.json"] = "{not json"
    argv = ["--preset", "smoke", "--data", "synthetic", "--out", str(out)]
    err = _refused(T.main, argv, capsys)
    assert "config.json" in err and "unreadable" in err
    assert {p: p.read_text() for p in files} == files


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["list"], ["list"]),
        (["list", "keys"], ["--arch"]),
        (["list", "keys", "--arch", "lstm"], ["--arch", "'lstm'"]),
        (["list", "models"], ["'models'"]),
    ],
)
def test_train_list_refuses(argv: list[str], expected: list[str], capsys) -> None:
    err = _refused(T.main, argv, capsys)
    for text in expected:
        assert text in err, err


# -------------------------------------------------------------------------------- Monte Carlo

MC_CASES = [
    ("quantity", ["g_posx"], ["quantity", "'g_posx'"]),
    ("activation", ["g_pos", "--activation", "nope"], ["activation", "'nope'"]),
    ("loss", ["g_pos", "--loss", "hinge"], ["--loss", "'hinge'"]),
    ("zero-networks", ["g_pos", "--n-networks", "0"], ["n-networks", "0"]),
    ("one-network", ["g_pos", "--n-networks", "1"], ["n-networks", "1"]),
    ("networks-text", ["g_pos", "--n-networks", "many"], ["--n-networks", "'many'"]),
    ("widths-zero", ["g_pos", "--widths", "0"], ["widths", "0"]),
    ("widths-text", ["g_pos", "--widths", "wide"], ["widths", "'wide'"]),
    ("width-1e8", ["g_pos", "--widths", "100000000"], ["memory", "100000000", "GiB"]),
    ("inputs-1e9", ["g_pos", "--inputs-per-net", "1000000000"], ["memory", "GiB"]),
    ("d-in", ["g_pos", "--d-in", "0"], ["d_in", "0"]),
    ("n-out", ["g_pos", "--n-out", "0"], ["n_out", "0"]),
    ("inputs-per-net", ["g_pos", "--inputs-per-net", "0"], ["inputs_per_net", "0"]),
    ("layer", ["g_pos", "--layer", "3"], ["layer", "3"]),
    ("init", ["g_pos", "--init", "ones"], ["--init", "'ones'"]),
    ("w-gain-nan", ["g_pos", "--w-gain", "nan"], ["w_gain", "nan"]),
    ("w-gain-negative", ["g_pos", "--w-gain", "-1"], ["w_gain", "-1"]),
    ("bias-std", ["g_pos", "--bias-std", "-1"], ["bias_std", "-1"]),
    ("alpha-zero", ["g_pos", "--alpha", "0"], ["alpha", "0"]),
    ("alpha-above-one", ["g_pos", "--alpha", "1.5"], ["alpha", "1.5"]),
    ("max-looks", ["g_pos", "--max-looks", "0"], ["max_looks", "0"]),
    ("seed-negative", ["g_pos", "--seed", "-1"], ["seed", "-1"]),
    ("seed-beyond-64-bits", ["g_pos", "--seed", str(2**64 + 1)], ["seed", str(2**64 + 1)]),
    ("edges-text", ["g_curve", "--edges", "a,b"], ["edges", "'a,b'"]),
    ("edges-decreasing", ["g_curve", "--edges", "4,-4,16"], ["edges", "'4,-4,16'"]),
    ("edges-nan", ["g_curve", "--edges", "nan,1,2,3"], ["edges", "nan"]),
    ("entry-missing", ["entry"], ["entry-id", "None"]),
    ("entry-unknown", ["entry", "--entry-id", "C9.x"], ["entry-id", "C9.x"]),
    ("lr-nan", ["first_step", "--lr", "nan"], ["lr", "nan"]),
    ("s-zero", ["D", "--s", "0"], ["--s", "0"]),
    ("v-per-block", ["g_pos", "--v-per-block", "0"], ["v_per_block", "0"]),
    ("crossed-two-layers", ["g_pos", "--design", "crossed", "--widths", "4,4"], ["crossed"]),
    (
        "cross-entropy-gaussian",
        ["g_pos", "--loss", "cross_entropy", "--labels", "gaussian"],
        ["labels"],
    ),
    ("device", ["g_pos", "--device", "tpu"], ["device", "'tpu'"]),
    ("dtype", ["g_pos", "--dtype", "float16"], ["--dtype", "'float16'"]),
]


@pytest.mark.parametrize(("name", "argv", "expected"), MC_CASES, ids=[c[0] for c in MC_CASES])
def test_montecarlo_refuses(
    name: str, argv: list[str], expected: list[str], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    err = _refused(MC.main, [*argv, "--no-progress", "--out", str(out)], capsys)
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    assert _files(tmp_path) == set()


def test_montecarlo_refuses_an_out_that_is_a_file(tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    for out in (afile, afile / "sub"):
        err = _refused(MC.main, ["g_pos", "--n-networks", "8", "--out", str(out)], capsys)
        assert "out" in err and "file" in err
    assert afile.read_text() == "keep me\n" and _files(tmp_path) == {afile}
