"""Sweeps on submitit: resume, config comparison, bad inputs, index, signals, SLURM parameters.

Run: `.venv/bin/python -m pytest tests/test_sweep.py -q` (mlp smoke preset on synthetic data, a
few steps per run; the debug executor runs in this process, one test uses the local executor).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from empirics import launch as launcher
from empirics.experiments import sweep as S
from empirics.experiments import sweep_jobs as J
from empirics.outputs import read_records
from empirics.train import loop as T

BASE = dict(data="synthetic", preset="smoke", steps=4, early_steps=4)


def _grid(root: Path, acts=("relu", "tanh"), seeds=(0,), **kw: object) -> list[T.TrainConfig]:
    return S.grid(["mlp"], list(acts), list(seeds), T.TrainConfig(**{**BASE, **kw}), root)


def _debug() -> S.Launch:
    return S.Launch(cluster="debug")


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under root with a hash of its bytes: 'nothing written' means this is equal."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _exit_code(argv: list[str]) -> int:
    """main's exit code, whether it returns it or argparse raises SystemExit."""
    try:
        return S.main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _strict_json(path: Path) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"{path} holds {token}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# ------------------------------------------------------------------------ resume and index


def test_resume_skips_finished_and_redoes_half_finished(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    configs = _grid(root)
    lines: list[str] = []
    index = S.run_sweep(configs, root, _debug(), echo=lines.append)
    assert [e["status"] for e in index["runs"]] == ["completed", "completed"]
    # A line per finished run (status and final loss) and a one-line result at the end.
    assert lines[1].startswith("[1/2] mlp-relu-synthetic-s0: completed  loss ")
    assert lines[2].startswith("[2/2] mlp-tanh-synthetic-s0: completed  loss ")
    assert "2/2 completed" in lines[-1] and str(root / S.INDEX) in lines[-1]
    done, half = (Path(c.out) for c in configs)
    # Simulate a run killed midway: its summary says running and it has a stray file.
    summary = json.loads((half / "summary.json").read_text())
    summary["status"] = "running"
    (half / "summary.json").write_text(json.dumps(summary))
    (half / "stray.txt").write_text("from the killed attempt")
    stamp = (done / "records.csv").stat().st_mtime_ns
    index = S.run_sweep(configs, root, _debug(), echo=None)
    assert (done / "records.csv").stat().st_mtime_ns == stamp  # not redone
    assert not (half / "stray.txt").exists()  # redone in a fresh directory
    assert json.loads((half / "summary.json").read_text())["status"] == "completed"
    by_run = {e["run"]: e for e in index["runs"]}
    assert by_run[configs[0].run].get("skipped") and not by_run[configs[1].run].get("skipped")
    assert by_run[configs[1].run]["threads"] >= 1  # recorded: results depend on it
    rows = S.drift_report(root)
    assert {(r["arch"], r["activation"]) for r in rows} == {("mlp", "relu"), ("mlp", "tanh")}
    for r in rows:
        assert r["step_k"] == 3 and r["falling"].endswith("/2")
        assert r["d_preact"] == pytest.approx(r["preact_k"] - r["preact_0"])
    assert "responsible" in S.format_table(rows).splitlines()[0]


def test_chunked_jobs_give_the_same_records_as_one_run_per_job(tmp_path: Path) -> None:
    single = _grid(tmp_path / "single", seeds=(0, 1))
    chunked = _grid(tmp_path / "chunked", seeds=(0, 1))
    S.run_sweep(single, tmp_path / "single", _debug(), echo=None)
    launch = S.Launch(cluster="debug", chunk=3)
    index = S.run_sweep(chunked, tmp_path / "chunked", launch, echo=None)
    assert [e["status"] for e in index["runs"]] == ["completed"] * 4
    # Three runs shared the first job and the fourth had its own: the job ids say so.
    jobs = [e["job_id"] for e in index["runs"]]
    assert len(set(jobs)) == 2 and jobs.count(jobs[0]) == 3
    for a, b in zip(single, chunked, strict=True):
        assert read_records(Path(a.out) / "records.csv") == read_records(
            Path(b.out) / "records.csv"
        )


def test_a_dead_chunk_keeps_its_finished_runs_and_fails_the_rest(tmp_path: Path) -> None:
    configs = _grid(tmp_path / "dead", seeds=(0,))
    S.run_sweep(configs[:1], tmp_path / "dead", _debug(), echo=None)

    class Dead:
        paths = None

        def result(self) -> None:
            raise RuntimeError("killed\nby the OOM killer")

    first, second = J.collect_chunk(Dead(), configs)
    assert first["status"] == "completed" and first["final_loss"] is not None
    assert second["status"] == "failed" and second["message"] == "RuntimeError: killed"


def test_an_interrupted_run_cancels_the_rest_of_its_chunk(tmp_path: Path, monkeypatch) -> None:
    configs = _grid(tmp_path / "intr", seeds=(0,))
    calls = []

    def fake(cfg, threads, lock_path, own_process=True):
        calls.append(cfg.run)
        return {"run": cfg.run, "status": "interrupted"}

    monkeypatch.setattr(J, "run_point", fake)
    entries = J.run_points(configs, 1, ["a", "b"])
    assert [e["status"] for e in entries] == ["interrupted", "cancelled"]
    assert calls == [configs[0].run]  # the second run never started


def test_bad_grid_is_refused_before_running(tmp_path: Path) -> None:
    with pytest.raises(T.ConfigError, match="unknown activation|bogus"):
        S.grid(["mlp"], ["relu", "bogus"], [0], T.TrainConfig(preset="smoke"), tmp_path)
    with pytest.raises(T.ConfigError, match="grid"):
        S.run_sweep([], tmp_path / "empty", _debug())
    with pytest.raises(launcher.LaunchError, match="--parallel: expected an integer >= 1, got 0"):
        S.Launch(parallel=0)
    with pytest.raises(launcher.LaunchError, match="--chunk"):
        S.Launch(chunk=0)
    assert not (tmp_path / "empty").exists()


def test_corrupted_index_is_rebuilt_from_the_run_directories(tmp_path: Path, capsys) -> None:
    root = tmp_path / "sweep"
    configs = _grid(root)
    S.run_sweep(configs, root, _debug(), echo=None)
    (root / S.INDEX).write_text('{"runs": [{"run": ')  # a torn write by some other tool
    assert S.main(["report", str(root)]) == 0
    captured = capsys.readouterr()
    assert "unreadable; rebuilt it" in captured.err and "mlp" in captured.out
    index = S.run_sweep(configs, root, _debug(), echo=None)  # resumes, rewrites the index
    assert [e["status"] for e in index["runs"]] == ["completed", "completed"]
    assert _strict_json(root / S.INDEX)["runs"][0]["skipped"] is True


def test_a_diverged_run_is_reported_and_the_index_stays_strict_json(tmp_path: Path, capsys):
    out = tmp_path / "sweep"
    argv = ["run", "--arch", "mlp", "--activation", "relu", "--preset", "smoke"]
    argv += ["--data", "synthetic", "--steps", "20", "--lr", "1e30", "--optimizer", "sgd"]
    assert S.main([*argv, "--out", str(out), "--cluster", "debug"]) == 1
    captured = capsys.readouterr()
    assert "[1/1] mlp-relu-synthetic-s0: diverged" in captured.out
    assert "0/1 completed" in captured.out and "1 diverged" in captured.out
    entry = _strict_json(out / S.INDEX)["runs"][0]
    assert entry["status"] == "diverged" and entry["final_loss"] is None


def test_activations_repeat_and_split_on_commas_only_without_equals(tmp_path: Path) -> None:
    values = S.split_values(["relu,gelu", "fmax=Max(x,0)", "leaky_relu:slope=0.2", " tanh"])
    assert values == ["relu", "gelu", "fmax=Max(x,0)", "leaky_relu:slope=0.2", "tanh"]
    configs = _grid(tmp_path, acts=values)
    assert [c.run for c in configs] == [
        "mlp-relu-synthetic-s0",
        "mlp-gelu-synthetic-s0",
        "mlp-fmax-synthetic-s0",
        "mlp-leaky_relu-slope-0.2-synthetic-s0",
        "mlp-tanh-synthetic-s0",
    ]
    assert S.parse_seeds(["0,1", "5"]) == [0, 1, 5]


def test_a_run_held_by_a_live_process_is_not_touched(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    configs = _grid(root, acts=("relu",))
    S.run_sweep(configs, root, _debug(), echo=None)
    run_dir = Path(configs[0].out)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["status"] = "running"  # as a sweep killed with SIGKILL leaves it
    (run_dir / "summary.json").write_text(json.dumps(summary))
    before = _snapshot(root)
    lock = root / S.LOCKS / f"{configs[0].run}.lock"
    with open(lock, "a+") as held:  # an orphaned worker still training this point
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.truncate(0)
        held.write("4242\n")
        held.flush()
        with pytest.raises(T.ConfigError, match="still being trained by process 4242"):
            S.run_sweep(configs, root, _debug(), echo=None)
    after = _snapshot(root)
    after.pop(f"{S.LOCKS}/{configs[0].run}.lock")
    before.pop(f"{S.LOCKS}/{configs[0].run}.lock")
    assert after == before


def test_an_interrupted_run_resumes_from_its_checkpoint_to_identical_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from empirics.tasks import images

    kw = dict(steps=6, early_steps=6, checkpoint_every=2)
    whole = tmp_path / "whole"
    S.run_sweep(_grid(whole, acts=("relu",), **kw), whole, _debug(), echo=None)

    root = tmp_path / "cut"
    configs = _grid(root, acts=("relu",), **kw)
    real_step, calls = images.loss_and_metrics, {"n": 0}

    def interrupt_at_fifth(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_step(model, batch)

    with monkeypatch.context() as m:
        m.setattr(images, "loss_and_metrics", interrupt_at_fifth)
        with pytest.raises(S.SweepInterrupted):
            S.run_sweep(configs, root, _debug(), echo=None)
    assert _strict_json(root / S.INDEX)["runs"][0]["status"] == "cancelled"
    run_dir = Path(configs[0].out)
    assert (run_dir / T.CHECKPOINT).exists()
    index = S.run_sweep(configs, root, _debug(), echo=None)
    assert index["runs"][0]["status"] == "completed"
    strip = [
        {k: v for k, v in r.items() if k != "run"} for r in read_records(run_dir / "records.csv")
    ]
    ref = [
        {k: v for k, v in r.items() if k != "run"}
        for r in read_records(whole / S.RUNS / configs[0].run / "records.csv")
    ]
    assert strip == ref


# ----------------------------------------------------------------- resuming other settings


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finished") / "sweep"
    S.run_sweep(_grid(root, acts=("relu",)), root, _debug(), echo=None)
    return root


def _argv(out: Path, **changes: str) -> list[str]:
    opts = {
        "--arch": "mlp",
        "--activation": "relu",
        "--seeds": "0",
        "--preset": "smoke",
        "--data": "synthetic",
        "--steps": "4",
        "--early-steps": "4",
        "--out": str(out),
        "--cluster": "debug",
    }
    for key, value in changes.items():
        opts[f"--{key.replace('_', '-')}"] = value
    argv = ["run"]
    for key, value in opts.items():
        if value is not None:
            argv += [key, value]
    return argv


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"steps": "5"}, "steps: 4 then, 5 now"),
        ({"lr": "0.01"}, "lr: "),
        ({"data": "real"}, "data: 'synthetic' then, 'real' now"),
        ({"seeds": "1"}, "steps"),  # a new point beside old ones must match them too
    ],
)
def test_resuming_with_other_settings_is_refused(
    finished_sweep: Path, tmp_path: Path, capsys, changes: dict[str, str], field: str
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(finished_sweep, root)
    before = _snapshot(root)
    if changes.get("seeds") == "1":
        changes = {**changes, "steps": "7"}
    assert S.main(_argv(root, **changes)) == 2
    err = capsys.readouterr().err
    assert (
        "completed run mlp-relu-synthetic-s0 was made with other settings" in err and field in err
    )
    assert _snapshot(root) == before


def test_resuming_with_the_same_settings_extends_the_grid(finished_sweep: Path, tmp_path: Path):
    root = tmp_path / "copy"
    shutil.copytree(finished_sweep, root)
    assert S.main(_argv(root, seeds="0,1")) == 0
    index = _strict_json(root / S.INDEX)
    assert [(e["run"], e["status"], e.get("skipped", False)) for e in index["runs"]] == [
        ("mlp-relu-synthetic-s0", "completed", True),
        ("mlp-relu-synthetic-s1", "completed", False),
    ]


# ------------------------------------------------------------------------- bad input table

NO_SRUN = shutil.which("srun") is None
NO_CUDA = not torch.cuda.is_available()

BAD_RUN = [
    (
        "empty-activation",
        {"activation": ""},
        r"--activation: expected a comma-separated list, got an empty value ''",
    ),
    ("empty-seeds", {"seeds": ","}, r"--seeds: empty item in ','"),
    ("empty-arch", {"arch": " , "}, r"--arch: empty item in ' , '"),
    ("empty-arch-item", {"arch": "mlp,,vit"}, r"--arch: empty item in 'mlp,,vit'"),
    ("empty-activation-item", {"activation": "relu,"}, r"--activation: empty item in 'relu,'"),
    ("seed-not-an-integer", {"seeds": "0,x"}, r"--seeds: 'x' in '0,x' is not an integer"),
    ("seed-negative", {"seeds": "-1"}, r"--seeds: -1 .*accepted: an integer in \[0, 2\*\*63 - 1\]"),
    ("seed-beyond-64-bits", {"seeds": str(2**64)}, rf"--seeds: {2**64} .*out of range"),
    ("repeated-seed", {"seeds": "0,0"}, r"--seeds: seed\(s\) \[0\] given twice"),
    ("unknown-arch", {"arch": "transformer"}, r"arch: .*'mlp'.*got 'transformer'"),
    ("unknown-activation", {"activation": "bogus"}, r"activation.*bogus"),
    ("activation-with-a-pole", {"activation": "f=1/(x-0.5)"}, r"undefined on the real line"),
    ("steps-zero", {"steps": "0"}, r"steps.*0"),
    ("lr-nan", {"lr": "nan"}, r"lr.*nan"),
    ("unknown-data", {"data": "imagenet"}, r"data.*imagenet"),
    ("unknown-set-key", {"set": "depthx=3"}, r"--set: unknown key 'depthx' for mlp"),
    ("parallel-zero", {"parallel": "0"}, r"--parallel: expected an integer >= 1, got 0"),
    ("parallel-not-an-integer", {"parallel": "two"}, r"--parallel.*invalid int value: 'two'"),
    ("threads-zero", {"threads": "0"}, r"--threads: expected an integer >= 1, got 0"),
    ("time-zero", {"time": "0"}, r"--time: expected an integer >= 1, got 0"),
    ("gpus-negative", {"gpus_per_job": "-1"}, r"--gpus-per-job: expected an integer >= 0"),
    ("unknown-cluster", {"cluster": "kubernetes"}, r"--cluster: unknown value 'kubernetes'"),
    (
        "partition-without-slurm",
        {"cluster": "local", "partition": "gpu"},
        r"--partition gpu: only applies on SLURM",
    ),
    (
        "cpus-per-job-without-slurm",
        {"cluster": "local", "cpus_per_job": "4"},
        r"--cpus-per-job 4: only applies on SLURM",
    ),
    pytest.param(
        "slurm-without-srun",
        {"cluster": "slurm"},
        r"--cluster slurm: `srun` is not on PATH",
        marks=pytest.mark.skipif(not NO_SRUN, reason="srun exists here"),
    ),
    pytest.param(
        "gpus-without-cuda",
        {"cluster": "local", "gpus_per_job": "1"},
        r"--gpus-per-job 1: this machine has 0 CUDA device",
        marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA is present"),
    ),
    ("checkpoint-every-negative", {"checkpoint_every": "-2"}, r"checkpoint_every.*-2"),
]


@pytest.mark.parametrize(("case", "changes", "message"), BAD_RUN, ids=lambda v: str(v)[:30])
def test_bad_run_input_exits_2_naming_it_and_writes_nothing(
    tmp_path: Path, capsys, case: str, changes: dict[str, str], message: str
) -> None:
    out = tmp_path / "out"
    assert _exit_code(_argv(out, **changes)) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_code_in_an_activation_expression_does_not_run(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "PWNED"
    payload = f"f=__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    out = tmp_path / "out"
    assert S.main(_argv(out, activation=payload)) == 2
    assert "activation" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("file", r"--out: .* is a file; expected a directory"),
        ("under-file", r"--out: .* lies under .*, which is a file"),
        ("foreign-dir", r"--out: .* exists and is not a sweep directory"),
    ],
)
def test_bad_output_directory_exits_2_and_writes_nothing(
    tmp_path: Path, capsys, setup: str, message: str
) -> None:
    target = tmp_path / "target"
    if setup == "foreign-dir":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
        out = target
    else:
        target.write_text("a file")
        out = target if setup == "file" else target / "sweep"
    before = _snapshot(tmp_path)
    assert S.main(_argv(out)) == 2
    assert re.search(message, capsys.readouterr().err)
    assert _snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_directory_exits_2(tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert S.main(_argv(locked / "sweep")) == 2
    assert "is not writable" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["report", "{tmp}/missing"], 2, r"DIR: .*missing is not a directory"),
        (["report", "{tmp}"], 2, r"DIR: .* has no index.json and no runs/"),
        (["report", "{sweep}", "--step", "-1"], 2, r"--step: expected an integer >= 0, got -1"),
        (["report", "{sweep}", "--step", "x"], 2, r"--step: invalid int value: 'x'"),
        (["report", "{empty_sweep}"], 1, r"no completed run"),
    ],
)
def test_bad_report_input(
    finished_sweep: Path, tmp_path: Path, capsys, argv: list[str], code: int, message: str
) -> None:
    empty = tmp_path / "empty_sweep"
    (empty / S.RUNS).mkdir(parents=True)
    fill = {"tmp": str(tmp_path), "sweep": str(finished_sweep), "empty_sweep": str(empty)}
    argv = [a.format(**fill) for a in argv]
    before = _snapshot(tmp_path)
    assert _exit_code(argv) == code
    assert re.search(message, capsys.readouterr().err)
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------- executors and signals


