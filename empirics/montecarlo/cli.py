"""Command line for single Monte Carlo estimates: tidy records + summary/config JSON + provenance.

Run: `python -m empirics.montecarlo g_pos --activation gelu --loss cross_entropy --n-networks 8192`;
`python -m empirics.montecarlo list activations` lists the registry. Exit 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from empirics.activations import ActivationField, ActivationOverflow, check_finite_range
from empirics.cli import (
    EXIT_OK,
    MAX_SEED,
    add_config_flags,
    config_kwargs,
    list_activations,
)
from empirics.montecarlo.estimators import (
    estimate_conditional_mean,
    estimate_drift_coefficient,
    estimate_effective_weights,
    estimate_first_step,
    estimate_g_curve,
)
from empirics.montecarlo.ledger import ENTRY_IDS, montecarlo_for_entry
from empirics.montecarlo.sampler import (
    DESIGNS,
    DTYPES,
    INIT_LAWS,
    INPUT_LAWS,
    LABELS,
    LOSS_NAMES,
    NetConfig,
)
from empirics.outputs import RecordWriter, atomic_write_json, provenance
from empirics.stats.estimates import Estimate, SignTest
from empirics.train.config import available_memory, check_out_dir, describe
from theory import registry
from theory.registry import Activation

QUANTITIES = ("g_pos", "g_neg", "net_drift", "D", "g_curve", "effective_weights", "first_step")
DEFAULT_OUT = Path("results/montecarlo")

PositiveInt = Annotated[int, Field(ge=1)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Quantity = Literal[(*QUANTITIES, "entry")]  # type: ignore[valid-type]
LossName = Literal[LOSS_NAMES]  # type: ignore[valid-type]
EntryId = Literal[ENTRY_IDS]  # type: ignore[valid-type]
InitLaw = Literal[INIT_LAWS]  # type: ignore[valid-type]
InputLaw = Literal[INPUT_LAWS]  # type: ignore[valid-type]
Labels = Literal[LABELS]  # type: ignore[valid-type]
Dtype = Literal[tuple(DTYPES)]  # type: ignore[valid-type]
Design = Literal[DESIGNS]  # type: ignore[valid-type]


class Options(BaseModel):
    """What `python -m empirics.montecarlo QUANTITY` takes: the random networks (NetConfig's
    fields), the sequential sign test, the quantity's own parameters and the output. Each
    field's type, bounds and help are written here once; the flags are generated from them."""

    model_config = ConfigDict(extra="forbid")

    quantity: Quantity = Field(
        description="what to estimate; `entry` runs a ledger entry's own Monte Carlo"
    )
    activation: list[ActivationField] = Field(
        ["relu"],
        validate_default=True,
        min_length=1,
        description="registry name, family spec (leaky_relu:slope=0.2) or NAME=EXPR; repeatable",
    )
    loss: LossName = Field("mse", description="the loss")
    entry_id: EntryId | None = Field(None, description="with quantity 'entry': the ledger entry")
    d_in: PositiveInt = Field(64, description="input dimension")
    widths: tuple[PositiveInt, ...] = Field((256,), description="hidden widths")
    n_out: PositiveInt = Field(10, description="outputs")
    inputs_per_net: PositiveInt = Field(64, description="inputs drawn per network")
    init: InitLaw = Field("gaussian", description="law of weights and biases")
    inputs: InputLaw = Field("gaussian", description="law of the inputs")
    labels: Labels = Field("class", description="law of the targets")
    w_gain: Annotated[Finite, Field(gt=0)] = Field(
        1.0, description="a variance factor: Var W = w_gain / fan_in"
    )
    bias_std: Annotated[Finite, Field(ge=0)] = Field(0.0, description="std of the biases")
    layer: PositiveInt = Field(1, description="the hidden layer studied (1-based)")
    dtype: Dtype = Field("float32", description="float type")
    device: str = Field("auto", description="auto | cpu | cuda[:N]")
    antithetic: bool = Field(True, description="the antithetic pair W_L <-> -W_L")
    design: Design = Field("auto", description="how networks are drawn")
    v_per_block: PositiveInt = Field(16, description="crossed design: output layers per block")
    control_variate: bool = Field(True, description="the crossed design's control variate")
    measure_vr: bool = Field(False, description="also estimate without the antithetic pair")
    alpha: Annotated[float, Field(gt=0, lt=1)] = Field(
        1e-3, description="false-sign rate of the sign test"
    )
    max_looks: PositiveInt = Field(1, description="looks at N/2^(L-1), ..., N")
    lr: Finite = Field(1.0, description="first_step learning rate, non-zero")
    s: Annotated[Finite, Field(gt=0)] = Field(1.0, description="D(sigma, s): pre-activation std")
    edges: str = Field("-4,4,16", description="g_curve bins: 'lo,hi,n' or increasing edges")
    n_networks: Annotated[int, Field(ge=2, le=2**40)] = Field(
        4096, description="sample size (networks, or crossed blocks)"
    )
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = Field(0, description="0 .. 2**63-1")
    out: Path | None = Field(None, description=f"output directory (default {DEFAULT_OUT}/QUANTITY)")
    progress: bool = Field(True, description="a progress bar on stderr")

    @field_validator("lr")
    @classmethod
    def _nonzero(cls, lr: float) -> float:
        if lr == 0:
            raise ValueError("expected a finite non-zero number, got 0.0")
        return lr

    @field_validator("edges")
    @classmethod
    def _edges(cls, edges: str) -> str:
        try:
            _parse_edges(edges)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("--edges: ")) from None
        return edges

    @model_validator(mode="after")
    def _entry(self) -> Options:
        if self.quantity == "entry" and self.entry_id is None:
            raise ValueError(
                f"--entry-id: quantity 'entry' needs one of {', '.join(ENTRY_IDS)}, got None"
            )
        return self

    def net_config(self, activation: Activation) -> NetConfig:
        """The networks for one activation, every field checked (ValueError naming it)."""
        return NetConfig(
            activation=activation.name,
            loss=self.loss,
            d_in=self.d_in,
            widths=self.widths,
            n_out=self.n_out,
            inputs_per_net=self.inputs_per_net,
            init=self.init,
            w_gain=self.w_gain,
            bias_std=self.bias_std,
            inputs=self.inputs,
            labels=self.labels,
            layer=self.layer,
            dtype=self.dtype,
            device=self.device,
            antithetic=self.antithetic,
            design=self.design,
            v_per_block=self.v_per_block,
            control_variate=self.control_variate,
        ).validate()


