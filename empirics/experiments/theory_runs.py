"""The pipeline's groups that are not training runs: the Monte Carlo beside the theory (D(σ, s),
g(p) curves, the first step, C1 against depth), the MP-SENet loss-term probe and C6's
early-training sweep. Each calls its module's functions and writes under the scale's root.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from empirics.experiments.plan import DRIFT_ACTS, THEORY_ACTS, Scale
from empirics.outputs import RecordWriter, atomic_write_json, provenance
from empirics.stats.seeds import mean_ci

if TYPE_CHECKING:
    from theory.registry import Activation


def run_theory(scale: Scale, root: Path) -> None:
    """D(σ, s) by a fixed-size Monte Carlo beside quadrature, and g(p) curves for both losses and
    both init laws (fixed network counts), under root/theory/."""
    import torch

    from empirics.activations import parse_activation, torch_derivative, torch_fn
    from theory.drift import drift_coefficient_numeric

    gen = torch.Generator().manual_seed(12345)
    z = torch.randn(scale.d_samples, generator=gen, dtype=torch.float64)
    rows = []
    for act in map(parse_activation, THEORY_ACTS):
        f, df = torch_fn(act), torch_derivative(act)
        for s in scale.d_stds:
            p = s * z
            v = f(p) * df(p)
            mean, se = float(v.mean()), float(v.std() / math.sqrt(v.numel()))
            d_quad, err = drift_coefficient_numeric(act, float(s))
            rows.append(
                {
                    "activation": act.spec,
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
        run_g_curve(parse_activation(act), loss, init, scale.g_networks, out)
    quadrature = {r["activation"]: (r["theory"], r["theory_err"]) for r in rows if r["s"] == 1.0}
    run_first_step(scale, root, quadrature)
    run_c1_depth(scale, root)


def run_g_curve(act: Activation, loss: str, init: str, n_networks: int, out: Path) -> None:
    """g(p) = E[∂ℓ/∂p | p] at initialisation on the Monte Carlo's default network and bins
    (`empirics.montecarlo.cli.estimate`, seed 0), written as `python -m empirics.montecarlo
    g_curve` writes it: out/config.json, records.csv (per bin mean, stderr, ci_lo, ci_hi, n) and
    summary.json."""
    import torch

    from empirics.montecarlo.cli import estimate
    from empirics.montecarlo.sampler import NetConfig

    cfg = NetConfig(activation=act, loss=loss, init=init).validate()
    run = f"g_curve:{act.name}:{loss}"
    settings = {"quantity": "g_curve", "activation": [act.spec], "loss": loss, "init": init}
    atomic_write_json(
        out / "config.json",
        {
            "args": settings | {"n_networks": n_networks, "seed": 0},
            "configs": {act.name: cfg.to_dict()},
            "provenance": provenance(cfg.device),
        },
    )
    start = time.perf_counter()
    with RecordWriter(out / "records.csv", run=run) as writer:
        ests = estimate(
            "g_curve", cfg, generator=torch.Generator().manual_seed(0), n_networks=n_networks,
            writer=writer,
        )  # fmt: skip
    summary = {run: {k: e.to_dict() for k, e in ests.items()}}
    atomic_write_json(
        out / "summary.json", {"seconds": time.perf_counter() - start, "estimates": summary}
    )


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
    the C2-C4 rows (`first_step_network` with inputs on the sphere: pre-activations exactly
    N(0, 1)):
    theory (MSE: E[Δb_i] = -lr K s_2² D(σ, 1), D by quadrature; cross-entropy: sign only), the
    Monte Carlo estimator (`estimate_first_step`), and the batched trainer of early training
    (torch.optim.SGD on `first_step_networks` networks, the realised update). Writes
    root/theory/first_step.json."""
    import torch

    from empirics.montecarlo.early_config import EarlyConfig
    from empirics.montecarlo.early_kernel import train_early
    from empirics.montecarlo.estimators import estimate_first_step
    from empirics.montecarlo.presets import first_step_network
    from empirics.stats.estimates import SignTest
    from theory.drift import drift_coefficient_numeric

    rows = []
    n = scale.first_step_networks
    for loss in ("mse", "cross_entropy"):
        for i, act in enumerate(FIRST_STEP_ACTS):
            cfg = first_step_network(act, loss, "sphere")  # p ~ N(0, 1) exactly
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
                for k, v in first_step_network("relu", "mse", "sphere").to_dict().items()
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
    from empirics.stats.estimates import SignTest
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


def run_early(scale: Scale, root: Path, jobs: int = 1) -> None:
    """C6: the early-training persistence sweep (its own batched trainer): every optimizer at
    its learning rates (`LR_GRID`) for the scale's activations, losses, input laws and seeds,
    `jobs` runs at a time with one torch thread each (the thread count is recorded in its
    config.json). The grid resumes by itself; it writes horizons.json beside its runs."""

    from empirics.montecarlo.early_config import EarlyConfig
    from empirics.montecarlo.early_grid import grid, run_grid

    base = EarlyConfig(steps=scale.early_training_steps, n_networks=scale.early_training_networks)
    configs = [
        cfg
        for data in scale.early_training_data
        for cfg in grid(
            base.replace(data=data),
            activations=scale.early_training_activations,
            losses=scale.early_training_losses,
            seeds=scale.early_training_seeds,
        )
    ]
    out = root / "early_training"  # run_grid checks memory before it writes anything
    results = run_grid(configs, out, jobs=jobs, threads=1, progress=False)
    print(f"early: {len(results)}/{len(configs)} runs finished; wrote {out}/horizons.json")
