"""The metrics on tensors, one function each (names as in DESIGN.md): weight drift, pre-activation
mean, sparsity, negative rate, spikes and the gradient-sign probe (the feeding layer's drift along
the mean input is in `empirics.train.feed_stats`). Pure functions (plus reusable scratch
buffers); `empirics.train.metrics` runs them from hooks while a model trains.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from empirics.host import host_view
from empirics.train import host_kernels

# Beyond this many entries, the median of |a| is taken on an evenly strided subsample: an exact
# median of a (16, 1024, 3072) GPT-nano activation costs more than the training step, while the
# sample median has relative standard error ~ 1/(2 f(m) m sqrt(n')) (f the density of |a| at
# its median m, n' the non-zero entries of the sample): for a half-normal |a| that is 1.17/sqrt(n'),
# 2.6 % at n = 2^12 with half the entries zero, 6 % with 90 % zero -- ample for spike ratios that
# differ by factors, and a selection over 2^12 entries costs well under a millisecond.
_MEDIAN_SAMPLE = 1 << 12


# ----------------------------------------------------------------------------- pure functions
# Each metric is one private function (`_name`, used by the tracker; the activation ones return
# 0-d tensors so that a hook never waits on the device) and its public float form.


def weight_mean_tensor(w: torch.Tensor) -> torch.Tensor:
    return w.detach().float().mean()


def _weight_neg_frac(w: torch.Tensor) -> torch.Tensor:
    return _negative_rate(w)


def _drift_score(w: torch.Tensor, w0: torch.Tensor) -> float:
    w = w.detach()
    if w.shape != w0.shape:
        raise ValueError(f"drift_score: W has shape {tuple(w.shape)}, W0 {tuple(w0.shape)}")
    return drift_from_stats(mean_std(w), mean_std(w0))


def drift_from_stats(w_stats: tuple[float, float], w0_stats: tuple[float, float]) -> float:
    """2·(mean W − mean W₀)/(std W₀ + std W); mean(W − W₀) needs no copy of W − W₀."""
    shift, spread = w_stats[0] - w0_stats[0], w_stats[1] + w0_stats[1]
    if spread == 0.0:
        # W and W₀ both constant (a single-channel norm gain, say): the shift has no spread to be
        # measured in, so the score is undefined unless nothing moved.
        return 0.0 if shift == 0 else math.nan
    return 2.0 * shift / spread


def mean_std(t: torch.Tensor) -> tuple[float, float]:
    """Mean and population std in one pass; W and W₀ go through the same arithmetic, so
    drift_score is exactly 0 at initialisation."""
    if t.numel() == 0:
        return math.nan, 0.0
    return mean_std_finish(t, [float(v) for v in mean_std_parts(t)])


Number = float | torch.Tensor  # a plain number (host) or a 0-d tensor (read later, in one sync)


def mean_std_parts(t: torch.Tensor) -> tuple[Number, Number]:
    """The two numbers `mean_std` is made of (0-d tensors are read on the host together, later)."""
    return weight_parts(t)[:2]


def weight_parts(t: torch.Tensor) -> tuple[Number, Number, Number]:
    """`mean_std_parts` of t and the count of its negative entries. A matrix numpy can view
    takes one pass (`host_kernels.moments`, float64 sums) into plain numbers; anything else is
    reduced by torch into 0-d tensors."""
    t = t.detach().float()
    host = _host_flat(t) if t.dim() >= 2 else None
    if host is not None:
        total, square, negatives = host_kernels.moments(host)
        return (total / host.size if host.size else math.nan), square, float(negatives)
    mean = t.mean()
    if t.dim() >= 2:
        # Matrices: E[w²] − mean² from one BLAS dot (no centred copy). Weight matrices have
        # |mean| far below their spread, so float32 cancellation costs nothing measurable.
        flat = t.reshape(-1)
        return mean, torch.dot(flat, flat), _negative_count(t)
    # Gains and biases (1-D, mean often near 1): centre first, they are small anyway. Both are
    # tens of times faster on CPU than torch.std_mean.
    return mean, torch.linalg.vector_norm(t - mean), _negative_count(t)


def mean_std_finish(t: torch.Tensor, parts: list[float]) -> tuple[float, float]:
    if t.numel() == 0:
        return math.nan, 0.0
    mean, second = parts
    if t.dim() >= 2:
        var = second / t.numel() - mean * mean
        return mean, math.sqrt(max(var, 0.0))
    return mean, second / math.sqrt(t.numel())


# The per-metric definitions, and the hooks' path where numpy cannot view a tensor (an
# accelerator, bf16, a strided view; on CPU the hooks use `host_kernels`). Counting through
# float sign() and a sum is several times faster than a comparison mask reduced as bool (the
# counts stay exact below 2^24 entries per tensor and within float32 rounding beyond).


def _preact_mean(p: torch.Tensor) -> torch.Tensor:
    return p.detach().mean(dtype=torch.float32)


def _sparsity(a: torch.Tensor) -> torch.Tensor:
    a = a.detach()
    nonzero = torch.sign(a.float()).abs_().sum()
    return (a.numel() - nonzero.double()) / a.numel()


def _negative_count(p: torch.Tensor) -> torch.Tensor:
    return (-torch.sign(p.detach().float()).clamp_(max=0).sum()).double()


def _negative_rate(p: torch.Tensor) -> torch.Tensor:
    return _negative_count(p) / p.numel()


def _spike_max(a: torch.Tensor) -> torch.Tensor:
    lo, hi = torch.aminmax(a.detach().float())
    return torch.maximum(-lo, hi)


def _spike_ratio(a: torch.Tensor, peak: torch.Tensor | None = None) -> torch.Tensor:
    a = a.detach()
    if peak is None:
        peak = _spike_max(a)
    med = _nonzero_abs_median(a)
    return peak / med if med is not None else torch.tensor(math.nan, device=a.device)


def _nonzero_abs_median(a: torch.Tensor) -> torch.Tensor | None:
    """The lower median of |a| over its non-zero entries (a strided sample when a is large).

    The zeros are the smallest |a|, so the non-zero values' lower median is the
    (zeros + ceil(nonzero/2))-th smallest overall: one selection, no boolean gather and no sort
    (both slow on CPU). Where numpy can view a, `host_kernels.strided_abs_median` gathers,
    counts and selects in one call (several times faster than kthvalue on CPU; a k-th smallest
    value is the same whoever selects it), else kthvalue. A nan in the sample gives nan.
    """
    host = _host_flat(a)
    if host is not None:
        med = _host_abs_median(host)
        return None if med is None else torch.tensor(med, dtype=torch.float32)
    mag = a.reshape(-1)[:: _median_step(a.numel())].float().abs()
    nonzero = int(torch.count_nonzero(mag))
    if nonzero == 0:
        return None
    if bool(mag.isnan().any()):
        return torch.tensor(math.nan)
    return torch.kthvalue(mag, mag.numel() - nonzero + (nonzero + 1) // 2).values


def _host_abs_median(host: np.ndarray) -> float | None:
    """`_nonzero_abs_median` of a flat array numpy holds, as a float (None: every entry 0)."""
    return host_kernels.strided_abs_median(host, _median_step(host.size))


def _median_step(n: int) -> int:
    """The stride of the median's sample: every entry up to _MEDIAN_SAMPLE, else about that many."""
    return n // _MEDIAN_SAMPLE + 1 if n > _MEDIAN_SAMPLE else 1


