"""Each architecture's `small` training step against the machine's dense matmul rate, and the
pipeline's C10 and drift groups in runs per minute.

`python -m benchmarks.arch_bench [--quick] [--threads 1] [--out results/bench/arch_bench.json]`
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from benchmarks.common import device_arg, interleaved, matmul_burst
from empirics.host import tune_allocator
from empirics.models import ARCHS
from empirics.outputs import atomic_write_json, provenance, resolve_device
from empirics.train.config import TrainConfig, resolve
from empirics.train.optim import build_optimizers

# C10 runs of the pipeline's grid (one control level per architecture) and drift runs (one
# activation per architecture), first seed: what those groups spend their time on.
C10_LEVEL = "topk:0.5"
# Seed ensembles against as many sequential runs. The MLP only: ViT's attention has no vmap
# batching rule on CPU in torch 2.x (a per-seed loop, slower than sequential runs), ResNet's
# batch norm cannot update running statistics under vmap.
ENSEMBLE_ARCHS, ENSEMBLE_SEEDS = ("mlp",), 5


def _causal_share(query_shape: Sequence[int], is_causal: bool) -> float:
    """The share of a T x T score matrix a causal mask keeps, (T + 1) / 2T; 1 without a mask."""
    t = query_shape[-2]
    return (t + 1) / (2 * t) if is_causal else 1.0


def _cpu_attention(query, key, value, dropout_p=0.0, is_causal=False, *args, **kwargs) -> int:
    return int(sdpa_flop_count(query, key, value) * _causal_share(query, is_causal))


def _cpu_attention_backward(
    grad_out, query, key, value, out, logsumexp, dropout_p=0.0, is_causal=False, *args, **kwargs
) -> int:
    flops = sdpa_backward_flop_count(grad_out, query, key, value)
    return int(flops * _causal_share(query, is_causal))


# torch's FlopCounterMode counts the CUDA attention kernels but not the CPU one SDPA dispatches
# to here: the same formulas (the score and value products, 2 FLOPs per multiply-add), keeping
# only the unmasked share of a causal score matrix (torch's own formulas count all of it).
ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def _train_step(arch: str, device: str, seed: int = 0) -> tuple[Callable[[], None], float, int]:
    """One optimiser step of `arch`'s small preset on a synthetic batch (forward, loss, backward,
    step, as the trainer takes it; no metric hooks), the FLOPs it does, and its batch size.

    FLOPs are counted by torch's FlopCounterMode over one forward and backward: matmuls,
    convolutions and attention (2 per multiply-add; `ATTENTION_FLOPS` for the CPU kernel);
    elementwise work and the optimiser's update are not counted (a lower bound of the work, the
    usual convention for FLOP rates)."""
    plan = resolve(TrainConfig(arch=arch, preset="small", data="synthetic", device=device))
    torch.manual_seed(seed)
    model = plan.arch.Model(plan.model_cfg).to(device)
    model.train()
    opts = build_optimizers(model, plan)
    gen = torch.Generator().manual_seed(seed)
    batch = next(
        iter(
            plan.task.make_data(
                "synthetic",
                plan.model_cfg,
                split="train",
                batch_size=plan.cfg.batch_size,
                generator=gen,
                device=device,
            )
        )
    )

    def forward_backward() -> None:
        loss, _ = plan.task.loss_and_metrics(model, batch)
        loss.backward()

    counter = FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOPS)
    with counter:
        forward_backward()
    for o in opts:
        o.zero_grad(set_to_none=True)

    def step() -> None:
        forward_backward()
        for o in opts:
            o.step()
        for o in opts:
            o.zero_grad(set_to_none=True)

    return step, float(counter.get_total_flops()), int(plan.cfg.batch_size)


def flop_fractions(
    archs: Sequence[str], reps: int, device: str
) -> tuple[float, dict[str, dict[str, Any]]]:
    """Achieved FLOP/s of each small-preset step as a fraction of the dense matmul rate, the two
    timed in turn (interleaved repetitions, medians)."""
    burst, burst_flops = matmul_burst(device)
    steps: dict[str, Callable[[], None]] = {"matmul": burst}
    flops: dict[str, float] = {}
    batch: dict[str, int] = {}
    for arch in archs:
        steps[arch], flops[arch], batch[arch] = _train_step(arch, device)
    med = interleaved(steps, reps, device, warmup=2)
    peak = burst_flops / med["matmul"]
    out = {
        arch: {
            "step_s": med[arch],
            "flops_per_step": flops[arch],
            "batch_size": batch[arch],
            "flop_rate": flops[arch] / med[arch],
            "fraction_of_matmul": flops[arch] / med[arch] / peak,
        }
        for arch in archs
    }
    return peak, out


def ensemble_speedup(
    archs: Sequence[str], seeds: int, reps: int, device: str, threads: int
) -> dict[str, dict[str, float]]:
    """Time of one step of `seeds` sequential runs over one step of their seed ensemble
    (`empirics.train.ensemble`), timed in turn with `threads` torch threads on both sides;
    > 1 means the ensemble is faster."""
    from empirics.train.ensemble import SeedEnsemble

    out: dict[str, dict[str, float]] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    for arch in archs:
        plan = resolve(TrainConfig(arch=arch, preset="small", data="synthetic", device=device))
        singles = [_train_step(arch, device, seed=k)[0] for k in range(seeds)]
        ens = SeedEnsemble(plan, range(seeds), device)

        def sequential(singles: list[Callable[[], None]] = singles) -> None:
            for step in singles:
                step()

        fixed = ens.next_batches()  # the single runs' steps reuse one batch each too

        def ensemble(ens: SeedEnsemble = ens, fixed: Any = fixed) -> None:
            ens.step(fixed)

        med = interleaved({"sequential": sequential, "ensemble": ensemble}, reps, device)
        out[arch] = {
            "sequential_s": med["sequential"],
            "ensemble_s": med["ensemble"],
            "speedup": med["sequential"] / med["ensemble"],
        }
    torch.set_num_threads(before)
    return out


def _representatives(group: str, count: int) -> list[Any]:
    """`count` runs of the pipeline's full scale for `group`, seed 0, one per architecture in
    the group's order (C10: Top-K at 50 % with ReLU; drift: ReLU)."""
    from empirics.experiments.pipeline import SCALES, plan_runs

    specs = plan_runs(SCALES["full"], (group,))[group]
    specs = [s for s in specs if s.seed == 0]
    if group == "c10":
        specs = [s for s in specs if s.sparsity == C10_LEVEL]
    else:
        specs = [s for s in specs if s.activation.name == "relu"]
    return specs[:count]


