"""`make calibrate`: replay the ledger's null statistics; measure each sign test's false-sign rate.

Run: `python -m empirics.ledger.calibrate [--replays 2000] [--out results/calibrate]`. Every
statistic
whose true value is exactly 0 in the ledger is drawn `replays` times at the ledger's own sample
size and design; the observed rates of declaring a sign (two-sided, and per side) are printed with
Clopper-Pearson 95% intervals beside the nominal rate. Resumable: finished groups are kept.
The property suite's nulls (tests/properties/checks.py) are replayed beside them,
`--property-replays` times (default 400, about 6 minutes on one core: 200 took 171 s).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from empirics.ledger.rows import LEDGER_ALPHA
from empirics.montecarlo.estimators import (
    estimate_drift_coefficient,
    estimate_effective_weights,
    estimate_first_step,
)
from empirics.montecarlo.ledger import sample_size
from empirics.montecarlo.presets import c1_config, first_step_network
from empirics.outputs import REPO_ROOT, atomic_write_json, provenance
from empirics.stats.estimates import Estimate, SignTest
from theory.registry import BUILTIN_ACTIVATIONS, Activation, get_activation

DEFAULT_OUT = REPO_ROOT / "results" / "calibrate"
# The property suite's nulls are replayed fewer times than the ledger's: each replay draws and
# tests a whole configuration (measured cost in the module docstring).
PROPERTY_REPLAYS = 400


def ledger_rows() -> int:
    """Monte Carlo rows of `make verify` (C1's three, 13 per built-in activation: C2 and C3 on
    both sides, C4, C5's four first-step rows under two losses; plus the issue-9 rows); each is
    tested at LEDGER_ALPHA / rows."""
    from empirics.ledger import depth as ledger_depth

    extra = sum(ledger_depth.runs_montecarlo(e) for e in ledger_depth.depth_entries())
    return 3 + 13 * len(BUILTIN_ACTIVATIONS) + extra


# A statistic that must not be decided: its t is recorded, so every level is read off afterwards.
_NEVER = SignTest(alpha=1e-12)


@dataclass(frozen=True)
class NullGroup:
    """Null statistics drawn together (one draw of networks gives all of them)."""

    name: str
    ledger_ids: tuple[str, ...]
    units: int
    run: Callable[[int, torch.Generator], dict[str, Estimate]]
    # The property suite's nulls (tests/properties) are tested at their own stated rate and
    # replayed `--property-replays` times; None: a ledger row at LEDGER_ALPHA / rows.
    alpha_stated: float | None = None


def _c1(n: int, gen: torch.Generator) -> dict[str, Estimate]:
    est = estimate_effective_weights(
        c1_config(), targets=("mean", "offdiag"), n_networks=n, test=_NEVER, generator=gen
    )
    return {"C1.mean": est["mean"], "C1.offdiag": est["offdiag"]}


def _first_step(activation: Activation, loss: str, nonneg: bool, keys: Sequence[str]):
    suffix = ".nonneg" if nonneg else ""
    act = activation.name

    def run(n: int, gen: torch.Generator) -> dict[str, Estimate]:
        cfg = first_step_network(act, loss, "uniform" if nonneg else "gaussian")
        est = estimate_first_step(cfg, 1.0, n_networks=n, test=_NEVER, generator=gen)
        return {f"C5.first_step.{k}{suffix} [{act}/{loss}]": est[k] for k in keys}

    return run


def _drift(activation: Activation):
    act = activation.name

    def run(n: int, gen: torch.Generator) -> dict[str, Estimate]:
        est = estimate_drift_coefficient(act, 1.0, n_networks=n, test=_NEVER, generator=gen)
        return {f"C4.D [{act}]": est}

    return run


def _depth_row(entry_id: str, activation: str | None, loss: str | None):
    """A null row of the issue-9 ledger (`empirics.ledger.depth`), replayed through its own
    estimator at its own fixed sample size."""

    def run(n: int, gen: torch.Generator) -> dict[str, Estimate]:
        from empirics.ledger import depth as ledger_depth

        entry = next(
            e
            for e in ledger_depth.depth_entries()
            if (e.id, e.activation, e.loss) == (entry_id, activation, loss)
        )
        d = ledger_depth.depth_montecarlo(entry, generator=gen, alpha=_NEVER.alpha)
        est = Estimate(d["mean"], d["stderr"], d["n"], tuple(d["ci"]), d["sign"], 1.0)
        est.extra["dof"] = d["n"] - 1
        return {f"{entry_id} [{activation}/{loss}]": est}

    return run


def null_groups() -> list[NullGroup]:
    """Every kind of null the ledger tests: C1's exact zeros (skewed, heavy-tailed), C5's weight
    step with zero-mean inputs, the bias and weight steps of an odd sigma (with zero-mean and
    non-negative inputs), D for odd sigma (crossed design with a fitted control variate), and two
    issue-9 nulls: the conditional off-diagonal below two gating layers and Adam's sign-like
    first step for an odd sigma. (`units` 0: the row's own fixed size, reported by the row.)"""
    c5 = sample_size("C5.first_step.b")
    return [
        NullGroup("C1 (relu MLP, depth 3)", ("C1.mean", "C1.offdiag"), sample_size("C1.mean"), _c1),
        NullGroup(
            "C5 W, zero-mean inputs (relu, mse)",
            ("C5.first_step.W",),
            c5,
            _first_step(get_activation("relu"), "mse", False, ("W",)),
        ),
        NullGroup(
            "C5 W, zero-mean inputs (relu, cross-entropy)",
            ("C5.first_step.W",),
            c5,
            _first_step(get_activation("relu"), "cross_entropy", False, ("W",)),
        ),
        NullGroup(
            "C5 b and W, odd sigma (tanh, mse)",
            ("C5.first_step.b", "C5.first_step.W"),
            c5,
            _first_step(get_activation("tanh"), "mse", False, ("b", "W")),
        ),
        NullGroup(
            "C5 b and W, odd sigma, x >= 0 (tanh, cross-entropy)",
            ("C5.first_step.b.nonneg", "C5.first_step.W.nonneg"),
            c5,
            _first_step(get_activation("tanh"), "cross_entropy", True, ("b", "W")),
        ),
        NullGroup(
            "C4 D, odd sigma (tanh)", ("C4.D",), sample_size("C4.D"), _drift(get_activation("tanh"))
        ),
        NullGroup(
            "C4 D, odd sigma (identity)",
            ("C4.D",),
            sample_size("C4.D"),
            _drift(get_activation("identity")),
        ),
        NullGroup(
            "C1 off-diagonal given p, two gating layers (depth 4)",
            ("C1.depth4.cond_offdiag",),
            1024,
            _depth_row("C1.depth4.cond_offdiag", None, None),
        ),
        NullGroup(
            "C6 first Adam step of the biases, odd sigma (tanh, mse)",
            ("C6.first_step.b.adam",),
            0,
            _depth_row("C6.first_step.b.adam", "tanh", "mse"),
        ),
    ]


# ------------------------------------------------------------------ the property suite's nulls
# Each replay draws its own configuration (seeded by the replay), from the families where the
# per-network statistics are most skewed and heavy-tailed: squared activations, depth 3, gain 2,
# skewed (centred exponential) init, at the sample sizes the checks use. The statistics are the
# ones the checks test, centred at their exactly known value.
_NORMAL_DOF = 10**9  # the residual checks compare z with a normal quantile (K_SIGMA)


def _property_checks():
    """tests/properties/checks.py (the tests package is importable from the repository root,
    which `make calibrate` runs in)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.properties import checks

    return checks


def _as_estimate(mean: float, stderr: float, n: int, dof: int) -> Estimate:
    est = Estimate(mean, stderr, n, (mean - stderr, mean + stderr), "undetermined", 0.0)
    est.extra["dof"] = dof
    return est


def _residual_null(init_laws: tuple[str, ...], loss: str):
    """check_conditional_gradient's residual z statistics (weights p > 0, p < 0, sign(g)) at the
    ladder's first size; the configuration is tests/properties/hard_cells.hard_shape's draw."""

    def run(n: int, gen: torch.Generator) -> dict[str, Estimate]:
        checks = _property_checks()
        from tests.properties.hard_cells import HARD_ACTIVATIONS, hard_shape

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        shape, inputs = hard_shape(seed)
        act = HARD_ACTIVATIONS[seed % 2]
        init = init_laws[(seed // 2) % len(init_laws)]
        tests, _ = checks._conditional_residuals(act, loss, shape, init, inputs, seed, n)
        out = {}
        for name, (est, one_sided) in tests.items():
            if not one_sided:
                key = f"property residual {name.split('= ')[-1]} [{loss}/{'|'.join(init_laws)}]"
                out[key] = _as_estimate(est.mean, est.stderr, est.n, _NORMAL_DOF)
        return out

    return run


def _sign_decision_null(n: int, gen: torch.Generator) -> dict[str, Estimate]:
    """check_sign_decision's estimator and sign test on exact nulls: E[dl/dp] = 0 for an odd
    sigma under sign-symmetric init (the unit flip), with tanh or the heavy-tailed odd square
    x|x|, either loss, depth 1-3, gain 2."""
    from empirics.montecarlo.estimators import estimate_conditional_mean
    from empirics.montecarlo.sampler import NetConfig
    from theory import registry

    if "odd_square" not in registry.ACTIVATIONS:
        registry.register_activation("odd_square", "Max(x, 0)**2 - Max(-x, 0)**2")
    pick = torch.randint(0, 2**31 - 1, (6,), generator=gen).tolist()
    depth = 1 + pick[0] % 3
    cfg = NetConfig(
        activation=("tanh", "odd_square")[pick[1] % 2],
        loss=("mse", "cross_entropy")[pick[2] % 2],
        d_in=(8, 16, 32)[pick[3] % 3],
        widths=((16, 32, 64)[pick[4] % 3],) * depth,
        n_out=(2, 4, 10)[pick[5] % 3],
        inputs_per_net=16,
        init="gaussian",
        inputs="gaussian",
        labels="class",
        w_gain=2.0,
        layer=depth,
        dtype="float64",
        device="cpu",
    )
    est = estimate_conditional_mean(cfg, "all", generator=gen, n_networks=n, test=_NEVER)
    return {"property sign decision, odd sigma E[dl/dp]": est}


def _first_step_link_null(n: int, gen: torch.Generator) -> dict[str, Estimate]:
    """check_first_step_vs_montecarlo's z: a mean over 16 networks (the trainer's 16 seeds,
    which draw the same networks) against an independent 512-network estimate, tested with
    Student t on 15 degrees of freedom."""
    from empirics.montecarlo.estimators import estimate_first_step
    from empirics.montecarlo.sampler import NetConfig

    pick = torch.randint(0, 2**31 - 1, (5,), generator=gen).tolist()
    depth, width = 1 + pick[0] % 3, (32, 64)[pick[1] % 2]
    cfg = NetConfig(
        activation=("relu", "gelu", "silu", "tanh", "leaky_relu")[pick[2] % 5],
        loss="cross_entropy",
        d_in=(16, 32)[pick[3] % 2],
        widths=(width,) * depth,
        n_out=10,
        inputs_per_net=(32, 64)[pick[4] % 2],
        init="gaussian",
        w_gain=2.0,
        bias_std=0.0,
        inputs="gaussian",
        labels="class",
        layer=depth,
        dtype="float64",
        device="cpu",
        direct_preact=False,
    )
    few = estimate_first_step(cfg, 0.1, generator=gen, n_networks=n, test=_NEVER)
    many = estimate_first_step(cfg, 0.1, generator=gen, n_networks=512, test=_NEVER)
    out = {}
    for key in ("b", "W"):
        diff = few[key].mean - many[key].mean
        se = float(np.hypot(few[key].stderr, many[key].stderr))
        out[f"property first-step link Delta {key}"] = _as_estimate(diff, se, n, n - 1)
    return out


def _drift_link_null(n: int, gen: torch.Generator) -> dict[str, Estimate]:
    """check_drift_sign_vs_trainer's D = 0 case: the last hidden layer's bias drift over 3-10
    SGD steps, mean over n networks (the trainer's 12 seeds), Student t on n - 1 degrees of
    freedom; tanh and identity (odd: zero drift in expectation at every step), trained by the
    batched trainer of empirics.montecarlo.early_kernel."""
    from empirics.montecarlo.early_config import EarlyConfig
    from empirics.montecarlo.early_kernel import train_early

    pick = torch.randint(0, 2**31 - 1, (7,), generator=gen).tolist()
    depth = 1 + pick[0] % 3
    cfg = EarlyConfig(
        activation=("tanh", "identity")[pick[1] % 2],
        loss="cross_entropy",
        optimizer="sgd",
        lr=(0.02, 0.05)[pick[2] % 2],
        steps=3 + pick[3] % 8,
        n_networks=n,
        check_factor=1,
        d_in=(16, 32)[pick[4] % 2],
        widths=((32, 64)[pick[5] % 2],) * depth,
        n_out=10,
        batch_size=(32, 64)[pick[6] % 2],
        measure_batch=8,
        data="gaussian",
        init="gaussian",
        w_gain=2.0,
        bias_std=0.0,
        dtype="float64",
        device="cpu",
        seed=pick[0],
    )
    # per-update change of the layer's mean bias, [steps, n]; summed: the drift since init
    drift = train_early(cfg).per_network[(f"layer{depth}", "delta_b")].sum(axis=0)
    se = float(drift.std(ddof=1) / np.sqrt(n))
    return {"property drift link, D = 0": _as_estimate(float(drift.mean()), se, n, n - 1)}


def property_groups() -> list[NullGroup]:
    """The nulls of every statistic tests/properties/checks.py tests, at the checks' sizes."""
    alpha = _property_checks().ALPHA_CHECK
    first = _property_checks().POWER_LADDER[0]
    return [
        NullGroup(
            "property: closed-form residual, cross-entropy, squared sigma, depth 3, gain 2",
            ("tests/properties: check_conditional_gradient",),
            first,
            _residual_null(("gaussian",), "cross_entropy"),
            alpha,
        ),
        NullGroup(
            "property: closed-form residual, mse, squared sigma, skewed/uniform init",
            ("tests/properties: check_conditional_gradient",),
            first,
            _residual_null(("exponential", "uniform", "gaussian"), "mse"),
            alpha,
        ),
        NullGroup(
            "property: sign decision (odd sigma, tanh or x|x|)",
            ("tests/properties: check_sign_decision",),
            1024,
            _sign_decision_null,
            alpha,
        ),
        NullGroup(
            "property: first-step link (16 networks vs 512)",
            ("tests/properties: check_first_step_vs_montecarlo",),
            16,
            _first_step_link_null,
            alpha,
        ),
        NullGroup(
            "property: drift-sign link, D = 0 (12 networks)",
            ("tests/properties: check_drift_sign_vs_trainer",),
            12,
            _drift_link_null,
            alpha,
        ),
    ]


def replay(group: NullGroup, replays: int, seed: int, progress: bool = False) -> dict:
    """t statistics (mean / SE) and degrees of freedom of `replays` independent null runs."""
    t: dict[str, list[float]] = {}
    dof: dict[str, int] = {}
    for r in tqdm(range(replays), desc=group.name, disable=not progress, leave=False):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + r)
        for name, est in group.run(group.units, gen).items():
            value = est.mean / est.stderr if est.stderr > 0 else 0.0
            t.setdefault(name, []).append(value)
            dof[name] = int(est.extra.get("dof", est.n - 1))
            units = est.n
    return {"units": group.units or units, "replays": replays, "t": t, "dof": dof}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def rates(t: Sequence[float], dof: int, alpha: float) -> dict[str, float]:
    """Observed rates of declaring a sign at two-sided level alpha, with their CIs."""
    q = float(stats.t.isf(alpha / 2, max(dof, 1)))
    arr = np.asarray(t, dtype=np.float64)
    n = arr.size
    both, up, down = int((np.abs(arr) > q).sum()), int((arr > q).sum()), int((arr < -q).sum())
    lo, hi = clopper_pearson(both, n)
    return {
        "alpha": alpha,
        "declared": both,
        "rate": both / n,
        "ci": [lo, hi],
        "positive": up / n,
        "negative": down / n,
        "ok": lo <= alpha,  # the observed rate is at or below nominal within its CI
    }


def levels(alpha_row: float) -> list[float]:
    return [0.05, 0.01, 1e-3, alpha_row]


def report(results: dict[str, dict], alpha_row: float) -> tuple[str, bool]:
    lines = [
        f"{'statistic':52s} {'n':>5s} {'alpha':>9s} {'observed':>9s} {'95% CI':>21s} "
        f"{'+ side':>8s} {'- side':>8s} {'skew':>6s}",
    ]
    ok = True
    for group in results.values():
        # A property-suite null is judged at the rate its check states (K_SIGMA's two-sided
        # normal rate), a ledger row at its Bonferroni share.
        stated = group.get("alpha_stated") or alpha_row
        for name, t in group["t"].items():
            arr = np.asarray(t)
            skew = float(stats.skew(arr))
            for a in levels(stated):
                r = rates(t, group["dof"][name], a)
                ok = ok and r["ok"]
                lines.append(
                    f"{name:52s} {group['units']:5d} {a:9.3g} {r['rate']:9.4f} "
                    f"[{r['ci'][0]:.2e}, {r['ci'][1]:.2e}] {r['positive']:8.4f} "
                    f"{r['negative']:8.4f} {skew:6.2f}" + ("" if r["ok"] else "  ABOVE NOMINAL")
                )
    return "\n".join(lines), ok


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m empirics.ledger.calibrate", description=__doc__)
    ap.add_argument("--replays", type=int, default=2000, help="null runs per statistic")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", default=None, help="comma-separated group indices (0-based)")
    ap.add_argument(
        "--property-replays",
        type=int,
        default=PROPERTY_REPLAYS,
        help="null runs per property-suite statistic (tests/properties)",
    )
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    for flag, value in (("--replays", args.replays), ("--property-replays", args.property_replays)):
        if value < 10:
            print(f"error: {flag} must be >= 10, got {value}", file=sys.stderr)
            return 2
    groups = null_groups() + property_groups()
    chosen = range(len(groups))
    if args.only:
        try:
            chosen = [int(v) for v in args.only.split(",")]
            assert all(0 <= i < len(groups) for i in chosen)
        except (ValueError, AssertionError):
            print(f"error: --only must be indices in 0..{len(groups) - 1}", file=sys.stderr)
            return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {str(args.out)!r} is a file; give a directory", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # the ledger's own setting
    rows = ledger_rows()
    alpha_row = LEDGER_ALPHA / rows
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for i in chosen:
        g = groups[i]
        path = args.out / f"group{i}.json"
        saved = None
        if path.is_file():
            import json

            saved = json.loads(path.read_text())
        replays = args.replays if g.alpha_stated is None else args.property_replays
        if saved and saved.get("replays") == replays and saved.get("seed") == args.seed:
            results[g.name] = saved
            continue
        t0 = time.perf_counter()
        res = replay(g, replays, args.seed + i, progress=not args.no_progress)
        res |= {"seed": args.seed, "group": g.name, "ledger_ids": list(g.ledger_ids)}
        res |= {"alpha_stated": g.alpha_stated, "seconds": time.perf_counter() - t0}
        atomic_write_json(path, res | {"provenance": provenance("cpu")})
        results[g.name] = res
        print(f"{g.name}: {replays} replays done ({time.perf_counter() - start:.0f} s)")
    text, ok = report(results, alpha_row)
    print(text)
    print(
        f"\nnominal per-row rate in `make verify`: {LEDGER_ALPHA:g} / {rows} = "
        f"{alpha_row:.3g}; with {args.replays} replays the CI at that level shows only that the "
        "rate is not grossly above it. "
        + ("every statistic at or below nominal" if ok else "SOME STATISTIC ABOVE NOMINAL")
    )
    if any(groups[i].alpha_stated is not None for i in chosen):
        print(
            f"property-suite nulls (tests/properties/checks.py): stated per-assertion rate "
            f"{_property_checks().ALPHA_CHECK:.2g} (two-sided normal at K_SIGMA; Student t for "
            f"the trainer links); {args.property_replays} replays bound only the 0.05, 0.01 and "
            "1e-3 levels tightly, the stated level only grossly."
        )
    atomic_write_json(args.out / "report.json", {"ok": ok, "alpha_row": alpha_row})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