def _parse_edges(text: str) -> list[float]:
    """'lo,hi,n' -> n+1 equally spaced edges, or an explicit list 'a,b,c,...' (more than 3)."""
    accepted = "accepted: 'lo,hi,n' (n >= 1 bins) or increasing finite edges 'a,b,c,d,...'"
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--edges: {text!r} is not a list of numbers; {accepted}") from None
    if len(parts) == 3 and parts[2].is_integer() and 1 <= parts[2] <= 100_000:
        lo, hi, n = parts[0], parts[1], int(parts[2])
        parts = [lo + (hi - lo) * i / n for i in range(n + 1)]
    if len(parts) < 2 or not all(map(math.isfinite, parts)):
        raise ValueError(f"--edges: {text!r} gives no finite bins; {accepted}")
    if any(b <= a for a, b in zip(parts, parts[1:], strict=False)):
        raise ValueError(f"--edges: {text!r} is not increasing; {accepted}")
    return parts


def _check_out_and_memory(opts: Options, cfg: NetConfig) -> None:
    """The output directory and the memory one network needs: ValueError naming the flag,
    before anything is written or allocated."""
    if opts.out is not None:
        check_out_dir(opts.out)
    # The estimators chunk networks to ~32 MB, but never below one network: its weights and
    # three [inputs, width] tensors per layer (pre-activation, activation, gradient) must fit.
    sizes = cfg.sizes
    itemsize = 8 if cfg.dtype == "float64" else 4
    weights = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
    crossed_out = cfg.v_per_block * cfg.n_out * 3 if cfg.crossed else 0
    acts = cfg.inputs_per_net * (3 * sum(sizes) + crossed_out)
    need = (weights + acts) * itemsize
    have = available_memory(cfg.device)
    if have is not None and need > have:
        raise ValueError(
            f"memory: one network of widths {','.join(map(str, cfg.widths))} (d_in {cfg.d_in}, "
            f"{cfg.inputs_per_net} inputs) needs about {need / 2**30:.1f} GiB, "
            f"{have / 2**30:.1f} GiB are available; lower --widths or --inputs-per-net"
        )