def warm_config(spec: Any, scale: Any, root: Path, threads: int) -> Any:
    """One step of `spec`'s pipeline configuration, without warmup (one step never reaches the
    set lr), to load its data before the timed runs."""
    from empirics.experiments.pipeline import _train_config

    return _train_config(spec, scale, root).replace(threads=threads, steps=1, warmup=0)


def pipeline_throughput(count: int, threads: int) -> dict[str, dict[str, Any]]:
    """Wall time of `count` representative runs of the C10 and drift groups, trained one after
    the other in this process with the pipeline's own configurations, as runs per minute."""
    from empirics.experiments.pipeline import SCALES, _train_config
    from empirics.experiments.plan import plan_runs
    from empirics.train.loop import train

    scale = SCALES["full"]
    out: dict[str, dict[str, Any]] = {}
    for group in ("c10", "drift"):
        specs = _representatives(group, count)
        runs: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix=f"bench-{group}-") as tmp:
            # A one-step run of each first: the data sets load once per process (a pipeline
            # worker pays that once per chunk of runs), not inside the timed runs.
            for spec in specs:
                train(warm_config(spec, scale, Path(tmp) / "warm", threads))
            for spec in specs:
                cfg = _train_config(spec, scale, Path(tmp)).replace(threads=threads)
                t0 = time.perf_counter()
                train(cfg)
                runs[spec.name] = time.perf_counter() - t0
        # The group's mean run time weights each architecture by its number of runs in the
        # plan (C10: 130 GPT-nano runs against 95 of each other; drift: 20 of each).
        counts = Counter(s.arch for s in plan_runs(scale, (group,))[group])
        weights = {spec.name: counts[spec.arch] for spec in specs}
        mean_s = sum(weights[n] * t for n, t in runs.items()) / sum(weights.values())
        out[group] = {"runs_s": runs, "weights": weights, "runs_per_min": 60.0 / mean_s}
    return out


