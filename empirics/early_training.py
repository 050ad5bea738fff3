"""Early training of many MLPs at once: how long E[dl/dp | p > 0] stays positive after init.

Run one configuration or the horizon sweep:
`python -m empirics.early_training --activation relu --loss mse --optimizer sgd --lr 0.1`
`python -m empirics.early_training --sweep --steps 200` (activations x losses x optimizers x lrs).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from empirics import metrics
from empirics.activations import get_torch_activation
from empirics.outputs import RecordWriter, atomic_write_json, provenance, resolve_device
from empirics.montecarlo.sampler import DTYPES, draw_inputs
from empirics.montecarlo.stats import RatioAccumulator
from theory import registry

OPTIMIZERS = ("sgd", "adam", "muon")
DATA = ("gaussian", "uniform", "halfnormal", "fashion_mnist")
LOSSES = ("mse", "cross_entropy")
# Learning-rate grid of the horizon sweep (two per optimizer, a tenfold apart).
LR_GRID: dict[str, tuple[float, ...]] = {
    "sgd": (0.01, 0.1),
    "adam": (1e-3, 1e-2),
    "muon": (5e-3, 5e-2),
}
DEFAULT_OUT = Path("results/montecarlo/early_training")
FASHION_DIM = 28 * 28


@dataclass(frozen=True)
class EarlyConfig:
    """A batch of `n_networks` independent MLPs d_in -> widths -> n_out trained for `steps` steps.

    Weights i.i.d. zero-mean with variance w_gain / fan_in (Gaussian or uniform), biases with
    std bias_std. Each network draws its own mini-batch of `batch_size` fresh inputs per step
    (random class labels for synthetic data). The per-step statistics are measured before each
    update on a separate fresh batch of `measure_batch` inputs per network (same parameters, no
    update from it), so their precision does not hinge on the training batch size. `alpha` is
    the two-sided level of the per-step interval that decides whether E[dl/dp | p > 0] is still
    positive.
    """

    activation: str = "relu"
    loss: str = "mse"
    optimizer: str = "sgd"
    lr: float = 0.05
    steps: int = 200
    n_networks: int = 32
    d_in: int = 32
    widths: tuple[int, ...] = (64, 64)
    n_out: int = 10
    batch_size: int = 32
    measure_batch: int = 256
    data: str = "gaussian"
    init: str = "gaussian"
    w_gain: float = 1.0
    bias_std: float = 0.0
    momentum: float = 0.0
    alpha: float = 0.01
    dtype: str = "float32"
    device: str = "auto"
    seed: int = 0

    def validate(self) -> EarlyConfig:
        """Check every field before any compute; fashion_mnist fixes d_in to 784."""
        registry.parse_activation_spec(self.activation)
        checks = (
            (self.loss in LOSSES, f"loss={self.loss!r}; valid: {', '.join(LOSSES)}"),
            (
                self.optimizer in OPTIMIZERS,
                f"optimizer={self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}",
            ),
            (self.data in DATA, f"data={self.data!r}; valid: {', '.join(DATA)}"),
            (self.init in ("gaussian", "uniform"), f"init={self.init!r}; valid: gaussian, uniform"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be finite and > 0, got {self.lr}"),
            (self.steps >= 0, f"steps must be >= 0, got {self.steps}"),
            (self.n_networks >= 2, f"n_networks must be >= 2 (for an SE), got {self.n_networks}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.measure_batch >= 1, f"measure_batch must be >= 1, got {self.measure_batch}"),
            (self.d_in >= 1 and self.n_out >= 1, "d_in and n_out must be >= 1"),
            (
                len(self.widths) >= 1 and all(w >= 1 for w in self.widths),
                f"widths must be a non-empty tuple of positive ints, got {self.widths}",
            ),
            (self.w_gain > 0 and self.bias_std >= 0, "w_gain must be > 0 and bias_std >= 0"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (0 < self.alpha < 1, f"alpha must be in (0, 1), got {self.alpha}"),
            (self.dtype in DTYPES, f"dtype={self.dtype!r}; valid: {', '.join(DTYPES)}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        d_in = FASHION_DIM if self.data == "fashion_mnist" else self.d_in
        return replace(
            self, d_in=d_in, widths=tuple(self.widths), device=resolve_device(self.device)
        )

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.d_in, *self.widths, self.n_out)

    def run_name(self) -> str:
        return f"{self.activation}/{self.loss}/{self.optimizer}/lr={self.lr:g}/{self.data}"


class BatchedMLP(nn.Module):
    """N independent MLPs evaluated together. Each network's layer is its own 2-D weight and
    1-D bias Parameter (Muon orthogonalises per matrix), stacked for one batched matmul."""

    def __init__(self, weights: list[list[torch.Tensor]], biases: list[list[torch.Tensor]], act):
        super().__init__()
        self.weights = nn.ModuleList(
            nn.ParameterList([nn.Parameter(w.clone()) for w in layer]) for layer in weights
        )
        self.biases = nn.ModuleList(
            nn.ParameterList([nn.Parameter(b.clone()) for b in layer]) for layer in biases
        )
        self.activation = act
        self._fn = get_torch_activation(act)

    @classmethod
    def init(cls, cfg: EarlyConfig, gen: torch.Generator) -> BatchedMLP:
        dtype, device = DTYPES[cfg.dtype], cfg.device
        ws, bs = [], []
        for fan_in, fan_out in zip(cfg.sizes[:-1], cfg.sizes[1:], strict=True):
            std = math.sqrt(cfg.w_gain / fan_in)
            shape = (cfg.n_networks, fan_out, fan_in)
            if cfg.init == "gaussian":
                w = torch.randn(shape, generator=gen, dtype=dtype, device=device) * std
                b = torch.randn(
                    (cfg.n_networks, fan_out), generator=gen, dtype=dtype, device=device
                )
            else:
                a = math.sqrt(3.0)
                w = (torch.rand(shape, generator=gen, dtype=dtype, device=device) * 2 - 1) * a * std
                b = (
                    torch.rand((cfg.n_networks, fan_out), generator=gen, dtype=dtype, device=device)
                    * 2
                    - 1
                ) * a
            ws.append(list(w.unbind(0)))
            bs.append(list((b * cfg.bias_std).unbind(0)))
        return cls(ws, bs, cfg.activation)

    def stacked(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Weights [N, out, in] and biases [N, out] per layer."""
        return (
            [torch.stack(list(layer)) for layer in self.weights],
            [torch.stack(list(layer)) for layer in self.biases],
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list]:
        """x [N, B, d_in] -> (out [N, B, K], pre-activations, layer inputs) of the hidden layers."""
        ws, bs = self.stacked()
        preacts, inputs = [], []
        h = x
        for k, (w, b) in enumerate(zip(ws, bs, strict=True)):
            inputs.append(h)
            p = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # [N, B, out]
            if k == len(ws) - 1:
                return p, preacts, inputs
            preacts.append(p)
            h = self.activation_fn(p)
        raise AssertionError("unreachable: the loop returns at the output layer")

    def activation_fn(self, p: torch.Tensor) -> torch.Tensor:
        return self._fn(p)


