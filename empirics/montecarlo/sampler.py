"""Thousands of freshly initialised MLPs at once: batched forward pass and hand-written backward.

Library module; `python -m empirics.montecarlo --help` runs the estimators built on it. Shapes:
N networks, B inputs per network, layer widths n_k, K outputs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch

from empirics.activations import parse_activation, torch_fn
from empirics.montecarlo import kernels
from empirics.outputs import resolve_device
from theory import registry
from theory.registry import Activation

# Weight laws of the random networks (`--init`); the trained models' init schemes are
# `empirics.models.mlp.INIT_SCHEMES`, the theory's classes of them `theory.first_step.INIT_CLASSES`.
INIT_LAWS = ("gaussian", "uniform", "rademacher", "student_t", "exponential")
# Laws whose sign flip leaves them unchanged (what the antithetic pair W_L <-> -W_L and the
# theory's flip arguments need); "exponential" is the centred Exp(1): zero mean, skewness 2.
SYMMETRIC_INITS = ("gaussian", "uniform", "rademacher", "student_t")
STUDENT_T_DOF = 5  # heavy-tailed with finite variance (and finite 4th moment only for dof > 4)
# Input laws (`--inputs`); the theory's classes of them are `theory.first_step.INPUT_CLASSES`.
INPUT_LAWS = ("gaussian", "sphere", "uniform", "halfnormal")
LABELS = ("class", "gaussian")
# The Monte Carlo implements every built-in loss of the registry (their one list of names).
LOSS_NAMES = registry.BUILTIN_LOSSES
DTYPES = {"float32": torch.float32, "float64": torch.float64}
DESIGNS = ("auto", "networks", "crossed")
CONTROL = "_control"  # key of a control variate (known mean 0) among a sampler's statistics

ActPair = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class NetConfig:
    """A family of random MLPs d_in -> widths... -> n_out at initialisation.

    Weights are i.i.d. zero-mean with variance w_gain / fan_in, biases i.i.d. zero-mean with
    standard deviation bias_std, both from the law `init` scaled to that variance: gaussian,
    uniform, rademacher (+-1), student_t (5 degrees of freedom) or exponential (Exp(1) - 1,
    skewed). The antithetic pair W_L <-> -W_L needs a sign-symmetric law: `validate` turns
    `antithetic` off for exponential init. `layer` (1-based) picks the hidden layer
    whose pre-activations p are studied. `direct_preact` draws layer 1's p given x exactly as
    N(0, s^2 |x|^2 + bias_std^2) per unit instead of forming W x (exact for Gaussian weights only,
    so it is ignored for uniform init); inputs of one network then do not share W_1, which changes
    no single-input expectation.

    `design`: "networks" draws N networks of B inputs each; "crossed" (one hidden layer, layer 1,
    Gaussian init) draws blocks of `v_per_block` output layers and `inputs_per_net` inputs and
    pairs every output layer with every input, each pair being a freshly initialised network
    (see `crossed_block_sums`); "auto" picks "crossed" where it applies. `control_variate` (crossed
    design only) regresses out the off-diagonal part sum_{i != j} h_j m_i sigma'_i <P v_i, v_j> of
    the pairs' bilinear form, whose mean is exactly 0 because the columns of a freshly drawn
    output layer are independent and zero-mean (see `crossed_block_sums`).

    `activation` is the Activation object: a spec given here is parsed once, at construction
    (RegistryError lists valid names), and `to_dict` records it by name.
    """

    activation: Activation = registry.ACTIVATIONS["relu"]
    loss: str = "mse"
    d_in: int = 64
    widths: tuple[int, ...] = (256,)
    n_out: int = 10
    inputs_per_net: int = 64
    init: str = "gaussian"
    # A variance factor, not a std gain: Var W = w_gain / fan_in (He init is w_gain = 2; a std
    # scale s is w_gain = s**2). Kept under this name: ledger JSON and configs record it.
    w_gain: float = 1.0
    bias_std: float = 0.0
    inputs: str = "gaussian"
    labels: str = "class"
    layer: int = 1
    dtype: str = "float32"
    device: str = "auto"
    antithetic: bool = True
    direct_preact: bool = True
    design: str = "auto"
    v_per_block: int = 16
    control_variate: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "activation", parse_activation(self.activation))

    def validate(self) -> NetConfig:
        """Check every field before any compute; returns self with the device resolved."""
        if self.loss not in LOSS_NAMES:
            raise ValueError(
                f"loss={self.loss!r}: the Monte Carlo estimator supports {', '.join(LOSS_NAMES)}"
            )
        for name, value in (("d_in", self.d_in), ("n_out", self.n_out)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.inputs_per_net < 1:
            raise ValueError(f"inputs_per_net must be >= 1, got {self.inputs_per_net}")
        if not self.widths or any((not isinstance(w, int)) or w < 1 for w in self.widths):
            raise ValueError(
                f"widths must be a non-empty tuple of positive ints, got {self.widths}"
            )
        if not 1 <= self.layer <= len(self.widths):
            raise ValueError(
                f"layer must be a hidden layer in 1..{len(self.widths)}, got {self.layer}"
            )
        if self.init not in INIT_LAWS:
            raise ValueError(f"init={self.init!r}; valid: {', '.join(INIT_LAWS)}")
        if self.inputs not in INPUT_LAWS:
            raise ValueError(f"inputs={self.inputs!r}; valid: {', '.join(INPUT_LAWS)}")
        if self.labels not in LABELS:
            raise ValueError(f"labels={self.labels!r}; valid: {', '.join(LABELS)}")
        if self.loss == "cross_entropy" and self.labels != "class":
            raise ValueError("labels must be 'class' for cross_entropy (a one-hot target)")
        if not (math.isfinite(self.w_gain) and self.w_gain > 0):
            raise ValueError(f"w_gain must be finite and > 0, got {self.w_gain}")
        if not (math.isfinite(self.bias_std) and self.bias_std >= 0):
            raise ValueError(f"bias_std must be finite and >= 0, got {self.bias_std}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.design not in DESIGNS:
            raise ValueError(f"design={self.design!r}; valid: {', '.join(DESIGNS)}")
        if self.v_per_block < 1:
            raise ValueError(f"v_per_block must be >= 1, got {self.v_per_block}")
        crossable = len(self.widths) == 1 and self.init == "gaussian"
        if self.design == "crossed" and not crossable:
            raise ValueError(
                "design='crossed' needs one hidden layer and Gaussian init "
                f"(got widths={self.widths}, init={self.init!r}); use 'networks'"
            )
        return replace(
            self,
            widths=tuple(self.widths),
            device=resolve_device(self.device),
            antithetic=self.antithetic and self.init in SYMMETRIC_INITS,
        )

    @property
    def crossed(self) -> bool:
        """Whether conditional means use the crossed design (after validation)."""
        if self.design == "auto":
            return len(self.widths) == 1 and self.init == "gaussian"
        return self.design == "crossed"

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.d_in, *self.widths, self.n_out)

    def weight_var(self, k: int) -> float:
        """Variance of the entries of W_k (k = 1..L)."""
        return self.w_gain / self.sizes[k - 1]

    def to_dict(self) -> dict:
        """The fields as plain data, the activation by its registry name (what ledger notes and
        Monte Carlo summaries record)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**out, "activation": self.activation.name}


