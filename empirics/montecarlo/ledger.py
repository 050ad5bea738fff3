"""Monte Carlo columns of the claims ledger: which estimate answers which ledger id.

Called by `python -m empirics.ledger.verify` through `montecarlo_for_entry`; ids follow DESIGN.md.
"""

from __future__ import annotations

from typing import Any

import torch

from empirics.activations import parse_activation
from empirics.montecarlo.estimators import (
    estimate_conditional_mean,
    estimate_drift_coefficient,
    estimate_effective_weights,
    estimate_first_step,
)
from empirics.montecarlo.presets import c1_config, drift_coefficient_config, first_step_network
from empirics.montecarlo.sampler import NetConfig
from empirics.stats.estimates import Estimate, SignTest
from theory.registry import Activation

DEFAULT_ACTIVATION = "relu"
DEFAULT_LOSS = "mse"
# Sub-ids of C5: `.nonneg` uses inputs uniform on [0, 1] (non-negative data), the plain ids use
# zero-mean Gaussian inputs.
# Units per ledger row: networks (C1, C5) or crossed-design blocks of 16 x 16 networks (C2-C4).
# Chosen so that a row costs about 0.1 s on one CPU thread and the per-network statistics'
# means are close enough to normal for the Student-t test (`make calibrate` checks it).
LEDGER_SAMPLES = {"C1": 4096, "C2": 1024, "C3": 1024, "C4": 1024, "C5": 4096}
ENTRY_IDS = (
    "C1.mean",
    "C1.diag",
    "C1.offdiag",
    "C2.g_pos",
    "C2.g_neg",
    "C3.g_pos",
    "C3.g_neg",
    "C4.D",
    "C5.first_step.b",
    "C5.first_step.W",
    "C5.first_step.b.nonneg",
    "C5.first_step.W.nonneg",
)


def _entry_config(entry_id: str, act: Activation, lss: str) -> NetConfig | None:
    """The network family behind a ledger id (C2/C3 on the sphere, C5 with Gaussian or uniform
    inputs, C1 the depth-3 ReLU MLP, C4 the drift coefficient's networks), or None."""
    claim = entry_id.split(".")[0]
    if entry_id in ("C2.g_pos", "C2.g_neg", "C3.g_pos", "C3.g_neg"):
        return first_step_network(act, "mse" if claim == "C2" else "cross_entropy", "sphere")
    if entry_id.startswith("C5.first_step."):
        inputs = "uniform" if entry_id.endswith(".nonneg") else "gaussian"
        return first_step_network(act, lss, inputs)
    if claim == "C1":
        return c1_config(activation=act)
    if entry_id == "C4.D":
        return drift_coefficient_config(act, 1.0)
    return None


def montecarlo_config_for_entry(
    entry_id: str, activation: Activation | str | None = None, loss: str | None = None
) -> dict[str, Any] | None:
    """The network family behind an entry's estimate (for the ledger's notes), or None."""
    act = parse_activation(activation or DEFAULT_ACTIVATION)
    cfg = _entry_config(entry_id, act, loss or DEFAULT_LOSS)
    return None if cfg is None else cfg.to_dict()


def sample_size(entry_id: str) -> int:
    """The number of i.i.d. units behind a ledger id's estimate (fixed, never from time)."""
    family = entry_id.split(".")[0]
    if family not in LEDGER_SAMPLES:
        raise ValueError(f"no Monte Carlo sample size for ledger id {entry_id!r}")
    return LEDGER_SAMPLES[family]


def _estimate(entry_id: str, cfg: NetConfig, **common: Any) -> Estimate | None:
    """The estimate answering a ledger id on its network family `cfg`, or None."""
    claim, _, rest = entry_id.partition(".")
    if entry_id in ("C1.mean", "C1.diag", "C1.offdiag"):
        return estimate_effective_weights(cfg, targets=(rest,), **common)[rest]
    if claim in ("C2", "C3") and rest in ("g_pos", "g_neg"):
        return estimate_conditional_mean(cfg, rest.removeprefix("g_"), **common)
    if entry_id == "C4.D":
        return estimate_drift_coefficient(cfg.activation, 1.0, **common)
    quantity, _, variant = rest.removeprefix("first_step.").partition(".")
    if rest.startswith("first_step.") and quantity in ("b", "W") and variant in ("", "nonneg"):
        return estimate_first_step(cfg, 1.0, targets=(quantity,), **common)[quantity]
    return None


def montecarlo_for_entry(
    entry_id: str,
    activation: Activation | str | None,
    loss: str | None,
    *,
    generator: torch.Generator,
    n_networks: int | None = None,
    alpha: float = 1e-3,
) -> dict | None:
    """{"mean", "stderr", "n", "ci": [lo, hi], "sign"} for a ledger id, or None if not estimated.

    Ids: C1.mean / C1.diag / C1.offdiag (ReLU MLP of depth 3, layer 1); C2.g_pos / C2.g_neg (MSE)
    and C3.g_pos / C3.g_neg (cross-entropy): E[dl/dp | p > 0] / | p < 0 with p ~ N(0, 1);
    C4.D: D(sigma, 1); C5.first_step.b / .W (Gaussian inputs) and .b.nonneg / .W.nonneg (inputs
    uniform on [0, 1]): mean change of b / W of layer 1 after one SGD step with lr = 1. `n` counts
    the i.i.d. units the standard error is taken over: networks, or for C2-C4 blocks of the
    crossed design (each block pairs 16 output layers with 16 inputs). The sign comes from the
    one-look `SignTest` at false-sign rate `alpha` on `n_networks` units (default
    `sample_size(entry_id)`); `zero` only when every sample is exactly 0 (e.g. relu on p < 0).
    The network family behind each id is `montecarlo_config_for_entry(entry_id, activation,
    loss)`; the activation (object or spec) is parsed once, here.
    """
    if entry_id.split(".")[0] not in LEDGER_SAMPLES:
        return None
    act = parse_activation(activation or DEFAULT_ACTIVATION)
    cfg = _entry_config(entry_id, act, loss or DEFAULT_LOSS)
    if cfg is None:
        return None
    n = sample_size(entry_id) if n_networks is None else n_networks
    test = SignTest(alpha=alpha)
    est = _estimate(entry_id, cfg, n_networks=n, test=test, generator=generator)
    return None if est is None else est.ledger_dict()