def make_optimizers(cfg: EarlyConfig, model: BatchedMLP) -> list[torch.optim.Optimizer]:
    """SGD or Adam on everything; Muon on the weight matrices with Adam on the biases (Muon is
    for 2-D parameters only). No weight decay, so that drift is not confounded with shrinkage."""
    weights = [w for layer in model.weights for w in layer]
    biases = [b for layer in model.biases for b in layer]
    if cfg.optimizer == "sgd":
        return [torch.optim.SGD(weights + biases, lr=cfg.lr, momentum=cfg.momentum, foreach=True)]
    if cfg.optimizer == "adam":
        return [torch.optim.Adam(weights + biases, lr=cfg.lr, foreach=True)]
    return [
        torch.optim.Muon(weights, lr=cfg.lr, weight_decay=0.0),
        torch.optim.Adam(biases, lr=cfg.lr, foreach=True),
    ]


def _fashion_tensors(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    from empirics.data.images import load_fashion_mnist  # raises DataUnavailable with the package

    images, labels = load_fashion_mnist("train")
    # Pixels scaled to [0, 1]: natural non-negative inputs, the case C5 is about.
    x = torch.from_numpy(images.reshape(len(images), -1).copy()).to(device, dtype) / 255.0
    return x, torch.from_numpy(labels.copy()).to(device)


def batches(
    cfg: EarlyConfig, gen: torch.Generator, batch_size: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x [N, B, d_in], labels [N, B]) forever; each network gets its own samples."""
    dtype, device = DTYPES[cfg.dtype], cfg.device
    shape = (cfg.n_networks, batch_size or cfg.batch_size)
    if cfg.data == "fashion_mnist":
        images, labels = _fashion_tensors(device, dtype)
        while True:
            idx = torch.randint(0, len(images), shape, generator=gen, device=device)
            yield images[idx], labels[idx]
    kind = {"gaussian": "gaussian", "uniform": "uniform", "halfnormal": "halfnormal"}[cfg.data]
    while True:
        x = draw_inputs(kind, (*shape, cfg.d_in), gen, dtype, device)
        yield x, torch.randint(0, cfg.n_out, shape, generator=gen, device=device)


def per_network_loss(loss: str, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[N] batch-mean losses: 1/2 |out - onehot|^2 (MSE) or softmax cross-entropy."""
    if loss == "mse":
        y = F.one_hot(labels, out.shape[-1]).to(out.dtype)
        return 0.5 * ((out - y) ** 2).sum(-1).mean(-1)
    return (
        F.cross_entropy(out.flatten(0, 1), labels.flatten(), reduction="none")
        .view(labels.shape)
        .mean(-1)
    )


def _ratio(num: torch.Tensor, den: torch.Tensor) -> RatioAccumulator:
    acc = RatioAccumulator()
    acc.add(num, den)
    return acc


def step_metrics(
    model: BatchedMLP,
    preacts: list[torch.Tensor],
    grads: list[torch.Tensor],
    inputs: list[torch.Tensor],
    z: float,
) -> dict[tuple[str, str], float]:
    """Per hidden layer: E[dl/dp | p > 0] (mean, SE, interval at z), E[dl/dp | p < 0], the net
    E[dl/dp], Remark A.2's Cov_x(dl/dp_i, x_k) and the two parts of E[dl/dW]; plus weight/bias
    means, preact_mean, sparsity and negative_rate. `grads` are d(sum of the networks' batch-mean
    losses)/dp per hidden layer."""
    out: dict[tuple[str, str], float] = {}
    ws, bs = model.stacked()
    with torch.no_grad():
        hidden = zip(preacts, grads, inputs[: len(preacts)], strict=True)
        for k, (p, grad_p, x) in enumerate(hidden, start=1):
            layer = f"layer{k}"
            b = p.shape[1]
            delta = grad_p * b  # the gradient is of the batch-mean loss: per-sample dl/dp / B
            for side, mask in (("pos", p > 0), ("neg", p < 0)):
                m = mask.to(delta.dtype)
                acc = _ratio((delta * m).sum((1, 2)), m.sum((1, 2)))
                est = acc.estimate(z, 0.0)
                out[(layer, f"g_{side}")] = est.mean
                out[(layer, f"g_{side}_se")] = est.stderr
                if side == "pos":
                    out[(layer, "g_pos_lo")], out[(layer, "g_pos_hi")] = est.ci
            out[(layer, "g_all")] = float(delta.mean())
            # Cov over the batch of (dl/dp_i, x_k), averaged over i, k, per network: with
            # s_b = sum_i dl/dp_bi and t_b = sum_k x_bk it is (mean(s t) - mean s mean t) / (n d).
            s, t = delta.sum(-1), x.sum(-1)  # [N, B]
            scale = delta.shape[-1] * x.shape[-1]
            full = (s * t).mean(-1) / scale
            mean_part = s.mean(-1) * t.mean(-1) / scale
            cov = full - mean_part
            out[(layer, "grad_w_mean")] = float(full.mean())
            out[(layer, "grad_w_mean_part")] = float(mean_part.mean())
            out[(layer, "cov_term")] = float(cov.mean())
            out[(layer, "cov_term_se")] = float(cov.std() / math.sqrt(cov.numel()))
            a = model.activation_fn(p)
            out[(layer, "preact_mean")] = metrics.preact_mean(p)
            out[(layer, "sparsity")] = metrics.sparsity(a)
            out[(layer, "negative_rate")] = metrics.negative_rate(p)
        for k, (w, bias) in enumerate(zip(ws, bs, strict=True), start=1):
            name = f"layer{k}" if k <= len(preacts) else "output"
            out[(name, "weight_mean")] = metrics.weight_mean(w)
            out[(name, "bias_mean")] = metrics.bias_mean(bias)
    return out


def persistence_horizon(lower_bounds: Sequence[float]) -> int | None:
    """First step whose interval's lower bound is not > 0 (the sign is no longer positive at the
    chosen confidence); None means it stayed positive through the last step ("beyond T")."""
    for step, lo in enumerate(lower_bounds):
        if not lo > 0:  # NaN counts as not positive
            return step
    return None


@dataclass
class EarlyResult:
    config: dict[str, Any]
    horizons: dict[str, int | None]  # per hidden layer
    steps: int
    seconds: float
    initial: dict[str, float]
    final: dict[str, float]


def train_early(
    cfg: EarlyConfig,
    *,
    writer: RecordWriter | None = None,
    progress: bool = False,
    model: BatchedMLP | None = None,
    data: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> EarlyResult:
    """Train the batch for cfg.steps steps, measuring before every update (step 0 = init) and
    once after the last; returns the persistence horizon of each hidden layer."""
    cfg = cfg.validate()
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    model = model or BatchedMLP.init(cfg, gen)
    data = data or batches(cfg, gen)
    # Its own stream, so that the training trajectory does not depend on measure_batch.
    measure_gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 1_000_003)
    measure_data = batches(cfg, measure_gen, cfg.measure_batch)
    opts = make_optimizers(cfg, model)
    # Student t with N - 1 degrees of freedom: the interval is over a few dozen networks.
    z = float(stats.t.isf(cfg.alpha / 2, cfg.n_networks - 1))
    lows: dict[str, list[float]] = {f"layer{k}": [] for k in range(1, len(cfg.widths) + 1)}
    start = time.perf_counter()
    last: dict[tuple[str, str], float] = {}
    first: dict[tuple[str, str], float] = {}
    for step in tqdm(range(cfg.steps + 1), disable=not progress, desc=cfg.run_name()):
        xm, labels_m = next(measure_data)
        out_m, preacts_m, inputs_m = model(xm)
        grads_m = torch.autograd.grad(per_network_loss(cfg.loss, out_m, labels_m).sum(), preacts_m)
        last = step_metrics(model, preacts_m, list(grads_m), inputs_m, z)
        x, labels = next(data)
        out, _, _ = model(x)
        losses = per_network_loss(cfg.loss, out, labels)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        # Sum over networks: each network's parameters get exactly its own batch-mean gradient.
        losses.sum().backward()
        last[("output", "loss")] = float(losses.detach().mean())
        first = first or last
        for layer in lows:
            lows[layer].append(last[(layer, "g_pos_lo")])
        if writer is not None:
            writer.write(step, last)
        if step < cfg.steps:
            for opt in opts:
                opt.step()
    horizons = {layer: persistence_horizon(lo) for layer, lo in lows.items()}
    return EarlyResult(
        config=asdict(cfg),
        horizons=horizons,
        steps=cfg.steps,
        seconds=time.perf_counter() - start,
        initial={f"{layer}/{metric}": v for (layer, metric), v in first.items()},
        final={f"{layer}/{metric}": v for (layer, metric), v in last.items()},
    )


def sweep(
    base: EarlyConfig,
    *,
    activations: Sequence[str] = ("relu", "gelu", "silu", "tanh"),
    losses: Sequence[str] = LOSSES,
    optimizers: Sequence[str] = OPTIMIZERS,
    lrs: dict[str, Sequence[float]] | None = None,
    out: Path = DEFAULT_OUT,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Persistence horizons over activation x loss x optimizer x lr; every run's per-step records
    go to out/records.csv, the table to out/summary.json (with config and provenance)."""
    lrs = lrs or LR_GRID
    configs = [
        replace(base, activation=a, loss=lo, optimizer=o, lr=lr).validate()
        for a in activations
        for lo in losses
        for o in optimizers
        for lr in lrs[o]
    ]  # every configuration checked before the first step runs
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / "config.json",
        {"base": asdict(base), "lrs": lrs, "provenance": provenance(configs[0].device)},
    )
    table = []
    with RecordWriter(out / "records.csv", run="sweep") as writer:
        for cfg in tqdm(configs, disable=not progress, desc="sweep"):
            writer.run = cfg.run_name()
            res = train_early(cfg, writer=writer)
            row = {
                "activation": cfg.activation,
                "loss": cfg.loss,
                "optimizer": cfg.optimizer,
                "lr": cfg.lr,
                "data": cfg.data,
                "horizons": res.horizons,
                "g_pos_step0": res.initial["layer1/g_pos"],
                "g_pos_final": res.final["layer1/g_pos"],
                "bias_mean_final": res.final["layer1/bias_mean"],
                "seconds": res.seconds,
            }
            table.append(row)
            atomic_write_json(out / "summary.json", {"steps": base.steps, "runs": table})
    return table


def _fmt_horizon(h: int | None, steps: int) -> str:
    return f">{steps}" if h is None else str(h)


def main(argv: list[str] | None = None) -> Any:
    ap = argparse.ArgumentParser(prog="python -m empirics.early_training", description=__doc__)
    ap.add_argument("--activation", action="append", default=None, help="repeatable; NAME=EXPR ok")
    ap.add_argument("--loss", action="append", default=None, choices=LOSSES)
    ap.add_argument("--optimizer", action="append", default=None, choices=OPTIMIZERS)
    ap.add_argument("--lr", type=float, action="append", default=None)
    ap.add_argument("--sweep", action="store_true", help="all combinations (lrs from LR_GRID)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--n-networks", type=int, default=32)
    ap.add_argument("--d-in", type=int, default=32)
    ap.add_argument("--widths", default="64,64")
    ap.add_argument("--n-out", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--measure-batch", type=int, default=256)
    ap.add_argument("--data", default="gaussian", choices=DATA)
    ap.add_argument("--init", default="gaussian", choices=("gaussian", "uniform"))
    ap.add_argument("--w-gain", type=float, default=1.0)
    ap.add_argument("--bias-std", type=float, default=0.0)
    ap.add_argument("--momentum", type=float, default=0.0)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except (registry.RegistryError, ValueError) as exc:
        ap.error(str(exc))  # exits with status 2 and the usage line
        raise AssertionError("unreachable") from exc


def _run(args: argparse.Namespace) -> Any:
    acts = [registry.parse_activation_spec(a).name for a in (args.activation or [])]
    base = EarlyConfig(
        activation=(acts or ["relu"])[0],
        steps=args.steps,
        n_networks=args.n_networks,
        d_in=args.d_in,
        widths=tuple(int(w) for w in args.widths.split(",")),
        n_out=args.n_out,
        batch_size=args.batch_size,
        measure_batch=args.measure_batch,
        data=args.data,
        init=args.init,
        w_gain=args.w_gain,
        bias_std=args.bias_std,
        momentum=args.momentum,
        alpha=args.alpha,
        dtype=args.dtype,
        device=args.device,
        seed=args.seed,
    )
    optimizers = args.optimizer or (list(OPTIMIZERS) if args.sweep else ["sgd"])
    lrs = (
        {o: tuple(args.lr) for o in optimizers}
        if args.lr
        else {o: LR_GRID[o] if args.sweep else (LR_GRID[o][0],) for o in optimizers}
    )
    table = sweep(
        base,
        activations=acts or (["relu", "gelu", "silu", "tanh"] if args.sweep else ["relu"]),
        losses=args.loss or (list(LOSSES) if args.sweep else ["mse"]),
        optimizers=optimizers,
        lrs=lrs,
        out=args.out,
    )
    print(f"persistence horizon of E[dl/dp | p > 0] > 0 at {1 - args.alpha:.0%} per step")
    for row in table:
        hs = " ".join(f"{k}={_fmt_horizon(v, args.steps)}" for k, v in row["horizons"].items())
        name = f"{row['activation']:>8} {row['loss']:>13} {row['optimizer']:>5}"
        print(f"{name} lr={row['lr']:<7g} {hs}")
    print(f"wrote {args.out}/records.csv, config.json, summary.json")
    return table


if __name__ == "__main__":
    main()