def test_local_executor_runs_the_grid_in_its_own_processes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "local"
    assert S.main(_argv(out, cluster="local", steps="3", early_steps="3", threads="1")) == 0
    entry = _strict_json(out / S.INDEX)["runs"][0]
    assert entry["status"] == "completed" and entry["threads"] == 1
    assert int(entry["job_id"]) != os.getpid()  # a process of its own, started by submitit
    assert "[1/1] mlp-relu-synthetic-s0: completed" in capsys.readouterr().out
    assert S.main(_argv(out, cluster="local", steps="3", early_steps="3", threads="1")) == 0
    assert "1 runs, 1 already completed, 0 to run" in capsys.readouterr().out


@pytest.mark.slow
def test_local_executor_runs_in_parallel_with_a_user_activation(tmp_path: Path) -> None:
    root = tmp_path / "pool"
    # The user activation reaches the job processes inside its config string.
    configs = _grid(root, acts=("relu", "poolsq=x**2/2"), steps=3, early_steps=3)
    index = S.run_sweep(configs, root, S.Launch(cluster="local", parallel=2, threads=1), echo=None)
    assert [e["status"] for e in index["runs"]] == ["completed", "completed"]
    text = [(Path(c.out) / "records.csv").read_text() for c in configs]
    assert text[0] != text[1]


