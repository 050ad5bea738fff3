"""Monte Carlo twins of theory.depth (V below several gating layers, given p_l) and of the
first optimizer step under SGD, Adam and Muon (torch.optim). Fixed sample sizes; sign decisions
by the one-look `SignTest`. Library module; `empirics.ledger.depth` turns them into ledger rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from empirics.activations import torch_fn
from empirics.montecarlo.estimators import Stat, run_sequential
from empirics.montecarlo.sampler import (
    DTYPES,
    NetConfig,
    activation_pair,
    draw_inputs,
    init_network,
)
from empirics.stats.estimates import Estimate, SignTest

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "muon")


def fixed_preactivation_h(cfg: NetConfig, seed: int = 12345) -> torch.Tensor:
    """A fixed h_l = sigma(p_l) for the conditional moments: p_l drawn once from N(0, 1) with a
    seed of its own (so the conditioning vector is part of the configuration)."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(cfg.widths[cfg.layer - 1], generator=gen, dtype=torch.float64)
    h, _ = activation_pair(cfg.activation)(p)
    return h


def _upper_v(cfg: NetConfig, h: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """V = d out / d h_l for n fresh draws of layers l+1..L with h_l = h fixed: [n, K, n_l]."""
    dtype, device = DTYPES[cfg.dtype], cfg.device
    weights, biases = init_network(cfg, n, gen, first=cfg.layer + 1)
    act = activation_pair(cfg.activation)
    a = h.to(dtype=dtype, device=device).expand(n, 1, -1)  # [n, 1, n_l]
    gates = []
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        q = torch.baddbmm(b, a, w.transpose(1, 2))  # [n, 1, n_k]
        a, d = act(q)
        gates.append(d)
    m = weights[-1]  # [n, K, n_{L-1}]
    for w, d in zip(reversed(weights[:-1]), reversed(gates), strict=True):
        m = torch.bmm(m * d, w)  # [n, K, n_{k-1}]
    return m


def conditional_moment_sampler(cfg: NetConfig, h: torch.Tensor):
    """Per-network statistics of S = V^T V given h_l = h: mean diagonal entry ('diag'), mean
    off-diagonal entry ('offdiag'), and the h-weighted off-diagonal sum_{i != j} S_ij h_i h_j /
    sum_{i != j} h_i h_j ('offdiag_h', the direction in which a non-symmetric law shows)."""
    n_l = h.numel()
    hh = torch.outer(h, h)
    off_weight = hh - torch.diag(torch.diag(hh))
    w_total = float(off_weight.sum())

    def sample(n: int, gen: torch.Generator) -> Stat:
        v = _upper_v(cfg, h, n, gen)
        s = torch.bmm(v.transpose(1, 2), v).to(torch.float64)  # [n, n_l, n_l]
        tr = torch.diagonal(s, dim1=1, dim2=2).sum(-1)
        total = s.sum(dim=(1, 2))
        ones = torch.ones_like(tr)
        weighted = (s * off_weight.to(s.device)).sum(dim=(1, 2))
        out = {
            "diag": (tr, ones * n_l, bool((tr != 0).any())),
            "offdiag": (total - tr, ones * n_l * (n_l - 1), bool(((total - tr) != 0).any())),
        }
        if w_total != 0:
            out["offdiag_h"] = (weighted, ones * w_total, bool((weighted != 0).any()))
        return out

    return sample


def estimate_conditional_moments(
    cfg: NetConfig,
    h: torch.Tensor | None = None,
    *,
    generator: torch.Generator,
    n_networks: int = 2048,
    test: SignTest | None = None,
    targets: Sequence[str] = ("diag",),
) -> dict[str, Estimate]:
    """E[V^T V | h_l = h] entries (see `conditional_moment_sampler`) for cfg's layer l."""
    cfg = cfg.validate()
    h = fixed_preactivation_h(cfg) if h is None else h.to(torch.float64)
    if h.numel() != cfg.widths[cfg.layer - 1]:
        raise ValueError(f"h has {h.numel()} entries, layer {cfg.layer} has {cfg.widths}")
    est = run_sequential(
        cfg,
        lambda d: {},
        sampler=conditional_moment_sampler(cfg, h),
        targets=list(targets),
        test=test,
        n_networks=n_networks,
        generator=generator,
        chunk_networks=256,
    )
    for e in est.values():
        e.extra["config"] = cfg.to_dict()
        e.extra["h"] = [float(v) for v in h]
    return est


# ------------------------------------------------------------------ first step per optimizer


def first_step_sampler(cfg: NetConfig, optimizer: str, lr: float):
    """Per-network mean change of b_1 and W_1 (divided by lr) after one step of `optimizer` on
    the batch-mean loss of a one-hidden-layer network (cfg.widths has one entry)."""
    if len(cfg.widths) != 1:
        raise ValueError("the optimizer first step uses one hidden layer")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    fn = torch_fn(cfg.activation)  # differentiable (the ActPair detaches)
    dtype, device = DTYPES[cfg.dtype], cfg.device

    def sample(n: int, gen: torch.Generator) -> Stat:
        weights, biases = init_network(cfg, n, gen)
        x = draw_inputs(cfg.inputs, (n, cfg.inputs_per_net, cfg.d_in), gen, dtype, device)
        cls = torch.randint(0, cfg.n_out, (n, cfg.inputs_per_net), generator=gen, device=device)
        w0 = [w.clone() for w in weights[0].unbind(0)]  # n matrices [n_1, d_in]
        w1 = [w.clone().requires_grad_(True) for w in w0]
        b1 = biases[0].clone().requires_grad_(True)  # [n, 1, n_1]
        with torch.enable_grad():
            p = torch.baddbmm(b1, x, torch.stack(w1).transpose(1, 2))
            h = fn(p)
            out = torch.baddbmm(biases[1], h, weights[1].transpose(1, 2))
            if cfg.loss == "mse":
                y = torch.nn.functional.one_hot(cls, cfg.n_out).to(dtype)
                per_net = 0.5 * ((out - y) ** 2).sum(-1).mean(-1)
            else:
                logp = torch.log_softmax(out, dim=-1)
                per_net = -logp.gather(-1, cls.unsqueeze(-1)).squeeze(-1).mean(-1)
            per_net.sum().backward()  # networks are independent: each gets its own gradient
        if optimizer == "sgd":
            opts = [torch.optim.SGD([*w1, b1], lr=lr)]
        elif optimizer == "adam":
            opts = [torch.optim.Adam([*w1, b1], lr=lr, eps=1e-12)]
        else:
            opts = [
                torch.optim.Muon(w1, lr=lr, weight_decay=0.0),
                torch.optim.Adam([b1], lr=lr, eps=1e-12),
            ]
        for opt in opts:
            opt.step()
        with torch.no_grad():
            db = (b1 - biases[0]).sum(dim=(1, 2)).to(torch.float64) / lr
            dw = torch.stack([(a - b).sum() for a, b in zip(w1, w0, strict=True)])
            dw = dw.to(torch.float64) / lr
        ones = torch.ones_like(db)
        n_1 = cfg.widths[0]
        return {
            "b": (db, ones * n_1, bool((db != 0).any())),
            "W": (dw, ones * n_1 * cfg.d_in, bool((dw != 0).any())),
        }

    return sample


def estimate_optimizer_first_step(
    cfg: NetConfig,
    optimizer: str,
    *,
    generator: torch.Generator,
    lr: float = 1e-3,
    n_networks: int = 512,
    test: SignTest | None = None,
    targets: Sequence[str] = ("b", "W"),
) -> dict[str, Estimate]:
    """Mean first-step change of b_1 and W_1 per unit of lr under `optimizer`."""
    cfg = cfg.validate()
    est = run_sequential(
        cfg,
        lambda d: {},
        sampler=first_step_sampler(cfg, optimizer, lr),
        targets=list(targets),
        test=test,
        n_networks=n_networks,
        generator=generator,
        chunk_networks=128,
    )
    for e in est.values():
        e.extra["config"] = cfg.to_dict()
        e.extra["optimizer"] = optimizer
        e.extra["lr"] = lr
    return est
