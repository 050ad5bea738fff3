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
