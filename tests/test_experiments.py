"""The experiment pipeline: its statistics against independent computations, a micro pipeline run
end to end (train, aggregate, render the figures), and the quick pipeline (slow).

Run: `.venv/bin/python -m pytest tests/test_experiments.py -q` (about half a minute).
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from empirics.experiments import pipeline as E
from empirics.experiments import plan as P
from empirics.experiments import theory_runs as T
from empirics.stats import fits, seeds

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "paper_figures"


def test_mean_ci_is_the_student_t_interval() -> None:
    v = [1.0, 2.0, 4.0, 7.0]
    got = seeds.mean_ci(v)
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(v), scale=stats.sem(v))
    assert got["n"] == 4 and got["mean"] == pytest.approx(3.5)
    assert got["ci"] == pytest.approx([lo, hi])
    one = seeds.mean_ci([2.0, float("nan")])
    assert one["n"] == 1 and one["ci"] == [None, None]


def test_paired_matches_scipy_and_the_exact_sign_flip_count() -> None:
    a = {0: 1.0, 1: 2.5, 2: 3.0, 3: 2.0, 4: 4.0}
    b = {0: 0.5, 1: 1.0, 2: 3.5, 3: 1.0, 4: 2.0, 9: 7.0}  # seed 9 has no partner
    got = seeds.paired(a, b)
    s = sorted(a)
    ref = stats.ttest_rel([a[k] for k in s], [b[k] for k in s])
    assert got["seeds"] == s and got["p_t"] == pytest.approx(ref.pvalue)
    # diffs 0.5, 1.5, -0.5, 1.0, 2.0 (mean 0.9): of the 32 sign patterns, those with |mean| >=
    # 0.9 are counted by hand below.
    diffs = np.array([0.5, 1.5, -0.5, 1.0, 2.0])
    count = 0
    for mask in range(32):
        signs = np.array([1 if mask >> i & 1 else -1 for i in range(5)])
        count += abs((signs * diffs).mean()) >= 0.9 - 1e-12
    assert got["p_signflip"] == pytest.approx(count / 32)
    assert seeds.sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    # the power statement: the detectable difference shrinks with n at fixed spread
    big = seeds.paired({i: float(i % 3) for i in range(20)}, {i: 0.0 for i in range(20)})
    assert big["mde80"] < got["mde80"]


def test_holm_adjusts_by_rank() -> None:
    assert seeds.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert seeds.holm([None, 0.2]) == [None, 0.2]


def test_hinge_fit_finds_a_planted_knee_and_not_one_in_a_line() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 120)
    y = 1.0 - 0.05 * x - 3.0 * np.maximum(0, x - 0.7) + rng.normal(0, 0.02, x.size)
    got = fits.cliff_analysis(x, y, n_boot=300)
    lo, hi = got["knee_ci"]
    assert abs(got["fit"]["knee"] - 0.7) < 0.03 and lo <= 0.7 <= hi and hi - lo < 0.1
    assert got["f_test_vs_line"]["p"] < 1e-6
    assert got["fitted"]["0.90"] == pytest.approx(1 - 0.045 - 0.6, abs=0.03)
    # Five seeds of 24 configurations sharing a configuration effect: the cluster bootstrap
    # resamples configurations and is wider than the one that treats seeds as independent.
    level = np.repeat(np.linspace(0.05, 0.98, 24), 5)
    rc = np.random.default_rng(1)
    effect = np.repeat(rc.normal(0, 0.03, 24), 5)
    yc = 1.0 - 3.0 * np.maximum(0, level - 0.7) + effect + rc.normal(0, 0.005, level.size)
    groups = np.repeat(np.arange(24), 5).tolist()
    clustered = fits.cliff_analysis(level, yc, groups=groups, n_boot=300)
    naive = fits.cliff_analysis(level, yc, n_boot=300)
    assert clustered["bootstrap"]["resampled"] == "24 configurations"
    width = [f["slope_change_ci"][1] - f["slope_change_ci"][0] for f in (clustered, naive)]
    assert width[0] > width[1]
    line = fits.cliff_analysis(x, 1.0 - 0.3 * x + rng.normal(0, 0.02, x.size), n_boot=200)
    assert line["f_test_vs_line"]["p"] > 1e-3  # no knee to find: the F screen stays quiet
    assert abs(line["fit"]["c"]) < 0.2


MICRO = replace(
    P.SCALES["quick"],
    name="micro",
    seeds=(0, 1),
    archs=("mlp", "gpt_nano"),
    synthetic_archs=("mlp",),
    spike_acts=("relu", "relu2", "gelu"),
    c10_archs=("mlp",),
    c10_levels=(0.5, 0.9),
    steps={"mlp": 4, "gpt_nano": 3},
    c10_steps={"mlp": 3},
)


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exp")
    E.run(MICRO, groups=("drift", "synthetic", "acts", "c10"), jobs=1, root=root)
    return root / "micro"


def test_micro_pipeline_writes_every_claim_file_with_seeds(micro: Path) -> None:
    drift = json.loads((micro / "drift.json").read_text())
    assert drift["ci_level"] == 0.95 and drift["run_status"]["drift"] == {"completed": 16}
    row = next(r for r in drift["rows"] if (r["arch"], r["activation"]) == ("mlp", "relu"))
    assert row["seeds"] == [0, 1]
    assert row["mean_over_layers"]["d_preact_mean"]["n"] == 2
    assert "d_preact_mean" in row["vs_tanh"] and row["vs_tanh"]["d_preact_mean"]["n"] == 2
    assert row["consumers"] == {"layers.act1": ["layers.fc2"], "layers.act2": ["layers.head"]}
    c10 = json.loads((micro / "c10_cliff.json").read_text())
    assert c10["fits"]["pooled"]["knee_by_seed"]["n"] == 1  # MICRO has one C10 seed
    # 3 controls x 2 levels + the baseline, one seed each; relative = 1 for the baseline
    assert c10["configurations"] == 7 and c10["runs"] == 7
    assert all(p["relative"] == 1.0 for p in c10["points"] if p["control"] == "none")
    topk = [p for p in c10["points"] if p["control"] == "topk"]
    assert all(p["measured_sparsity"] >= p["level"] - 1 / 32 for p in topk)
    c12 = json.loads((micro / "c12_val_loss.json").read_text())
    assert set(c12["activations"]) == {"relu", "gelu", "relu2", "silu", "tanh"}
    c11 = json.loads((micro / "c11_spikes.json").read_text())
    amp = c11["activations"]["relu"]["layers"][c11["layers"][0]]["amp_spike_max_last"]
    assert amp["geo_mean"] == pytest.approx(1.0)  # ReLU against itself
    c9 = json.loads((micro / "c9_sparsity.json").read_text())
    assert set(c9["archs"]) == {"mlp", "gpt_nano"}


@pytest.mark.parametrize(
    "script,extra",
    [
        ("drift_layers.py", ["--data", "real"]),
        ("drift_layers.py", ["--data", "synthetic"]),
        ("training_drift.py", []),
        ("sparsity_layers.py", []),
        ("cliff.py", []),
        ("spikes.py", []),
        ("val_loss.py", []),
    ],
)
def test_every_experiment_figure_renders_from_the_micro_results(
    micro: Path, script: str, extra: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "fig.png"
    monkeypatch.syspath_prepend(str(FIGURES))
    monkeypatch.setattr(sys, "argv", [script, "--results", str(micro), *extra, "--out", str(out)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(FIGURES / script), run_name="__main__")
    assert done.value.code == 0
    assert out.stat().st_size > 5000 and out.with_suffix(".pdf").exists()


@pytest.fixture(scope="module")
def theory_micro(tmp_path_factory: pytest.TempPathFactory, micro: Path) -> Path:
    """The first-step and depth Monte Carlo of the theory group, at 256 / 64 networks, written
    beside the micro results (the full trainer's first step comes from the micro drift runs)."""
    small = replace(MICRO, first_step_networks=256, c1_networks=64)
    T.run_first_step(small, micro)
    T.run_c1_depth(small, micro)
    E.aggregate(MICRO, micro.parent)
    return micro


def test_first_step_theory_estimator_and_trainer_agree(theory_micro: Path) -> None:
    body = json.loads((theory_micro / "theory" / "first_step.json").read_text())
    assert {(r["activation"], r["loss"]) for r in body["rows"]} == {
        (a, lo) for a in T.FIRST_STEP_ACTS for lo in ("mse", "cross_entropy")
    }
    for r in body["rows"]:
        mc, tr = r["montecarlo"], r["trainer"]
        assert mc["n"] == tr["n"] == 256
        # Two independent samples of the same mean: within 5 joint SE (false alarm ~ 6e-7 per
        # row). Power: at 256 networks each SE is under 1/24 of |E[Δb]| for every non-odd σ
        # (measured: 25-100), so a normalisation error of a factor 2 (a 1/2 in the loss, K or
        # s₂²) sits more than 8 joint SE away and is caught with probability > 0.99 per row.
        assert abs(mc["mean"] - tr["mean"]) < 5 * np.hypot(mc["stderr"], tr["se"]), r
        if r["loss"] == "mse":  # the exact value -lr K s2^2 D(sigma, 1)
            assert abs(mc["mean"] - r["theory"]) < 5 * mc["stderr"] + 1e-9, r
            assert (r["theory"] < 0) == (r["activation"] != "tanh"), r
    trainer = json.loads((theory_micro / "first_step_trainer.json").read_text())
    mlp = [r for r in trainer["rows"] if r["arch"] == "mlp" and r["layer"] == "mean over layers"]
    assert {r["activation"] for r in mlp} == set(P.DRIFT_ACTS) and all(r["n"] == 2 for r in mlp)


def test_c1_depth_rows_follow_theorem_d1_for_the_gaussian_law(theory_micro: Path) -> None:
    rows = json.loads((theory_micro / "theory" / "c1_depth.json").read_text())["rows"]
    assert {(r["init"], r["gating_layers"]) for r in rows} == {
        (i, m) for i in T.C1_INITS for m in T.C1_DEPTHS
    }
    for r in rows:
        if r["symmetric"]:
            d, off = r["diag"], r["offdiag"]
            assert abs(d["mean"] / r["alpha_l"] - 1) < 5 * d["stderr"] / r["alpha_l"], r
            assert abs(off["mean"]) < 5 * off["stderr"], r


@pytest.mark.parametrize("script", ["first_step.py", "c1_depth.py"])
def test_theory_figures_render_from_the_micro_results(
    theory_micro: Path, script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "fig.png"
    monkeypatch.syspath_prepend(str(FIGURES))
    monkeypatch.setattr(sys, "argv", [script, "--results", str(theory_micro), "--out", str(out)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(FIGURES / script), run_name="__main__")
    assert done.value.code == 0
    assert out.stat().st_size > 5000 and out.with_suffix(".pdf").exists()


@pytest.mark.slow
def test_quick_pipeline_and_all_figures(tmp_path: Path) -> None:
    """`make experiments-quick` end to end into a temporary results tree (a few minutes)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    root = tmp_path / "experiments"
    subprocess.run(
        [sys.executable, "-m", "empirics.experiments.pipeline", "run", "--scale", "quick", "--root",
         str(root)], check=True, cwd=REPO, env=env,
    )  # fmt: skip
    for name in ("drift", "c9_sparsity", "c10_cliff", "c11_spikes", "c12_val_loss"):
        assert (root / "quick" / f"{name}.json").exists()
    assert (root / "quick" / "theory" / "drift_coefficient.json").exists()
    results = root.parent
    subprocess.run(
        ["make", "-C", str(FIGURES), f"PY={sys.executable}", "SCALE=quick",
         f"RESULTS={results}"], check=True, env=env,
    )  # fmt: skip
    figs = sorted((results / "figures" / "quick").glob("*.png"))
    expected = {
        "g_curve", "drift_coefficient", "c1_depth", "first_step", "persistence",
        "persistence_horizons", "remark_a2", "drift_synthetic", "drift_layers", "training_drift",
        "sparsity_layers", "cliff", "spikes", "val_loss",
        *(f"grad_probe_{a}" for a in ("mlp", "resnet", "vit", "gpt_nano", "mp_senet")),
    }  # fmt: skip
    assert {f.stem for f in figs} == expected
    assert all(f.stat().st_size > 5000 and f.with_suffix(".pdf").exists() for f in figs)
    # The claims table renders from these results (C6-C12 rows from the quick JSON).
    from empirics.ledger.verdicts import experiment_entries
    from paper_figures.claims_table import render

    rows = experiment_entries(results)
    assert any(r["verdict"] != "not-tested" or r["detail"] for r in rows)
    table = render({"entries": rows})
    assert all(f"| C{i} |" in table for i in range(6, 13))


def test_verdict_lines_from_quick_results_say_their_scale() -> None:
    """verify prints `[quick scale]` on a claim whose experiment rows were read from smoke-sized
    results, and nothing on full-scale or theory-only claims."""
    from empirics.ledger.experiment_verdicts import experiment_row
    from empirics.ledger.verify import scale_tag

    def row(eid: str, scale: str | None) -> dict:
        evidence = {"source": f"results/experiments/{scale}/drift.json"} if scale else None
        return experiment_row(eid, "claim", "refuted", "detail", evidence=evidence)

    entries = [
        row("C8.architectures.mlp", "quick"),
        row("C8.architectures.vit", "full"),
        row("C7.random_inputs", "full"),
        row("C9.relu_sparsity", None),
    ]
    assert scale_tag("C8", entries) == " [quick scale]"
    assert scale_tag("C7", entries) == "" and scale_tag("C9", entries) == ""
    assert scale_tag("C1", entries) == ""


def test_run_spec_names_come_from_the_one_run_name_function() -> None:
    from empirics.cli import activation_slug, run_name

    spec = P.RunSpec("c10", "mlp", "leaky_relu:slope=0.2", 3, "real", 10, sparsity="topk:0.5")
    want = run_name("mlp", activation_slug("leaky_relu:slope=0.2"), "topk0.5", "real", seed=3)
    assert spec.name == want == "mlp-leaky_relu-slope-0.2-topk0.5-real-s3"


@pytest.mark.parametrize("arch", ["mlp", "vit", "gpt_nano", "resnet"])
def test_each_activation_feeds_the_layers_its_model_declares(arch: str) -> None:
    """`models.<arch>.consumers` names, for every activation layer of the built model, layers
    that exist and hold weights; traced through the forward pass, each takes that activation's
    output (or, for a residual block's last activation, the block output it is part of)."""
    import torch

    from empirics.models import consumer_layers, get_arch
    from empirics.train.config import TrainConfig
    from empirics.train.loop import plan

    model = get_arch(arch).Model(plan(TrainConfig(arch=arch, preset="smoke")).model_cfg)
    modules = dict(model.named_modules())
    acts = [n for n, m in modules.items() if getattr(m, "feeds_from", None)]
    assert acts
    seen: dict[str, list[torch.Tensor]] = {}

    def keep(name: str, kind: str):
        def hook(_m, inputs, output):
            seen.setdefault(name, []).append((inputs[0] if kind == "in" else output).detach())

        return hook

    for name in acts:
        modules[name].register_forward_hook(keep(name, "out"))
    for act in acts:
        for cons in consumer_layers(arch, act, modules):
            assert cons in modules, (act, cons)
            assert getattr(modules[cons], "weight", None) is not None, (act, cons)
            modules[cons].register_forward_hook(keep("in:" + cons, "in"))
    model.eval()
    if arch == "gpt_nano":
        x = torch.randint(0, model.cfg.vocab_size, (2, 8))
    else:
        x = torch.randn(2, *model.cfg.input_shape)
    with torch.no_grad():
        model(x)
    for act in acts:
        cons = consumer_layers(arch, act, modules)
        assert cons, act
        if not act.endswith("act2"):  # act2's output passes the next block's input unchanged
            out = seen[act][0]
            assert any(torch.equal(seen["in:" + c][0], out) for c in cons), (act, cons)


@pytest.mark.skipif(shutil.which("srun") is not None, reason="a SLURM node accepts --cluster slurm")
def test_a_cluster_the_machine_lacks_is_bad_input(tmp_path: Path, capsys) -> None:
    # the sweep turns the launcher's refusal into a ConfigError: exit 2 with one line, no trace
    with pytest.raises(SystemExit) as exc:
        E.main(["run", "--scale", "quick", "--only", "synthetic", "--cluster", "slurm",
                "--out", str(tmp_path)])  # fmt: skip
    assert exc.value.code == 2
    assert "--cluster slurm" in capsys.readouterr().err
