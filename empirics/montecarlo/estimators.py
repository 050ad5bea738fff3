"""`estimate_*`: Monte Carlo twins of the theory's derivations, with sequential sign decisions.

Library module; the command line is `python -m empirics.montecarlo QUANTITY [options]`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from tqdm.auto import tqdm

from empirics.montecarlo.presets import c1_config, drift_coefficient_config
from empirics.montecarlo.sampler import (
    CONTROL,
    Draw,
    NetConfig,
    crossed_block_sums,
    draw,
    effective_weights,
)
from empirics.stats.estimates import Estimate, RatioAccumulator, SignTest, fixed_interval
from theory.registry import Activation

# name -> (per-network numerator, per-network denominator, any sample nonzero)
Stat = dict[str, tuple[torch.Tensor, torch.Tensor, bool]]
StatFn = Callable[[Draw], Stat]
LookHook = Callable[[int, dict[str, Estimate]], None]

# Per-chunk memory cap: elements of one [N, B, n] tensor (about 32 MB in float32).
_CHUNK_ELEMENTS = 8_000_000


def _chunk_networks(cfg: NetConfig, per_net_extra: int = 1) -> int:
    widest = max(cfg.sizes) * per_net_extra
    return max(1, _CHUNK_ELEMENTS // (cfg.inputs_per_net * widest))


def _chunk_blocks(cfg: NetConfig) -> int:
    widest = max(cfg.widths[0], cfg.v_per_block * cfg.n_out * 3)
    return max(1, _CHUNK_ELEMENTS // (cfg.inputs_per_net * widest))


def look_sizes(n_networks: int, looks: int) -> list[int]:
    """The fixed look schedule: N / 2^(L-1), ..., N / 2, N units (sizes below 2 are dropped).

    Fixed by the configuration (N, L) alone, never by elapsed time, so the same seed gives the
    same decisions on a quiet or a loaded machine."""
    if n_networks < 2:
        raise ValueError(f"n_networks must be >= 2 (a standard error needs two), got {n_networks}")
    if looks < 1:
        raise ValueError(f"looks must be >= 1, got {looks}")
    sizes = sorted({n_networks >> k for k in range(looks)})
    return [n for n in sizes if n >= 2]


def run_sequential(
    cfg: NetConfig,
    stat_fn: StatFn,
    *,
    targets: Sequence[str] | None = None,
    test: SignTest | None = None,
    n_networks: int = 4096,
    generator: torch.Generator,
    plain: bool = False,
    progress: bool = False,
    on_look: LookHook | None = None,
    chunk_networks: int | None = None,
    sampler: Callable[[int, torch.Generator], Stat] | None = None,
) -> dict[str, Estimate]:
    """Draw `n_networks` i.i.d. units, looking at the schedule `look_sizes(n, test.max_looks)`,
    and stop at the first look where every target's sign is decided by `test`. Returns an
    Estimate per statistic. `sampler(n, generator)`, when given, replaces
    `stat_fn(draw(...))` (n then counts its i.i.d. units, e.g. blocks of the crossed design).
    With the default single look this is a fixed-sample test at n = `n_networks`."""
    test = test or SignTest()
    sizes = look_sizes(n_networks, test.max_looks)
    chunk = chunk_networks or _chunk_networks(cfg, 3 if plain else 2)
    accs: dict[str, RatioAccumulator] = {}
    start = time.perf_counter()  # reported only, never used to decide anything
    drawn, looks, estimates = 0, 0, {}
    bar = tqdm(total=sizes[-1], desc="networks", unit="net", disable=not progress, leave=False)
    for goal in sizes:
        while drawn < goal:
            n = min(chunk, goal - drawn)
            if sampler is not None:
                stats_now = sampler(n, generator)
            else:
                stats_now = stat_fn(draw(cfg, n, generator, plain=plain))
            control = stats_now.pop(CONTROL, (None,))[0]
            for name, (num, den, nonzero) in stats_now.items():
                accs.setdefault(name, RatioAccumulator()).add(
                    num, den, any_nonzero=nonzero, control=control
                )
            drawn += n
            bar.update(n)
        looks += 1
        estimates = {
            name: acc.estimate(
                test.quantile(acc.dof),
                test.confidence,
                n_samples=0,
                looks=looks,
                method=test.describe(),
            )
            for name, acc in accs.items()
        }
        bar.set_postfix(looks=looks)
        if on_look is not None:
            on_look(looks, estimates)
        wanted = targets if targets is not None else list(estimates)
        if all(estimates[t].sign != "undetermined" for t in wanted):
            break
    bar.close()
    for name, est in estimates.items():
        est.extra["seconds"] = time.perf_counter() - start
        est.extra["networks"] = drawn
        est.extra["dof"] = accs[name].dof
    return estimates


def _masked(delta: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    picked = delta * mask
    num = picked.sum(dim=(1, 2))
    return num, mask.sum(dim=(1, 2)).to(num.dtype), bool((picked != 0).any())


def conditional_mean_stat(side: str, *, plain: bool = False) -> StatFn:
    """E[dl/dp | p > 0] ('pos'), | p < 0 ('neg') or unconditional ('all'); with `plain` the
    single-network version is estimated beside it (for the variance-reduction factor)."""
    if side not in ("pos", "neg", "all"):
        raise ValueError(f"side must be 'pos', 'neg' or 'all', got {side!r}")

    def stat(d: Draw) -> Stat:
        mask = (d.p > 0) if side == "pos" else (d.p < 0) if side == "neg" else torch.ones_like(d.p)
        mask = mask.to(d.delta.dtype)
        out = {f"g_{side}": _masked(d.delta, mask)}
        if plain and d.delta_plain is not None:
            out[f"g_{side}_plain"] = _masked(d.delta_plain, mask)
        return out

    return stat


def _vr_factor(est: dict[str, Estimate], name: str) -> float | None:
    """Variance-reduction factor of the antithetic pair at equal numbers of networks."""
    plain = est.get(f"{name}_plain")
    if plain is None or est[name].stderr == 0 or not math.isfinite(plain.stderr):
        return None
    return (plain.stderr / est[name].stderr) ** 2


def estimate_conditional_mean(
    cfg: NetConfig,
    side: str = "pos",
    *,
    generator: torch.Generator,
    test: SignTest | None = None,
    n_networks: int = 4096,
    measure_vr: bool = False,
    progress: bool = False,
    on_look: LookHook | None = None,
) -> Estimate:
    """E[dl/dp | p > 0] (side='pos') or | p < 0 ('neg') or E[dl/dp] ('all') at initialisation.

    With `measure_vr` the single-network (non-antithetic) estimate is computed from the same
    networks and the measured variance-reduction factor of the antithetic pair goes to
    `extra['vr_factor']` (both sides use the crossed design's control variate when it is on;
    `benchmarks.montecarlo_bench` reports the combined factor).
    """
    cfg = cfg.validate()
    plain = measure_vr and cfg.antithetic
    crossed = cfg.crossed
    est = run_sequential(
        cfg,
        conditional_mean_stat(side, plain=plain),
        sampler=(
            (lambda n, gen: crossed_block_sums(cfg, n, gen, side, plain=plain)) if crossed else None
        ),
        chunk_networks=_chunk_blocks(cfg) if crossed else None,
        targets=[f"g_{side}"],
        test=test,
        n_networks=n_networks,
        generator=generator,
        plain=plain,
        progress=progress,
        on_look=on_look,
    )
    main = est[f"g_{side}"]
    pairs = cfg.v_per_block if crossed else 1
    main.n_samples = main.extra["networks"] * pairs * cfg.inputs_per_net * cfg.widths[cfg.layer - 1]
    main.extra["design"] = "crossed" if crossed else "networks"
    if plain:
        main.extra["vr_factor"] = _vr_factor(est, f"g_{side}")
        main.extra["plain"] = est[f"g_{side}_plain"].ledger_dict()
    main.extra["config"] = cfg.to_dict()
    return main


def estimate_net_drift(cfg: NetConfig, **kw) -> Estimate:
    """The net drift E[dl/dp] over all units (the sign that moves biases on average)."""
    return estimate_conditional_mean(cfg, "all", **kw)


def estimate_drift_coefficient(
    activation: Activation | str, s: float = 1.0, *, generator: torch.Generator, **kw
) -> Estimate:
    """D(sigma, s) = E_{p ~ N(0, s^2)}[sigma(p) sigma'(p)], the net drift coefficient, estimated
    from random networks as E[dl/dp] / (K s_L^2) under MSE: the networks' own gradients, scaled
    by the output layer's variance (the one factor the MSE derivation predicts)."""
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"s must be finite and > 0, got {s}")
    cfg = drift_coefficient_config(activation, s).validate()
    est = estimate_net_drift(cfg, generator=generator, **kw)
    scale = cfg.n_out * cfg.weight_var(len(cfg.sizes) - 1)
    return _scaled(est, 1.0 / scale)


