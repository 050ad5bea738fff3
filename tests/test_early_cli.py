"""Early training's config and command line: results unchanged against a recorded reference,
flags generated from the pydantic config, list items and memory checked before compute, one
run name per activation spec, the trainer's TrainingDiverged, the modules' sizes and layering.

Run: `.venv/bin/python -m pytest -q tests/test_early_cli.py`.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from empirics.montecarlo import early_config, early_grid
from empirics.montecarlo.early_cli import GRID_FIELDS, build_parser, main
from empirics.montecarlo.early_config import EarlyConfig, describe, estimate_memory
from empirics.montecarlo.early_kernel import train_early
from empirics.train import runtime
from theory.registry import Activation

ROOT = Path(__file__).resolve().parents[1]
# Per-network statistics, per-step scalars and horizons of four tiny runs (gelu/sgd,
# relu/adamw, tanh/muon with cross-entropy, leaky_relu:slope=0.2/sgd; float64, CPU), recorded
# from the single-module early_training.py before it was split into early_*.py: the same
# config and seed must keep giving the same numbers.
REFERENCE = ROOT / "tests" / "data" / "early_reference.json"
TINY = ["--steps", "2", "--n-networks", "3", "--check-factor", "1", "--widths", "4",
        "--d-in", "3", "--batch-size", "4", "--measure-batch", "4", "--dtype", "float64",
        "--device", "cpu", "--no-progress"]  # fmt: skip


def _close(a: Any, b: Any, where: str = "") -> None:
    """Equal structures; floats within 1e-9 relative (the same arithmetic in the same order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_same_config_and_seed_give_the_recorded_statistics_and_horizons() -> None:
    ref = json.loads(REFERENCE.read_text())
    base = {**ref["base"], "widths": tuple(ref["base"]["widths"])}
    assert len(ref["runs"]) == 4
    for run in ref["runs"]:
        cfg = EarlyConfig(**base, **run["case"])
        hist = train_early(cfg)
        assert cfg.run_name() == run["run"]
        per_net = {f"{k[0]}.{k[1]}": v.tolist() for k, v in hist.per_network.items()}
        scalars = {f"{k[0]}.{k[1]}": v for k, v in hist.scalars.items()}
        summary = json.loads(json.dumps(early_grid.summarize_run(cfg.validate(), hist)))
        _close(per_net, run["per_network"], run["run"])
        _close(scalars, run["scalars"], run["run"])
        _close(summary, run["summary"], run["run"])


def test_the_reference_comparison_has_teeth() -> None:
    # One more step of training, or another seed, moves the numbers the test above compares.
    ref = json.loads(REFERENCE.read_text())
    base = {**ref["base"], "widths": tuple(ref["base"]["widths"])}
    run = ref["runs"][0]
    for change in ({"lr": run["case"]["lr"] * 1.001}, {"seed": base["seed"] + 1}):
        hist = train_early(EarlyConfig(**{**base, **run["case"], **change}))
        per_net = {f"{k[0]}.{k[1]}": v.tolist() for k, v in hist.per_network.items()}
        with pytest.raises(AssertionError):
            _close(per_net, run["per_network"])


def test_every_config_field_has_its_flag_and_old_spellings_still_parse() -> None:
    ap, names = build_parser()
    fields = EarlyConfig.model_fields
    assert set(names) == set(fields) - set(GRID_FIELDS)
    flags = {opt: a for a in ap._actions for opt in a.option_strings}
    for name in names:
        action = flags["--" + name.replace("_", "-")]
        assert action.dest == name and fields[name].description in (action.help or "")
    old = ["--activation", "--loss", "--optimizer", "--lr", "--sweep", "--seeds", "--steps",
           "--n-networks", "--check-factor", "--d-in", "--widths", "--n-out", "--batch-size",
           "--measure-batch", "--data", "--inputs", "--init", "--w-gain", "--bias-std",
           "--momentum", "--alpha", "--decay-fraction", "--decay-frac", "--dtype", "--device",
           "--jobs", "--threads", "--out", "--no-progress", "--report"]  # fmt: skip
    assert set(old) <= set(flags)
    args = ap.parse_args(["--decay-frac", "0.2", "--inputs", "gaussian", "--widths", "8,9"])
    assert (args.decay_fraction, args.data, args.widths) == (0.2, "gaussian", [8, 9])
    assert "steps" not in vars(args)  # not given: the config's own default applies


@pytest.mark.parametrize(
    ("field", "value"),
    [("--widths", "8,,8"), ("--widths", "8,"), ("--betas", "0.9,,0.95"), ("--data", "gaussian,")],
)
def test_list_flags_refuse_empty_items(field: str, value: str, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([field, value, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert field in err and repr(value) in err and "empty item" in err and "accepted" in err
    assert not (tmp_path / "out").exists()


def test_a_run_that_would_not_fit_is_refused_before_any_allocation(monkeypatch) -> None:
    cfg = EarlyConfig(widths=(16,), n_networks=3, check_factor=1, steps=2).validate()
    need = estimate_memory(cfg)
    assert estimate_memory(cfg.replace(widths=(32,))) > need  # grows with every size
    assert estimate_memory(cfg.replace(n_networks=6)) > need
    assert estimate_memory(cfg.replace(bootstrap=8000)) > need
    monkeypatch.setattr(early_config, "available_memory", lambda device: need)
    early_config.check_memory([cfg])  # fits exactly
    with pytest.raises(ValueError, match="--jobs"):
        early_config.check_memory([cfg, cfg], jobs=2)  # two at once do not
    monkeypatch.setattr(early_config, "available_memory", lambda device: need - 1)
    with pytest.raises(ValueError, match=r"memory: 3 networks of widths 16 .* GiB"):
        early_config.check_memory([cfg])


def test_library_entries_refuse_a_billion_wide_config_before_allocating(tmp_path) -> None:
    huge = EarlyConfig(widths=(10**9,), n_networks=3, check_factor=1, steps=2, device="cpu")
    with pytest.raises(ValueError, match=r"memory: .* widths 1000000000 .* GiB"):
        train_early(huge)
    with pytest.raises(ValueError, match="memory"):
        early_grid.run_grid([huge], tmp_path / "grid", progress=False)
    assert not (tmp_path / "grid").exists()  # nothing written either


def test_widths_of_a_billion_exit_2_naming_the_field(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--widths", "1000000000", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "--widths" in err and "1000000000" in err and "GiB" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bounds_live_in_the_config_and_messages_name_flag_field_value() -> None:
    for changes, words in (
        ({"lr": float("nan")}, ["--lr", "lr", "finite", "nan"]),
        ({"n_networks": 2}, ["--n-networks", "n_networks", "greater than or equal to 3", "got 2"]),
        ({"widths": (8, 0)}, ["--widths", "widths[1]", "greater than or equal to 1", "0"]),
        ({"decay_fraction": 1.5}, ["--decay-fraction", "decay_fraction", "1.5"]),
        ({"dtype": "float16"}, ["--dtype", "'float32'", "'float16'"]),
        ({"bootstrap": 100}, ["bootstrap * alpha >= 20", "bootstrap=100"]),
    ):
        with pytest.raises(ValidationError) as exc:
            EarlyConfig(**changes)
        message = describe(exc.value)
        assert all(w in message for w in words), message
    EarlyConfig(n_networks=3, widths=(1,), decay_fraction=0.99)  # the bounds themselves pass


def test_activation_is_one_object_written_back_as_its_spec() -> None:
    cfg = EarlyConfig(activation="leaky_relu:slope=0.2")
    assert isinstance(cfg.activation, Activation) and cfg.activation.name.startswith("leaky")
    assert cfg.record()["activation"] == "leaky_relu:slope=0.2"
    assert EarlyConfig(**cfg.record()) == cfg  # what result.json holds rebuilds the config
    user = EarlyConfig(activation="fq=Max(x,0)")
    assert user.record()["activation"] == user.activation.spec == "fq=Max(x,0)"
    # Existing default names of the built-ins (results on disk are named by them).
    assert EarlyConfig().run_name() == "relu-mse-sgd-lr0.05-halfnormal-s0"
    assert EarlyConfig(activation="tanh", seed=3).run_name() == "tanh-mse-sgd-lr0.05-halfnormal-s3"


def test_a_grid_with_two_slopes_runs_as_two_runs(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["--activation", "leaky_relu:slope=0.2", "--activation", "leaky_relu:slope=0.3"]
    assert main([*argv, *TINY, "--out", str(out)]) == 0
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 2 and runs[0] != runs[1]
    bodies = [json.loads((out / "runs" / r / "result.json").read_text()) for r in runs]
    assert {b["config"]["activation"] for b in bodies} == {
        "leaky_relu:slope=0.2",
        "leaky_relu:slope=0.3",
    }
    # Each slope reached its networks: the same seed's inputs, different activations.
    a, b = (np.load(out / "runs" / r / "per_network.npz")["layer1.g_all"] for r in runs)
    assert not np.allclose(a, b)
    rows = json.loads((out / "horizons.json").read_text())["rows"]
    assert {r["activation"] for r in rows} == {"leaky_relu:slope=0.2", "leaky_relu:slope=0.3"}


def test_divergence_is_the_trainers_training_diverged(tmp_path) -> None:
    cfg = EarlyConfig(n_networks=3, check_factor=1, widths=(8,), d_in=4, steps=30, lr=1e30,
                      dtype="float32", device="cpu", bootstrap=2000)  # fmt: skip
    with pytest.raises(runtime.TrainingDiverged, match="non-finite"):
        train_early(cfg)
    body = early_grid.run_one(cfg, tmp_path / "run")
    assert body["status"] == "diverged" and "non-finite" in body["message"]
    # It keeps what it measured up to the step that diverged: every measured step's rows and
    # the per-network values, step 0 (init) included.
    assert body["steps"] >= 0
    rows = (tmp_path / "run" / "records.csv").read_text().splitlines()
    steps = {int(line.split(",")[1]) for line in rows[1:]}
    assert steps == set(range(body["steps"] + 1))
    g_all = np.load(tmp_path / "run" / "per_network.npz")["layer1.g_all"]
    assert g_all.shape == (body["steps"] + 1, cfg.total_networks)
    # a run at a sane lr on the same networks does not diverge: the lr is what did it
    assert early_grid.run_one(cfg.replace(lr=0.01), tmp_path / "ok")["status"] == "completed"


def test_report_reads_runs_that_recorded_a_user_expression_by_its_bare_name(tmp_path) -> None:
    cfg = EarlyConfig(n_networks=3, check_factor=1, widths=(4,), d_in=3, steps=2,
                      activation="fq=Max(x,0)", device="cpu", bootstrap=2000)  # fmt: skip
    early_grid.run_grid([cfg.validate()], tmp_path, progress=False)
    result = tmp_path / "runs" / cfg.run_name() / "result.json"
    body = json.loads(result.read_text())
    body["config"]["activation"] = "never_registered_name"  # as older runs recorded it
    result.write_text(json.dumps(body))
    (redone,) = early_grid.report(tmp_path)
    assert redone["config"]["activation"] == "never_registered_name" and redone["layers"]
    body["config"]["steps"] = 0  # any other bad field is still refused
    result.write_text(json.dumps(body))
    with pytest.raises(ValidationError):
        early_grid.report(tmp_path)


# ----------------------------------------------------------------------------- structure

MODULES = sorted((ROOT / "empirics" / "montecarlo").glob("early_*.py"))


def test_early_training_uses_the_trainers_divergence_and_not_its_loop() -> None:
    # Sizes and layers are tests/test_layout.py's; what is particular to early training: one
    # TrainingDiverged (the trainer's) and no reach into the trainer's loop.
    assert {m.name for m in MODULES} >= {"early_training.py", "early_config.py", "early_cli.py"}
    for module in MODULES:
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module != "empirics.train.loop", module.name
            if isinstance(node, ast.ClassDef):
                assert node.name != "TrainingDiverged", module.name