@dataclass
class Draw:
    """One batch of networks: what the estimators read. Tensors are [N, B, ...]."""

    x: torch.Tensor  # [N, B, d_in]
    layer_input: torch.Tensor  # [N, B, fan_in of layer l]
    p: torch.Tensor  # [N, B, n_l] pre-activations of layer l
    delta: torch.Tensor  # [N, B, n_l] dl/dp_l (antithetic pair mean if cfg.antithetic)
    delta_plain: torch.Tensor | None  # [N, B, n_l] the single-network sample, when asked for
    preacts: list[torch.Tensor]  # p_k for k = 1..L-1
    weights: list[torch.Tensor | None]  # W_k [N, n_k, n_{k-1}] (W_1 None if drawn directly)
    out: torch.Tensor  # [N, B, K]


@functools.lru_cache(maxsize=registry.CACHE_SIZE)
def activation_pair(act: Activation) -> ActPair:
    """(sigma(p), sigma'(p)) for an Activation, built once per object (the registry's CACHE_SIZE
    most recently used are kept): sigma' as autograd of the torch implementation (what training
    uses), with closed-form shortcuts for the cheapest activations."""
    return _closed_form_pair(act) or _autograd_pair(torch_fn(act))


registry.register_cache(activation_pair.cache_clear)  # `registry.clear_caches` forgets them too