def _processes_mentioning(needle: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_killing_the_sweep_cancels_its_jobs_without_orphans(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "killed"
    argv = _argv(out, cluster="local", parallel="2", threads="1", steps="1000000")
    argv[argv.index("--activation") + 1] = "relu,tanh"
    driver = subprocess.Popen(
        [sys.executable, "-m", "empirics.experiments.sweep", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # both runs training (their records growing)
        records = list((out / S.RUNS).glob("*/records.csv")) if (out / S.RUNS).is_dir() else []
        if len(records) == 2 and all(r.stat().st_size > 0 for r in records):
            break
        time.sleep(0.5)
    else:
        driver.kill()
        pytest.fail("the runs never started")
    assert len(_processes_mentioning(str(out / S.JOBS))) >= 4  # 2 controllers + 2 tasks
    driver.send_signal(signum)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 128 + signum, err
    assert "Traceback" not in err and "interrupted by" in err
    assert _processes_mentioning(str(out / S.JOBS)) == []
    index = _strict_json(out / S.INDEX)
    assert [e["status"] for e in index["runs"]] == ["cancelled", "cancelled"]
    for run_dir in (out / S.RUNS).iterdir():  # each run stopped cleanly, records kept
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"


def test_slurm_gets_one_job_array_with_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fake `srun`/`sbatch` on PATH: the sweep's submission must be one sbatch array script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    submitted = tmp_path / "submitted.sh"
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" {submitted}\necho "Submitted batch job 4242"\n'
    )
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    launch = S.Launch(parallel=2, partition="gpu", gpus_per_job=1, cpus_per_job=8, time_min=90)
    assert launch.resolved_cluster == "slurm"
    launch.check()
    configs = _grid(tmp_path / "sweep", acts=("relu", "tanh", "gelu"))
    executor = launcher.make_executor(launch, tmp_path / "sweep" / S.JOBS)
    jobs = executor.map_array(J.run_point, configs, [8] * 3, ["l1", "l2", "l3"], [True] * 3)
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    script = submitted.read_text()
    for line in (
        "#SBATCH --array=0-2%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --time=90",
    ):
        assert line in script, script
    for job in jobs:  # nothing to cancel on a fake cluster
        job._cancel_at_deletion = False  # type: ignore[attr-defined]


def test_threads_default_divides_the_cpus_among_parallel_local_runs() -> None:
    cpus = launcher.cpus()
    assert S.Launch(cluster="local", parallel=1).threads_per_run() == cpus
    assert S.Launch(cluster="local", parallel=cpus * 4).threads_per_run() == 1
    assert S.Launch(cluster="debug", threads=3).threads_per_run() == 3
    assert S.Launch(cluster="local", parallel=2).threads_per_run() == max(1, cpus // 2)


def test_one_run_name_function_for_train_sweep_and_early_training(tmp_path: Path) -> None:
    """train's default name and sweep's grid name are the same string, and a family's
    parameters stay in every name (leaky_relu:slope=0.2 and 0.3 were one early-training run)."""
    from empirics.montecarlo.early_config import EarlyConfig
    from empirics.train.config import resolve

    for act in ("relu", "leaky_relu:slope=0.2", "fq=Max(x,0)"):
        (cfg,) = _grid(tmp_path / act.replace(":", "_"), acts=(act,))
        alone = resolve(T.TrainConfig(arch="mlp", activation=act, **BASE)).cfg.run
        assert cfg.run == alone
    names = {EarlyConfig(activation=f"leaky_relu:slope={s}").run_name() for s in (0.2, 0.3)}
    assert len(names) == 2
    assert all("slope-0." in n for n in names)


def test_a_dead_one_run_job_keeps_a_run_that_completed(tmp_path: Path) -> None:
    # One-run jobs (and SLURM arrays) and chunks judge a dead job's runs alike: by their own
    # summary, so index.json never calls a finished run failed.
    from empirics.experiments.sweep_jobs import collect, collect_chunk

    class Dead:
        def result(self):
            raise RuntimeError("killed\nmore")

    cfg = T.TrainConfig(arch="mlp", preset="smoke", steps=2, out=str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert collect(Dead(), cfg)["status"] == "completed"
    assert collect_chunk(Dead(), [cfg])[0]["status"] == "completed"
    other = cfg.replace(out=str(tmp_path / "missing"))
    entry = collect(Dead(), other)
    assert entry["status"] == "failed" and entry["message"] == "RuntimeError: killed"
