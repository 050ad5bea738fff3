"""Training-step benchmarks: GPT-nano vs a torch.nn.TransformerEncoderLayer reference of the same
size, and the cost of the metric hooks at the early (every-step) logging rate.

`python -m benchmarks.train_bench [--reps 20] [--threads 1] [--out results/bench/train_bench.json]`
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import device_arg, interleaved
from empirics.host import tune_allocator
from empirics.models import get_arch
from empirics.outputs import atomic_write_json, provenance, resolve_device
from empirics.sparsity import kth_smallest, quantile_rank, topk_keep, topk_mask
from empirics.tasks import text as text_task
from empirics.train.metrics import MetricsTracker

# Ratios of medians from interleaved repetitions: both models see the same machine load.
SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}
BATCH = 16
HOOK_TARGET_PCT = 5.0  # metric hooks with the gradient probe, every step logged


class ReferenceGPT(nn.Module):
    """Same width/depth/heads/sequence/vocab as GPT-nano from stock torch parts: causal
    nn.TransformerEncoder (norm_first, no biases, no dropout, ReLU, 4x MLP) and a tied head."""

    def __init__(self, vocab: int, n_layer: int, n_head: int, n_embd: int, block: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block, n_embd)  # learned positions stand in for rotary
        layer = nn.TransformerEncoderLayer(
            n_embd,
            n_head,
            dim_feedforward=4 * n_embd,
            dropout=0.0,
            activation=F.relu,
            batch_first=True,
            norm_first=True,
            bias=False,
        )
        self.blocks = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.norm_f = nn.LayerNorm(n_embd, bias=False)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        self.register_buffer(
            "mask", nn.Transformer.generate_square_subsequent_mask(block), persistent=False
        )

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        h = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C)
        h = self.blocks(h, mask=self.mask[:T, :T], is_causal=True)
        return self.lm_head(self.norm_f(h))  # (B, T, V)


# The C10 Top-K control's pre-activation shapes at the `small` presets (features on `dim`).
TOPK_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "gpt_nano": ((16, 64, 512), -1),
    "vit": ((128, 17, 256), -1),
    "resnet": ((64, 16, 28, 28), 1),
}
TOPK_LEVELS = (0.1, 0.5, 0.9)


def _topk_mask_before(p: torch.Tensor, level: float, dim: int) -> torch.Tensor:
    """The Top-K mask as it was computed before (the baseline): kthvalue when more than half is
    kept, else a scatter of torch.topk's sorted indices."""
    dim = dim % p.dim()
    n = p.shape[dim]
    k = topk_keep(level, n)
    if k > n // 2:
        threshold = p.kthvalue(n - k + 1, dim=dim, keepdim=True).values
        return (p >= threshold).to(p.dtype)
    return torch.zeros_like(p).scatter_(dim, p.topk(k, dim=dim).indices, 1.0)


