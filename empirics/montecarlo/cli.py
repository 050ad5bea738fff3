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
from typing import Any

import torch

from empirics.activations import ActivationOverflow, check_finite_range
from empirics.cli import EXIT_OK, list_activations, parse_ints
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
    INIT_LAWS,
    INPUT_LAWS,
    LABELS,
    LOSS_NAMES,
    NetConfig,
)
from empirics.outputs import RecordWriter, atomic_write_json, provenance
from empirics.stats import Estimate, SignTest
from theory import registry

QUANTITIES = ("g_pos", "g_neg", "net_drift", "D", "g_curve", "effective_weights", "first_step")
DEFAULT_OUT = Path("results/montecarlo")


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


def _check_args(args: argparse.Namespace, cfg: NetConfig) -> None:
    """The fields NetConfig does not hold, the output directory and the memory one network
    needs: ValueError naming the flag, before anything is written or allocated."""
    from empirics.train.config import MAX_SEED, available_memory, check_out_dir

    if not 0 <= args.seed <= MAX_SEED:
        raise ValueError(f"--seed: expected an integer in [0, 2**63 - 1], got {args.seed}")
    if not 2 <= args.n_networks <= 2**40:
        raise ValueError(f"--n-networks: expected an integer in [2, 2**40], got {args.n_networks}")
    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha: expected a false-sign rate in (0, 1), got {args.alpha}")
    if args.max_looks < 1:
        raise ValueError(f"--max-looks: expected an integer >= 1, got {args.max_looks}")
    if not math.isfinite(args.lr) or args.lr == 0:
        raise ValueError(f"--lr: expected a finite non-zero number, got {args.lr}")
    if not (math.isfinite(args.s) and args.s > 0):
        raise ValueError(f"--s: expected a finite number > 0, got {args.s}")
    if args.out is not None:
        check_out_dir(Path(args.out))
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