def _scaled(est: Estimate, c: float) -> Estimate:
    lo, hi = sorted((est.ci[0] * c, est.ci[1] * c))
    return replace(est, mean=est.mean * c, stderr=est.stderr * abs(c), ci=(lo, hi))


def estimate_g_curve(
    cfg: NetConfig,
    edges: Sequence[float],
    *,
    generator: torch.Generator,
    n_networks: int = 2048,
    confidence: float = 0.99,
    progress: bool = False,
) -> list[Estimate]:
    """g(p) = E[dl/dp | p in bin] on the bins between consecutive `edges` (to overlay the closed
    form); a fixed sample, pointwise intervals at `confidence`. extra['p_mean'] is E[p | bin]."""
    cfg = cfg.validate()
    e = torch.as_tensor(list(edges), dtype=torch.float64)
    if e.numel() < 2 or not bool((e[1:] > e[:-1]).all()):
        raise ValueError("edges must be at least two strictly increasing numbers")
    accs = [RatioAccumulator() for _ in range(e.numel() - 1)]
    p_accs = [RatioAccumulator() for _ in range(e.numel() - 1)]
    chunk = _chunk_networks(cfg, 2)
    done = 0
    bar = tqdm(total=n_networks, desc="g_curve", unit="net", disable=not progress, leave=False)
    while done < n_networks:
        n = min(chunk, n_networks - done)
        d = draw(cfg, n, generator)
        p64 = d.p.to(torch.float64)
        for j, acc in enumerate(accs):
            mask = ((p64 >= e[j].item()) & (p64 < e[j + 1].item())).to(d.delta.dtype)
            num, den, nonzero = _masked(d.delta, mask)
            acc.add(num, den, any_nonzero=nonzero)
            p_accs[j].add((p64 * mask).sum(dim=(1, 2)), mask.sum(dim=(1, 2)).to(torch.float64))
        done += n
        bar.update(n)
    bar.close()
    out = []
    for j, acc in enumerate(accs):
        est = fixed_interval(acc, confidence, method="fixed sample, pointwise interval")
        est.extra.update(
            lo_edge=float(e[j]), hi_edge=float(e[j + 1]), p_mean=p_accs[j].mean, networks=done
        )
        out.append(est)
    return out