def _check_finite(activation: Activation, dtype: str, results: dict[str, Any]) -> None:
    """A non-finite mean or standard error is an overflow inside the estimate (the activation
    or a product of it grew past the float type), reported as such, never printed as a value."""
    for name, res in results.items():
        if res is None:
            continue
        values = (res.get("mean"), res.get("stderr"))
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ActivationOverflow(
                f"activation {activation.name!r}: the {name} estimate is not finite (mean "
                f"{res.get('mean')}, stderr {res.get('stderr')}) in {dtype}: a floating-point "
                "overflow inside the Monte Carlo, not a result; use --dtype float64 or scale the "
                "activation down (e.g. divide its expression by a constant)"
            )


def _rows(look: int, estimates: dict[str, Estimate]) -> list[tuple[int, str, str, float]]:
    rows = []
    for name, e in estimates.items():
        for metric, value in (
            ("mean", e.mean),
            ("stderr", e.stderr),
            ("ci_lo", e.ci[0]),
            ("ci_hi", e.ci[1]),
            ("n", e.n),
        ):
            rows.append((look, name, metric, value))
    return rows


def estimate(
    quantity: str,
    cfg: NetConfig,
    *,
    generator: torch.Generator,
    test: SignTest | None = None,
    lr: float = 1.0,
    s: float = 1.0,
    edges: list[float] | None = None,
    n_networks: int = 2048,
    measure_vr: bool = False,
    progress: bool = False,
    writer: RecordWriter | None = None,
) -> dict[str, Estimate]:
    """Run one named quantity; returns its estimates by name (and writes per-look records)."""
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; valid: {', '.join(QUANTITIES)}")

    def on_look(look: int, ests: dict[str, Estimate]) -> None:
        if writer is not None:
            writer.write_rows(_rows(look, ests))

    seq: dict[str, Any] = dict(
        generator=generator,
        test=test,
        n_networks=n_networks,
        progress=progress,
        on_look=on_look,
    )
    if quantity in ("g_pos", "g_neg", "net_drift"):
        side = {"g_pos": "pos", "g_neg": "neg", "net_drift": "all"}[quantity]
        return {quantity: estimate_conditional_mean(cfg, side, measure_vr=measure_vr, **seq)}
    if quantity == "D":
        return {"D": estimate_drift_coefficient(cfg.activation, s, **seq)}
    if quantity == "effective_weights":
        return estimate_effective_weights(cfg, **seq)
    if quantity == "first_step":
        return estimate_first_step(cfg, lr, **seq)
    bins = estimate_g_curve(
        cfg,
        edges or _parse_edges("-4,4,16"),
        generator=generator,
        n_networks=n_networks,
        progress=progress,
    )
    out = {f"bin{j:03d}": e for j, e in enumerate(bins)}
    if writer is not None:
        writer.write_rows(_rows(0, out))
    return out


def build_parser() -> argparse.ArgumentParser:
    """QUANTITY, the repeatable --activation, and one flag per other field of Options."""
    ap = argparse.ArgumentParser(
        prog="python -m empirics.montecarlo",
        usage="%(prog)s QUANTITY [--activation SPEC] [options]   (--help lists them)",
        description=__doc__,
        argument_default=argparse.SUPPRESS,
    )
    fields = Options.model_fields
    ap.add_argument("quantity", choices=(*QUANTITIES, "entry"), help=fields["quantity"].description)
    ap.add_argument(
        "--activation",
        action="append",
        metavar="SPEC",
        help=fields["activation"].description + " (default relu)",
    )
    # --data: the early-training CLI's spelling of --inputs.
    add_config_flags(ap, Options, skip=("quantity", "activation"), aliases={"inputs": ["--data"]})
    return ap


