"""The Monte Carlo's float-mask kernels against their boolean definitions.

Run: `.venv/bin/python -m pytest tests/test_montecarlo_kernels.py -q`.
"""

from __future__ import annotations

import math

import pytest
import torch

from empirics.montecarlo import kernels


def _p() -> torch.Tensor:
    torch.manual_seed(0)
    p = torch.randn(3, 5, 7)
    p[0, 0, :3] = 0.0  # exact zeros belong to neither side
    return p


@pytest.mark.parametrize("side", ["pos", "neg"])
def test_side_mask_and_masked_derivative_match_the_boolean_masks(side: str) -> None:
    p = _p()
    dh = torch.rand_like(p)
    want = (p > 0) if side == "pos" else (p < 0)
    mask = kernels.side_mask(p, side)
    assert mask.dtype == p.dtype and torch.equal(mask, want.to(p.dtype))
    md, count = kernels.masked_derivative(p, dh, side)
    assert torch.equal(md, dh * want)
    assert torch.equal(count, want.sum(dim=(1, 2)).to(p.dtype))
    with pytest.raises(ValueError, match="side"):
        kernels.side_mask(p, "all")


def test_any_nonzero_is_any() -> None:
    for t in (
        torch.zeros(4, 4),
        torch.zeros(4, 4).index_fill_(0, torch.tensor([2]), -1e-30),
        torch.zeros(3).index_fill_(0, torch.tensor([1]), 5.0),
        torch.tensor([0.0, math.nan]),
    ):
        assert kernels.any_nonzero(t) == bool(t.any()), t