def run(
    quick: bool = False, device: str = "auto", reps: int | None = None, pipeline: bool = True
) -> dict[str, Any]:
    device = resolve_device(device)
    allocator = tune_allocator()  # as the trainer does
    reps = reps if reps is not None else (3 if quick else 8)
    peak, archs = flop_fractions(ARCHS, reps, device)
    res: dict[str, Any] = {
        "device": device,
        "threads": torch.get_num_threads(),
        "allocator": allocator,
        "reps": reps,
        "dense_matmul_flops": peak,
        "archs": archs,
        "ensemble_seeds": ENSEMBLE_SEEDS,
        # At the bench's thread count and with every core: an ensemble fills cores one small
        # model leaves idle.
        "ensemble": {
            threads: ensemble_speedup(ENSEMBLE_ARCHS, ENSEMBLE_SEEDS, 3 * reps, device, threads)
            for threads in sorted({torch.get_num_threads(), os.cpu_count() or 1})
        },
    }
    if pipeline:
        # One run per architecture, weighted by the group's runs of each (`--quick`: the first
        # architecture alone, which says nothing of the group's mix).
        res["pipeline"] = pipeline_throughput(1 if quick else 4, torch.get_num_threads())
    return res


def _print(res: dict[str, Any]) -> None:
    print(
        f"arch_bench on {res['device']} ({res['threads']} threads, allocator: "
        f"{res['allocator']}); dense matmul "
        f"{res['dense_matmul_flops'] / 1e9:.1f} GFLOP/s, timed in turn with the steps"
    )
    print(f"  {'small preset':<10} {'batch':>6} {'GFLOP/step':>11} {'step ms':>9} "
          f"{'GFLOP/s':>8} {'of matmul':>10}")  # fmt: skip
    for arch, r in res["archs"].items():
        print(
            f"  {arch:<10} {r['batch_size']:>6} {r['flops_per_step'] / 1e9:>11.3f} "
            f"{1e3 * r['step_s']:>9.1f} {r['flop_rate'] / 1e9:>8.1f} "
            f"{r['fraction_of_matmul']:>10.1%}"
        )
    for threads, by_arch in res["ensemble"].items():
        for arch, r in by_arch.items():
            print(
                f"  seed ensemble of {res['ensemble_seeds']} ({arch} small, {threads} thread(s)): "
                f"{1e3 * r['ensemble_s']:.1f} ms per step, {res['ensemble_seeds']} sequential "
                f"runs {1e3 * r['sequential_s']:.1f} ms ({r['speedup']:.2f}x)"
            )
    for group, r in res.get("pipeline", {}).items():
        times = ", ".join(f"{name} {s:.1f} s" for name, s in r["runs_s"].items())
        print(
            f"  pipeline {group}: {r['runs_per_min']:.2f} runs/min per process "
            f"({res['threads']} thread(s); {times})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.arch_bench", description=__doc__)
    ap.add_argument(
        "--quick", action="store_true", help="fewer repetitions, one run per group (smoke)"
    )
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions")
    ap.add_argument("--device", default="auto", type=device_arg)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: as the pipeline runs each job; 0 keeps torch's default)",
    )
    ap.add_argument("--no-pipeline", action="store_true", help="skip the runs-per-minute part")
    ap.add_argument("--out", type=Path, default=Path("results/bench/arch_bench.json"))
    args = ap.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        ap.error(f"--reps: expected an integer >= 1, got {args.reps}")
    if args.threads < 0:
        ap.error(f"--threads: expected an integer >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args.quick, args.device, args.reps, pipeline=not args.no_pipeline)
    _print(res)
    res["provenance"] = provenance(res["device"])
    atomic_write_json(args.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
