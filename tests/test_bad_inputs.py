"""Bad input to the command lines: exit code 2, a message naming the field and the value, nothing
written and nothing large allocated. One table per entry point, run in-process through `main`.

Run: `.venv/bin/python -m pytest -q tests/test_bad_inputs.py` (well under a minute).
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import signal
from pathlib import Path

import pytest
import torch

from empirics.montecarlo import cli as MC
from empirics.train import cli as TC
from empirics.train import loop as T

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
    (
        "activation-too-long",
        ["--activation", "f=" + "x+" * 300 + "x"],
        ["activation", "500", "601"],  # theory.parse's one bound on an expression
    ),
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
    ("betas-empty-item", ["--betas", "0.9,,0.95"], ["--betas", "'0.9,,0.95'", "empty item"]),
    ("betas-trailing-comma", ["--betas", "0.9,"], ["--betas", "'0.9,'", "empty item"]),
    ("betas-empty", ["--betas", ""], ["--betas", "empty value"]),
    ("betas-text", ["--betas", "0.9,high"], ["--betas", "'high'", "numbers"]),
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
        err = _refused(TC.main, [*base, "--out", str(out), *extra], capsys)
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
    err = _refused(TC.main, argv, capsys)
    assert "device" in err and "cuda" in err and "not available" in err
    assert not out.exists()


def test_train_refuses_an_out_that_is_a_file_or_under_one(tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    base = ["--preset", "smoke", "--data", "synthetic", "--no-progress"]
    err = _refused(TC.main, [*base, "--out", str(afile)], capsys)
    assert "out" in err and str(afile) in err and "is a file" in err
    err = _refused(TC.main, [*base, "--out", str(afile / "sub")], capsys)
    assert "out" in err and "which is a file" in err
    assert afile.read_text() == "keep me\n" and _files(tmp_path) == {afile}


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_train_refuses_an_unwritable_out(tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        base = ["--preset", "smoke", "--data", "synthetic"]
        err = _refused(TC.main, [*base, "--out", str(locked / "run")], capsys)
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
    err = _refused(TC.main, argv, capsys)
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
    err = _refused(TC.main, argv, capsys)
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
    err = _refused(TC.main, argv, capsys)
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


# ------------------------------------------------------------- every entry point, one helper


def _exit(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run an entry point's main(argv) in-process: (exit code, stderr), whether it returns the
    code or leaves through SystemExit (argparse's error)."""
    before = _peak_rss_kb()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert _peak_rss_kb() - before < MAX_RSS_GROWTH_KB, "a refused input allocated memory"
    return int(code), err


def _assert_message(err: str, expected: list[str], max_lines: int = 3) -> None:
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    # A usage line and one paragraph, never a traceback.
    assert "Traceback" not in err and len(err.strip().splitlines()) <= max_lines, err


# Expression cases every entry point that takes --activation must refuse (issue 22).
BAD_EXPRESSIONS = [
    ("pole-in-branch", "pw=Piecewise((1/x, x>0), (0, True))", ["'pw'", "at {0}"]),
    ("folded-constant", "big=1000000*1000000*1000000*1000000*x", ["'big'", "exceeds 1e+06"]),
    ("inf-in-branch", "zb=Piecewise((1/0, x>0), (0, True))", ["'zb'", "not finite"]),
    ("nested-exp-constant", "ne=exp(exp(exp(100)))*x", ["'ne'", "exceeds 1e+06"]),
]
OVERFLOWING = ("ee=exp(exp(x))", ["'ee'", "overflows float32", "float64"])

TRAIN_CASES_2 = [
    ("decay-fraction-alias", ["--decay-fraction", "1.5"], ["decay_frac", "1.5"]),
    *[
        (f"activation-{name}", ["--activation", spec], ["activation", *want])
        for name, spec, want in BAD_EXPRESSIONS
    ],
]