def topk_mask_ratios(reps: int, seed: int = 0) -> dict[str, float]:
    """Time of the previous Top-K mask over the current one, per arch shape and level, from
    interleaved medians; also checks the two masks agree (untied Gaussian inputs)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    for arch, (shape, dim) in TOPK_SHAPES.items():
        p = torch.randn(*shape, generator=gen)
        for level in TOPK_LEVELS:
            if not torch.equal(_topk_mask_before(p, level, dim), topk_mask(p, level, dim)):
                raise AssertionError(f"Top-K masks differ at {arch} level {level}")
            med = interleaved(
                {
                    "before": lambda p=p, lv=level, d=dim: _topk_mask_before(p, lv, d),
                    "now": lambda p=p, lv=level, d=dim: topk_mask(p, lv, d),
                },
                reps,
                "cpu",
            )
            out[f"{arch}@{level:g}"] = med["before"] / med["now"]
    return out


def quantile_shift_ratios(reps: int, seed: int = 0) -> dict[str, float]:
    """Time of the C10 quantile shift's forward + backward with torch's kthvalue (before) over
    the current one (`kth_smallest`), per arch shape at level 0.5, from interleaved medians;
    also checks the two shifts agree in value (untied Gaussian inputs)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    for arch, (shape, dim) in TOPK_SHAPES.items():
        p = torch.randn(*shape, generator=gen)
        flat = p.transpose(0, 1).reshape(p.shape[1], -1) if dim == 1 else p
        sel = 1 if dim == 1 else -1
        rank = quantile_rank(0.5, flat.shape[sel])
        if not torch.equal(
            flat.kthvalue(rank, dim=sel, keepdim=True).values, kth_smallest(flat, rank, sel)
        ):
            raise AssertionError(f"quantile shifts differ at {arch}")

        def shift(select: Callable[[torch.Tensor], torch.Tensor], flat=flat) -> None:
            x = flat.detach().requires_grad_(True)
            torch.relu(x - select(x)).sum().backward()

        med = interleaved(
            {
                "before": lambda f=shift, r=rank, d=sel: f(
                    lambda x: x.kthvalue(r, dim=d, keepdim=True).values
                ),
                "now": lambda f=shift, r=rank, d=sel: f(lambda x: kth_smallest(x, r, d)),
            },
            reps,
            "cpu",
        )
        out[f"{arch}@0.5"] = med["before"] / med["now"]
    return out


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _stepper(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    tracker: MetricsTracker | None,
    log: bool = True,
) -> Callable[[], None]:
    """One training step as the trainer does it (forward, loss, backward, AdamW step); with a
    tracker and `log`, a logged step: hooks armed, activation and weight metrics read, and the
    gradient probe read after backward, as the trainer does on every early step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = batch
    logged = tracker is not None and log

    def step() -> None:
        with tracker.collect() if logged else contextlib.nullcontext():  # type: ignore[union-attr]
            logits = model(x)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            loss.backward()
        float(loss.detach())
        if logged:
            tracker.measure()  # type: ignore[union-attr]
            tracker.measure_grads()  # type: ignore[union-attr]
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _child_step_ms(tuned: bool, steps: int) -> None:
    """In a fresh process: the median plain GPT-nano step (ms, one thread) and the minor page
    faults per step, printed as JSON, with the allocator `tune_allocator` asks for or glibc's
    own (the setting is per process, hence the child)."""
    import resource

    torch.set_num_threads(1)
    allocator = tune_allocator() if tuned else "default"
    gpt = get_arch("gpt_nano")
    cfg = gpt.Config(activation="relu", **SHAPE)
    torch.manual_seed(0)
    model = gpt.Model(cfg)
    gen = torch.Generator().manual_seed(0)
    batch = next(
        iter(text_task.make_data("synthetic", cfg, split="train", batch_size=BATCH, generator=gen))
    )
    step = _stepper(model, batch, None)
    for _ in range(3):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    print(
        json.dumps({"ms": 1e3 * statistics.median(times), "faults": faults, "allocator": allocator})
    )


def allocator_ratio(pairs: int = 3, steps: int = 20) -> dict[str, Any]:
    """Plain GPT-nano step with glibc's default allocator over the same with `tune_allocator`'s
    settings: fresh processes taking turns (default, tuned, default, ...), medians of each
    process's median step; also each side's minor page faults per step."""
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "tuned": []}
    for _ in range(pairs):
        for side in runs:
            code = (
                "from benchmarks.train_bench import _child_step_ms; "
                f"_child_step_ms({side == 'tuned'}, {steps})"
            )
            out = subprocess.run(
                [sys.executable, "-c", code],
                check=True,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    ms = {side: statistics.median(r["ms"] for r in rs) for side, rs in runs.items()}
    return {
        "step_ms": ms,
        "faults_per_step": {
            s: statistics.median(r["faults"] for r in rs) for s, rs in runs.items()
        },
        "tuned_allocator": runs["tuned"][0]["allocator"],
        "processes_per_side": pairs,
        "default_over_tuned": ms["default"] / ms["tuned"],
    }


def run(
    reps: int = 20,
    device: str = "auto",
    seed: int = 0,
    shape: dict[str, int] | None = None,
    compile: bool = False,
) -> dict[str, Any]:
    device = resolve_device(device)
    allocator = tune_allocator()  # as the trainer does: both sides of every ratio run with it
    gpt = get_arch("gpt_nano")
    shape = {**SHAPE, **(shape or {})}
    cfg = gpt.Config(activation="relu", **shape)
    torch.manual_seed(seed)
    ours = gpt.Model(cfg).to(device)
    ours_hooked = gpt.Model(cfg).to(device)
    tracker = MetricsTracker(ours_hooked)
    ours_unlogged = gpt.Model(cfg).to(device)
    idle = MetricsTracker(ours_unlogged)  # hooks installed, never armed
    ref = ReferenceGPT(cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size)
    ref = ref.to(device)
    gen = torch.Generator().manual_seed(seed)
    batch = next(
        iter(
            text_task.make_data(
                "synthetic", cfg, split="train", batch_size=BATCH, generator=gen, device=device
            )
        )
    )
    steps = {}
    if compile:
        # torch.compile (inductor) of the same model, the trainer's --compile; compiled during
        # the warm-up of `interleaved` (its first steps), which is not timed.
        compiled = gpt.Model(cfg).to(device)
        compiled.load_state_dict(ours.state_dict())
        steps["gpt_nano+compile"] = _stepper(torch.compile(compiled), batch, None)
    med = interleaved(
        {
            **steps,
            "gpt_nano": _stepper(ours, batch, None),
            "reference": _stepper(ref, batch, None),
            "gpt_nano+hooks": _stepper(ours_hooked, batch, tracker),
            "gpt_nano+unlogged": _stepper(ours_unlogged, batch, idle, log=False),
        },
        reps,
        device,
    )
    return {
        "device": device,
        "threads": torch.get_num_threads(),
        "allocator": allocator,
        "shape": {**shape, "vocab_size": cfg.vocab_size, "batch": BATCH},
        "params": {"gpt_nano": _n_params(ours), "reference": _n_params(ref)},
        "reps": reps,
        "median_step_s": med,
        "ratio_gpt_nano_over_reference": med["gpt_nano"] / med["reference"],
        "hook_overhead_pct": 100.0 * (med["gpt_nano+hooks"] / med["gpt_nano"] - 1.0),
        "unlogged_overhead_pct": 100.0 * (med["gpt_nano+unlogged"] / med["gpt_nano"] - 1.0),
        **(
            {"ratio_compiled_over_eager": med["gpt_nano+compile"] / med["gpt_nano"]}
            if compile
            else {}
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_bench", description=__doc__)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--device", default="auto", type=device_arg)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: stable timings on a shared machine; 0 keeps torch's default)",
    )
    # --out as everywhere else; --json, its former spelling, still works.
    ap.add_argument("--out", "--json", dest="json", default="results/bench/train_bench.json")
    ap.add_argument("--n-embd", type=int, default=SHAPE["n_embd"], help="model width")
    ap.add_argument("--n-layer", type=int, default=SHAPE["n_layer"], help="model depth")
    ap.add_argument(
        "--compile", action="store_true", help="also time GPT-nano under torch.compile (minutes)"
    )
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error(f"--reps: expected an integer >= 1, got {args.reps}")
    if args.threads < 0:
        ap.error(f"--threads: expected an integer >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n_embd < 1 or args.n_layer < 1 or args.n_embd % (2 * SHAPE["n_head"]):
        ap.error(f"--n-embd must be a positive multiple of {2 * SHAPE['n_head']}, --n-layer >= 1")
    res = run(
        args.reps,
        args.device,
        shape={"n_embd": args.n_embd, "n_layer": args.n_layer},
        compile=args.compile,
    )
    med = res["median_step_s"]
    print(
        f"train_bench on {res['device']} ({res['threads']} threads, allocator: {res['allocator']}),"
        f" shape {res['shape']}"
    )
    n = res["params"]
    print(f"  params: gpt_nano {n['gpt_nano']:,}  reference {n['reference']:,}")
    for name, t in med.items():
        print(f"  {name:<16} median step {1e3 * t:8.2f} ms")
    ratio = res["ratio_gpt_nano_over_reference"]
    verdict = "ok" if ratio <= 1.0 else "slower than the reference"
    print(f"  gpt_nano / reference step time: {ratio:.3f} ({verdict}; target <= 1)")
    over = res["hook_overhead_pct"]
    verdict = "ok" if over <= HOOK_TARGET_PCT else f"above the {HOOK_TARGET_PCT:g}% target"
    print(
        f"  metric hooks + gradient probe at every-step logging: {over:+.1f}% of step time "
        f"({verdict})"
    )
    print(f"  installed hooks on an unlogged step: {res['unlogged_overhead_pct']:+.1f}%")
    res["topk_mask_speedup"] = topk_mask_ratios(args.reps)
    print("  C10 Top-K mask, previous / current time (same masks):")
    for key, ratio in res["topk_mask_speedup"].items():
        print(f"    {key:<16} {ratio:5.2f}x")
    res["quantile_shift_speedup"] = quantile_shift_ratios(args.reps)
    print("  C10 quantile shift, forward + backward, kthvalue / current time (same values):")
    for key, ratio in res["quantile_shift_speedup"].items():
        print(f"    {key:<16} {ratio:5.2f}x")
    if res["device"] == "cpu":  # the allocator in question is the host's
        res["allocator_ratio"] = alloc = allocator_ratio()
        ms, faults = alloc["step_ms"], alloc["faults_per_step"]
        print(
            f"  plain step, glibc's default allocator / the trainer's ({alloc['tuned_allocator']}):"
            f" {alloc['default_over_tuned']:.3f} (medians {ms['default']:.1f} / {ms['tuned']:.1f}"
            f" ms over {alloc['processes_per_side']} fresh processes each; minor page faults per"
            f" step {faults['default']:.0f} / {faults['tuned']:.0f})"
        )
    if "ratio_compiled_over_eager" in res:
        print(f"  torch.compile / eager step time: {res['ratio_compiled_over_eager']:.3f}")
    res["provenance"] = provenance(res["device"])
    atomic_write_json(Path(args.json), res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
