"""The metric hooks' compiled loops (`empirics.train.host_kernels`) against plain numpy and exact
(math.fsum) arithmetic: counts and maxima equal, float64 sums within float64 rounding of the
exact sum, on arrays that hold zeros of both signs, infinities, nans and subnormals.

Run: `.venv/bin/python -m pytest tests/test_host_kernels.py -q`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from empirics.train import host_kernels as K

DTYPES = st.sampled_from([np.float32, np.float64])
# Values a training run can produce, the awkward ones often: signed zeros, a subnormal, huge.
SPECIAL = [0.0, -0.0, 1e-45, -1e-45, 3.0e38, -3.0e38, 1.0, -1.0]


def _arrays(dtype, allow_nan: bool, allow_infinity: bool, max_size: int = 300):
    # Finite values are kept within float32's range, so a float64 array holds the same kind of
    # numbers; the specials above are mixed in often.
    width = 32 if dtype == np.float32 else 64
    elements = st.one_of(
        st.floats(-(2.0**100), 2.0**100, width=width, allow_nan=False, allow_infinity=False),
        st.sampled_from(SPECIAL),
        *([st.just(math.nan)] if allow_nan else []),
        *([st.sampled_from([math.inf, -math.inf])] if allow_infinity else []),
    )
    return hnp.arrays(dtype, st.integers(0, max_size), elements=elements)


def _sum_bound(terms: list[float]) -> float:
    """A bound on the rounding error of any order of float64 additions of `terms`."""
    return len(terms) * 2.0**-52 * math.fsum(abs(t) for t in terms) + 1e-300


@given(DTYPES.flatmap(lambda d: _arrays(d, allow_nan=True, allow_infinity=True)))
def test_split_signs_writes_and_counts_the_signs(p: np.ndarray) -> None:
    signs = np.empty(p.size, dtype=np.int8)
    n_pos, n_neg, total = K.split_signs(p, signs)
    want = (p > 0).astype(np.int8) - (p < 0).astype(np.int8)  # a nan's sign is 0
    assert np.array_equal(signs, want)
    assert (n_pos, n_neg) == (int((p > 0).sum()), int((p < 0).sum()))
    finite = np.isfinite(p).all()
    if finite:
        terms = [float(x) for x in p]
        assert abs(total - math.fsum(terms)) <= _sum_bound(terms)
    elif np.isnan(p).any() or (np.isposinf(p).any() and np.isneginf(p).any()):
        assert math.isnan(total)
    else:
        assert total == float(p[~np.isfinite(p)][0])  # one sign of infinity


@given(DTYPES.flatmap(lambda d: _arrays(d, allow_nan=True, allow_infinity=True)))
def test_magnitudes_count_nonzero_entries_and_find_the_largest(a: np.ndarray) -> None:
    nonzero, largest = K.magnitudes(a)
    # A nan counts as a zero (as torch's sign(nan) = 0 makes it on the torch path).
    assert nonzero == int(((a != 0) & ~np.isnan(a)).sum())
    if np.isnan(a).any():
        assert math.isnan(largest)
    elif a.size:
        assert largest == float(np.abs(a).max())
    else:
        assert largest == 0.0


@given(
    DTYPES.flatmap(
        lambda d: st.tuples(
            _arrays(d, allow_nan=False, allow_infinity=False, max_size=200),
            st.randoms(use_true_random=False),
        )
    )
)
def test_masked_sums_add_g_over_each_mask_and_over_all(case) -> None:
    g, rnd = case
    signs = np.array([rnd.choice((-1, 0, 1)) for _ in range(g.size)], dtype=np.int8)
    pos, neg = signs > 0, signs < 0
    s_pos, s_neg, s_all = K.masked_sums(g, signs)
    for got, keep in ((s_pos, pos), (s_neg, neg), (s_all, np.ones(g.size, dtype=bool))):
        terms = [float(x) for x in g[keep]]
        assert abs(got - math.fsum(terms)) <= _sum_bound(terms)


def test_masked_sums_keep_an_infinity_outside_its_mask_out() -> None:
    g = np.array([1.0, math.inf, 2.0, -4.0], dtype=np.float32)
    s_pos, s_neg, s_all = K.masked_sums(g, np.array([1, 0, 1, -1], dtype=np.int8))
    assert (s_pos, s_neg, s_all) == (3.0, -4.0, math.inf)


@given(DTYPES.flatmap(lambda d: _arrays(d, allow_nan=False, allow_infinity=False)))
def test_moments_are_the_sum_the_square_sum_and_the_negatives(w: np.ndarray) -> None:
    total, square, negatives = K.moments(w)
    terms = [float(x) for x in w]
    assert abs(total - math.fsum(terms)) <= _sum_bound(terms)
    squares = [t * t for t in terms]
    assert abs(square - math.fsum(squares)) <= _sum_bound(squares)
    assert negatives == int((w < 0).sum())


@given(
    DTYPES,
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(0, 2**32 - 1),
)
def test_feed_sums_are_the_summed_responses_to_the_mean_input(dtype, rows, cols, seed) -> None:
    rng = np.random.default_rng(seed)
    w, w0 = (rng.standard_normal((rows, cols)).astype(dtype) for _ in range(2))
    x = rng.standard_normal(cols).astype(dtype)
    response, response0, total, x_sum, x_square = K.feed_sums(w, w0, x)
    for got, terms in (
        (response, [float(w[o, i]) * float(x[i]) for o in range(rows) for i in range(cols)]),
        (response0, [float(w0[o, i]) * float(x[i]) for o in range(rows) for i in range(cols)]),
        (total, [float(v) for v in w.reshape(-1)]),
        (x_sum, [float(v) for v in x]),
        (x_square, [float(v) ** 2 for v in x]),
    ):
        assert abs(got - math.fsum(terms)) <= _sum_bound(terms)


@given(
    DTYPES.flatmap(lambda d: _arrays(d, allow_nan=True, allow_infinity=True, max_size=120)),
    st.integers(1, 7),
)
def test_strided_abs_median_is_the_lower_median_of_the_sampled_nonzero_magnitudes(
    a: np.ndarray, step: int
) -> None:
    sample = np.abs(a[::step]).astype(np.float32)
    got = K.strided_abs_median(a, step)
    nonzero = sorted(float(v) for v in sample if v != 0)  # a nan is != 0: counted, then nan
    if not nonzero:
        assert got is None
    elif np.isnan(sample).any():
        assert got is not None and math.isnan(got)
    else:
        assert got == nonzero[(len(nonzero) - 1) // 2]  # independently, by sorting


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_loops_take_large_arrays_and_both_dtypes(dtype) -> None:
    # Sizes past the vector width and any unrolling, odd lengths (a tail), counts that need
    # more than 16 bits.
    rng = np.random.default_rng(0)
    p = rng.standard_normal(100_003).astype(dtype)
    n_pos, n_neg, _ = K.split_signs(p, np.empty(p.size, dtype=np.int8))
    assert n_pos + n_neg == p.size and n_pos == int((p > 0).sum())
    nonzero, largest = K.magnitudes(np.maximum(p, 0))
    assert nonzero == n_pos and largest == float(p.max())
