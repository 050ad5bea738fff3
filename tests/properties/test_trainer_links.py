"""Monte Carlo <-> trainer and symbolic <-> trainer: the trainer's MLP moves its biases and
weights the way the estimator and the drift coefficient D predict (`make test`, `make verify`)."""

from __future__ import annotations

from hypothesis import given, note, settings
from hypothesis import strategies as st

from tests.properties import checks
from theory import registry

# A negatively biased activation (D = -1/sqrt(2 pi) < 0) for the "drifts the other way" case.
NEG_RELU = "neg_relu"
registry.register_activation(NEG_RELU, "Min(x, 0)")

# Each example trains 12-16 small MLPs, so these run fewer examples than the cheap suites.
FEW = max(2, settings.default.max_examples // 6)

trainer_shapes = st.fixed_dictionaries(
    {
        "depth": st.integers(1, 3),
        "width": st.sampled_from((32, 64)),
        "in_dim": st.sampled_from((16, 32)),
        "batch": st.sampled_from((32, 64)),
    }
)


@settings(max_examples=FEW)
@given(
    activation=st.sampled_from(("relu", "gelu", "silu", "tanh", "leaky_relu", NEG_RELU)),
    shape=trainer_shapes,
    lr=st.sampled_from((0.05, 0.1)),
    first_seed=st.integers(0, 10_000),
    mc_seed=st.integers(0, 2**31 - 1),
)
def test_first_step_matches_montecarlo(activation, shape, lr, first_seed, mc_seed):
    out = checks.check_first_step_vs_montecarlo(
        activation, shape, lr, range(first_seed, first_seed + 16), mc_seed
    )
    note({k: (v[0].mean, v[0].stderr, v[1], v[2]) for k, v in out.items()})


@settings(max_examples=FEW)
@given(
    activation=st.sampled_from(
        ("relu", "gelu", "silu", "relu2_clip", "tanh", "identity", NEG_RELU)
    ),
    shape=trainer_shapes,
    lr=st.sampled_from((0.02, 0.05)),
    steps=st.integers(3, 10),
    first_seed=st.integers(0, 10_000),
)
def test_drift_sign_follows_drift_coefficient(activation, shape, lr, steps, first_seed):
    sign, drift = checks.check_drift_sign_vs_trainer(
        activation, shape, lr, steps, range(first_seed, first_seed + 12)
    )
    note(f"D {sign}: bias drift {drift.mean:.3g} +- {drift.stderr:.2g}")
