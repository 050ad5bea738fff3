"""Named Monte Carlo networks: each network the ledger and the experiments refer to, written once.

Library module: `NetConfig` presets (the C1 network below gating layers, the C2-C5 first-step
network and its variants, Remark A.2's early-training network) and `depth_net`, the theory's
description (`theory.depth.DepthNet`) of a Monte Carlo network.
"""

from __future__ import annotations

from empirics.montecarlo.sampler import NetConfig
from theory.depth import DepthNet
from theory.registry import Activation


def c1_config(**overrides) -> NetConfig:
    """A depth-3 ReLU MLP (two hidden layers), zero biases, Gaussian init: C1 at layer 1."""
    base = dict(
        activation="relu",
        loss="mse",
        d_in=16,
        widths=(32, 32),
        n_out=4,
        inputs_per_net=8,
        w_gain=2.0,
        bias_std=0.0,
        layer=1,
    )
    base.update(overrides)
    return NetConfig(**base)


def drift_coefficient_config(
    activation: Activation | str, s: float = 1.0, **overrides
) -> NetConfig:
    """Networks whose layer-1 pre-activations are exactly N(0, s^2): inputs on the sphere of
    radius sqrt(d_in), Gaussian weights of variance s^2 / fan_in, no biases, MSE. A spec is
    parsed once, by NetConfig."""
    base = dict(
        activation=activation,
        loss="mse",
        d_in=16,
        widths=(64,),
        n_out=4,
        inputs_per_net=16,
        inputs="sphere",
        w_gain=s * s,
        bias_std=0.0,
        init="gaussian",
    )
    base.update(overrides)
    return NetConfig(**base)


# The C1 depth sweep: ReLU gating layers of width 32 above layer l, biases of std 0.3 (so that
# the event "all of layer l is dead" is not an atom of the law of h_l).
C1_GATED_WIDTH = 32
C1_GATED_BIAS_STD = 0.3


def depth_net(cfg: NetConfig) -> DepthNet:
    """The theory's description (`theory.depth.DepthNet`) of a Monte Carlo NetConfig."""
    sizes = (cfg.d_in, *cfg.widths)
    return DepthNet(
        widths=sizes,
        outputs=cfg.n_out,
        weight_var=tuple(cfg.w_gain / n for n in sizes),
        bias_var=(cfg.bias_std**2,) * len(sizes),
        layer=cfg.layer,
    )


def c1_gated(gating_layers: int, init: str = "gaussian") -> NetConfig:
    """The C1 network (`c1_config`, layer 1) with `gating_layers` ReLU layers above layer l, all
    of width 32, biases of std 0.3, weights from the law `init` (Theorem D1's depth sweep)."""
    return c1_config(
        widths=(C1_GATED_WIDTH,) * (gating_layers + 1), bias_std=C1_GATED_BIAS_STD, init=init
    )


def c1_dead_layer() -> NetConfig:
    """The C1 network with layer l of width 2 and zero biases: all of layer l is dead with
    probability 1/4, an atom the theory must carry."""
    return c1_config(widths=(2, 16, 16))


def first_step_network(
    activation: Activation | str, loss: str, inputs: str = "gaussian"
) -> NetConfig:
    """The one-hidden-layer network of the C2-C5 rows: 16 inputs, 64 units, 10 outputs, 16
    inputs per network, Var W = 1/fan_in, zero biases. With inputs on the sphere of radius
    sqrt(16) every pre-activation is exactly N(0, 1), the law the symbolic side integrates
    against at s = 1 (C2-C4); C5 uses Gaussian inputs, or uniform ones for non-negative inputs;
    the optimizer rows (C6) half-normal ones."""
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


def gated_gradient_network(
    activation: Activation | str, loss: str, depth: int, w_gain: float
) -> NetConfig:
    """The first-step network grown to `depth` layers (depth - 1 hidden layers of 64, layer l the
    first) on sphere inputs, so that p_1 ~ N(0, w_gain) exactly: Theorem D2's depth sweep."""
    return NetConfig(
        activation=activation,
        loss=loss,
        d_in=16,
        widths=(64,) * (depth - 1),
        n_out=10,
        inputs_per_net=16,
        inputs="sphere",
        w_gain=w_gain,
    )


def two_input_network(activation: Activation | str, init: str) -> NetConfig:
    """C5's weight step with zero-mean Gaussian inputs of dimension 2 under the init law `init`
    (MSE, 64 units, 10 outputs): the smallest input where |w| correlates with w_k for a skewed
    law."""
    return NetConfig(
        activation=activation,
        loss="mse",
        d_in=2,
        widths=(64,),
        n_out=10,
        inputs_per_net=16,
        inputs="gaussian",
        init=init,
    )


def remark_a2_network(inputs: str) -> NetConfig:
    """The early-training networks (`empirics.montecarlo.early_config.EarlyConfig` defaults):
    d = 32, widths (64, 64), 10 outputs, Var W = 1/fan_in, zero biases, MSE with class labels,
    64 inputs per network, float64 on the CPU (Remark A.2 at init is measured on them)."""
    return NetConfig(
        activation="relu",
        loss="mse",
        d_in=32,
        widths=(64, 64),
        n_out=10,
        inputs_per_net=64,
        inputs=inputs,
        labels="class",
        dtype="float64",
        device="cpu",
    ).validate()
