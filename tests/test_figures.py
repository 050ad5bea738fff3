"""The figures of C1, C4, C5 (Remark A.2), C6 and C10 from tiny synthetic result files: each draws
what its verdict reads, theory as a curve, and says where theory lies outside a plotted interval.

`python -m pytest -q tests/test_figures.py` (a few seconds per figure; no training).
"""

from __future__ import annotations

import csv
import json
import math
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from empirics.ledger.experiment_verdicts import A2_EARLY_STEPS

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "paper_figures"


def render(
    script: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Run one figure script as `make figures` does and return what its figure says: every text
    (suptitle, titles, notes, annotations), the lines per axes, and the PNG path."""
    monkeypatch.syspath_prepend(str(FIGURES))
    import common

    seen: dict[str, Any] = {}
    real_save = common.save

    def keep(fig: Any, out: Path) -> None:
        texts = [t.get_text() for t in fig.texts]
        if fig._suptitle is not None:
            texts.append(fig._suptitle.get_text())
        for ax in fig.axes:
            texts += [ax.get_title()] + [t.get_text() for t in ax.texts]
        seen["texts"] = texts
        # per axes, each line as (x data, colour, marker edge colour)
        seen["axes"] = [
            [
                (np.asarray(ln.get_xdata(), float), ln.get_color(), ln.get_markeredgecolor())
                for ln in ax.get_lines()
            ]
            for ax in fig.axes
        ]
        real_save(fig, out)

    monkeypatch.setattr(common, "save", keep)
    out = tmp_path / "fig.png"
    monkeypatch.setattr(sys, "argv", [script, *args, "--out", str(out)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(FIGURES / script), run_name="__main__")
    assert done.value.code == 0
    assert out.stat().st_size > 5000 and out.with_suffix(".pdf").exists()
    seen["png"] = out
    return seen


def _write(path: Path, body: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


# ------------------------------------------------------------------- C4: drift_coefficient


def _d_relu(s: float) -> float:
    return s / math.sqrt(2 * math.pi)  # E[relu(p) 1(p>0)] = E[p+] for p ~ N(0, s^2)


def _d_relu2(s: float) -> float:
    return 2 * math.sqrt(2) * s**3 / math.sqrt(math.pi)  # E[p+^2 2 p+] = 2 E[p+^3]


def _drift_json(root: Path, miss_z: float) -> None:
    grid = np.linspace(0.0, 2.0, 33)[1:]
    curves = {
        "relu": {"s": grid.tolist(), "theory": [_d_relu(v) for v in grid], "method": "closed form"},
        "relu2": {"s": grid.tolist(), "theory": [_d_relu2(v) for v in grid], "method": "closed"},
    }
    rows = []
    for act, d in (("relu", _d_relu), ("relu2", _d_relu2)):
        for s in (0.5, 1.0, 2.0):
            se = 0.01 * d(s)
            z = miss_z if (act, s) == ("relu", 1.0) else 0.3
            rows.append({"activation": act, "s": s, "theory": d(s), "theory_err": 0.0,
                         "mc_mean": d(s) + z * se, "mc_stderr": se, "mc_n": 1000})  # fmt: skip
    _write(root / "theory" / "drift_coefficient.json", {"rows": rows, "curves": curves})


def test_drift_coefficient_draws_the_dense_curve_and_notes_a_missed_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _drift_json(tmp_path, miss_z=3.0)
    got = render("drift_coefficient.py", ["--results", str(tmp_path)], tmp_path, monkeypatch)
    note = "\n".join(got["texts"])
    assert "outside" in note and "ReLU s=1" in note and "ReLU² s=1" not in note
    # theory is the 32-point curve, not a line through the 3 Monte Carlo s
    assert any(len(x) == 32 for x, _, _ in got["axes"][0])
    # the log-log panel reads the power of s off the curve: s^1 for ReLU, s^3 for ReLU²
    slopes = [t for t in got["texts"] if "propto" in t]
    assert any("{1}" in t for t in slopes) and any("{3}" in t for t in slopes)


def test_drift_coefficient_says_when_every_interval_holds_the_theory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _drift_json(tmp_path, miss_z=1.0)  # inside the 1.96 SE interval
    got = render("drift_coefficient.py", ["--results", str(tmp_path)], tmp_path, monkeypatch)
    note = "\n".join(got["texts"])
    assert "outside" not in note and "every Monte Carlo interval (6)" in note


def test_drift_curves_follow_the_closed_forms_on_a_dense_grid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The theory group's curve agrees with quadrature (an independent route) and grows as s³
    for ReLU² (the shape three points hid)."""
    from empirics.experiments import plan, theory_runs
    from theory.drift import drift_coefficient_numeric

    monkeypatch.setattr(theory_runs, "THEORY_ACTS", ("relu", "relu2", "tanh"))
    scale = plan.SCALES["quick"]
    curves = theory_runs._drift_curves(scale, points=8)
    for act, cur in curves.items():
        s = np.array(cur["s"])
        assert len(s) == 8 and s[-1] == pytest.approx(max(scale.d_stds)) and s[0] > 0
        assert cur["method"].startswith("closed form")
        for k in (0, 5):
            quad, err = drift_coefficient_numeric(act, float(s[k]))
            assert cur["theory"][k] == pytest.approx(quad, abs=1e-12 + 10 * err)
    r2 = curves["relu2"]
    k = r2["s"].index(min(r2["s"], key=lambda v: abs(v - 2 * r2["s"][1])))
    ratio = r2["s"][k] / r2["s"][1]
    assert r2["theory"][k] / r2["theory"][1] == pytest.approx(ratio**3, rel=1e-9)
    assert all(v == 0 for v in curves["tanh"]["theory"])


# --------------------------------------------------------------------------- C1: c1_depth


def _c1_row(init: str, depth: int, diag_ci: tuple[float, float], symmetric: bool) -> dict:
    alpha = 0.25
    lo, hi = diag_ci
    mean = (lo + hi) / 2
    entry = {"mean": mean * alpha, "stderr": (hi - lo) / 3.92 * alpha,
             "ci": [lo * alpha, hi * alpha]}  # fmt: skip
    zero = {"mean": 0.0, "stderr": 0.001, "ci": [-0.002, 0.002]}
    return {"init": init, "gating_layers": depth, "alpha_l": alpha, "symmetric": symmetric,
            "diag": entry, "offdiag": zero, "offdiag_h": zero}  # fmt: skip


def test_c1_depth_names_a_sign_symmetric_interval_that_misses_theorem_d1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        _c1_row("gaussian", 0, (0.97, 1.03), True),
        _c1_row("gaussian", 4, (0.82, 0.98), True),
        # no theorem for the asymmetric law: its miss is not a note
        _c1_row("exponential", 4, (1.6, 2.2), False),
    ]
    _write(tmp_path / "theory" / "c1_depth.json", {"rows": rows, "networks": 128})
    got = render("c1_depth.py", ["--results", str(tmp_path)], tmp_path, monkeypatch)
    note = next(t for t in got["texts"] if "Theorem D1 outside" in t)
    assert "diag, gaussian, depth 4: [0.82, 0.98]" in note
    assert "exponential" not in note and "depth 0" not in note
    # one red ring, on the diagonal panel at depth 4 (the Gaussian points sit left of the tick)
    rings = [(k, x) for k, ax in enumerate(got["axes"]) for x, _, e in ax if e == "red"]
    assert len(rings) == 1 and rings[0][0] == 0 and 3.5 < rings[0][1][0] < 4.0
    rows[1] = _c1_row("gaussian", 4, (0.9, 1.05), True)
    _write(tmp_path / "theory" / "c1_depth.json", {"rows": rows, "networks": 128})
    got = render("c1_depth.py", ["--results", str(tmp_path)], tmp_path, monkeypatch)
    assert any("every sign-symmetric interval (6)" in t for t in got["texts"])


