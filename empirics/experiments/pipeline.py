"""The paper's experiments (C6–C12): grids of training runs over seeds, aggregated to JSON with CIs.

`python -m empirics.experiments run --scale quick|full [--jobs 2] [--only drift,c10,...]` trains
(resumable: finished runs are kept) and then aggregates; `python -m empirics.experiments
aggregate --scale full` only reads results/ (no torch) and writes results/experiments/SCALE/*.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from empirics.cli import EXIT_FAILED, InputError, activation_slug, split_list
from empirics.cli import run_name as make_run_name
from empirics.outputs import atomic_write_json

ROOT = Path("results/experiments")
SCHEMA_VERSION = 1
CI_LEVEL = 0.95
DRIFT_ACTS = ("relu", "gelu", "silu", "tanh")
SPIKE_ACTS = ("relu", "relu2", "relu2_clip", "relu2_clip50", "gelu", "gelu2", "gelu2_clip")
C10_ARCHS = ("mlp", "vit", "gpt_nano", "resnet")
C10_CONTROLS = ("topk", "quantile", "shift")
C10_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
# Activations of the theory group's D(σ, s) table and first-step comparison.
THEORY_ACTS = ("relu", "gelu", "silu", "tanh", "relu2", "gelu2")
GROUPS = ("drift", "synthetic", "mp_senet", "acts", "c10", "early", "theory", "mp_probe")


# ------------------------------------------------------------------------------- the scales


@dataclass(frozen=True)
class Scale:
    """Everything that sets the size of the pipeline (sample sizes never depend on time).

    `steps` per architecture for the drift/activation runs, `c10_steps` for the controlled-
    sparsity runs (logged every `c10_log_every` steps: their metric is the end state).
    """

    name: str
    preset: str
    seeds: tuple[int, ...]
    c10_seeds: tuple[int, ...]
    steps: Mapping[str, int]
    c10_steps: Mapping[str, int]
    mp_senet_steps: int
    early_steps: int = 300
    log_every_late: int = 25
    c10_log_every: int = 10
    early_training_steps: int = 200
    early_training_networks: int = 16
    # C6 is the optimizer x lr grid; ReLU with MSE on non-negative and on zero-mean inputs keeps
    # it within the time budget (Remark A.2 needs the first, reversal shows on the second; the
    # other activations and cross-entropy are the early-training module's own `--sweep`).
    early_training_only: tuple[str, ...] = (
        "--activation", "relu", "--loss", "mse", "--data", "halfnormal,gaussian",
    )  # fmt: skip
    early_training_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    d_samples: int = 1 << 20
    d_stds: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
    g_networks: int = 1024
    first_step_networks: int = 4096
    c1_networks: int = 2048
    archs: tuple[str, ...] = ("mlp", "resnet", "vit", "gpt_nano")
    synthetic_archs: tuple[str, ...] = ("mlp", "vit", "gpt_nano")
    c10_archs: tuple[str, ...] = C10_ARCHS
    c10_levels: tuple[float, ...] = C10_LEVELS
    spike_acts: tuple[str, ...] = SPIKE_ACTS
    # submitit executor: "debug" runs in this process (smoke runs are shorter than a worker's
    # start-up), "local" one process per run, `jobs` at a time.
    cluster: str = "local"
    # Runs per worker process (the start-up, about 3 s, is paid once per chunk).
    chunk: int = 5


SCALES: dict[str, Scale] = {
    # Smoke sizes: exercises every path of the pipeline in a few minutes; numbers mean nothing.
    "quick": Scale(
        name="quick",
        preset="smoke",
        seeds=(0, 1, 2),
        c10_seeds=(0,),
        early_training_seeds=(0,),
        steps={"mlp": 20, "resnet": 8, "vit": 10, "gpt_nano": 12},
        c10_steps={"mlp": 10, "resnet": 4, "vit": 6, "gpt_nano": 6},
        mp_senet_steps=3,
        early_steps=300,
        c10_log_every=5,
        early_training_steps=20,
        early_training_networks=4,
        d_samples=1 << 14,
        d_stds=(0.5, 1.0, 2.0),
        g_networks=64,
        first_step_networks=256,
        c1_networks=128,
        cluster="debug",
    ),
    # The `small` presets with shortened step counts, five seeds everywhere, C10 included; one
    # end-to-end run took 103 minutes on two cores, 58 of them C10's 415 runs (README: Time).
    "full": Scale(
        name="full",
        preset="small",
        seeds=(0, 1, 2, 3, 4),
        c10_seeds=(0, 1, 2, 3, 4),
        early_training_networks=32,
        steps={"mlp": 300, "resnet": 200, "vit": 200, "gpt_nano": 300},
        c10_steps={"mlp": 300, "resnet": 150, "vit": 150, "gpt_nano": 200},
        mp_senet_steps=60,
    ),
}


def scale_root(scale: Scale | str, root: Path = ROOT) -> Path:
    return root / (scale if isinstance(scale, str) else scale.name)


# ---------------------------------------------------------------------------- the run plan


@dataclass
class RunSpec:
    """One training run of the pipeline (turned into a TrainConfig when it runs)."""

    group: str
    arch: str
    activation: str
    seed: int
    data: str
    steps: int
    sparsity: str = "none"
    early_steps: int = 300
    log_every_early: int = 1
    log_every_late: int = 25

    @property
    def name(self) -> str:
        """From the one run-name function (empirics.cli), the sparsity control after the
        activation: `mlp-relu-topk0.5-real-s0`."""
        ctl = None if self.sparsity == "none" else self.sparsity.replace(":", "")
        act = activation_slug(self.activation)
        return make_run_name(self.arch, act, ctl, self.data, seed=self.seed)


def c10_configurations(scale: Scale) -> list[tuple[str, str, str]]:
    """(arch, activation, sparsity) of the C10 grid: every control x level x arch with ReLU,
    Top-K GELU levels in GPT-nano (the paper's Top-K GELU), and the uncontrolled baselines."""
    out = [
        (arch, "relu", f"{kind}:{level:g}")
        for arch in scale.c10_archs
        for kind in C10_CONTROLS
        for level in scale.c10_levels
    ]
    out += [(arch, "relu", "none") for arch in scale.c10_archs]
    if "gpt_nano" in scale.c10_archs:
        out += [("gpt_nano", "gelu", f"topk:{level:g}") for level in scale.c10_levels]
        out += [("gpt_nano", "gelu", "none")]
    return out


def plan_runs(scale: Scale, groups: Sequence[str] = GROUPS) -> dict[str, list[RunSpec]]:
    """The training runs of each group (early/theory are not training runs and plan none)."""
    log = dict(early_steps=scale.early_steps, log_every_late=scale.log_every_late)
    plans: dict[str, list[RunSpec]] = {}
    if "drift" in groups:
        plans["drift"] = [
            RunSpec("drift", a, act, s, "real", scale.steps[a], **log)
            for a in scale.archs
            for act in DRIFT_ACTS
            for s in scale.seeds
        ]
    if "synthetic" in groups:
        plans["synthetic"] = [
            RunSpec("synthetic", a, act, s, "synthetic", scale.steps[a], **log)
            for a in scale.synthetic_archs
            for act in ("relu", "tanh")
            for s in scale.seeds
        ]
    if "mp_senet" in groups:
        plans["mp_senet"] = [
            RunSpec("mp_senet", "mp_senet", act, s, "real", scale.mp_senet_steps, **log)
            for act in DRIFT_ACTS
            for s in scale.seeds
        ]
    if "acts" in groups:  # relu and gelu come from the drift group (same config, same seeds)
        plans["acts"] = [
            RunSpec("acts", "gpt_nano", act, s, "real", scale.steps["gpt_nano"], **log)
            for act in scale.spike_acts
            if act not in DRIFT_ACTS
            for s in scale.seeds
        ]
    if "c10" in groups:
        plans["c10"] = [
            RunSpec(
                "c10",
                arch,
                act,
                s,
                "real",
                scale.c10_steps[arch],
                sparsity=sp,
                early_steps=0,
                log_every_early=scale.c10_log_every,
                log_every_late=scale.c10_log_every,
            )
            for arch, act, sp in c10_configurations(scale)
            for s in scale.c10_seeds
        ]
    return plans


def _train_config(spec: RunSpec, scale: Scale, root: Path) -> Any:
    from empirics.train.config import TrainConfig

    model = {} if spec.sparsity == "none" else {"sparsity": spec.sparsity}
    return TrainConfig(
        arch=spec.arch,
        activation=spec.activation,
        data=spec.data,
        preset=scale.preset,
        steps=spec.steps,
        seed=spec.seed,
        run=spec.name,
        out=str(root / "runs" / spec.name),
        progress=False,
        early_steps=spec.early_steps,
        log_every_early=spec.log_every_early,
        log_every_late=spec.log_every_late,
        model=model,
    )


def run_group(
    group: str,
    specs: Sequence[RunSpec],
    scale: Scale,
    root: Path,
    jobs: int,
    cluster: str = "local",
) -> dict[str, Any]:
    """Train a group through the sweep runner (submitit; resumes: completed runs are kept).

    One torch thread per run and `jobs` runs at a time: on a 2-core machine two single-thread
    runs finish more work per minute than one run on two threads at these sizes."""
    from empirics.experiments.sweep import Launch, run_sweep
    from empirics.train.loop import plan

    gdir = root / "sweeps" / group
    configs = [_train_config(s, scale, gdir) for s in specs]
    for cfg in configs:
        plan(cfg)  # every ConfigError before the first run starts
    launch = Launch(cluster=cluster, parallel=jobs, threads=1, chunk=scale.chunk)
    return run_sweep(configs, gdir, launch, echo=None)


# ----------------------------------------------------------- Monte Carlo beside the theory


def run_theory(scale: Scale, root: Path) -> None:
    """D(σ, s) by a fixed-size Monte Carlo beside quadrature, and g(p) curves for both losses and
    both init laws (fixed network counts), under root/theory/."""
    import torch

    from empirics.activations import get_torch_activation, get_torch_derivative
    from empirics.montecarlo.cli import main as mc_main
    from theory.drift import drift_coefficient_numeric

    gen = torch.Generator().manual_seed(12345)
    z = torch.randn(scale.d_samples, generator=gen, dtype=torch.float64)
    rows = []
    for act in THEORY_ACTS:
        f, df = get_torch_activation(act), get_torch_derivative(act)
        for s in scale.d_stds:
            p = s * z
            v = f(p) * df(p)
            mean, se = float(v.mean()), float(v.std() / math.sqrt(v.numel()))
            d_quad, err = drift_coefficient_numeric(act, float(s))
            rows.append(
                {
                    "activation": act,
                    "s": s,
                    "theory": d_quad,
                    "theory_err": err,
                    "mc_mean": mean,
                    "mc_stderr": se,
                    "mc_n": v.numel(),
                }
            )
    atomic_write_json(
        root / "theory" / "drift_coefficient.json",
        {"schema": "drift_coefficient/v2", "rows": rows, "curves": _drift_curves(scale)},
    )
    for act, loss, init in itertools.product(
        ("relu", "gelu", "silu", "tanh"), ("mse", "cross_entropy"), ("gaussian", "uniform")
    ):
        out = root / "theory" / "g_curve" / f"{act}-{loss}-{init}"
        if (out / "summary.json").exists():
            continue
        mc_main(
            [
                "g_curve",
                "--activation",
                act,
                "--loss",
                loss,
                "--init",
                init,
                "--n-networks",
                str(scale.g_networks),
                "--no-progress",
                "--out",
                str(out),
            ]
        )
    quadrature = {r["activation"]: (r["theory"], r["theory_err"]) for r in rows if r["s"] == 1.0}
    run_first_step(scale, root, quadrature)
    run_c1_depth(scale, root)


def _drift_curves(scale: Scale, points: int = 32) -> dict[str, dict[str, Any]]:
    """D(σ, s) on a dense grid of s in (0, max d_stds] per THEORY_ACTS: the closed form in s where
    theory derives one (so the figure draws its shape, e.g. ReLU²'s s³, not a line through the
    few Monte Carlo points), quadrature at each s otherwise (SiLU), with how it was obtained."""
    import mpmath
    import sympy as sp

    from theory.drift import derive_drift_with_method, drift_coefficient_numeric
    from theory.gradient import s as s_sym

    grid = np.linspace(0.0, max(scale.d_stds), points + 1)[1:]  # s = 0 is degenerate
    out = {}
    for act in THEORY_ACTS:
        expr, how = derive_drift_with_method(act)
        if expr is not None:
            f = sp.lambdify(s_sym, expr, "mpmath")
            with mpmath.workdps(30):
                values = [float(f(mpmath.mpf(float(v)))) for v in grid]
            method = f"closed form: {how}"
        else:
            values = [drift_coefficient_numeric(act, float(v))[0] for v in grid]
            method = f"quadrature at each s ({how})"
        out[act] = {"s": grid.tolist(), "theory": values, "method": method}
    return out


FIRST_STEP_ACTS = THEORY_ACTS
FIRST_STEP_LR = 1.0


def run_first_step(
    scale: Scale, root: Path, quadrature: Mapping[str, tuple[float, float]] | None = None
) -> None:
    """First-step bias drift E[Δb] after one SGD step from init, three ways on the network of
    the C2-C4 rows (`first_step_config` with inputs on the sphere: pre-activations exactly N(0, 1)):
    theory (MSE: E[Δb_i] = -lr K s_2² D(σ, 1), D by quadrature; cross-entropy: sign only), the
    Monte Carlo estimator (`estimate_first_step`), and the batched trainer of early training
    (torch.optim.SGD on `first_step_networks` networks, the realised update). Writes
    root/theory/first_step.json."""
    import torch

    from empirics.montecarlo.early_training import EarlyConfig, train_early
    from empirics.montecarlo.estimators import estimate_first_step
    from empirics.montecarlo.ledger import first_step_config
    from empirics.stats import SignTest
    from theory.drift import drift_coefficient_numeric

    rows = []
    n = scale.first_step_networks
    for loss in ("mse", "cross_entropy"):
        for i, act in enumerate(FIRST_STEP_ACTS):
            cfg = first_step_config(act, loss, "sphere")  # p ~ N(0, 1) exactly
            theory = err = None
            if loss == "mse":
                # D(σ, 1) by quadrature, from run_theory's table where it has s = 1
                d, err = (quadrature or {}).get(act) or drift_coefficient_numeric(act, 1.0)
                theory = -FIRST_STEP_LR * cfg.n_out * (cfg.w_gain / cfg.widths[0]) * d
            gen = torch.Generator().manual_seed(20_000 + 100 * i + (loss == "mse"))
            mc = estimate_first_step(
                cfg, FIRST_STEP_LR, generator=gen, n_networks=n, test=SignTest(alpha=0.05),
                targets=("b",),
            )["b"]  # fmt: skip
            early = EarlyConfig(
                activation=act, loss=loss, optimizer="sgd", lr=FIRST_STEP_LR, steps=1,
                n_networks=n, check_factor=1, d_in=cfg.d_in, widths=cfg.widths,
                n_out=cfg.n_out, batch_size=cfg.inputs_per_net, measure_batch=2,
                data="sphere", bootstrap=2000, alpha=0.05, device=cfg.device,
                seed=30_000 + 100 * i + (loss == "mse"),
            )  # fmt: skip
            hist = train_early(early)
            trained = mean_ci(hist.per_network[("layer1", "delta_b")][0].tolist())
            trained.pop("values")
            rows.append(
                {
                    "activation": act,
                    "loss": loss,
                    "theory": theory,
                    "theory_err": err,
                    "montecarlo": mc.ledger_dict(),
                    "trainer": trained,
                }
            )
    atomic_write_json(
        root / "theory" / "first_step.json",
        {
            "schema": "first_step/v1",
            "quantity": "E[Δb] of the hidden layer after one SGD step (lr 1) from init, mean "
            "over units; 95 % intervals over networks",
            "network": {
                k: v
                for k, v in first_step_config("relu", "mse", "sphere").to_dict().items()
                if k not in ("activation", "loss")
            },
            "lr": FIRST_STEP_LR,
            "networks": n,
            "rows": rows,
        },
    )  # fmt: skip


C1_DEPTHS = (0, 1, 2, 3, 4)
C1_INITS = ("gaussian", "exponential")


def run_c1_depth(scale: Scale, root: Path) -> None:
    """C1 against depth: E[VᵀV | h_l] below 0..4 ReLU gating layers (width 32, biases 0.3) for a
    sign-symmetric (Gaussian) and an asymmetric zero-mean (centred exponential) init: the mean
    diagonal over Theorem D1's alpha_l (theory 1 for symmetric laws), the mean off-diagonal and
    the h-weighted off-diagonal, both over alpha_l (theory 0 for symmetric laws; no prediction
    otherwise). Writes root/theory/c1_depth.json."""
    import torch

    from empirics.montecarlo.depth import estimate_conditional_moments, fixed_preactivation_h
    from empirics.montecarlo.presets import c1_gated, depth_net
    from empirics.stats import SignTest
    from theory.depth import alpha

    rows = []
    for init in C1_INITS:
        for m in C1_DEPTHS:
            cfg = c1_gated(m, init)
            a = float(alpha(depth_net(cfg)))
            gen = torch.Generator().manual_seed(40_000 + 10 * m + C1_INITS.index(init))
            est = estimate_conditional_moments(
                cfg, fixed_preactivation_h(cfg), generator=gen, n_networks=scale.c1_networks,
                test=SignTest(alpha=0.05), targets=("diag", "offdiag", "offdiag_h"),
            )  # fmt: skip
            rows.append(
                {
                    "init": init,
                    "gating_layers": m,
                    "alpha_l": a,
                    "symmetric": init != "exponential",
                    **{k: {**e.ledger_dict(), "scaled_by": a} for k, e in est.items()},
                }
            )
    atomic_write_json(
        root / "theory" / "c1_depth.json",
        {
            "schema": "c1_depth/v1",
            "quantity": "E[VᵀV | h_l] entries for V = d out / d h_l, 95 % intervals over networks",
            "networks": scale.c1_networks,
            "rows": rows,
        },
    )


MP_TERMS = ("loss_mag", "loss_complex", "loss_phase", "loss_time", "loss_consistency")


def run_mp_probe(scale: Scale, root: Path) -> None:
    """MP-SENet: which loss terms push which norm shifts. At initialisation, for each seed and
    activation, the gradient of each weighted loss term on the bias (shift) of every norm that
    feeds an activation, averaged over its channels (> 0: gradient descent lowers that shift,
    the drift direction), on one training batch. Writes root/mp_senet_probe.json (raw values;
    `aggregate` adds the means and CIs)."""
    import torch

    from empirics.models import mp_senet
    from empirics.tasks import speech
    from empirics.train.config import TrainConfig
    from empirics.train.loop import plan

    rows = []
    for act in DRIFT_ACTS:
        for seed in scale.seeds:
            p = plan(TrainConfig(arch="mp_senet", activation=act, preset=scale.preset, seed=seed))
            torch.manual_seed(seed)
            model = mp_senet.Model(p.model_cfg)
            gen = torch.Generator().manual_seed(seed + 1_000_003)
            noisy, clean = next(
                iter(
                    speech.make_data(
                        "real", p.model_cfg, split="train", batch_size=p.cfg.batch_size,
                        generator=gen,
                    )
                )
            )  # fmt: skip
            terms = speech.component_losses(model, model(noisy), clean)
            modules = dict(model.named_modules())
            feeds = {
                name: getattr(m, "feeds_from", None)
                for name, m in modules.items()
                if getattr(m, "feeds_from", None)
            }
            biases = {a: modules[f].bias for a, f in feeds.items() if modules[f].bias is not None}
            weights = {k: getattr(p.model_cfg, "w_" + k.removeprefix("loss_")) for k in MP_TERMS}
            for term in MP_TERMS:
                grads = torch.autograd.grad(
                    weights[term] * terms[term], list(biases.values()), retain_graph=True,
                    allow_unused=True,
                )  # fmt: skip
                for (layer, _), g in zip(biases.items(), grads, strict=True):
                    rows.append(
                        {
                            "activation": act,
                            "seed": seed,
                            "layer": layer,
                            "feeds_from": feeds[layer],
                            "term": term,
                            "weight": weights[term],
                            "grad_bias_mean": float(g.mean()) if g is not None else 0.0,
                        }
                    )
    atomic_write_json(root / "mp_senet_probe.json", {"schema": "mp_probe/v1", "rows": rows})


def aggregate_mp_probe(path: Path) -> dict[str, Any]:
    """Per activation, layer and loss term: the mean gradient on the feeding norm's shift over
    seeds (95 % CI) and its sign at 95 %; per layer, the term with the largest |mean| push."""
    if not path.exists():
        return {"rows": []}
    raw = json.loads(path.read_text())["rows"]
    by: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in raw:
        by[(r["activation"], r["layer"], r["term"])].append(r["grad_bias_mean"])
    rows = []
    for (act, layer, term), vals in sorted(by.items()):
        e = mean_ci(vals)
        lo, hi = e["ci"]
        sign = (
            "pushes shift down" if lo is not None and lo > 0
            else "pushes shift up" if hi is not None and hi < 0
            else "not distinguishable from 0"
        )  # fmt: skip
        rows.append({"activation": act, "layer": layer, "term": term, "sign_95": sign, **e})
    dominant: dict[str, dict[str, str]] = defaultdict(dict)
    for act, layer in {(r["activation"], r["layer"]) for r in rows}:
        mine = [r for r in rows if r["activation"] == act and r["layer"] == layer]
        dominant[act][layer] = max(mine, key=lambda r: abs(r["mean"] or 0.0))["term"]
    return {
        "quantity": "d(weighted loss term)/d(norm shift), channel mean, at init (> 0: GD lowers "
        "the shift)",
        "rows": rows,
        "dominant_term": dominant,
    }


def run_early(scale: Scale, root: Path, jobs: int = 1) -> None:
    """C6: the early-training persistence sweep (its own batched trainer), `jobs` runs at a time
    with one torch thread each (the thread count is recorded in its config.json)."""
    from empirics.montecarlo.early_training import main as early_main

    out = root / "early_training"  # the early-training grid resumes by itself
    early_main(
        [
            *scale.early_training_only,
            "--sweep",
            "--steps",
            str(scale.early_training_steps),
            "--n-networks",
            str(scale.early_training_networks),
            "--seeds",
            ",".join(map(str, scale.early_training_seeds)),
            "--jobs",
            str(jobs),
            "--threads",
            "1",
            "--no-progress",
            "--out",
            str(out),
        ]
    )


# ------------------------------------------------------------------------ statistics (pure)


def mean_ci(values: Iterable[float], level: float = CI_LEVEL) -> dict[str, Any]:
    """Mean over seeds with a Student-t interval (n, sd, se, ci, values)."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    n = int(v.size)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "se": None, "ci": [None, None], "values": []}
    mean = float(v.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "sd": None, "se": None, "ci": [None, None], "values": [mean]}
    sd = float(v.std(ddof=1))
    se = sd / math.sqrt(n)
    h = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "se": se,
        "ci": [mean - h, mean + h],
        "values": v.tolist(),
    }


def sign_flip_p(diffs: Sequence[float]) -> float | None:
    """Exact two-sided sign-flip permutation p-value of mean(diffs) = 0 (all 2^n flips; n <= 16).

    Its smallest possible value is 2/2^n (0.0625 at n = 5): reported beside the t-test because it
    needs no normality, not as the decision."""
    d = np.asarray(diffs, dtype=float)
    n = d.size
    if n == 0 or n > 16:
        return None
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    null = np.abs((signs * d).mean(axis=1))
    return float(np.mean(null >= observed - 1e-12 * max(1.0, observed)))


def paired(
    a: Mapping[int, float], b: Mapping[int, float], level: float = CI_LEVEL
) -> dict[str, Any]:
    """a − b paired by seed (same seed = same init and data order): mean difference, t interval,
    two-sided paired t p-value, exact sign-flip p-value, and the difference the test detects with
    80 % power at this n and the observed spread (two-sided α = 1 − level)."""
    seeds = sorted(set(a) & set(b))
    diffs = [
        a[s] - b[s]
        for s in seeds
        if a[s] is not None and b[s] is not None and math.isfinite(a[s] - b[s])
    ]
    out: dict[str, Any] = {"test": "paired t (two-sided)", "seeds": seeds, **mean_ci(diffs, level)}
    n = len(diffs)
    out["p_t"] = out["p_signflip"] = out["mde80"] = None
    if n >= 2:
        sd = out["sd"]
        if sd == 0:
            out["p_t"] = 0.0 if out["mean"] != 0 else 1.0
        else:
            out["p_t"] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
        out["p_signflip"] = sign_flip_p(diffs)
        alpha = 1 - level
        t_a, t_b = stats.t.ppf(1 - alpha / 2, n - 1), stats.t.ppf(0.8, n - 1)
        out["mde80"] = float((t_a + t_b) * sd / math.sqrt(n)) if sd is not None else None
    return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (family-wise error over the given comparisons)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])  # type: ignore[arg-type, return-value]
    adj: list[float | None] = [None] * len(pvalues)
    running = 0.0
    m = len(order)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))  # type: ignore[arg-type]
        adj[i] = running
    return adj


def hinge_fit(x: np.ndarray, y: np.ndarray, grid: np.ndarray | None = None) -> dict[str, float]:
    """Segmented regression y = a + b·x + c·max(0, x − k) (continuous, one knee k) by least
    squares over a grid of knees (all knees solved at once); also the straight line (c = 0)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if grid is None:
        grid = np.linspace(np.quantile(x, 0.05), np.quantile(x, 0.95), 181)
    grid = np.asarray(grid, float)
    hinge = np.maximum(0.0, x[None, :] - grid[:, None])  # (K, n)
    design = np.stack([np.ones_like(hinge), np.broadcast_to(x, hinge.shape), hinge], axis=-1)
    coef = np.linalg.pinv(design) @ y  # (K, 3): least squares per knee (pinv: a knee past
    sse = np.sum((y - np.einsum("knp,kp->kn", design, coef)) ** 2, axis=1)  # every x is fine)
    best_k = int(np.argmin(sse))
    a, b, c = (float(v) for v in coef[best_k])
    line = np.column_stack([np.ones_like(x), x])
    lcoef, *_ = np.linalg.lstsq(line, y, rcond=None)
    return {
        "knee": float(grid[best_k]),
        "a": a,
        "b": b,
        "c": c,
        "sse": float(sse[best_k]),
        "sse_line": float(np.sum((y - line @ lcoef) ** 2)),
        "slope_before": b,
        "slope_after": b + c,
    }


def cliff_analysis(
    x: Sequence[float],
    y: Sequence[float],
    *,
    groups: Sequence[Any] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Hinge fit of relative performance against measured sparsity, a percentile-bootstrap CI on
    the knee, an F-test of the knee against a straight line, and the fitted performance at
    50/70/90 % sparsity. With `groups` (the configuration of each point) the bootstrap resamples
    whole configurations, all seeds of one together (a cluster bootstrap: seeds of one
    configuration share its sparsity level and are not independent draws of it); without, it
    resamples points."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    n = xa.size
    if n < 6:
        return {"n": n, "fit": None}
    grid = np.linspace(max(0.0, xa.min()), min(1.0, xa.max()), 121)
    fit = hinge_fit(xa, ya, grid)
    rng = np.random.default_rng(seed)
    if groups is None:
        clusters = [np.array([k]) for k in range(n)]
    else:
        index: dict[Any, list[int]] = defaultdict(list)
        for k, g in enumerate(groups):
            index[g].append(k)
        clusters = [np.array(v) for _, v in sorted(index.items(), key=lambda kv: str(kv[0]))]
    knees, drops = [], []
    for _ in range(n_boot):
        pick = rng.integers(0, len(clusters), len(clusters))
        i = np.concatenate([clusters[c] for c in pick])
        if np.unique(xa[i]).size < 4:
            continue
        f = hinge_fit(xa[i], ya[i], grid)
        knees.append(f["knee"])
        drops.append(f["slope_after"] - f["slope_before"])
    # F-test: 4 parameters (with the knee) against 2; the knee's grid search makes this test
    # anti-conservative (Davies), so its p-value is a screen, the bootstrap CI the evidence.
    df2 = n - 4
    f_stat = ((fit["sse_line"] - fit["sse"]) / 2) / (fit["sse"] / df2) if fit["sse"] > 0 else None
    p_f = float(stats.f.sf(f_stat, 2, df2)) if f_stat is not None and df2 > 0 else None

    def at(s: float) -> float:
        return fit["a"] + fit["b"] * s + fit["c"] * max(0.0, s - fit["knee"])

    return {
        "n": n,
        "fit": fit,
        "knee_ci": [float(np.quantile(knees, 0.025)), float(np.quantile(knees, 0.975))]
        if knees
        else [None, None],
        "slope_change_ci": [float(np.quantile(drops, 0.025)), float(np.quantile(drops, 0.975))]
        if drops
        else [None, None],
        "bootstrap": {
            "replicates": len(knees),
            "seed": seed,
            "method": "percentile",
            "resampled": "points" if groups is None else f"{len(clusters)} configurations",
        },
        "f_test_vs_line": {"F": f_stat, "p": p_f, "df": [2, df2]},
        "fitted": {f"{s:.2f}": at(s) for s in (0.0, 0.5, 0.7, 0.9, 0.95)},
    }


# --------------------------------------------------------------------- reading runs (pure)


@dataclass
class Run:
    dir: Path
    arch: str
    activation: str
    seed: int
    data: str
    sparsity: str
    summary: dict[str, Any]
    _series: dict[tuple[str, str], dict[int, float]] | None = field(default=None, repr=False)

    @property
    def feeds(self) -> dict[str, str]:
        return self.summary.get("feeds", {})

    @property
    def layers(self) -> dict[str, dict[str, dict[str, float]]]:
        return self.summary.get("layers", {})

    def series(self, layer: str, metric: str) -> dict[int, float]:
        """step -> value of one (layer, metric) from records.csv (read once, indexed)."""
        if self._series is None:
            index: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
            with open(self.dir / "records.csv", newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader)
                i_step, i_layer = header.index("step"), header.index("layer")
                i_metric, i_value = header.index("metric"), header.index("value")
                for row in reader:
                    index[(row[i_layer], row[i_metric])][int(row[i_step])] = float(row[i_value])
            self._series = dict(index)
        return self._series.get((layer, metric), {})

    def delta(self, layer: str | None, metric: str) -> float | None:
        m = self.layers.get(layer or "", {}).get(metric)
        return None if m is None else m["last"] - m["first"]

    def last(self, layer: str | None, metric: str) -> float | None:
        m = self.layers.get(layer or "", {}).get(metric)
        return None if m is None else m["last"]

    def first(self, layer: str | None, metric: str) -> float | None:
        m = self.layers.get(layer or "", {}).get(metric)
        return None if m is None else m["first"]


def load_runs(group_dir: Path) -> list[Run]:
    """Completed runs of one group (diverged/failed ones are counted by the caller)."""
    out = []
    for summary_path in sorted((group_dir / "runs").glob("*/summary.json")):
        s = json.loads(summary_path.read_text())
        if s.get("status") != "completed":
            continue
        cfg = json.loads((summary_path.parent / "config.json").read_text())
        out.append(
            Run(
                dir=summary_path.parent,
                arch=s["arch"],
                activation=s["activation"],
                seed=int(s["seed"]),
                data=s["data"],
                sparsity=str(cfg.get("model", {}).get("sparsity", "none")),
                summary=s,
            )
        )
    return out


def group_status(group_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for summary_path in (group_dir / "runs").glob("*/summary.json"):
        counts[json.loads(summary_path.read_text()).get("status", "unknown")] += 1
    return dict(counts)


def act_layers(run: Run) -> list[str]:
    """Activation layers in model order (those with a pre-activation record)."""
    return [k for k, v in run.layers.items() if "preact_mean" in v]


def consumer_layer(arch: str, act: str, layers: Sequence[str]) -> list[str]:
    """The layer(s) whose input is this activation's output: the weights C5 says drift when
    that input is non-negative (MLP fc{i+1}/head, ViT fc2, GPT-nano down, ResNet next conv)."""
    have = set(layers)
    if arch == "mlp":
        i = int(act.rsplit("act", 1)[1])
        nxt = f"layers.fc{i + 1}"
        return [nxt if nxt in have else "layers.head"]
    if arch == "vit":
        return [act.replace(".act", ".fc2")]
    if arch == "gpt_nano":
        return [act.replace(".act", ".down")]
    if arch == "resnet":
        if act == "stem.2":
            cands = ["stages.0.0.conv1", "stages.0.0.shortcut.0"]
        elif act.endswith(".act1"):
            cands = [act[: -len("act1")] + "conv2"]
        else:
            m = re.fullmatch(r"stages\.(\d+)\.(\d+)\.act2", act)
            if not m:
                return []
            s, b = int(m.group(1)), int(m.group(2))
            cands = [f"stages.{s}.{b + 1}.conv1", f"stages.{s}.{b + 1}.shortcut.0"]
            if f"stages.{s}.{b + 1}.conv1" not in have:
                cands = [f"stages.{s + 1}.0.conv1", f"stages.{s + 1}.0.shortcut.0", "head"]
        return [c for c in cands if c in have][:2] or []
    return []


# Per activation layer, per run: the drift quantities reported (name -> how to get it).
def _drift_quantities(run: Run, act: str) -> dict[str, float | None]:
    src = run.feeds.get(act)
    cons = consumer_layer(run.arch, act, list(run.layers))
    cons0 = cons[0] if cons else None
    q: dict[str, float | None] = {
        "d_preact_mean": run.delta(act, "preact_mean"),
        "d_sparsity": run.delta(act, "sparsity"),
        "d_negative_rate": run.delta(act, "negative_rate"),
        # the layer producing p: its bias (a BN shift in ResNet) and its weights along x̄
        "feed_d_bias_mean": run.delta(src, "bias_mean"),
        "feed_weight_meandir_delta": run.last(src, "weight_meandir_delta"),
        "feed_d_weight_part": run.delta(src, "preact_weight_part"),
        "feed_drift_score": run.last(src, "drift_score"),
        # the layer fed by the activation's output (C5's non-negative-input weights)
        "cons_d_weight_mean": run.delta(cons0, "weight_mean"),
        "cons_drift_score": run.last(cons0, "drift_score"),
        "cons_d_bias_mean": run.delta(cons0, "bias_mean"),
    }
    for g in ("grad_mean", "grad_pos", "grad_neg"):  # the gradient probe, where recorded
        if g in run.layers.get(act, {}):
            q[f"{g}_init"] = run.first(act, g)
    if "grad_mean" in run.layers.get(act, {}):
        # Σ over logged steps of mean ∂ℓ/∂p: what pushes the feeding bias (gradient descent
        # moves it against this sum; every step is logged during early training).
        q["grad_mean_sum"] = float(sum(run.series(act, "grad_mean").values()))
    return q


DRIFT_QUANTITIES = (
    "d_preact_mean",
    "d_sparsity",
    "d_negative_rate",
    "feed_d_bias_mean",
    "feed_weight_meandir_delta",
    "feed_d_weight_part",
    "feed_drift_score",
    "cons_d_weight_mean",
    "cons_drift_score",
    "cons_d_bias_mean",
    "grad_mean_init",
    "grad_pos_init",
    "grad_neg_init",
    "grad_mean_sum",
)


def _mean_of(values: Iterable[float | None]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


# ------------------------------------------------------------------------- the aggregators


def _thin(steps: list[int], max_points: int) -> list[int]:
    """At most max_points of the sorted steps, log-spaced (early training is where drift is)."""
    if len(steps) <= max_points:
        return steps
    keep = np.unique(np.geomspace(1, len(steps), max_points).astype(int) - 1)
    return [steps[i] for i in keep]


def _layer_mean_trajectory(
    runs: Sequence[Run], layers: Sequence[str], metric: str, max_points: int = 80
) -> list[dict[str, Any]]:
    """Per step logged by every run: the metric averaged over `layers`, mean and CI over runs."""
    per_run = []
    for r in runs:
        ser = [r.series(layer, metric) for layer in layers]
        steps = set.intersection(*(set(s) for s in ser)) if ser else set()
        per_run.append({st: float(np.mean([s[st] for s in ser])) for st in steps})
    common = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    return [
        {"step": st, **_brief(mean_ci(d[st] for d in per_run))} for st in _thin(common, max_points)
    ]


def aggregate_drift(runs: Sequence[Run]) -> dict[str, Any]:
    """C7/C8: per (arch, data, activation): every drift quantity per layer and averaged over
    layers, mean over seeds with 95 % CI; paired (same seed) difference against tanh."""
    by: dict[tuple[str, str, str], dict[int, Run]] = defaultdict(dict)
    for r in runs:
        by[(r.arch, r.data, r.activation)][r.seed] = r
    rows = []
    for (arch, data, act), seeds in sorted(by.items()):
        any_run = next(iter(seeds.values()))
        layers = act_layers(any_run)
        per_seed_q: dict[int, dict[str, dict[str, float | None]]] = {
            s: {a: _drift_quantities(r, a) for a in act_layers(r)} for s, r in seeds.items()
        }
        row: dict[str, Any] = {
            "arch": arch,
            "data": data,
            "activation": act,
            "seeds": sorted(seeds),
            "layers": {},
            "mean_over_layers": {},
            "consumers": {a: consumer_layer(arch, a, list(any_run.layers)) for a in layers},
            "feeds": any_run.feeds,
        }
        for a in layers:
            row["layers"][a] = {
                q: mean_ci(per_seed_q[s].get(a, {}).get(q) for s in seeds)
                for q in DRIFT_QUANTITIES
                if any(per_seed_q[s].get(a, {}).get(q) is not None for s in seeds)
            }
        layer_means: dict[str, dict[int, float | None]] = {}
        for q in DRIFT_QUANTITIES:
            layer_means[q] = {s: _mean_of(v.get(q) for v in per_seed_q[s].values()) for s in seeds}
            if any(v is not None for v in layer_means[q].values()):
                entry = mean_ci(layer_means[q].values())
                lo, hi = entry["ci"]
                entry["sign_95"] = (
                    "negative" if hi is not None and hi < 0
                    else "positive" if lo is not None and lo > 0
                    else "not distinguishable from 0"
                )  # fmt: skip
                row["mean_over_layers"][q] = entry
        # Does the probe account for the bias motion? Per (seed, layer): sign(Δ feeding bias)
        # against −sign(Σ grad_mean), the direction gradient descent moves it.
        agree = total = 0
        for s in seeds:
            for v in per_seed_q[s].values():
                db, gs = v.get("feed_d_bias_mean"), v.get("grad_mean_sum")
                if db is not None and gs is not None and db != 0 and gs != 0:
                    total += 1
                    agree += (db < 0) == (gs > 0)
        row["bias_vs_grad_probe"] = {"agree": agree, "of": total}
        row["_per_seed"] = layer_means
        row["trajectory"] = {
            m: _layer_mean_trajectory(list(seeds.values()), layers, m)
            for m in ("preact_mean", "negative_rate", "sparsity")
        }
        rows.append(row)
    # paired against tanh (same arch, data and seed)
    index = {(r["arch"], r["data"], r["activation"]): r for r in rows}
    for r in rows:
        ref = index.get((r["arch"], r["data"], "tanh"))
        r["vs_tanh"] = {}
        if ref is None or r["activation"] == "tanh":
            continue
        for q in ("d_preact_mean", "feed_d_bias_mean", "cons_d_weight_mean", "cons_drift_score"):
            if q in r["_per_seed"] and q in ref["_per_seed"]:
                a = {s: v for s, v in r["_per_seed"][q].items() if v is not None}
                b = {s: v for s, v in ref["_per_seed"][q].items() if v is not None}
                r["vs_tanh"][q] = paired(a, b)
    for r in rows:
        r.pop("_per_seed")
    return {"rows": rows}


def resnet_mechanism(runs: Sequence[Run]) -> dict[str, Any]:
    """ResNet evidence: in train mode a BatchNorm's output mean is its shift β whatever the conv
    weights do, so Δpreact_mean of an activation fed by bn (act1 and the stem) equals Δβ of that
    BN exactly; the residual act2 adds the shortcut's mean. Returned per activation: the
    identity's residual (Δpreact − Δβ) and the conv-weight drift feeding the BN, over seeds."""
    out: dict[str, Any] = {}
    by: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.arch == "resnet" and r.data == "real":
            by[r.activation].append(r)
    for act, rs in sorted(by.items()):
        resid, dbeta, dpre, conv_ds, conv_part = [], [], [], [], []
        for r in rs:
            pairs = [
                (a, r.feeds[a])
                for a in act_layers(r)
                if a in r.feeds and not a.endswith("act2")  # bn-fed only
            ]
            dp = [r.delta(a, "preact_mean") for a, _ in pairs]
            db = [r.delta(b, "bias_mean") for _, b in pairs]
            conv = [b.replace(".bn1", ".conv1").replace("stem.1", "stem.0") for _, b in pairs]
            resid.append(
                _mean_of((p - b) for p, b in zip(dp, db, strict=True) if None not in (p, b))
            )
            dbeta.append(_mean_of(db))
            dpre.append(_mean_of(dp))
            conv_ds.append(_mean_of(r.last(c, "drift_score") for c in conv))
            conv_part.append(_mean_of(r.delta(c, "weight_mean") for c in conv))
        out[act] = {
            "bn_fed_d_preact_mean": mean_ci(dpre),
            "bn_d_beta": mean_ci(dbeta),
            "identity_residual": mean_ci(resid),
            "conv_drift_score": mean_ci(conv_ds),
            "conv_d_weight_mean": mean_ci(conv_part),
        }
    return out


def aggregate_c9(runs: Sequence[Run], max_points: int = 80) -> dict[str, Any]:
    """C9: ReLU sparsity per activation layer over training (real data), mean and 95 % CI over
    seeds at every step all seeds logged (thinned to at most `max_points`), with init and end."""
    by: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.activation == "relu" and r.data == "real" and r.sparsity == "none":
            by[r.arch].append(r)
    archs = {}
    for arch, rs in sorted(by.items()):
        layers = act_layers(rs[0])
        out_layers = {}
        for layer in layers:
            ser = [r.series(layer, "sparsity") for r in rs]
            common = _thin(sorted(set.intersection(*(set(s) for s in ser))), max_points)
            traj = [{"step": st, **_brief(mean_ci(s[st] for s in ser))} for st in common]
            out_layers[layer] = {
                "init": mean_ci(r.first(layer, "sparsity") for r in rs),
                "final": mean_ci(r.last(layer, "sparsity") for r in rs),
                "trajectory": traj,
            }
        finals = [v["final"]["mean"] for v in out_layers.values() if v["final"]["mean"] is not None]
        archs[arch] = {
            "seeds": sorted(r.seed for r in rs),
            "steps": rs[0].summary.get("steps"),
            "layers": out_layers,
            "max_final": max(finals) if finals else None,
            "max_final_layer": max(out_layers, key=lambda k: out_layers[k]["final"]["mean"] or -1)
            if out_layers
            else None,
        }
    return {"archs": archs}


def _brief(ci: dict[str, Any]) -> dict[str, Any]:
    return {"n": ci["n"], "mean": ci["mean"], "ci": ci["ci"]}


def _log_ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (a > 0 and b > 0):
        return None
    return math.log(a / b)


def aggregate_spikes(runs: Sequence[Run]) -> dict[str, Any]:
    """C11: per GPT-nano activation and layer, spike_max and spike_ratio at the last step and the
    max over training, over seeds; amplification relative to ReLU per layer as a geometric-mean
    ratio with a paired (same seed) t interval on log ratios."""
    by: dict[str, dict[int, Run]] = defaultdict(dict)
    for r in runs:
        if r.arch == "gpt_nano" and r.data == "real" and r.sparsity == "none":
            by[r.activation][r.seed] = r
    if "relu" not in by:
        return {"activations": {}, "note": "no ReLU runs: amplification undefined"}
    layers = act_layers(next(iter(by["relu"].values())))
    acts = {}
    for act, seeds in sorted(by.items()):
        per_layer = {}
        for layer in layers:
            entry: dict[str, Any] = {}
            for metric in ("spike_max", "spike_ratio"):
                last = {s: r.last(layer, metric) for s, r in seeds.items()}
                peak = {s: _max_or_none(r.series(layer, metric).values()) for s, r in seeds.items()}
                entry[metric] = mean_ci(last.values())
                entry[f"{metric}_peak"] = mean_ci(peak.values())
                for which, vals in (("last", last), ("peak", peak)):
                    relu_vals = {
                        s: (
                            by["relu"][s].last(layer, metric)
                            if which == "last"
                            else _max_or_none(by["relu"][s].series(layer, metric).values())
                        )
                        for s in by["relu"]
                    }
                    logs = {
                        s: _log_ratio(vals[s], relu_vals.get(s)) for s in vals if s in relu_vals
                    }
                    logs = {s: v for s, v in logs.items() if v is not None}
                    ci = paired(logs, {s: 0.0 for s in logs})
                    entry[f"amp_{metric}_{which}"] = {
                        "geo_mean": math.exp(ci["mean"]) if ci["mean"] is not None else None,
                        "ci": [math.exp(c) if c is not None else None for c in ci["ci"]],
                        "p_t": ci["p_t"],
                        "n": ci["n"],
                        "test": "paired t on log ratios (two-sided)",
                    }
            per_layer[layer] = entry
        amplified = [
            layer for layer, e in per_layer.items() if (e["amp_spike_max_last"]["ci"][0] or 0) > 1.0
        ]
        acts[act] = {
            "seeds": sorted(seeds),
            "layers": per_layer,
            # layers whose spike_max ratio to ReLU has its 95 % CI above 1 (per-layer, unadjusted)
            "amplified_layers": amplified,
        }
    return {"layers": layers, "activations": acts}


def _max_or_none(values: Iterable[float]) -> float | None:
    v = [x for x in values if math.isfinite(x)]
    return max(v) if v else None


C12_COMPARISONS: tuple[tuple[str, str], ...] = (
    ("relu2_clip", "relu2"),
    ("relu2_clip50", "relu2"),
    ("gelu2_clip", "gelu2"),
    ("relu2_clip", "relu"),
    ("relu2_clip", "gelu"),
    ("gelu2", "relu"),
    ("gelu2", "gelu"),
    ("relu2", "relu"),
    ("gelu2", "relu2"),
    ("gelu2", "relu2_clip"),
    ("gelu2", "relu2_clip50"),
    ("gelu2", "gelu2_clip"),
)


def aggregate_c12(runs: Sequence[Run]) -> dict[str, Any]:
    """C12: GPT-nano val loss per activation (mean, 95 % CI over seeds) and paired differences
    (a − b < 0 means a is better), Holm-adjusted over the listed comparisons."""
    by: dict[str, dict[int, float]] = defaultdict(dict)
    for r in runs:
        if r.arch == "gpt_nano" and r.data == "real" and r.sparsity == "none":
            v = (r.summary.get("val") or {}).get("val_loss")
            if v is not None:
                by[r.activation][r.seed] = float(v)
    per_act = {a: mean_ci(v.values()) | {"by_seed": v} for a, v in sorted(by.items())}
    comps = []
    for a, b in C12_COMPARISONS:
        if a in by and b in by:
            comps.append({"a": a, "b": b, **paired(by[a], by[b])})
    adj = holm([c["p_t"] for c in comps])
    for c, p in zip(comps, adj, strict=True):
        c["p_holm"] = p
    ranked = sorted(
        (a for a in per_act if per_act[a]["mean"] is not None), key=lambda a: per_act[a]["mean"]
    )
    return {
        "metric": "val_loss (nats/char)",
        "activations": per_act,
        "ranking": ranked,
        "comparisons": comps,
        "family": "Holm over the comparisons listed, two-sided paired t",
    }


def _performance(run: Run) -> tuple[str, float | None]:
    val = run.summary.get("val") or {}
    if run.arch == "gpt_nano":
        return "val_loss", val.get("val_loss")
    return "accuracy", val.get("accuracy")


def c10_failed(group_dir: Path) -> list[dict[str, Any]]:
    """C10 runs that did not complete (diverged or failed): arch, sparsity control, seed, status."""
    out = []
    for summary_path in sorted((group_dir / "runs").glob("*/summary.json")):
        s = json.loads(summary_path.read_text())
        if s.get("status") == "completed":
            continue
        cfg = json.loads((summary_path.parent / "config.json").read_text())
        out.append(
            {
                "arch": s.get("arch"),
                "activation": s.get("activation"),
                "sparsity": str(cfg.get("model", {}).get("sparsity", "none")),
                "seed": s.get("seed"),
                "status": s.get("status", "unknown"),
            }
        )
    return out


def aggregate_c10(
    runs: Sequence[Run], failed: Sequence[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """C10: each controlled run's measured sparsity (mean over activation layers at the last
    step) and its performance relative to the uncontrolled run of the same arch, activation and
    seed (accuracy ratio; for GPT-nano exp(−Δ val_loss), the inverse perplexity ratio); the
    critical sparsity per architecture x control (`c10_critical`, what the verdict reads); hinge
    fits per architecture and pooled, with bootstrap CIs on the knee; `failed`: the runs that
    did not complete (`c10_failed`), listed as such."""
    base: dict[tuple[str, str, int], float] = {}
    for r in runs:
        if r.sparsity == "none":
            _, v = _performance(r)
            if v is not None:
                base[(r.arch, r.activation, r.seed)] = v
    points = []
    for r in runs:
        metric, v = _performance(r)
        ref = base.get((r.arch, r.activation, r.seed))
        layers = act_layers(r)
        meas = _mean_of(r.last(a, "sparsity") for a in layers)
        meas_max = _max_or_none(v for v in (r.last(a, "sparsity") for a in layers) if v is not None)
        if v is None or ref is None or meas is None:
            continue
        rel = v / ref if metric == "accuracy" else math.exp(-(v - ref))
        kind, _, level = r.sparsity.partition(":")
        points.append(
            {
                "arch": r.arch,
                "activation": r.activation,
                "control": kind,
                "level": float(level) if level else 0.0,
                "seed": r.seed,
                "measured_sparsity": meas,
                "measured_sparsity_max_layer": meas_max,
                "metric": metric,
                "value": v,
                "baseline": ref,
                "relative": rel,
            }
        )

    def config(p: dict[str, Any]) -> tuple[Any, ...]:
        return (p["arch"], p["activation"], p["control"], p["level"])

    def fit(sel: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        return cliff_analysis(
            [p["measured_sparsity"] for p in sel], [p["relative"] for p in sel], **kw
        )

    configs = {config(p) for p in points}
    fits = {}
    for arch in sorted({p["arch"] for p in points}):
        sel = [p for p in points if p["arch"] == arch]
        fits[arch] = fit(sel, groups=[config(p) for p in sel])
    fits["pooled"] = fit(points, groups=[config(p) for p in points])
    # The knee fitted to each seed's grid on its own: its spread over seeds (a t interval) beside
    # the pooled fit's cluster bootstrap.
    by_seed = {}
    for s in sorted({p["seed"] for p in points}):
        f = fit([p for p in points if p["seed"] == s], n_boot=0).get("fit")
        if f is not None:
            by_seed[s] = f["knee"]
    fits["pooled"]["knee_by_seed"] = {"seeds": by_seed, **mean_ci(by_seed.values())}
    critical = c10_critical(points)
    # nominal vs measured: how far each control's measured sparsity sits from its label
    gaps: dict[str, Any] = {}
    for kind in sorted({p["control"] for p in points} - {"none"}):
        sel = [p for p in points if p["control"] == kind]
        gaps[kind] = mean_ci(p["measured_sparsity"] - p["level"] for p in sel)
    return {
        "configurations": len(configs),
        "runs": len(points),
        "relative_metric": "accuracy / baseline accuracy (vision); exp(-(val_loss - baseline)) "
        "(GPT-nano); baseline = same arch, activation and seed without a control",
        "points": points,
        "fits": fits,
        "critical": critical,
        "critical_thresholds": list(C10_THRESHOLDS),
        "diverged": list(failed or []),
        "measured_minus_nominal": gaps,
    }


# Shares of the dense baseline's performance whose critical sparsity C10 reports (the
# literature's 99 %, and 95 %).
C10_THRESHOLDS = (0.99, 0.95)


def c10_critical(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per architecture x control, per seed: the critical sparsity at each of C10_THRESHOLDS
    (`critical_sparsity` on that seed's curve of relative performance against measured
    sparsity), with a t interval over seeds when every seed's value is bracketed by grid points;
    for the uncontrolled baseline ("none"), its emergent sparsity (performance 1 by definition)."""
    from empirics.stats import critical_sparsity

    out: dict[str, Any] = {}
    for arch in sorted({p["arch"] for p in points}):
        mine = [p for p in points if p["arch"] == arch and p["activation"] == "relu"]
        out[arch] = {}
        for control in sorted({p["control"] for p in mine}):
            sel = [p for p in mine if p["control"] == control]
            seeds = sorted({p["seed"] for p in sel})
            if control == "none":
                out[arch][control] = {"emergent": mean_ci(p["measured_sparsity"] for p in sel)}
                continue
            cell: dict[str, Any] = {}
            for q in C10_THRESHOLDS:
                per_seed = {}
                for seed in seeds:
                    curve = [p for p in sel if p["seed"] == seed]
                    per_seed[seed] = critical_sparsity(
                        [p["measured_sparsity"] for p in curve], [p["relative"] for p in curve], q
                    )
                values = [c["value"] for c in per_seed.values() if c["censored"] is None]
                censored = [c["censored"] for c in per_seed.values() if c["censored"]]
                cell[f"{q:g}"] = {
                    "per_seed": per_seed,
                    "bracketed": len(values),
                    "censored_above": censored.count("above"),
                    "censored_below": censored.count("below"),
                    **(mean_ci(values) if not censored else {"n": len(per_seed)}),
                }
            out[arch][control] = cell
    return out


def aggregate_first_step(runs: Sequence[Run]) -> dict[str, Any]:
    """The full trainer's first update: per run, the change of the bias mean of every layer that
    feeds an activation between step 0 and step 1 (records are logged every step early on), then
    per architecture x activation x layer and averaged over layers, the mean over seeds with a
    95 % t interval. Theory predicts < 0 wherever D(σ) > 0 (tanh: 0)."""
    by: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in runs:
        if r.data != "real":
            continue
        per_run = []
        for act in act_layers(r):
            src = r.feeds.get(act)
            b = r.series(src, "bias_mean") if src else {}
            if 0 in b and 1 in b:
                by[(r.arch, r.activation, act)].append(b[1] - b[0])
                per_run.append(b[1] - b[0])
        if per_run:
            by[(r.arch, r.activation, "mean over layers")].append(float(np.mean(per_run)))
    rows = []
    for (arch, act, layer), vals in sorted(by.items()):
        e = mean_ci(vals)
        rows.append({"arch": arch, "activation": act, "layer": layer, **e})
    return {"quantity": "bias_mean(step 1) − bias_mean(step 0) of the layer feeding each "
            "activation (the trainer's own optimizer and lr)", "rows": rows}  # fmt: skip


def aggregate_c6(early_dir: Path) -> dict[str, Any]:
    """C6: the early-training horizons as `python -m empirics.montecarlo.early_training` wrote them
    (horizons.json; its intervals are over the networks trained side by side and its own seeds),
    passed through so that the verdict reads one directory."""
    for name in ("horizons.json", "summary.json"):
        path = early_dir / name
        if path.exists():
            return {"source": str(path), "early_training": json.loads(path.read_text())}
    return {"source": None, "early_training": None}


# ------------------------------------------------------------------------------ the driver


def aggregate(scale: Scale | str, root: Path = ROOT) -> dict[str, Path]:
    """Read every group under root/SCALE and write the claim JSON files; returns their paths."""
    sroot = scale_root(scale, root)
    sweeps = sroot / "sweeps"
    runs = {g: load_runs(sweeps / g) for g in ("drift", "synthetic", "mp_senet", "acts", "c10")}
    status = {g: group_status(sweeps / g) for g in runs if (sweeps / g).exists()}
    meta = {
        "schema_version": SCHEMA_VERSION,
        "scale": scale if isinstance(scale, str) else asdict(scale),
        "ci_level": CI_LEVEL,
        "ci_method": "Student t over seeds",
        "run_status": status,
    }
    written: dict[str, Path] = {}

    def write(name: str, body: dict[str, Any]) -> None:
        path = sroot / f"{name}.json"
        atomic_write_json(path, {"claim": name, **meta, **body})
        written[name] = path

    drift_runs = runs["drift"] + runs["synthetic"] + runs["mp_senet"]
    write(
        "drift",
        aggregate_drift(drift_runs)
        | {
            "resnet": resnet_mechanism(runs["drift"]),
            "mp_senet_probe": aggregate_mp_probe(sroot / "mp_senet_probe.json"),
        },
    )
    write("c9_sparsity", aggregate_c9(runs["drift"] + runs["mp_senet"]))
    gpt = [r for r in runs["drift"] if r.arch == "gpt_nano"] + runs["acts"]
    write("c11_spikes", aggregate_spikes(gpt))
    write("c12_val_loss", aggregate_c12(gpt))
    write("c10_cliff", aggregate_c10(runs["c10"], failed=c10_failed(sweeps / "c10")))
    write("c6_persistence", aggregate_c6(sroot / "early_training"))
    write("first_step_trainer", aggregate_first_step(runs["drift"] + runs["mp_senet"]))
    if (
        sweeps / "mp_senet_long"
    ).is_dir():  # trained apart: python -m empirics.experiments.mp_senet_long
        from empirics.experiments import mp_senet_long

        written["mp_senet_long"] = mp_senet_long.aggregate(sroot, mp_senet_long.LongPlan())
    return written


class PipelineStopped(RuntimeError):
    """The data a group needs is not installed, or a group completed none of its runs: the
    pipeline stops there (exit 1) with the reason, instead of carrying on to a traceback."""


# Which data each group's runs read: (arch, data kind) of its runs, or a source named directly.
_SPEECH_GROUPS = ("mp_senet", "mp_probe")


def data_needed(scale: Scale, groups: Sequence[str]) -> dict[str, list[str]]:
    """Data source -> the groups that read it (fashion_mnist, kjv_text, speech)."""
    need: dict[str, list[str]] = defaultdict(list)
    source = {"mlp": "fashion_mnist", "resnet": "fashion_mnist", "vit": "fashion_mnist"}
    source |= {"gpt_nano": "kjv_text", "mp_senet": "speech"}
    for group, specs in plan_runs(scale, groups).items():
        for src in sorted({source[s.arch] for s in specs if s.data == "real"}):
            need[src].append(group)
    for group in groups:
        if group in _SPEECH_GROUPS and group not in need["speech"]:
            need["speech"].append(group)
    if "early" in groups and "fashion_mnist" in " ".join(scale.early_training_only):
        need["fashion_mnist"].append("early")
    return {k: v for k, v in need.items() if v}


def check_data(scale: Scale, groups: Sequence[str]) -> None:
    """Load each data source the planned groups read, before any run: PipelineStopped lists what
    is missing, which groups need it, and `make data` (the Debian packages)."""
    from empirics.data import DataUnavailable

    def fashion() -> None:
        from empirics.data.images import load_fashion_mnist

        load_fashion_mnist("train")

    def kjv() -> None:
        from empirics.data.text import load_kjv_text

        load_kjv_text()

    def speech() -> None:
        from empirics.data.speech import load_clean_corpus, load_heldout_corpus

        load_heldout_corpus()
        load_clean_corpus()

    loaders = {"fashion_mnist": fashion, "kjv_text": kjv, "speech": speech}
    missing = []
    for src, users in data_needed(scale, groups).items():
        try:
            loaders[src]()
        except DataUnavailable as exc:
            missing.append(f"{src} (groups {', '.join(users)}): {exc}")
    if missing:
        raise PipelineStopped(
            "data unavailable, so no run was started: "
            + "; ".join(missing)
            + ". Install the offline Debian data packages with `make data` (as root), or leave "
            "these groups out with --only"
        )


def _stop_if_none_completed(group: str, index: dict[str, Any], total: int) -> None:
    """A group that completed none of its runs stops the pipeline with its first run's reason:
    what follows would only fail the same way, further from the cause."""
    runs = [e for e in index["runs"] if e.get("in_grid", True)]
    if total and not any(e.get("status") == "completed" for e in runs):
        first = next((e for e in runs if e.get("message")), runs[0] if runs else {})
        reason = first.get("message") or first.get("status") or "no run was recorded"
        log = f" (log: {first['log']})" if first.get("log") else ""
        raise PipelineStopped(
            f"{group}: 0/{total} runs completed; the first, {first.get('run', '?')}, "
            f"{first.get('status', 'did not run')}: {reason}{log}"
        )


def run(
    scale: Scale,
    *,
    groups: Sequence[str] = GROUPS,
    jobs: int = 2,
    root: Path = ROOT,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Train every planned group (resuming), run the Monte Carlo and C6 sweeps, aggregate."""
    sroot = scale_root(scale, root)
    timing: dict[str, float] = {}
    check_data(scale, groups)
    plans = plan_runs(scale, groups)
    for group in (g for g in groups if g in plans):  # in the order asked for
        specs = plans[group]
        t0 = time.perf_counter()
        index = run_group(group, specs, scale, sroot, jobs, cluster or scale.cluster)
        timing[group] = time.perf_counter() - t0
        bad = [e["run"] for e in index["runs"] if e.get("status") != "completed"]
        print(f"{group}: {len(specs) - len(bad)}/{len(specs)} runs completed", flush=True)
        _stop_if_none_completed(group, index, len(specs))
    if "early" in groups:
        t0 = time.perf_counter()
        run_early(scale, sroot, jobs)
        timing["early"] = time.perf_counter() - t0
    if "theory" in groups:
        t0 = time.perf_counter()
        run_theory(scale, sroot)
        timing["theory"] = time.perf_counter() - t0
    if "mp_probe" in groups:
        t0 = time.perf_counter()
        run_mp_probe(scale, sroot)
        timing["mp_probe"] = time.perf_counter() - t0
    # Wall times are informative only; nothing the pipeline computes depends on them.
    prev = sroot / "timing.json"
    old = json.loads(prev.read_text()) if prev.exists() else {}
    atomic_write_json(prev, {**old, **timing})
    return {"timing": timing, "written": {k: str(v) for k, v in aggregate(scale, root).items()}}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m empirics.experiments",
        usage="%(prog)s {run,aggregate,plan} [--scale quick|full] [--only G,G] [options]",
        description=__doc__,
    )
    ap.add_argument("command", choices=("run", "aggregate", "plan"))
    ap.add_argument("--scale", default="quick", help=f"one of {', '.join(SCALES)}")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"groups: {', '.join(GROUPS)}")
    ap.add_argument("--jobs", type=int, default=2)
    # --out as the other entry points spell it; --root, its former spelling, still works.
    ap.add_argument("--out", "--root", dest="root", type=Path, default=ROOT)
    ap.add_argument("--cluster", help="submitit executor: local | slurm | debug (default: scale's)")
    args = ap.parse_args(argv)
    if args.scale not in SCALES:
        ap.error(f"--scale: unknown value {args.scale!r}; valid: {', '.join(SCALES)}")
    try:
        groups = split_list(args.only, "--only")
    except InputError as exc:
        ap.error(str(exc))
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        ap.error(f"--only: unknown group(s) {', '.join(unknown)}; valid: {', '.join(GROUPS)}")
    if args.jobs < 1:
        ap.error(f"--jobs: expected an integer >= 1, got {args.jobs}")
    scale = SCALES[args.scale]
    if args.command == "plan":
        plans = plan_runs(scale, groups)
        for g, specs in plans.items():
            print(f"{g}: {len(specs)} runs")
        if "c10" in groups:
            print(f"c10 configurations: {len(c10_configurations(scale))}")
        return 0
    if args.command == "aggregate":
        sroot = scale_root(scale, args.root)
        found = [p for p in (sroot / "sweeps", sroot / "early_training") if p.is_dir()]
        found += [p for p in (sroot / "mp_senet_probe.json",) if p.is_file()]
        if not found:
            ap.error(
                f"--out: {str(sroot)!r} holds no experiment results of scale {scale.name!r} "
                "(no sweeps/, early_training/ or mp_senet_probe.json), so there is nothing to "
                f"aggregate; run `python -m empirics.experiments run --scale {scale.name} "
                f"--out {args.root}` first"
            )
        for name, path in aggregate(scale, args.root).items():
            print(f"{name}: {path}")
        return 0
    try:
        result = run(scale, groups=groups, jobs=args.jobs, root=args.root, cluster=args.cluster)
    except PipelineStopped as exc:
        print(f"{ap.prog}: stopped: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:  # the sweep cancelled its jobs; finished runs are kept
        signum = int(getattr(exc, "signum", 2) or 2)
        print("interrupted: finished runs are kept; rerun the same command to resume")
        return 128 + signum
    for name, path in result["written"].items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "SCALES",
    "Scale",
    "aggregate",
    "cliff_analysis",
    "hinge_fit",
    "holm",
    "mean_ci",
    "paired",
    "plan_runs",
    "run",
    "sign_flip_p",
]
