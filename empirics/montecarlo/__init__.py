"""Monte Carlo twins of the theory: batched random networks, estimates with CIs, sign tests.

Run one estimate with `python -m empirics.montecarlo QUANTITY [options]` (see `--help`); the
claims ledger calls `montecarlo_for_entry`.
"""

from __future__ import annotations

from empirics.montecarlo.estimators import (
    c1_config,
    drift_coefficient_config,
    estimate_conditional_mean,
    estimate_drift_coefficient,
    estimate_effective_weights,
    estimate_first_step,
    estimate_g_curve,
    estimate_net_drift,
    run_sequential,
)
from empirics.montecarlo.ledger import ENTRY_IDS, montecarlo_config_for_entry, montecarlo_for_entry
from empirics.montecarlo.sampler import Draw, NetConfig, activation_pair, draw, effective_weights
from empirics.stats import Estimate, RatioAccumulator, SignTest, fixed_interval

__all__ = [
    "ENTRY_IDS",
    "Draw",
    "Estimate",
    "NetConfig",
    "RatioAccumulator",
    "SignTest",
    "activation_pair",
    "c1_config",
    "draw",
    "drift_coefficient_config",
    "effective_weights",
    "estimate_conditional_mean",
    "estimate_drift_coefficient",
    "estimate_effective_weights",
    "estimate_first_step",
    "estimate_g_curve",
    "estimate_net_drift",
    "fixed_interval",
    "montecarlo_config_for_entry",
    "montecarlo_for_entry",
    "run_sequential",
]