# ------------------------------------------------------------------------------ C10: cliff


def _cliff_json(root: Path) -> dict[str, Any]:
    """Two seeds per arch x control. mlp Top-K: a bracketed fall between 0.5 and 0.75 (an
    interval); mlp quantile: keeps >= 99 % at every level (censored above); vit shift: already
    below at its first level (censored below)."""
    from empirics.stats.fits import C10_THRESHOLDS, c10_critical

    shapes = {
        ("mlp", "topk"): lambda s, seed: 1.0 if s <= 0.5 else 0.9 - 0.02 * seed,
        ("mlp", "quantile"): lambda s, seed: 1.0,
        ("vit", "shift"): lambda s, seed: 0.9,
        ("vit", "topk"): lambda s, seed: 1.0 if s < 0.6 else 0.5,
    }
    points = []
    for (arch, control), f in shapes.items():
        for seed in (0, 1):
            for level in (0.25, 0.5, 0.75, 0.9):
                s = level + 0.01 * seed
                points.append({"arch": arch, "activation": "relu", "control": control,
                               "level": level, "seed": seed, "measured_sparsity": s,
                               "relative": f(s, seed)})  # fmt: skip
    for arch in ("mlp", "vit"):
        for seed in (0, 1):
            points.append({"arch": arch, "activation": "relu", "control": "none", "level": 0.0,
                           "seed": seed, "measured_sparsity": 0.4 + 0.02 * seed,
                           "relative": 1.0})  # fmt: skip
    body = {
        "points": points,
        "critical": c10_critical(points),
        "critical_thresholds": list(C10_THRESHOLDS),
        "diverged": [{"arch": "vit", "sparsity": "topk:0.95", "seed": 1, "status": "diverged"}],
    }
    _write(root / "c10_cliff.json", body)
    return body