def parse_options(argv: Sequence[str] | None = None) -> Options:
    """The command line as Options; bad input exits 2 (SystemExit) naming the field, the value
    and what is accepted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return Options(**config_kwargs(args, Options.model_fields))
    except ValidationError as exc:
        parser.error(describe(exc, flags=True))
        raise AssertionError("unreachable") from exc


def run(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Parse, check everything before compute, run, write records.csv/config.json/summary.json;
    returns the summary written. Bad input exits 2 (SystemExit) with the usage line."""
    opts = parse_options(argv)
    try:
        return _run(opts)
    except (registry.RegistryError, ValueError) as exc:
        build_parser().error(str(exc))  # exits with status 2 and the usage line
        raise AssertionError("unreachable") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 2 bad input; `list activations` prints the registry."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["list"]:
        ap = argparse.ArgumentParser(prog="python -m empirics.montecarlo list")
        ap.add_argument("what", choices=("activations",))
        ap.parse_args(argv[1:])
        return list_activations()
    run(argv)
    return EXIT_OK


def _run(opts: Options) -> dict[str, dict[str, Any]]:
    acts = {a.name: a for a in opts.activation}  # a spec given twice runs once
    configs = {name: opts.net_config(act) for name, act in acts.items()}
    _check_out_and_memory(opts, next(iter(configs.values())))
    torch_dtype = DTYPES[opts.dtype]
    scale = max(1.0, opts.s if opts.quantity == "D" else 1.0, math.sqrt(opts.w_gain))
    for act in acts.values():  # an overflow is refused before anything is written
        check_finite_range(act, torch_dtype, bound=10.0 * scale)
    out = opts.out or DEFAULT_OUT / opts.quantity
    created = not out.exists()
    try:
        return _estimate_all(opts, acts, configs, out)
    except ActivationOverflow:
        # What this call wrote is incomplete; an earlier run's files there were replaced.
        for name in ("records.csv", "config.json", "summary.json"):
            (out / name).unlink(missing_ok=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _estimate_one(
    opts: Options, act: Activation, cfg: NetConfig, writer: RecordWriter
) -> dict[str, Any]:
    """One activation's estimates, as the summary holds them."""
    gen = torch.Generator().manual_seed(opts.seed)
    if opts.quantity == "entry":
        res = montecarlo_for_entry(
            opts.entry_id, act.name, opts.loss, n_networks=opts.n_networks, generator=gen
        )
        return {opts.entry_id: res}
    ests = estimate(
        opts.quantity,
        cfg,
        generator=gen,
        test=SignTest(alpha=opts.alpha, max_looks=opts.max_looks),
        lr=opts.lr,
        s=opts.s,
        edges=_parse_edges(opts.edges),
        n_networks=opts.n_networks,
        measure_vr=opts.measure_vr,
        progress=opts.progress,
        writer=writer,
    )
    return {k: e.to_dict() for k, e in ests.items()}


def _estimate_all(
    opts: Options, acts: dict[str, Activation], configs: dict[str, NetConfig], out: Path
) -> dict[str, dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    device = next(iter(configs.values())).device
    atomic_write_json(
        out / "config.json",
        {
            "args": opts.model_dump(mode="json"),
            "configs": {a: c.to_dict() for a, c in configs.items()},
        }
        | {"provenance": provenance(device)},
    )
    summary: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    with RecordWriter(out / "records.csv", run=opts.quantity) as writer:
        for name, cfg in configs.items():
            run = f"{opts.quantity}:{name}:{opts.loss}"
            writer.run = run
            summary[run] = _estimate_one(opts, acts[name], cfg, writer)
            _check_finite(acts[name], opts.dtype, summary[run])
            for what, res in summary[run].items():
                if res is None:
                    print(f"{run} {what}: not estimated")
                    continue
                lo, hi = res["ci"]
                print(
                    f"{run} {what}: {res['mean']:.6g} ± {res['stderr']:.2g} "
                    f"[{lo:.4g}, {hi:.4g}] n={res['n']} sign={res['sign']}"
                )
    atomic_write_json(
        out / "summary.json", {"seconds": time.perf_counter() - start, "estimates": summary}
    )
    print(f"wrote {out}/records.csv, config.json, summary.json")
    return summary
