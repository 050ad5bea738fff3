"""`make gpu-check` (benchmarks/gpu_check.py): its CPU path at tiny sizes, its no-CUDA answer, and
(marked gpu) the real check on a GPU.

Run: `.venv/bin/python -m pytest tests/test_gpu_check.py -q` (`-m gpu` on a CUDA machine).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check as G

TINY = replace(
    G.CPU_TINY,
    matmul_n=64,
    matmul_s=0.05,
    mc_slice_s=0.05,
    step_shape={"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8},
    step_reps=1,
    run_steps=(1, 3),
)


def test_flops_per_token_counts_weights_and_attention() -> None:
    # 6N for forward + backward through the weights, 12·L·T·d for attention (PaLM's count).
    assert G.transformer_flops_per_token(1000, 2, 16, 8) == 6 * 1000 + 12 * 2 * 16 * 8
    # GPT-2 small at block 1024: attention adds about 15% to 6N.
    ratio = G.transformer_flops_per_token(124_000_000, 12, 1024, 768) / (6 * 124e6)
    assert 1.1 < ratio < 1.2


def test_matmul_rate_is_a_positive_rate() -> None:
    rate = G.dense_matmul_rate("cpu", 0.02, n=64)
    assert math.isfinite(rate) and rate > 0


def test_cpu_path_runs_every_step_and_labels_itself(capsys) -> None:
    result = G.check("cpu", TINY, budget_s=600)
    out = capsys.readouterr().out
    assert "not a GPU measurement" in out and "gpu-check done" in out
    for loss in ("mse", "cross_entropy"):
        r = result["monte_carlo"][loss]
        assert r["samples_per_s"] > 0 and r["fraction_of_matmul"] > 0
    step = result["training_step"]
    assert step["tokens_per_s"] > 0 and step["mfu_vs_fp32_matmul"] > 0
    run = result["gpt_nano_run"]
    assert run["preset"] == "smoke" and run["precision"] == "fp32" and run["steps"] == [1, 3]
    # The run's line gives s/step when the longer run took longer, else says "not measurable"
    # (the training-step line above it also prints tokens/s and MFU, so look for its own words).
    line = next(ln for ln in out.splitlines() if ln.startswith("GPT-nano smoke preset"))
    assert ("s/step," in line) == (run["step_s"] > 0) == ("not measurable" not in line)
    top = result["ladder_top_rung"]
    assert top["preset"] == "scaling ladder cheapest rung" and top["shape"]["n_embd"] == 64
    assert (top["step_s"] > 0) == ("GPT-nano scaling ladder cheapest rung" in out)
    assert result["matmul_flops"]["fp32"] and not result["matmul_flops"]["bf16"]


def test_over_budget_stops_between_steps(capsys) -> None:
    with pytest.raises(TimeoutError, match="over the 0 s budget .* at the Monte Carlo"):
        G.check("cpu", TINY, budget_s=1e-9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_and_measures_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "gpu_check.json"
    assert G.main(["--out", str(out)]) == 0  # --json, the former spelling, below
    assert "no CUDA device on this machine, so nothing was measured" in capsys.readouterr().out
    assert not out.exists()


def test_bad_flags_exit_2(tmp_path: Path, capsys) -> None:
    for argv in (["--budget-s", "0"], ["--budget-s", "nan"], ["--json", str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            G.main(argv)
        assert exc.value.code == 2
    assert "--budget-s" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_check_within_five_minutes(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    assert G.main(["--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["wall_s"] < G.BUDGET_S
    for r in result["monte_carlo"].values():
        assert 0 < r["fraction_of_matmul"] <= 1.0
    run = result["gpt_nano_run"]
    assert run["preset"] == "paper" and run["precision"] == "bf16 autocast"
    assert 0 < run["mfu"] <= 1.0 and run["tokens_per_s"] > 0