def _nonzero_abs_median_async(a: torch.Tensor) -> torch.Tensor:
    """`_nonzero_abs_median` as a 0-d tensor (nan when every entry is 0). On an accelerator
    without reading the count on the host (no device sync inside a hook): a sort of the
    <= 2^12-entry sample and an index computed on the device. On CPU, where reading it costs
    nothing, the selection is cheaper than the sort."""
    if a.device.type == "cpu":
        med = _nonzero_abs_median(a)
        return med if med is not None else torch.tensor(math.nan)
    flat = a.reshape(-1)[:: _median_step(a.numel())]
    mag = flat.float().abs()
    nonzero = torch.sign(mag).sum().long()
    ordered = torch.sort(mag).values
    idx = (mag.numel() - nonzero + (nonzero + 1) // 2 - 1).clamp(0, mag.numel() - 1)
    med = ordered[idx.reshape(1)].reshape(())
    return torch.where(nonzero > 0, med, torch.full_like(med, math.nan))


def weight_mean(w: torch.Tensor) -> float:
    return float(weight_mean_tensor(w))


def bias_mean(b: torch.Tensor) -> float:
    return float(weight_mean_tensor(b))


def weight_neg_frac(w: torch.Tensor) -> float:
    """Fraction of weight entries that are strictly negative."""
    return float(_weight_neg_frac(w))


def drift_score(w: torch.Tensor, w0: torch.Tensor) -> float:
    """2·mean(W − W₀)/(std W₀ + std W): the mean shift in units of the weights' own spread.

    0 at initialisation by construction; negative when the weights drift down as a whole;
    nan when W and W₀ are both constant and differ (e.g. a one-entry norm gain that moved).
    """
    return float(_drift_score(w, w0))


def preact_mean(p: torch.Tensor) -> float:
    return float(_preact_mean(p))


def sparsity(a: torch.Tensor) -> float:
    """Fraction of post-activation entries exactly 0 (what a sparse kernel could skip)."""
    return float(_sparsity(a))


def negative_rate(p: torch.Tensor) -> float:
    """Fraction of pre-activations < 0: the activation-agnostic sparsity proxy (GELU, SiLU)."""
    return float(_negative_rate(p))


def spike_max(a: torch.Tensor) -> float:
    """max |a| over the tensor."""
    return float(_spike_max(a))


def spike_ratio(a: torch.Tensor) -> float:
    """max|a| / median|a|, the median taken over the entries that are not exactly 0.

    The zeros are excluded on purpose: with ReLU sparsity above 50 % the plain median is 0 and
    the ratio would be inf for every sparse layer; `sparsity` already counts the zeros. An
    all-zero tensor gives nan (no spike is defined). Above 2^12 entries the median is taken on
    an evenly strided subsample (an exact one would cost more than a GPT-nano training step);
    for an even count it is the lower of the two middle values (torch.median).
    """
    return float(_spike_ratio(a))


class Scratch:
    """Reusable buffers for the hooks' activation-sized masks, one per (dtype, device), grown to
    the largest request. Fresh temporaries of that size at every logged step cost more than the
    arithmetic on them on CPU (allocation and page faults on memory that is cold by then);
    reductions read the buffers and return 0-d tensors, so one buffer serves every layer."""

    def __init__(self) -> None:
        self._bufs: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self._signs = np.empty(0, dtype=np.int8)

    def rows(self, k: int, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A (k, n) view of the buffer (contents undefined)."""
        key = (dtype, device)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < k * n:
            buf = torch.empty(k * n, dtype=dtype, device=device)
            self._bufs[key] = buf
        return buf[: k * n].view(k, n)

    def signs(self, n: int) -> np.ndarray:
        """A host int8 array of n entries (contents undefined)."""
        if self._signs.size < n:
            self._signs = np.empty(n, dtype=np.int8)
        return self._signs[:n]

    def clear(self) -> None:
        self._bufs.clear()
        self._signs = np.empty(0, dtype=np.int8)


class ProbeMasks:
    """Per activation layer, the host int8 signs of its input p (+1 for p > 0, -1 for p < 0,
    0 for a zero or a nan), written by an armed forward pass (`activation_stats`) and read by
    the gradient probe in the backward pass, so that the probe holds no reference to p (one
    byte per entry instead of p's four, read back from memory that is cold by then, and no
    activation-sized tensor kept alive past the point where autograd frees it). A buffer
    is taken per call of the layer, given back when that call's backward pass has read it, and
    kept for the next logged step (fresh activation-sized memory at every logged step costs
    page faults on CPU). Serves CPU tensors that numpy can view (`host_view`); on an
    accelerator the probe holds p, which its caching allocator makes cheap."""

    def __init__(self) -> None:
        self._free: dict[str, list[np.ndarray]] = {}
        self._busy: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    @staticmethod
    def serves(p: torch.Tensor) -> bool:
        return host_view(p) is not None

    def take(self, name: str, p: torch.Tensor) -> np.ndarray:
        """An int8 array of p.numel() entries (contents undefined)."""
        n = p.numel()
        free = self._free.setdefault(name, [])
        base = free.pop() if free else None
        if base is None or base.size < n:
            base = np.empty(n, dtype=np.int8)
        view = base[:n]
        self._busy.setdefault(name, []).append((base, view))
        return view

    def give_back(self, name: str, view: np.ndarray) -> None:
        busy = self._busy.get(name, [])
        for k, (base, taken) in enumerate(busy):
            if taken is view:
                del busy[k]
                self._free.setdefault(name, []).append(base)
                return

    def reset(self) -> None:
        """Every buffer free again (an armed forward pass whose backward never ran)."""
        for name, busy in self._busy.items():
            self._free.setdefault(name, []).extend(base for base, _ in busy)
            busy.clear()

    def clear(self) -> None:
        self._free.clear()
        self._busy.clear()


def _host_flat(t: torch.Tensor) -> np.ndarray | None:
    """`host_view` of t, flattened (None where numpy cannot view t)."""
    view = host_view(t)
    return None if view is None else view.reshape(-1)


def sign_into(t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """sign(t) flattened into `out` (a 1-D buffer of t's size, of dtype >= float32)."""
    flat = t.reshape(-1)
    if flat.dtype == out.dtype:
        return torch.sign(flat, out=out)
    return out.copy_(flat).sign_()  # bf16/fp16 activations under autocast


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)


def _sign_counts(
    p: torch.Tensor, scratch: Scratch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(entries > 0, entries < 0, entries != 0) of p as 0-d tensors, from s = sign(p) by
    sum(s) = pos - neg and s·s = pos + neg: two reductions over one reused buffer, no boolean
    mask (slow on CPU) and no fresh temporary. Exact below 2^24 entries per tensor, within
    float32 rounding (~1e-7 relative) beyond, as the per-metric functions."""
    s = sign_into(p, scratch.rows(1, p.numel(), _work_dtype(p), p.device)[0])
    signed, nonzero = s.sum().double(), torch.dot(s, s).double()
    return (nonzero + signed) / 2, (nonzero - signed) / 2, nonzero


def activation_stats(
    p: torch.Tensor,
    a: torch.Tensor,
    scratch: Scratch | None = None,
    masks: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Every per-activation metric for pre-activation p and output a, as 0-d tensors (the same
    values as the per-metric functions, in fewer passes over p and a and without a host sync);
    also the counts `_n_pos`/`_n_neg` of p that the gradient probe divides by. `masks`, an
    int8 array of p.numel() entries from `ProbeMasks`, receives p's signs for the probe (CPU
    tensors numpy can view only).

    What numpy can view (CPU) is read by `host_kernels`, one pass each over p and a, into
    Python numbers; the rest by torch, into 0-d tensors; the formulas below take either."""
    scratch = scratch if scratch is not None else Scratch()
    with torch.no_grad():
        p, a = p.detach(), a.detach()
        pn, an = _host_flat(p), _host_flat(a)
        if pn is not None:
            # p's signs and their counts (a nan's sign is 0, as torch's sign(nan) makes it on
            # the path below) and its mean from a float64 sum.
            signs = masks if masks is not None else scratch.signs(pn.size)
            n_pos, n_neg, total = host_kernels.split_signs(pn, signs)
            preact: float | torch.Tensor = total / pn.size if pn.size else math.nan
        elif masks is not None:
            raise ValueError("activation_stats: masks are for CPU tensors numpy can view")
        else:
            n_pos, n_neg, _ = _sign_counts(p, scratch)
            preact = _preact_mean(p)
        if an is not None:
            # a's entries != 0 (a nan counts as a zero, as on the path below) and max |a| (nan
            # if a holds one), rounded to float32 as there; the median of |a| on the sample.
            nonzero, largest = host_kernels.magnitudes(an)
            a_nonzero: float | torch.Tensor = float(nonzero)
            peak: np.float32 | torch.Tensor = np.float32(largest)
            med = _host_abs_median(an)
            with np.errstate(all="ignore"):  # inf / inf is nan, as torch's division says
                ratio = peak / np.float32(med) if med is not None else math.nan
        else:
            # amax and amin: two plain reductions, cheaper on CPU than one aminmax.
            peak = torch.maximum(-a.amin(), a.amax()).float()
            s = sign_into(a, scratch.rows(1, a.numel(), _work_dtype(a), a.device)[0])
            a_nonzero = torch.dot(s, s).double()
            ratio = peak / _nonzero_abs_median_async(a)
        return _tensors(
            {
                "preact_mean": preact,
                "sparsity": _ratio(a.numel() - a_nonzero, a.numel()),
                "negative_rate": _ratio(n_neg, p.numel()),
                "spike_max": peak,
                "spike_ratio": ratio,
                "_n_pos": n_pos,
                "_n_neg": n_neg,
            }
        )


def _ratio(total: Number, count: float) -> Number:
    """total / count, nan for an empty count (0/0, as a tensor division gives)."""
    return total / count if count else math.nan


def read_numbers(parts: list[Number]) -> list[float]:
    """`parts` as floats, the 0-d tensors among them read on the host in one transfer."""
    tensors = [v for v in parts if isinstance(v, torch.Tensor)]
    read = iter(torch.stack([v.double() for v in tensors]).tolist() if tensors else ())
    return [next(read) if isinstance(v, torch.Tensor) else float(v) for v in parts]


def _tensors(values: dict[str, object]) -> dict[str, torch.Tensor]:
    """`values` with every plain number made a 0-d float64 tensor (in one call); tensors stay."""
    numbers = [k for k, v in values.items() if not isinstance(v, torch.Tensor)]
    if numbers:
        made = torch.tensor([float(values[k]) for k in numbers], dtype=torch.float64)  # type: ignore[arg-type]
        values = {**values, **dict(zip(numbers, made.unbind(), strict=True))}
    return values  # type: ignore[return-value]


def sign_masks(p: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The rows [p > 0; p < 0] of p flattened, as 0/1 floats written into `out` (2, p.numel())
    of dtype >= float32; nan entries are in neither row."""
    flat = p.detach().reshape(-1)
    torch.gt(flat, 0, out=out[0])
    torch.lt(flat, 0, out=out[1])
    return out


def grad_sign_tensors(
    p: torch.Tensor,
    grad: torch.Tensor,
    scratch: Scratch | None = None,
    counts: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """0-d tensors grad_pos, grad_neg, grad_mean of `grad` (= dl/dp) over p > 0, p < 0, all.

    Where numpy can view p and g (CPU), p's int8 signs go into a reused array and
    `host_kernels.masked_sums` adds g by sign in one float64 pass; elsewhere the two masked
    sums are one matrix-vector product of g with the rows [p > 0; p < 0] as floats. `counts` =
    (entries > 0, entries < 0) of p when the forward pass already counted them. An empty side
    gives nan (0/0), never a fake 0; a side where dl/dp is 0 entry by entry (ReLU, p < 0) gives
    exactly 0.
    """
    scratch = scratch if scratch is not None else Scratch()
    pn = _host_flat(p)
    if pn is not None and _host_flat(grad) is not None:
        signs = scratch.signs(pn.size)
        split = host_kernels.split_signs(pn, signs)[:2]
        if counts is None:
            counts = tuple(torch.tensor(split, dtype=torch.float64).unbind())
        return grad_sign_from_masks(signs, grad, counts, scratch)
    work = _work_dtype(grad)
    masks = sign_masks(p, scratch.rows(2, grad.numel(), work, grad.device))
    return grad_sign_from_masks(masks, grad, counts)


def grad_sign_from_masks(
    masks: torch.Tensor | np.ndarray,
    grad: torch.Tensor,
    counts: tuple[torch.Tensor, torch.Tensor] | None = None,
    scratch: Scratch | None = None,
) -> dict[str, torch.Tensor]:
    """`grad_sign_tensors` given p's signs instead of p (the same values): `sign_masks`'s
    float rows [p > 0; p < 0], or `ProbeMasks`' int8 signs (g summed by sign in one float64
    pass where numpy can view g, else made float rows in `scratch`)."""
    with torch.no_grad():
        g = grad.detach().reshape(-1)
        gn = _host_flat(g) if isinstance(masks, np.ndarray) else None
        if gn is not None:
            s_pos, s_neg, s_all = host_kernels.masked_sums(gn, masks)
            if counts is None:
                n_pos, n_neg = np.count_nonzero(masks > 0), np.count_nonzero(masks < 0)
            else:
                n_pos, n_neg = (float(c) for c in counts)
            return _tensors(
                {
                    "grad_pos": _ratio(s_pos, n_pos),
                    "grad_neg": _ratio(s_neg, n_neg) + 0.0,  # + 0.0: an exact zero is +0
                    "grad_mean": _ratio(s_all, g.numel()),
                }
            )
        if g.dtype != _work_dtype(g):
            g = g.float()
        if isinstance(masks, np.ndarray):
            scratch = scratch if scratch is not None else Scratch()
            rows = scratch.rows(2, g.numel(), g.dtype, g.device)
            np.copyto(rows.numpy(), np.stack([masks > 0, masks < 0]))
            masks = rows
        elif g.dtype != masks.dtype:
            g = g.to(masks.dtype)
        sums = torch.mv(masks, g)  # (sum over p > 0, sum over p < 0)
        if counts is None:
            n_pos, n_neg = masks[0].sum(), masks[1].sum()
        else:
            n_pos, n_neg = counts
        return {
            "grad_pos": sums[0] / n_pos,
            "grad_neg": sums[1] / n_neg + 0.0,  # + 0.0: an exact zero is +0, not -0
            "grad_mean": g.mean(),
        }


def grad_sign_stats(p: torch.Tensor, grad: torch.Tensor) -> dict[str, float]:
    """E[dl/dp | p > 0], E[dl/dp | p < 0] and E[dl/dp] over the entries of one tensor p, given
    grad = dl/dp of the same shape (nan for a side with no entries)."""
    if p.shape != grad.shape:
        raise ValueError(f"grad_sign_stats: p {tuple(p.shape)} and grad {tuple(grad.shape)}")
    return {k: float(v) for k, v in grad_sign_tensors(p, grad).items()}