def _closed_form_pair(act: Activation) -> ActPair | None:
    if act.builtin and act.name == "relu":
        return lambda p: (torch.relu(p), (p > 0).to(p.dtype))
    if act.builtin and act.name == "identity":
        return lambda p: (p, torch.ones_like(p))
    if act.builtin and act.name == "tanh":

        def tanh_pair(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            t = torch.tanh(p)
            return t, 1 - t * t

        return tanh_pair
    return None


def _autograd_pair(fn: Callable[[torch.Tensor], torch.Tensor]) -> ActPair:
    def pair(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            pd = p.detach().requires_grad_(True)
            out = fn(pd)
            (d,) = torch.autograd.grad(out, pd, torch.ones_like(out))
        return out.detach(), d

    return pair


def device_generator(generator: torch.Generator, device: str) -> torch.Generator:
    """A generator on `device`, seeded from `generator` when that lives elsewhere."""
    if torch.device(device).type == generator.device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def standard_draw(law: str, shape: tuple[int, ...], gen: torch.Generator, dtype, device):
    """I.i.d. draws of zero mean and unit variance from an init law (see NetConfig)."""
    if law == "gaussian":
        return torch.randn(shape, generator=gen, dtype=dtype, device=device)
    if law == "uniform":
        return (torch.rand(shape, generator=gen, dtype=dtype, device=device) * 2 - 1) * math.sqrt(3)
    if law == "rademacher":
        return torch.randint(0, 2, shape, generator=gen, device=device).to(dtype) * 2 - 1
    if law == "exponential":
        e = torch.empty(shape, dtype=dtype, device=device).exponential_(1.0, generator=gen)
        return e - 1
    if law == "student_t":
        nu = STUDENT_T_DOF
        z = torch.randn(shape, generator=gen, dtype=dtype, device=device)
        chi2 = torch.randn((*shape, nu), generator=gen, dtype=dtype, device=device).pow(2).sum(-1)
        # t_nu has variance nu / (nu - 2): rescale to 1.
        return z / torch.sqrt(chi2 / nu) * math.sqrt((nu - 2) / nu)
    raise ValueError(f"init={law!r}; valid: {', '.join(INIT_LAWS)}")


def _weights(cfg: NetConfig, k: int, n: int, gen: torch.Generator, dtype, device) -> torch.Tensor:
    shape = (n, cfg.sizes[k], cfg.sizes[k - 1])
    std = math.sqrt(cfg.weight_var(k))
    return standard_draw(cfg.init, shape, gen, dtype, device) * std


def _biases(cfg: NetConfig, k: int, n: int, gen: torch.Generator, dtype, device) -> torch.Tensor:
    shape = (n, 1, cfg.sizes[k])
    if cfg.bias_std == 0:
        return torch.zeros(shape, dtype=dtype, device=device)
    return standard_draw(cfg.init, shape, gen, dtype, device) * cfg.bias_std


def draw_inputs(
    kind: str, shape: tuple[int, ...], gen: torch.Generator, dtype, device
) -> torch.Tensor:
    """Inputs: gaussian N(0,1); sphere (radius sqrt(d)); uniform U[0,1]; halfnormal |N(0,1)|."""
    if kind == "uniform":
        return torch.rand(shape, generator=gen, dtype=dtype, device=device)
    x = torch.randn(shape, generator=gen, dtype=dtype, device=device)
    if kind == "sphere":
        return x * (math.sqrt(shape[-1]) / x.norm(dim=-1, keepdim=True))
    if kind == "halfnormal":
        return x.abs()
    return x


def draw_labels(cfg: NetConfig, shape: tuple[int, int], gen, dtype, device) -> torch.Tensor:
    """Targets [*shape, K]: one-hot random classes, or N(0, 1) entries (labels='gaussian')."""
    if cfg.labels == "gaussian":
        return torch.randn((*shape, cfg.n_out), generator=gen, dtype=dtype, device=device)
    cls = torch.randint(0, cfg.n_out, shape, generator=gen, device=device)
    return torch.nn.functional.one_hot(cls, cfg.n_out).to(dtype)


def _loss_grad(loss: str, out: torch.Tensor, y: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """dl/d(out) per sample for l = 1/2 |out - y|^2 or softmax cross-entropy (outputs on `dim`)."""
    if loss == "mse":
        return out - y
    return torch.softmax(out, dim=dim) - y


def _antithetic_loss_grad(loss: str, out: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Half the sum of dl/d(out) over the pair (W_L, b_L) and (-W_L, -b_L), pulled back through
    the sign flip: [g(out) - g(-out)] / 2. The label enters both terms alike and cancels."""
    if loss == "mse":
        return out
    return 0.5 * (torch.softmax(out, dim=dim) - torch.softmax(-out, dim=dim))


def init_network(
    cfg: NetConfig, n: int, gen: torch.Generator, *, first: int = 1
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Weights W_k [N, n_k, n_{k-1}] and biases b_k [N, 1, n_k] of layers first..L by cfg's init
    law, drawn in layer order (W_k, then b_k) from `gen` (on cfg.device): the one place the
    Monte Carlo and the batched early training get their random networks from."""
    dtype, device = DTYPES[cfg.dtype], cfg.device
    weights, biases = [], []
    for k in range(first, len(cfg.sizes)):
        weights.append(_weights(cfg, k, n, gen, dtype, device))
        biases.append(_biases(cfg, k, n, gen, dtype, device))
    return weights, biases


@dataclass
class Forward:
    """A batched forward pass: tensors are [N, B, ...]."""

    out: torch.Tensor  # [N, B, K]
    preacts: list[torch.Tensor]  # p_k for the hidden layers k = 1..L-1
    inputs: list[torch.Tensor]  # the input of layer k = 1..L
    derivs: list[torch.Tensor]  # sigma'(p_k), when `act` is an ActPair; else empty


def forward(
    x: torch.Tensor,
    weights: list[torch.Tensor | None],
    biases: list[torch.Tensor | None],
    act: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    *,
    first_preact: torch.Tensor | None = None,
) -> Forward:
    """N MLPs at once: p_k = h_{k-1} W_k^T + b_k (one baddbmm), h_k = sigma(p_k).

    `act` is a torch activation (differentiable: batched training takes autograd through it) or
    an ActPair returning (sigma, sigma') for the hand-written backward of `draw`. With
    `first_preact` given, p_1 is that tensor (drawn directly) and W_1, b_1 are not used.
    """
    preacts: list[torch.Tensor] = []
    inputs: list[torch.Tensor] = []
    derivs: list[torch.Tensor] = []
    h = x
    depth = len(weights)
    for k in range(depth):
        inputs.append(h)
        w, b = weights[k], biases[k]
        if k == 0 and first_preact is not None:
            p = first_preact
        else:
            assert w is not None and b is not None
            p = torch.baddbmm(b, h, w.transpose(1, 2))
        if k == depth - 1:
            return Forward(out=p, preacts=preacts, inputs=inputs, derivs=derivs)
        r = act(p)
        if isinstance(r, tuple):
            h, d = r
            derivs.append(d)
        else:
            h = r
        preacts.append(p)
    raise ValueError("forward needs at least one layer")


def network_loss(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[N] batch-mean loss per network: 1/2 |out - y|^2 (MSE) or softmax cross-entropy against
    targets y [N, B, K]; its gradient in `out` is `_loss_grad(loss, out, y) / B`."""
    if loss == "mse":
        return 0.5 * ((out - y) ** 2).sum(-1).mean(-1)
    return -(y * torch.log_softmax(out, dim=-1)).sum(-1).mean(-1)


def draw(cfg: NetConfig, n_nets: int, generator: torch.Generator, *, plain: bool = False) -> Draw:
    """Sample `n_nets` networks with B inputs each and return dl/dp at layer `cfg.layer`.

    `cfg` must be validated. The backward pass is written out (linear in dl/d(out)), so the
    antithetic and the plain sample share one pass when both are asked for; nothing is computed
    for parameters' gradients, which the conditional expectations do not need.
    """
    dtype, device = DTYPES[cfg.dtype], cfg.device
    gen = device_generator(generator, device)
    act = activation_pair(cfg.activation)
    n, b = n_nets, cfg.inputs_per_net
    depth = len(cfg.widths) + 1
    x = draw_inputs(cfg.inputs, (n, b, cfg.d_in), gen, dtype, device)

    p1 = None
    if cfg.direct_preact and cfg.init == "gaussian":
        # p_i | x ~ N(0, s^2 |x|^2 + bias_std^2), i.i.d. over units: skip the d_in x n_1 matmul.
        scale = torch.sqrt(cfg.weight_var(1) * (x * x).sum(-1, keepdim=True) + cfg.bias_std**2)
        p1 = torch.randn((n, b, cfg.sizes[1]), generator=gen, dtype=dtype, device=device) * scale
    ws, bs = init_network(cfg, n, gen, first=1 if p1 is None else 2)
    weights: list[torch.Tensor | None] = [None, *ws] if p1 is not None else list(ws)
    biases: list[torch.Tensor | None] = [None, *bs] if p1 is not None else list(bs)
    fwd = forward(x, weights, biases, act, first_preact=p1)
    preacts, derivs, inputs_of, out = fwd.preacts, fwd.derivs, fwd.inputs, fwd.out
    w_out = weights[-1]
    assert w_out is not None

    need_labels = plain or not cfg.antithetic
    grads = []
    if cfg.antithetic:
        grads.append(_antithetic_loss_grad(cfg.loss, out))
    if need_labels:
        y = draw_labels(cfg, (n, b), gen, dtype, device)
        grads.append(_loss_grad(cfg.loss, out, y))
    r = torch.cat(grads, dim=1)  # [N, B * (#kinds), K]; backward is linear, one pass for both
    delta = torch.bmm(r, w_out) * derivs[-1].repeat(1, len(grads), 1)
    for k in range(depth - 1, cfg.layer, -1):
        w = weights[k - 1]
        assert w is not None  # only W_1 is ever skipped and layer >= 1
        delta = torch.bmm(delta, w) * derivs[k - 2].repeat(1, len(grads), 1)
    first = delta[:, :b]
    return Draw(
        x=x,
        layer_input=inputs_of[cfg.layer - 1],
        p=preacts[cfg.layer - 1],
        delta=first,
        delta_plain=(delta[:, b:] if cfg.antithetic else first) if plain else None,
        preacts=preacts,
        weights=weights,
        out=out,
    )


def effective_weights(cfg: NetConfig, d: Draw) -> torch.Tensor:
    """V_eff = d out / d sigma(p_l) per input, [N, B, K, n_l]: W_L D_{L-1} W_{L-1} ... W_{l+1}
    with D = diag(sigma'(p)) (the 0/1 gating for ReLU)."""
    act = activation_pair(cfg.activation)
    depth = len(cfg.widths) + 1
    w_out = d.weights[-1]
    assert w_out is not None
    m = w_out.unsqueeze(1).expand(-1, cfg.inputs_per_net, -1, -1)  # [N, B, K, n_{L-1}]
    for k in range(depth - 1, cfg.layer, -1):
        _, dk = act(d.preacts[k - 1])  # [N, B, n_k]
        w = d.weights[k - 1]
        assert w is not None
        m = torch.matmul(m * dk.unsqueeze(2), w.unsqueeze(1))  # [N, B, K, n_{k-1}]
    return m


def crossed_block_sums(
    cfg: NetConfig, n_blocks: int, generator: torch.Generator, side: str, *, plain: bool = False
) -> dict[str, tuple[torch.Tensor, torch.Tensor, bool]]:
    """Per-block sums (num, den) of dl/dp over p > 0 ('pos'), p < 0 ('neg') or all units ('all')
    for a one-hidden-layer net, in the crossed design: a block draws G = v_per_block output
    layers (V_g, b_g) and B = inputs_per_net inputs with their layer-1 pre-activations p_b (drawn
    directly, exact for Gaussian W_1), and uses all G * B pairs; blocks are i.i.d., so standard
    errors are taken over blocks. Nothing per unit is materialised: with m the mask and
    r_bg = dl/d(out) of pair (b, g),
        sum_{b,g,i} m_bi dl/dp_bgi = sum_{b,g,k} r_bgk U_bgk,  U_bg = V_g (m_b * sigma'(p_b)),
    so the cost is two dense matmuls [B, n] x [n, G K] per block. Returns 'g_<side>' (antithetic
    pair mean if cfg.antithetic) and, with `plain`, 'g_<side>_plain' from the same pairs.
    """
    dtype, device = DTYPES[cfg.dtype], cfg.device
    gen = device_generator(generator, device)
    act = activation_pair(cfg.activation)
    nb, n_in, n_hid, k_out = n_blocks, cfg.d_in, cfg.widths[0], cfg.n_out
    g_v, b_in = cfg.v_per_block, cfg.inputs_per_net
    x = draw_inputs(cfg.inputs, (nb, b_in, n_in), gen, dtype, device)
    scale = torch.sqrt(cfg.weight_var(1) * (x * x).sum(-1, keepdim=True) + cfg.bias_std**2)
    p = torch.randn((nb, b_in, n_hid), generator=gen, dtype=dtype, device=device) * scale
    h, dh = act(p)
    if side == "all":
        md, den = dh, torch.full((nb,), float(b_in * n_hid * g_v), dtype=dtype, device=device)
    else:
        md, count = kernels.masked_derivative(p, dh, side)  # float masks: kernels.py
        den = count * g_v
    # Entries are i.i.d., so the draw can be laid out as [nb, K, G, n] directly: row k * G + g
    # is output k of the block's g-th output layer. Outputs then sit on a non-innermost axis,
    # where softmax vectorises across the G layers (a last axis of only K is slow on CPU).
    v = _weights(cfg, 2, nb * g_v, gen, dtype, device).view(nb, k_out * g_v, n_hid)
    b_out = _biases(cfg, 2, nb * g_v, gen, dtype, device).view(nb, 1, k_out * g_v)
    vt = v.transpose(1, 2)  # [nb, n, K G]
    hv = torch.bmm(h, vt)  # V_g h_b: the outputs before bias, and the control variate's `a`
    out = (hv + b_out).view(nb, b_in, k_out, g_v)  # [nb, B, K, G]
    u = torch.bmm(md, vt).view(nb, b_in * k_out * g_v, 1)  # U_bg, flattened for a dot product
    # If m * sigma' is 0 everywhere, so is U and every sample dl/dp (exactly).
    nonzero = kernels.any_nonzero(md)
    grads = {}
    if cfg.antithetic:
        grads[f"g_{side}"] = _antithetic_loss_grad(cfg.loss, out, dim=2)
    if plain or not cfg.antithetic:
        y = draw_labels(cfg, (nb, b_in * g_v), gen, dtype, device).view(nb, b_in, g_v, k_out)
        key = f"g_{side}_plain" if cfg.antithetic else f"g_{side}"
        grads[key] = _loss_grad(cfg.loss, out, y.transpose(2, 3), dim=2)
    out_stats = {
        name: (torch.bmm(r.reshape(nb, 1, -1), u).view(nb), den, nonzero)
        for name, r in grads.items()
    }
    if cfg.control_variate:
        # Control variate with known mean 0: the off-diagonal part of the pairs' bilinear form,
        # sum_{b,g} sum_{i != j} h_bj md_bi <P v_i, v_j> with P = I (MSE) or the centring
        # I - 11'/K (cross-entropy, whose antithetic dl/d(out) is ~ P z / K for small logits).
        # Its mean is exactly 0 given p, because the columns of a freshly drawn output layer are
        # independent and zero-mean; it is the part of the sample that carries most of the noise.
        a = hv.view(nb, b_in, k_out, g_v)  # V_g h_b, without the output bias
        uv = u.view(nb, b_in, k_out, g_v)
        full = (a * uv).sum(dim=(1, 2, 3))
        v4 = v.view(nb, k_out, g_v, n_hid)
        q = (v4 * v4).sum(1)  # [nb, G, n]: |v_gi|^2
        if cfg.loss != "mse":
            full = full - (a.sum(2) * uv.sum(2)).sum(dim=(1, 2)) / k_out
            q = q - v4.sum(1) ** 2 / k_out  # v_gi' P v_gi
        diag = ((h * md).sum(1) * q.sum(1)).sum(-1)  # sum_i (sum_b h_bi md_bi)(sum_g q_gi)
        c = full - diag
        out_stats[CONTROL] = (c, torch.zeros_like(c), False)
    return out_stats