def test_cliff_draws_critical_sparsities_with_their_censoring_and_no_knee(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _cliff_json(tmp_path)
    monkeypatch.syspath_prepend(str(FIGURES))
    import cliff

    crit = body["critical"]
    kinds = {
        (arch, control): {m["kind"] for m in cliff.critical_marks(crit[arch][control]["0.99"])}
        for arch, control in (("mlp", "topk"), ("mlp", "quantile"), ("vit", "shift"))
    }
    assert kinds == {
        ("mlp", "topk"): {"interval"},
        ("mlp", "quantile"): {"above"},
        ("vit", "shift"): {"below"},
    }
    got = render("cliff.py", ["--results", str(tmp_path)], tmp_path, monkeypatch)
    text = "\n".join(got["texts"])
    assert "knee" not in text
    assert "vit (1 runs not completed)" in text and "mlp" in got["texts"]


# ------------------------------------------------------------------ C6: persistence figures


def _est(point: int | None, lo: int | None, hi: int | None, steps: int) -> dict:
    return {"point": point, "lo": lo, "hi": hi, "beyond_share": 0.0, "level": 0.95,
            "steps": steps}  # fmt: skip


def _early_tree(root: Path, agree: bool) -> None:
    steps = 10
    rows = []
    for data in ("halfnormal", "gaussian"):
        rev_n = _est(6, 5, 7, steps + 1) if data == "gaussian" else _est(None, None, None, 11)
        rev_k = _est(6, 5, 8, steps + 1) if agree or data == "halfnormal" else _est(9, 9, 10, 11)
        row = {
            "activation": "relu", "loss": "mse", "optimizer": "sgd", "lr": 0.1,
            "layer": "layer1", "quantity": "g_pos", "nonneg_inputs": data == "halfnormal",
            "data": data, "steps": steps, "n_networks": {"N": 4, "kN": 16}, "alpha": 0.01,
            "decay_fraction": 0.1, "seeds": [0],
            "N": {"reversal_est": [rev_n], "decay_est": [_est(3, 2, 4, 11)]},
            "kN": {"reversal_est": [rev_k], "decay_est": [_est(3, 3, 4, 11)]},
            "reversal_agree": [agree or data == "halfnormal"], "decay_agree": [True],
        }  # fmt: skip
        rows.append(row)
        run = f"relu-mse-sgd-lr0.1-{data}-s0"
        path = root / "runs" / run / "records.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["run", "step", "layer", "metric", "value"])
            for t in range(steps + 1):
                v = 1.0 - 0.17 * t if data == "gaussian" else 0.9**t
                for metric, value in (("g_pos", v), ("g_pos_lo", v - 0.1), ("g_pos_hi", v + 0.1)):
                    w.writerow([run, t, "layer1", metric, value])
    _write(root / "horizons.json", {"rows": rows, "band_false_alarm": []})


def test_persistence_draws_both_input_laws_with_the_horizon_intervals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _early_tree(tmp_path, agree=True)
    got = render("persistence.py", ["--results", str(tmp_path)], tmp_path, monkeypatch)
    titles = [t for t in got["texts"] if t.startswith("sgd")]
    assert any("halfnormal" in t for t in titles) and any("gaussian" in t for t in titles)
    # the gaussian reversal interval [5, 8] at k N is drawn as a segment on the 0 line
    assert any(list(x) == [5.0, 8.0] for ax in got["axes"] for x, _, _ in ax)


def test_persistence_horizons_grey_out_a_seed_whose_n_and_kn_intervals_disagree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grey = "0.6"
    _early_tree(tmp_path / "agree", agree=True)
    args = ["--kind", "horizons", "--results", str(tmp_path / "agree")]
    got = render("persistence.py", args, tmp_path, monkeypatch)
    assert not any(c == grey for ax in got["axes"] for _, c, _ in ax)
    _early_tree(tmp_path / "apart", agree=False)
    args = ["--kind", "horizons", "--results", str(tmp_path / "apart")]
    got = render("persistence.py", args, tmp_path, monkeypatch)
    assert any(c == grey for ax in got["axes"] for _, c, _ in ax)


def test_horizon_span_draws_beyond_the_run_at_its_end() -> None:
    sys.path.insert(0, str(FIGURES))
    try:
        import persistence
    finally:
        sys.path.remove(str(FIGURES))
    span = persistence.horizon_span(_est(None, 7, None, 11), 11)
    assert span["point"] == span["hi"] == 11 and span["lo"] == 7
    assert span["point_beyond"] and span["hi_beyond"]
    assert persistence.horizon_span(None, 11) is None


# -------------------------------------------------------------------- Remark A.2 at init


def _a2_tree(root: Path, cov_band: tuple[float, float]) -> float:
    """One half-normal layer-1 setting on the theorem's network; returns the theorem's Cov term."""
    from theory.remark_a2 import CovarianceNet, derive_terms

    cfg = {"activation": "relu", "loss": "mse", "optimizer": "sgd", "lr": 0.1,
           "data": "halfnormal", "init": "gaussian", "d_in": 32, "widths": [64, 64],
           "n_out": 10, "w_gain": 1.0, "bias_std": 0.0}  # fmt: skip
    terms = derive_terms(CovarianceNet(d_in=32, widths=(64, 64), outputs=10))
    cov, mean = float(terms["cov"]), float(terms["mean"])
    steps = A2_EARLY_STEPS + 5
    lo, hi = cov_band

    def band(m0: float, lo0: float, hi0: float) -> dict:
        decay = [0.9**t for t in range(steps)]
        return {"mean": [m0 * d for d in decay], "lo": [lo0 * d for d in decay],
                "hi": [hi0 * d for d in decay]}  # fmt: skip

    row = {**{k: cfg[k] for k in ("activation", "loss", "optimizer", "lr", "data")},
           "layer": "layer1", "nonneg_inputs": True, "networks": 64, "alpha": 0.01,
           "cov_term": band((lo + hi) / 2, lo, hi),
           "mean_term": band(mean, 0.9 * mean, 1.1 * mean)}  # fmt: skip
    _write(root / "remark_a2.json", {"rows": [row]})
    _write(root / "config.json", {"configs": [cfg]})
    return cov


def test_remark_a2_draws_the_theorems_init_value_and_notes_a_band_that_misses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cov = _a2_tree(tmp_path / "miss", (2 * cov_guess(), 3 * cov_guess()))
    got = render("remark_a2.py", ["--results", str(tmp_path / "miss")], tmp_path, monkeypatch)
    note = next(t for t in got["texts"] if "theorem outside the step-0 band" in t)
    assert "halfnormal layer1 sgd 0.1 Cov term" in note and f"{cov:.3g}" in note
    _a2_tree(tmp_path / "hold", (0.5 * cov, 1.5 * cov))
    got = render("remark_a2.py", ["--results", str(tmp_path / "hold")], tmp_path, monkeypatch)
    assert any("every step-0 band contains the theorem's value" in t for t in got["texts"])
    # the verdict's window ends inside these steps, and the figure says where
    assert any(f"steps < {A2_EARLY_STEPS}" in t for t in got["texts"])


def cov_guess() -> float:
    """A scale for a band that surely misses: the theorem's value is positive and below the
    mean term (ratio 1.6 % at d = 32), so a band far above the mean term misses it."""
    from theory.remark_a2 import CovarianceNet, derive_terms

    return float(derive_terms(CovarianceNet(d_in=32, widths=(64, 64), outputs=10))["mean"])
