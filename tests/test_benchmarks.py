"""The benchmarks' own configurations are valid ones (a benchmark that dies half way measures
nothing): the pipeline runs `make bench` times, and their one-step warm-up runs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from benchmarks.arch_bench import _representatives, warm_config
from empirics.experiments.pipeline import SCALES
from empirics.train.loop import plan


@pytest.mark.parametrize("group", ["c10", "drift"])
def test_pipeline_bench_configs_resolve(group: str, tmp_path: Path) -> None:
    specs = _representatives(group, 4)
    assert specs, f"no {group} runs to time"
    for spec in specs:
        p = plan(warm_config(spec, SCALES["full"], tmp_path, threads=1))
        assert p.cfg.steps == 1 and p.cfg.warmup == 0


@pytest.mark.parametrize("bench", ["arch_bench", "montecarlo_bench", "train_bench"])
def test_a_bad_device_is_refused_before_any_timing(bench: str, capsys) -> None:
    module = importlib.import_module(f"benchmarks.{bench}")
    with pytest.raises(SystemExit) as exc:
        module.main(["--device", "bogus"])
    assert exc.value.code == 2
    assert "'auto', 'cpu' or 'cuda[:N]', got 'bogus'" in capsys.readouterr().err


def test_the_cpu_attention_kernel_is_counted_with_its_causal_share() -> None:
    # FlopCounterMode has no formula for the kernel SDPA runs on CPU; arch_bench's mapping must
    # catch that op (forward and backward) and count 4·B·H·T²·D forward FLOPs, times the share
    # (T + 1)/2T a causal mask keeps.
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.arch_bench import ATTENTION_FLOPS

    b, h, t, d = 2, 3, 8, 4
    q, k, v = (torch.randn(b, h, t, d, requires_grad=True) for _ in range(3))
    for causal, share in ((False, 1.0), (True, (t + 1) / (2 * t))):
        counter = FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOPS)
        with counter:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        assert counter.get_total_flops() == int(4 * b * h * t * t * d * share)
        with counter:
            out.sum().backward()
        assert counter.get_total_flops() > int(4 * b * h * t * t * d * share)  # backward counted


def test_allocator_ratio_runs_both_sides_in_fresh_processes() -> None:
    import platform

    from benchmarks.train_bench import allocator_ratio

    res = allocator_ratio(pairs=1, steps=2)
    assert set(res["step_ms"]) == {"default", "tuned"} and min(res["step_ms"].values()) > 0
    assert min(res["faults_per_step"].values()) >= 0
    assert res["default_over_tuned"] == res["step_ms"]["default"] / res["step_ms"]["tuned"]
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert res["tuned_allocator"].startswith("glibc mallopt: ")