def effective_weight_stat(cfg: NetConfig) -> StatFn:
    """C1: mean entry of v_i, mean |v_i|^2, mean <v_i, v_j> over pairs i != j."""
    n_l = cfg.widths[cfg.layer - 1]
    k_out, b = cfg.n_out, cfg.inputs_per_net

    def stat(d: Draw) -> Stat:
        v = effective_weights(cfg, d)  # [N, B, K, n_l]; column i is v_i
        diag = (v * v).sum(dim=(1, 2, 3))
        col_sum = v.sum(dim=3)  # [N, B, K]: sum_i v_i
        off = (col_sum * col_sum).sum(dim=(1, 2)) - diag
        ones = torch.ones_like(diag)
        return {
            "mean": (v.sum(dim=(1, 2, 3)), ones * (b * k_out * n_l), bool((v != 0).any())),
            "diag": (diag, ones * (b * n_l), bool((diag != 0).any())),
            "offdiag": (off, ones * (b * n_l * (n_l - 1)), bool((off != 0).any())),
        }

    return stat


def estimate_effective_weights(
    cfg: NetConfig | None = None,
    *,
    generator: torch.Generator,
    targets: Sequence[str] = ("diag",),
    **kw,
) -> dict[str, Estimate]:
    """Theorem 1.1: E[v_i] (as the mean entry), E|v_i|^2 and E<v_i, v_j> (i != j). The mean and
    off-diagonal are exactly 0 under sign-symmetric init, which no finite sample can decide: the
    sequential test stops on `targets` (by default the diagonal) and reports the others' CIs."""
    cfg = (cfg or c1_config()).validate()
    if cfg.widths[cfg.layer - 1] < 2:
        raise ValueError("the off-diagonal term needs a layer of width >= 2")
    est = run_sequential(
        cfg, effective_weight_stat(cfg), targets=list(targets), generator=generator, **kw
    )
    for e in est.values():
        e.extra["config"] = cfg.to_dict()
    return est


def first_step_stat(cfg: NetConfig, lr: float) -> StatFn:
    """One SGD step on the batch-mean loss: Delta b_i = -lr mean_b dl/dp_i, Delta W_ik =
    -lr mean_b dl/dp_i x_k (x the layer's input); averaged over units i (and inputs k)."""
    n_l, fan_in, b = cfg.widths[cfg.layer - 1], cfg.sizes[cfg.layer - 1], cfg.inputs_per_net

    def stat(d: Draw) -> Stat:
        per_input = d.delta.sum(dim=2)  # [N, B]: sum_i dl/dp_i
        db = -lr * per_input.sum(dim=1) / b
        dw = -lr * (per_input * d.layer_input.sum(dim=2)).sum(dim=1) / b
        ones = torch.ones_like(db)
        nz = bool((d.delta != 0).any())
        return {"b": (db, ones * n_l, nz), "W": (dw, ones * (n_l * fan_in), nz)}

    return stat


def estimate_first_step(
    cfg: NetConfig,
    lr: float = 1.0,
    *,
    generator: torch.Generator,
    targets: Sequence[str] = ("b", "W"),
    **kw,
) -> dict[str, Estimate]:
    """C5: E[Delta b] and E[Delta W] (mean entry) of layer `cfg.layer` after one SGD step at
    learning rate `lr` from initialisation."""
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0, got {lr}")
    cfg = cfg.validate()
    est = run_sequential(
        cfg, first_step_stat(cfg, lr), targets=list(targets), generator=generator, **kw
    )
    for e in est.values():
        e.extra["config"] = cfg.to_dict()
        e.extra["lr"] = lr
    return est
