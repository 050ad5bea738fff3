"""One GPU check (at most 5 minutes on one GPU): Monte Carlo samples/s as a fraction of the
measured matmul rate, the training-step benchmark, and a paper-preset GPT-nano run's tokens/s, MFU.

`python -m benchmarks.gpu_check` (`make gpu-check`); without CUDA it says so and exits 0. `--cpu`
runs the same steps at tiny sizes on the CPU, labelled as such (it checks code, not a GPU).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import dense_matmul_rate, sync
from empirics.outputs import atomic_write_json, provenance

BUDGET_S = 300.0


@dataclass(frozen=True)
class Sizes:
    """What each step measures; fixed per mode (never scaled by elapsed time)."""

    label: str
    matmul_n: int
    matmul_s: float
    full_mc_bench: bool  # the whole quick Monte Carlo benchmark (all methods), or ours alone
    mc_slice_s: float
    step_shape: dict[str, int]
    step_reps: int
    preset: str  # GPT-nano preset of the end-to-end run
    run_model: dict[str, Any]  # overrides of that preset's model config
    run_steps: tuple[int, int]  # two run lengths; their wall-time difference is per-step time
    ladder_top: bool = True  # the scaling ladder's most expensive rung, else its cheapest


GPU = Sizes(
    label="GPU",
    matmul_n=8192,
    matmul_s=2.0,
    full_mc_bench=True,
    mc_slice_s=0.0,
    step_shape={"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024},
    step_reps=10,
    preset="paper",
    run_model={"val_windows": 16},
    run_steps=(8, 28),
)
CPU_TINY = Sizes(
    label="CPU, tiny sizes (checks the code path; not a GPU measurement)",
    matmul_n=256,
    matmul_s=0.3,
    full_mc_bench=False,
    mc_slice_s=0.3,
    step_shape={},
    step_reps=3,
    preset="smoke",
    run_model={"val_windows": 8},
    run_steps=(5, 45),
    ladder_top=False,
)


def transformer_flops_per_token(n_params: int, n_layer: int, block: int, n_embd: int) -> float:
    """Training FLOPs per token: 6N for the weights (forward + backward) plus 12·L·T·d for the
    attention scores and values (the PaLM convention, which counts the causal mask's zeros)."""
    return 6.0 * n_params + 12.0 * n_layer * block * n_embd


def monte_carlo(device: str, sizes: Sizes, peak_fp32: float) -> dict[str, Any]:
    """Our estimator's samples/s and its FLOP rate as a fraction of the fp32 matmul rate."""
    from benchmarks import montecarlo_bench as mb
    from empirics.montecarlo.sampler import NetConfig

    if sizes.full_mc_bench:
        report = mb.bench(quick=True, device=device, out=None)
        out = {}
        for loss, r in report["losses"].items():
            out[loss] = {
                "samples_per_s": r["methods"]["d_ours"]["samples_per_s"],
                "fraction_of_matmul": r["flop_fraction_ours"],
                "matmul_flops": report["dense_matmul_flops"],
            }
        return out
    base = NetConfig(
        activation="relu",
        d_in=mb.D_IN,
        widths=(mb.WIDTH,),
        n_out=mb.K,
        inputs_per_net=mb.B_BLOCK,
        v_per_block=mb.G_BLOCK,
        design="crossed",
        device=device,
    )
    per_block = mb.G_BLOCK * mb.B_BLOCK * mb.WIDTH  # samples: (output layer, input, unit)
    flops_block = 2 * (2 * mb.B_BLOCK * mb.WIDTH * mb.G_BLOCK * mb.K)  # as montecarlo_bench
    out = {}
    for loss in ("mse", "cross_entropy"):
        cfg = replace(base, loss=loss).validate()
        (m,) = mb.measure(
            [("d_ours", mb.ours(cfg), 32, per_block)],
            rounds=1,
            slices={"d_ours": sizes.mc_slice_s},
            seed=1,
            device=device,
        )
        out[loss] = {
            "samples_per_s": m.samples_per_s,
            "fraction_of_matmul": flops_block * m.nets_per_s / peak_fp32,
            "matmul_flops": peak_fp32,
        }
    return out


def training_step(device: str, sizes: Sizes, peak_fp32: float) -> dict[str, Any]:
    """benchmarks.train_bench (GPT-nano vs a torch reference, hooks overhead) plus tokens/s and
    MFU of GPT-nano's fp32 step against the measured fp32 matmul rate."""
    from benchmarks import train_bench as tb

    res = tb.run(reps=sizes.step_reps, device=device, shape=sizes.step_shape)
    shape = res["shape"]
    tokens = shape["batch"] * shape["block_size"]
    step_s = res["median_step_s"]["gpt_nano"]
    flops = tokens * transformer_flops_per_token(
        res["params"]["gpt_nano"], shape["n_layer"], shape["block_size"], shape["n_embd"]
    )
    res["tokens_per_s"] = tokens / step_s
    res["mfu_vs_fp32_matmul"] = flops / step_s / peak_fp32
    return res


def _preset_config(sizes: Sizes, device: str, steps: int, out: str) -> Any:
    from empirics.train.config import TrainConfig

    return TrainConfig(
        arch="gpt_nano",
        preset=sizes.preset,
        data="synthetic",
        steps=steps,
        warmup=0,
        early_steps=0,
        log_every_late=10**6,  # metrics at the first and last step only, in both runs
        device=device,
        progress=False,
        out=out,
        model=sizes.run_model,
    )


def _ladder_config(device: str, steps: int, out: str, top: bool = True) -> Any:
    """The scaling ladder's most expensive rung (its largest size and budget; `top=False`: its
    cheapest, for the CPU code-path check), shortened to `steps`."""
    from empirics.experiments import ladder as rungs_of
    from empirics.experiments import scale

    ladder = rungs_of.Ladder()
    cost = {r: r.tokens / rungs_of.RATE_TOKENS_PER_S[r.size] for r in rungs_of.rungs(ladder)}
    pick = max(cost, key=cost.get) if top else min(cost, key=cost.get)
    cfg = scale.train_config(pick, ladder, Path(out))
    return cfg.replace(
        data="synthetic",  # the rung's shapes on random tokens: speed does not read the text
        steps=steps,
        warmup=0,
        device=device,
        checkpoint_every=0,
        out=out,
        log_every_late=10**6,
        threads=None,
        eval_batches=1,
    )


def gpt_nano_run(
    device: str,
    sizes: Sizes,
    peak_bf16: float | None,
    peak_fp32: float,
    make_config: Any = None,
    label: str | None = None,
) -> dict:
    """Two short runs through the trainer (the preset on synthetic tokens, or `make_config`'s);
    the difference of their wall times over the difference of their steps is the time of one
    training step (model build, first-step warm-up and the final evaluation cancel)."""
    from empirics.models import gpt_nano
    from empirics.train.loop import plan, train

    walls, cfgs = [], []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for steps in sizes.run_steps:
            out = str(Path(tmp) / f"run{steps}")
            if make_config is None:
                cfg = _preset_config(sizes, device, steps, out)
            else:
                cfg = make_config(device, steps, out)
            p = plan(cfg)
            start = time.perf_counter()
            train(cfg)
            sync(device)
            walls.append(time.perf_counter() - start)
            cfgs.append(p)
    p = cfgs[0]
    mc = p.model_cfg
    with torch.device("meta"):
        n_params = sum(t.numel() for t in gpt_nano.Model(mc).parameters())
    step_s = (walls[1] - walls[0]) / (sizes.run_steps[1] - sizes.run_steps[0])
    tokens = p.cfg.batch_size * mc.block_size
    flops = tokens * transformer_flops_per_token(n_params, mc.n_layer, mc.block_size, mc.n_embd)
    bf16 = p.cfg.precision == "bf16" or (p.cfg.precision == "auto" and device.startswith("cuda"))
    peak = peak_bf16 if bf16 and peak_bf16 else peak_fp32
    return {
        "preset": label or sizes.preset,
        "params": n_params,
        "shape": {k: getattr(mc, k) for k in ("n_layer", "n_head", "n_embd", "block_size")},
        "vocab_size": mc.vocab_size,
        "batch_size": p.cfg.batch_size,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "steps": list(sizes.run_steps),
        "wall_s": walls,
        "step_s": step_s,
        "tokens_per_s": tokens / step_s if step_s > 0 else None,
        "mfu": flops / step_s / peak if step_s > 0 else None,
        "mfu_against": "measured bf16 matmul" if bf16 and peak_bf16 else "measured fp32 matmul",
    }


def _print_monte_carlo(mc: dict[str, Any]) -> None:
    for loss, r in mc.items():
        print(
            f"Monte Carlo ({loss}): {r['samples_per_s']:.3g} samples/s, "
            f"{r['fraction_of_matmul']:.1%} of the fp32 matmul rate "
            f"({r['matmul_flops'] / 1e12:.3g} TFLOP/s)",
            flush=True,
        )


def _print_step(step: dict[str, Any]) -> None:
    s = step["shape"]
    print(
        f"training step (gpt_nano {s['n_layer']}x{s['n_embd']}, block {s['block_size']}, batch "
        f"{s['batch']}, fp32): {1e3 * step['median_step_s']['gpt_nano']:.1f} ms, "
        f"{step['tokens_per_s']:.3g} tokens/s, MFU {step['mfu_vs_fp32_matmul']:.1%} of fp32 "
        f"matmul; / torch reference {step['ratio_gpt_nano_over_reference']:.2f}; metric hooks "
        f"{step['hook_overhead_pct']:+.1f}%",
        flush=True,
    )


def _print_run(run: dict[str, Any]) -> None:
    head = (
        f"GPT-nano {run['preset']} preset ({run['params']:,} parameters, block "
        f"{run['shape']['block_size']}, batch {run['batch_size']}, {run['precision']}, synthetic "
        "tokens): "
    )
    if run["step_s"] > 0:
        print(
            head + f"{run['step_s']:.3g} s/step, {run['tokens_per_s']:.3g} tokens/s, "
            f"MFU {run['mfu']:.1%} of the {run['mfu_against']} rate",
            flush=True,
        )
    else:
        print(
            head + f"not measurable: the runs of {run['steps']} steps took {run['wall_s'][0]:.2f} "
            f"and {run['wall_s'][1]:.2f} s (fixed costs varied more than the steps cost)",
            flush=True,
        )


def _print_top(top: dict[str, Any]) -> None:
    if top["step_s"] > 0:
        print(
            f"GPT-nano {top['preset']} ({top['params']:,} parameters, block "
            f"{top['shape']['block_size']}, batch {top['batch_size']}, {top['precision']}, the "
            f"ladder's BPE text): {top['step_s']:.3g} s/step, {top['tokens_per_s']:.3g} "
            f"tokens/s, MFU {top['mfu']:.1%} of the {top['mfu_against']} rate",
            flush=True,
        )


def _print_spread(rates: dict[str, list[float]]) -> None:
    """Say when the reference matmul rate moved during the check (the ratios are that unsure)."""
    for key, values in rates.items():
        lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
        if values and hi > 1.25 * lo:
            print(
                f"note: the {key} matmul rate varied {lo / 1e12:.3g}..{hi / 1e12:.3g} TFLOP/s "
                "during the check (a loaded machine): the ratios above are that uncertain",
                flush=True,
            )


def check(device: str, sizes: Sizes, budget_s: float = BUDGET_S) -> dict[str, Any]:
    """Run the three measurements; raises TimeoutError between steps once over budget."""
    t0 = time.perf_counter()

    def within_budget(step: str) -> None:
        spent = time.perf_counter() - t0
        if spent > budget_s:
            raise TimeoutError(f"over the {budget_s:.0f} s budget after {spent:.0f} s, at {step}")

    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(f"gpu-check on {device} ({name}); {sizes.label}; torch {torch.__version__}", flush=True)
    n = sizes.matmul_n
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}

    def reference() -> tuple[float, float | None]:
        """The matmul rates measured just before a step, so that a ratio compares two
        measurements taken under the same load."""
        fp32 = dense_matmul_rate(device, sizes.matmul_s, dtype=torch.float32, n=n)
        bf16 = (
            dense_matmul_rate(device, sizes.matmul_s, dtype=torch.bfloat16, n=n)
            if device != "cpu"
            else None
        )
        rates["fp32"].append(fp32)
        if bf16:
            rates["bf16"].append(bf16)
        line = f"matmul {n}^3: fp32 {fp32 / 1e12:.3g} TFLOP/s"
        print(line + (f", bf16 {bf16 / 1e12:.3g} TFLOP/s" if bf16 else "") + " (now)", flush=True)
        return fp32, bf16

    peak_fp32, peak_bf16 = reference()
    within_budget("the Monte Carlo benchmark")
    mc = monte_carlo(device, sizes, peak_fp32)
    _print_monte_carlo(mc)
    within_budget("the training-step benchmark")
    peak_fp32, peak_bf16 = reference()
    step = training_step(device, sizes, peak_fp32)
    _print_step(step)
    within_budget("the GPT-nano run")
    peak_fp32, peak_bf16 = reference()
    run = gpt_nano_run(device, sizes, peak_bf16, peak_fp32)
    _print_run(run)
    within_budget("the scaling ladder's top rung")
    peak_fp32, peak_bf16 = reference()
    top = gpt_nano_run(
        device,
        sizes,
        peak_bf16,
        peak_fp32,
        lambda d, n, o: _ladder_config(d, n, o, top=sizes.ladder_top),
        "scaling ladder " + ("top rung" if sizes.ladder_top else "cheapest rung"),
    )
    _print_top(top)
    _print_spread(rates)
    total = time.perf_counter() - t0
    print(f"gpu-check done in {total:.0f} s", flush=True)
    return {
        "device": device,
        "device_name": name,
        "mode": sizes.label,
        "matmul_flops": {**rates, "n": n},
        "monte_carlo": mc,
        "training_step": step,
        "gpt_nano_run": run,
        "ladder_top_rung": top,
        "wall_s": total,
        "provenance": provenance(device),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    ap.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (labelled so)")
    ap.add_argument(  # --out as everywhere else; --json, its former spelling, still works
        "--out",
        "--json",
        dest="json",
        default="results/bench/gpu_check.json",
        help="where to write",
    )
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help="stop past this many s")
    args = ap.parse_args(argv)
    if not (args.budget_s > 0 and math.isfinite(args.budget_s)):
        ap.error(f"--budget-s: expected a number > 0, got {args.budget_s}")
    json_path = Path(args.json)
    if json_path.exists() and json_path.is_dir():
        ap.error(f"--out: {json_path} is a directory; expected a file path")
    if args.cpu:
        device, sizes = "cpu", CPU_TINY
    elif torch.cuda.is_available():
        device, sizes = "cuda", GPU
    else:
        print(
            "gpu-check: no CUDA device on this machine, so nothing was measured. Run it on a "
            "GPU machine (or `--cpu` for a tiny CPU run of the same code, not a GPU number)."
        )
        return 0
    try:
        result = check(device, sizes, args.budget_s)
    except TimeoutError as exc:
        print(f"gpu-check: stopped, {exc}")
        return 1
    atomic_write_json(json_path, result)
    print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
