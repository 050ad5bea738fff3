"""Faster pieces of the crossed-design Monte Carlo block (`sampler.crossed_block_sums`).

Library module, the same arithmetic in fewer passes: masks as float 0/1 from sign() (boolean
masks and their reductions are several times slower on CPU).
"""

from __future__ import annotations

import torch


def side_mask(p: torch.Tensor, side: str) -> torch.Tensor:
    """1.0 where p > 0 (side 'pos') or p < 0 (side 'neg'), else 0.0, in p's dtype: the values
    of (p > 0).to(p.dtype) and (p < 0).to(p.dtype) for finite p (a nan p gives nan, where the
    boolean mask gives 0; the sampler's p is a finite Gaussian draw)."""
    if side not in ("pos", "neg"):
        raise ValueError(f"side must be 'pos' or 'neg', got {side!r}")
    s = torch.sign(p)
    if side == "neg":
        s.neg_()
    return s.clamp_(min=0)


def masked_derivative(
    p: torch.Tensor, dh: torch.Tensor, side: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma'(p) * mask, entries in the mask per block) for p, dh of shape [nb, B, n]."""
    mask = side_mask(p, side)
    return dh * mask, mask.sum(dim=(1, 2))


def any_nonzero(t: torch.Tensor) -> bool:
    """`bool(t.any())` for a float tensor from plain reductions (a nan entry counts as non-zero
    through the sum, as in `any`)."""
    return bool(t.amax() > 0) or bool(t.amin() < 0) or not bool(torch.isfinite(t.sum()))