@pytest.mark.parametrize(("name", "extra", "expected"), TRAIN_CASES_2, ids=_case_id)
def test_train_refuses_more(name: str, extra: list[str], expected: list[str], tmp_path, capsys):
    base = ["--arch", "mlp", "--preset", "smoke", "--data", "synthetic", "--no-progress"]
    code, err = _exit(TC.main, [*base, "--out", str(tmp_path / "out"), *extra], capsys)
    assert code == 2, err
    _assert_message(err, expected)
    assert _files(tmp_path) == set()


def test_train_refuses_an_out_it_cannot_create(capsys) -> None:
    # /proc accepts no new directories even for root, whom os.access lets through.
    base = ["--preset", "smoke", "--data", "synthetic", "--steps", "2", "--no-progress"]
    code, err = _exit(TC.main, [*base, "--out", "/proc/bof-x"], capsys)
    assert code == 2, err
    _assert_message(err, ["out", "'/proc/bof-x'", "cannot create"])
    assert not Path("/proc/bof-x").exists()


def test_a_branch_never_taken_does_not_poison_training(tmp_path: Path, capsys) -> None:
    """Max(x,0)**(1/3): x**(1/3) is NaN for x < 0, where the branch is not taken; 50 steps with a
    finite loss show its NaN never reaches a gradient (the two-`where` compile)."""
    out = tmp_path / "cr"
    argv = ["--preset", "smoke", "--data", "synthetic", "--steps", "50", "--no-progress"]
    argv += ["--activation", "cr=Max(x,0)**(1/3)", "--out", str(out)]
    code, err = _exit(TC.main, argv, capsys)
    assert code == 0, err
    body = json.loads((out / "summary.json").read_text())
    assert body["status"] == "completed" and body["steps"] == 50
    assert math.isfinite(body["final_loss"])


# ------------------------------------------------------------------------ resume from damage


