"""The symbolic theory of the companion: registry, derivations (`derive_*`) and predictions
(`predict_*` -> value, sign, method). Sympy and mpmath only; never torch. Library package."""

from __future__ import annotations

from theory.certify import interval_sign, sign_on_side
from theory.drift import (
    derive_drift_coefficient,
    drift_coefficient_numeric,
    parity,
    predict_drift_coefficient,
)
from theory.effective import (
    C1_REFERENCE,
    EffectiveConfig,
    derive_gate_moments,
    expected_norm,
    predict_c1,
)
from theory.first_step import (
    INPUT_CLASSES,
    predict_bias_drift,
    predict_symmetric_mean,
    predict_weight_drift,
)
from theory.gradient import (
    check_mse_formula,
    derive_expected_gradient,
    derive_mse_expected_gradient,
    drift_product,
    predict_gradient_sign,
    predict_hessian_factor,
)
from theory.signs import METHODS, SIGNS, Piece, Prediction

__all__ = [
    "C1_REFERENCE",
    "INPUT_CLASSES",
    "METHODS",
    "SIGNS",
    "EffectiveConfig",
    "Piece",
    "Prediction",
    "check_mse_formula",
    "derive_drift_coefficient",
    "derive_expected_gradient",
    "derive_gate_moments",
    "derive_mse_expected_gradient",
    "drift_coefficient_numeric",
    "drift_product",
    "expected_norm",
    "interval_sign",
    "parity",
    "predict_bias_drift",
    "predict_c1",
    "predict_drift_coefficient",
    "predict_gradient_sign",
    "predict_hessian_factor",
    "predict_symmetric_mean",
    "predict_weight_drift",
    "sign_on_side",
]