def _check_finite(activation: str, dtype: str, results: dict[str, Any]) -> None:
    """A non-finite mean or standard error is an overflow inside the estimate (the activation
    or a product of it grew past the float type), reported as such, never printed as a value."""
    for name, res in results.items():
        if res is None:
            continue
        values = (res.get("mean"), res.get("stderr"))
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ActivationOverflow(
                f"activation {activation!r}: the {name} estimate is not finite (mean "
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
    ap = argparse.ArgumentParser(
        prog="python -m empirics.montecarlo",
        usage="%(prog)s QUANTITY [--activation SPEC] [options]   (--help lists them)",
        description=__doc__,
    )
    ap.add_argument("quantity", choices=(*QUANTITIES, "entry"))
    ap.add_argument(
        "--activation",
        action="append",
        default=None,
        help="registry name, family spec (leaky_relu:slope=0.2) or NAME=EXPR; repeatable",
    )
    ap.add_argument("--loss", default="mse", choices=LOSS_NAMES)
    ap.add_argument("--entry-id", default=None, help=f"with quantity 'entry': one of {ENTRY_IDS}")
    ap.add_argument("--d-in", type=int, default=64)
    ap.add_argument("--widths", default="256", help="hidden widths, comma separated")
    ap.add_argument("--n-out", type=int, default=10)
    ap.add_argument("--inputs-per-net", type=int, default=64)
    ap.add_argument("--init", default="gaussian", choices=INIT_LAWS)
    ap.add_argument(
        "--inputs", "--data", dest="inputs", default="gaussian", choices=INPUT_LAWS
    )  # --data: the early-training CLI's spelling
    ap.add_argument("--labels", default="class", choices=LABELS)
    ap.add_argument(
        "--w-gain", type=float, default=1.0, help="a variance factor: Var W = w_gain / fan_in"
    )
    ap.add_argument("--bias-std", type=float, default=0.0)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-antithetic", action="store_true")
    ap.add_argument("--design", default="auto", choices=DESIGNS)
    ap.add_argument("--v-per-block", type=int, default=16, help="crossed design: output layers")
    ap.add_argument("--no-control-variate", action="store_true")
    ap.add_argument("--measure-vr", action="store_true", help="also estimate without the pair")
    ap.add_argument("--alpha", type=float, default=1e-3, help="false-sign rate of the test")
    ap.add_argument("--max-looks", type=int, default=1, help="looks at N/2^(L-1), ..., N")
    ap.add_argument("--lr", type=float, default=1.0, help="first_step learning rate")
    ap.add_argument("--s", type=float, default=1.0, help="D(sigma, s): pre-activation std")
    ap.add_argument("--edges", default="-4,4,16", help="g_curve bins: 'lo,hi,n' or a list")
    ap.add_argument(
        "--n-networks", type=int, default=4096, help="sample size (networks, or crossed blocks)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT}/<quantity>")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def run(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Parse, check everything before compute, run, write records.csv/config.json/summary.json;
    returns the summary written. Bad input exits 2 (SystemExit) with the usage line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (registry.RegistryError, ValueError) as exc:
        parser.error(str(exc))  # exits with status 2 and the usage line
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


def _run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    specs = args.activation or ["relu"]
    activations = [registry.parse_activation_spec(s).name for s in specs]
    widths = tuple(parse_ints(args.widths, "--widths", lo=1))
    test = SignTest(alpha=args.alpha, max_looks=args.max_looks)
    if args.quantity == "entry" and args.entry_id not in ENTRY_IDS:
        raise ValueError(f"--entry-id must be one of {', '.join(ENTRY_IDS)}, got {args.entry_id}")
    if args.n_networks < 2:
        raise ValueError(f"--n-networks must be >= 2, got {args.n_networks}")
    configs = {
        act: NetConfig(
            activation=act,
            loss=args.loss,
            d_in=args.d_in,
            widths=widths,
            n_out=args.n_out,
            inputs_per_net=args.inputs_per_net,
            init=args.init,
            w_gain=args.w_gain,
            bias_std=args.bias_std,
            inputs=args.inputs,
            labels=args.labels,
            layer=args.layer,
            dtype=args.dtype,
            device=args.device,
            antithetic=not args.no_antithetic,
            design=args.design,
            v_per_block=args.v_per_block,
            control_variate=not args.no_control_variate,
        ).validate()
        for act in activations
    }
    edges = _parse_edges(args.edges)
    _check_args(args, next(iter(configs.values())))
    torch_dtype = torch.float64 if args.dtype == "float64" else torch.float32
    scale = max(1.0, args.s if args.quantity == "D" else 1.0, math.sqrt(args.w_gain))
    for act in configs:  # an overflow is refused before anything is written
        check_finite_range(act, torch_dtype, bound=10.0 * scale)
    out = args.out or DEFAULT_OUT / args.quantity
    created = not out.exists()
    try:
        return _estimate_all(args, configs, test, edges, out)
    except ActivationOverflow:
        # What this call wrote is incomplete; an earlier run's files there were replaced.
        for name in ("records.csv", "config.json", "summary.json"):
            (out / name).unlink(missing_ok=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _estimate_all(
    args: argparse.Namespace,
    configs: dict[str, NetConfig],
    test: SignTest,
    edges: list[float],
    out: Path,
) -> dict[str, dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    device = next(iter(configs.values())).device
    atomic_write_json(
        out / "config.json",
        {"args": vars(args), "configs": {a: c.to_dict() for a, c in configs.items()}}
        | {"provenance": provenance(device)},
    )
    summary: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    with RecordWriter(out / "records.csv", run=args.quantity) as writer:
        for act, cfg in configs.items():
            gen = torch.Generator().manual_seed(args.seed)
            run = f"{args.quantity}:{act}:{args.loss}"
            writer.run = run
            if args.quantity == "entry":
                res = montecarlo_for_entry(
                    args.entry_id, act, args.loss, n_networks=args.n_networks, generator=gen
                )
                summary[run] = {args.entry_id: res}
            else:
                ests = estimate(
                    args.quantity,
                    cfg,
                    generator=gen,
                    test=test,
                    lr=args.lr,
                    s=args.s,
                    edges=edges,
                    n_networks=args.n_networks,
                    measure_vr=args.measure_vr,
                    progress=not args.no_progress,
                    writer=writer,
                )
                summary[run] = {k: e.to_dict() for k, e in ests.items()}
            _check_finite(act, args.dtype, summary[run])
            for name, res in summary[run].items():
                if res is None:
                    print(f"{run} {name}: not estimated")
                    continue
                lo, hi = res["ci"]
                print(
                    f"{run} {name}: {res['mean']:.6g} ± {res['stderr']:.2g} "
                    f"[{lo:.4g}, {hi:.4g}] n={res['n']} sign={res['sign']}"
                )
    atomic_write_json(
        out / "summary.json", {"seconds": time.perf_counter() - start, "estimates": summary}
    )
    print(f"wrote {out}/records.csv, config.json, summary.json")
    return summary