def _damaged(kind: str, good: bytes) -> bytes:
    import io

    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "empty":
        return b""
    if kind == "random":
        return bytes(random.Random(0).getrandbits(8) for _ in range(len(good)))
    buf = io.BytesIO()  # a valid torch file that is not a checkpoint
    torch.save({"model": torch.zeros(3)}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A smoke run stopped after its first step with a checkpoint, its summary set back to
    `running` (what a SIGKILL leaves)."""
    from empirics.train.runtime import Interrupted, StopFlag

    out = tmp_path_factory.mktemp("interrupted") / "run"
    argv = ["--preset", "smoke", "--data", "synthetic", "--steps", "6", "--no-progress"]
    argv += ["--checkpoint-every", "2", "--out", str(out)]
    flag = StopFlag()
    flag.signum = signal.SIGTERM  # stop at the first step boundary
    with pytest.raises(Interrupted):
        T.train(TC.config_from_args(TC.build_parser().parse_args(argv)), stop=flag)
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    assert (out / "checkpoint.pt").stat().st_size > 0
    return out, argv


RESUME_DAMAGE = ["truncated", "empty", "random", "not-a-checkpoint"]


@pytest.mark.parametrize("kind", RESUME_DAMAGE)
def test_resume_from_a_damaged_checkpoint_is_refused(
    kind: str, interrupted_run, tmp_path: Path, capsys
) -> None:
    src, argv = interrupted_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(_damaged(kind, ckpt.read_bytes()))
    keep = {p: p.read_bytes() for p in out.iterdir() if p.name != "summary.json"}
    argv = [a if a != str(src) else str(out) for a in argv]
    code, err = _exit(TC.main, argv, capsys)
    assert code == 2, err
    _assert_message(err, ["checkpoint", str(ckpt), "delete it", "--overwrite"])
    assert {p: p.read_bytes() for p in out.iterdir() if p.name != "summary.json"} == keep
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and str(ckpt) in summary["message"]


def test_resume_from_an_intact_checkpoint_and_overwrite_of_a_damaged_one(
    interrupted_run, tmp_path: Path, capsys
) -> None:
    """The guard does not refuse what it should accept: an intact checkpoint resumes, and
    --overwrite starts a damaged run over."""
    src, argv = interrupted_run
    for name, damage, extra in (("intact", False, []), ("damaged", True, ["--overwrite"])):
        out = tmp_path / name
        shutil.copytree(src, out)
        if damage:
            (out / "checkpoint.pt").write_bytes(b"")
        run_argv = [a if a != str(src) else str(out) for a in argv] + extra
        code, err = _exit(TC.main, run_argv, capsys)
        assert code == 0, err
        assert ("resuming from step" in err) == (not damage)
        assert json.loads((out / "summary.json").read_text())["status"] == "completed"


# ---------------------------------------------------------------------------- Monte Carlo 2

MC_CASES_2 = [
    ("widths-empty-item", ["g_pos", "--widths", "8,,8"], ["--widths", "'8,,8'", "empty item"]),
    ("widths-trailing-comma", ["g_pos", "--widths", "8,"], ["--widths", "empty item"]),
    ("widths-leading-comma", ["g_pos", "--widths", ",8"], ["--widths", "',8'", "empty item"]),
    ("widths-empty", ["g_pos", "--widths", ""], ["--widths", "empty value"]),
    ("activation-empty", ["g_pos", "--activation", ""], ["activation", "''"]),
    ("data-alias", ["g_pos", "--data", "imagenet"], ["--inputs", "'imagenet'"]),
    *[
        (f"activation-{name}", ["g_pos", "--activation", spec], want)
        for name, spec, want in BAD_EXPRESSIONS
    ],
    ("activation-overflow", ["g_pos", "--activation", OVERFLOWING[0]], OVERFLOWING[1]),
    ("D-overflow", ["D", "--activation", "ee2=exp(exp(x)/20)"], ["'ee2'", "overflows"]),
]


@pytest.mark.parametrize(("name", "argv", "expected"), MC_CASES_2, ids=_case_id)
def test_montecarlo_refuses_more(name: str, argv: list[str], expected, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, err = _exit(MC.main, [*argv, "--no-progress", "--out", str(out)], capsys)
    assert code == 2, err
    _assert_message(err, expected)
    assert _files(tmp_path) == set()


def test_montecarlo_overflow_inside_the_estimate_is_reported_and_cleaned_up(tmp_path, capsys):
    """x**16 is finite on the sampled range, but a second layer raises ~1e16 to the 16th: the
    non-finite estimate is an overflow (exit 2, float64), and the partial files are removed."""
    out = tmp_path / "out"
    argv = ["g_pos", "--activation", "p16=x**16", "--widths", "16,16", "--n-networks", "64"]
    code, err = _exit(MC.main, [*argv, "--no-progress", "--out", str(out)], capsys)
    assert code == 2, err
    _assert_message(err, ["'p16'", "not finite", "overflow", "float64"])
    assert "nan ±" not in capsys.readouterr().out
    assert _files(tmp_path) == set()


# --------------------------------------------------------------------------- early training

EARLY_CASES = [
    ("seeds-empty-item", ["--seeds", "0,,1"], ["--seeds", "'0,,1'", "empty item"]),
    ("seeds-trailing", ["--seeds", "0,"], ["--seeds", "empty item"]),
    ("seeds-empty", ["--seeds", ""], ["--seeds", "empty value"]),
    ("seeds-negative", ["--seeds", "-1"], ["--seeds", "-1", "[0, 2**63 - 1]"]),
    ("seeds-beyond-64-bits", ["--seeds", str(2**64)], ["--seeds", str(2**64)]),
    ("seeds-text", ["--seeds", "0,x"], ["--seeds", "'x'", "not an integer"]),
    ("seeds-repeated", ["--seeds", "1,1"], ["--seeds", "[1]", "twice"]),
    ("widths-1e9", ["--widths", "1000000000"], ["memory", "GiB", "1000000000", "--widths"]),
    ("widths-empty-item", ["--widths", "8,,8"], ["--widths", "'8,,8'", "empty item"]),
    ("widths-zero", ["--widths", "0"], ["--widths", "0"]),
    ("widths-text", ["--widths", "wide"], ["--widths", "'wide'"]),
    ("n-networks-1e11", ["--n-networks", "100000000000"], ["--n-networks", "100000000000"]),
    ("n-networks-2", ["--n-networks", "2"], ["--n-networks", "2"]),
    ("n-networks-memory", ["--n-networks", "16000000"], ["memory", "GiB", "--n-networks"]),
    ("check-factor-0", ["--check-factor", "0"], ["--check-factor", "0"]),
    ("check-factor-1000", ["--check-factor", "1000"], ["--check-factor", "1000"]),
    ("data-unknown", ["--data", "imagenet"], ["--data", "'imagenet'", "halfnormal"]),
    ("data-empty-item", ["--data", "gaussian,,halfnormal"], ["--data", "empty item"]),
    ("inputs-alias", ["--inputs", "imagenet"], ["--data", "'imagenet'"]),
    ("activation-unknown", ["--activation", "nope"], ["'nope'", "relu"]),
    *[(f"activation-{n}", ["--activation", s], w) for n, s, w in BAD_EXPRESSIONS],
    ("loss", ["--loss", "hinge"], ["--loss", "'hinge'"]),
    ("optimizer", ["--optimizer", "lion"], ["--optimizer", "'lion'"]),
    ("lr-nan", ["--lr", "nan"], ["lr", "nan"]),
    ("lr-negative", ["--lr", "-1"], ["lr", "-1"]),
    ("steps-zero", ["--steps", "0"], ["steps", "0"]),
    ("jobs-zero", ["--jobs", "0"], ["--jobs", "0"]),
    ("threads-zero", ["--threads", "0"], ["--threads", "0"]),
    ("alpha-zero", ["--alpha", "0"], ["alpha", "0"]),
    ("decay-fraction", ["--decay-fraction", "1.5"], ["decay_fraction", "1.5"]),
    ("decay-frac-alias", ["--decay-frac", "0"], ["decay_fraction", "0"]),
    ("momentum-one", ["--momentum", "1"], ["momentum", "1"]),
    ("batch-size-zero", ["--batch-size", "0"], ["batch_size", "0"]),
    ("measure-batch-one", ["--measure-batch", "1"], ["measure_batch", "1"]),
    ("d-in-zero", ["--d-in", "0"], ["d_in", "0"]),
    ("dtype", ["--dtype", "float16"], ["--dtype", "'float16'"]),
    ("device", ["--device", "tpu"], ["device", "'tpu'"]),
    ("unknown-flag", ["--widht", "3"], ["--widht"]),
    ("report-without-runs", ["--report"], ["--out", "no early-training runs", "--report"]),
]


@pytest.mark.parametrize(("name", "argv", "expected"), EARLY_CASES, ids=_case_id)
def test_early_training_refuses(name: str, argv: list[str], expected, tmp_path, capsys) -> None:
    from empirics.montecarlo import early_training as ET

    out = tmp_path / "out"
    code, err = _exit(ET.main, [*argv, "--no-progress", "--out", str(out)], capsys)
    assert code == 2, err
    _assert_message(err, expected)
    assert _files(tmp_path) == set()  # no config.json, no empty run directory


# -------------------------------------------------------------------------------- sweep

SWEEP_CASES = [
    ("arch-empty-item", {"--arch": "mlp,,vit"}, ["--arch", "'mlp,,vit'", "empty item"]),
    ("activation-empty-item", {"--activation": "relu,,gelu"}, ["--activation", "empty item"]),
    ("seeds-empty-item", {"--seeds": "0,,1"}, ["--seeds", "empty item"]),
    ("seeds-negative", {"--seeds": "-1"}, ["--seeds", "-1", "[0, 2**63 - 1]"]),
    ("seeds-repeated", {"--seeds": "2,2"}, ["--seeds", "twice"]),
    *[(f"activation-{n}", {"--activation": s}, w) for n, s, w in BAD_EXPRESSIONS],
    ("preset", {"--preset": "huge"}, ["preset", "'huge'"]),
    ("parallel-zero", {"--parallel": "0"}, ["parallel", "0"]),
]


@pytest.mark.parametrize(("name", "changes", "expected"), SWEEP_CASES, ids=_case_id)
def test_sweep_refuses(name: str, changes: dict[str, str], expected, tmp_path, capsys) -> None:
    from empirics.experiments import sweep as S

    flags = {"--arch": "mlp", "--activation": "relu", "--preset": "smoke"}
    flags |= {"--data": "synthetic", "--cluster": "debug", **changes}
    argv = ["run", *[v for kv in flags.items() for v in kv], "--out", str(tmp_path / "out")]
    code, err = _exit(S.main, argv, capsys)
    assert code == 2, err
    _assert_message(err, ["python -m empirics.experiments.sweep", *expected])
    assert _files(tmp_path) == set()


# ------------------------------------------------------------------------------ experiments

EXPERIMENTS_CASES = [
    ("only-empty-item", ["plan", "--only", "c10,,drift"], ["--only", "'c10,,drift'", "empty"]),
    ("only-empty", ["plan", "--only", ""], ["--only", "empty value"]),
    ("only-unknown", ["plan", "--only", "c13"], ["--only", "c13", "drift"]),
    ("scale", ["plan", "--scale", "huge"], ["--scale", "'huge'", "quick"]),
    ("jobs-zero", ["run", "--jobs", "0"], ["--jobs", "0"]),
    ("command", ["fly"], ["'fly'"]),
    ("aggregate-nothing", ["aggregate", "--scale", "quick"], ["--out", "no experiment results"]),
]


@pytest.mark.parametrize(("name", "argv", "expected"), EXPERIMENTS_CASES, ids=_case_id)
def test_experiments_refuses(name: str, argv: list[str], expected, tmp_path, capsys) -> None:
    from empirics.experiments import pipeline as E

    root = tmp_path / "nonexistent"
    code, err = _exit(E.main, [*argv, "--out", str(root)], capsys)
    assert code == 2, err
    _assert_message(err, expected)
    assert _files(tmp_path) == set()  # aggregate wrote no JSON of nothing


def test_experiments_stop_before_any_run_without_their_data(tmp_path, capsys, monkeypatch):
    from empirics.experiments import pipeline as E

    monkeypatch.setenv("BOF_FASHION_MNIST_DIR", str(tmp_path / "no-data"))
    started = []
    monkeypatch.setattr(E, "run_group", lambda *a, **k: started.append(a) or {"runs": []})
    argv = ["run", "--scale", "quick", "--only", "drift", "--out", str(tmp_path / "out")]
    code, err = _exit(E.main, argv, capsys)
    assert code == 1, err
    _assert_message(err, ["data unavailable", "fashion_mnist", "drift", "make data"], 2)
    assert started == [] and _files(tmp_path) == set()


def test_experiments_stop_when_a_group_completes_no_run(tmp_path, capsys, monkeypatch):
    """`drift: 0/48 runs completed` no longer carries on to a traceback further down: the
    pipeline stops there with the first run's reason (exit 1)."""
    from empirics.experiments import pipeline as E

    def failed_group(group, specs, *args, **kwargs):
        runs = [
            {"run": s.name, "status": "failed", "message": "DataUnavailable: no tokens"}
            for s in specs
        ]
        return {"runs": runs}

    later = []
    monkeypatch.setattr(E, "run_group", failed_group)
    monkeypatch.setattr(E, "run_early", lambda *a, **k: later.append("early"))
    argv = ["run", "--scale", "quick", "--only", "synthetic,early", "--out", str(tmp_path)]
    code, err = _exit(E.main, argv, capsys)
    assert code == 1, err
    _assert_message(err, ["synthetic: 0/18 runs completed", "failed", "no tokens"], 2)
    assert later == []  # the groups after it never started


# ---------------------------------------------------------------------------------- verify

VERIFY_CASES = [
    ("only-empty-item", ["--only", "relu,,gelu"], ["--only", "'relu,,gelu'", "empty item"]),
    ("only-empty", ["--only", ""], ["--only", "empty value"]),
    ("only-unknown", ["--only", "nope"], ["--only", "'nope'"]),
    ("activation-unknown", ["--activation", "nope"], ["--activation", "'nope'"]),
    *[(f"activation-{n}", ["--activation", s], w) for n, s, w in BAD_EXPRESSIONS],
    ("activation-overflow", ["--activation", OVERFLOWING[0]], OVERFLOWING[1]),
    ("seed-negative", ["--seed", "-1"], ["--seed", "-1"]),
    ("alpha-zero", ["--alpha", "0"], ["--alpha", "0"]),
    ("threads-zero", ["--threads", "0"], ["--threads", "0"]),
]


@pytest.mark.parametrize(("name", "argv", "expected"), VERIFY_CASES, ids=_case_id)
def test_verify_refuses(name: str, argv: list[str], expected, tmp_path, capsys) -> None:
    from empirics.ledger import verify as V

    ledger = tmp_path / "sub" / "ledger.json"
    code, err = _exit(V.main, [*argv, "--no-progress", "--json", str(ledger)], capsys)
    assert code == 2, err
    _assert_message(err, ["python -m empirics.ledger.verify: error:", *expected], max_lines=2)
    assert _files(tmp_path) == set()  # not even the directory of --json


def test_verify_refuses_a_json_under_a_file(tmp_path, capsys) -> None:
    from empirics.ledger import verify as V

    afile = tmp_path / "afile"
    afile.write_text("keep\n")
    code, err = _exit(V.main, ["--json", str(afile / "l.json"), "--no-montecarlo"], capsys)
    assert code == 2, err
    _assert_message(err, ["--json", "is a file"], max_lines=1)
    assert _files(tmp_path) == {afile} and afile.read_text() == "keep\n"


# ----------------------------------------------------------------------------- claims table


def _ledger_with(tmp_path: Path, scale: str) -> Path:
    from empirics.ledger.experiment_verdicts import experiment_row

    row = experiment_row(
        "C8.architectures.mlp",
        "drift appears in MLP",
        "refuted",
        "text",
        evidence={"source": f"results/experiments/{scale}/drift.json"},
    )
    path = tmp_path / f"ledger-{scale}.json"
    path.write_text(json.dumps({"entries": [row]}))
    return path


@pytest.mark.parametrize("scale", ["quick", "smoke"])
def test_claims_table_refuses_a_small_scale_ledger(scale: str, tmp_path, capsys) -> None:
    from paper_figures import claims_table as CT

    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{CT.START}\nold\n{CT.END}\ntail\n")
    ledger = _ledger_with(tmp_path, scale)
    code, err = _exit(CT.main, ["--ledger", str(ledger), "--readme", str(readme)], capsys)
    assert code == 2, err
    _assert_message(err, [f"scale {scale!r}", "C8.architectures.mlp", "nothing was written"])
    assert readme.read_text() == f"head\n{CT.START}\nold\n{CT.END}\ntail\n"


def test_claims_table_renders_a_full_scale_ledger(tmp_path, capsys) -> None:
    from paper_figures import claims_table as CT

    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{CT.START}\nold\n{CT.END}\ntail\n")
    ledger = _ledger_with(tmp_path, "full")
    code, err = _exit(CT.main, ["--ledger", str(ledger), "--readme", str(readme)], capsys)
    assert code == 0, err
    assert "old" not in readme.read_text() and "| C8 |" in readme.read_text()
