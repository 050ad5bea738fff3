"""Monte Carlo columns of the claims ledger: which estimate answers which ledger id.

Called by `python -m empirics.ledger.verify` through `montecarlo_for_entry`; ids follow DESIGN.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from empirics.activations import parse_activation
from empirics.montecarlo.estimators import (
    c1_config,
    drift_coefficient_config,
    estimate_conditional_mean,
    estimate_drift_coefficient,
    estimate_effective_weights,
    estimate_first_step,
)
from empirics.montecarlo.sampler import NetConfig
from empirics.stats import Estimate, SignTest
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


def first_step_config(
    activation: Activation | str, loss: str, inputs: str = "gaussian"
) -> NetConfig:
    """The one-hidden-layer network of the C2-C5 rows: 16 inputs, 64 units, 10 outputs, 16
    inputs per network, Var W = 1/fan_in, zero biases. With inputs on the sphere of radius
    sqrt(16) every pre-activation is exactly N(0, 1), the law the symbolic side integrates
    against at s = 1 (C2-C4); C5 uses Gaussian inputs, or uniform ones for non-negative inputs."""
    return NetConfig(
        activation=activation,
        loss=loss,
        d_in=16,
        widths=(64,),
        n_out=10,
        inputs_per_net=16,
        inputs=inputs,
        w_gain=1.0,
    )


def _conditional_config(activation: Activation, loss: str) -> NetConfig:
    return first_step_config(activation, loss, "sphere")


def _c5_config(activation: Activation, loss: str, nonneg: bool) -> NetConfig:
    return first_step_config(activation, loss, "uniform" if nonneg else "gaussian")


def montecarlo_config_for_entry(
    entry_id: str, activation: str | None = None, loss: str | None = None
) -> dict[str, Any] | None:
    """The network family behind an entry's estimate (for the ledger's notes), or None."""
    act, lss = parse_activation(activation or DEFAULT_ACTIVATION), loss or DEFAULT_LOSS
    if entry_id.startswith("C1."):
        return c1_config(activation=act).to_dict()
    if entry_id in ("C2.g_pos", "C2.g_neg"):
        return _conditional_config(act, "mse").to_dict()
    if entry_id in ("C3.g_pos", "C3.g_neg"):
        return _conditional_config(act, "cross_entropy").to_dict()
    if entry_id == "C4.D":
        return drift_coefficient_config(act, 1.0).to_dict()
    if entry_id.startswith("C5.first_step."):
        return _c5_config(act, lss, entry_id.endswith(".nonneg")).to_dict()
    return None


def sample_size(entry_id: str) -> int:
    """The number of i.i.d. units behind a ledger id's estimate (fixed, never from time)."""
    family = entry_id.split(".")[0]
    if family not in LEDGER_SAMPLES:
        raise ValueError(f"no Monte Carlo sample size for ledger id {entry_id!r}")
    return LEDGER_SAMPLES[family]


def _estimate(
    entry_id: str,
    act: Activation,
    lss: str,
    n_networks: int,
    test: SignTest,
    generator: torch.Generator,
) -> Estimate | None:
    common: dict[str, Any] = {"n_networks": n_networks, "test": test, "generator": generator}
    if entry_id in ("C1.mean", "C1.diag", "C1.offdiag"):
        quantity = entry_id.split(".")[1]
        return estimate_effective_weights(c1_config(activation=act), targets=(quantity,), **common)[
            quantity
        ]
    conditional: dict[str, Callable[[], Estimate]] = {
        f"{claim}.g_{side}": (
            lambda claim=claim, side=side: estimate_conditional_mean(
                _conditional_config(act, "mse" if claim == "C2" else "cross_entropy"),
                side,
                **common,
            )
        )
        for claim in ("C2", "C3")
        for side in ("pos", "neg")
    }
    if entry_id in conditional:
        return conditional[entry_id]()
    if entry_id == "C4.D":
        return estimate_drift_coefficient(act, 1.0, **common)
    if entry_id.startswith("C5.first_step."):
        rest = entry_id.removeprefix("C5.first_step.")
        quantity, _, variant = rest.partition(".")
        if quantity not in ("b", "W") or variant not in ("", "nonneg"):
            return None
        cfg = _c5_config(act, lss, variant == "nonneg")
        return estimate_first_step(cfg, 1.0, targets=(quantity,), **common)[quantity]
    return None


def montecarlo_for_entry(
    entry_id: str,
    activation: str | None,
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
    loss)`.
    """
    if entry_id.split(".")[0] not in LEDGER_SAMPLES:
        return None
    act, lss = parse_activation(activation or DEFAULT_ACTIVATION), loss or DEFAULT_LOSS
    n = sample_size(entry_id) if n_networks is None else n_networks
    est = _estimate(entry_id, act, lss, n, SignTest(alpha=alpha), generator)
    return None if est is None else est.ledger_dict()
