"""One early-training run and the grid of them: train, summarise, write, resume, re-analyse.

`run_one` trains one config and writes runs/NAME/{records.csv, per_network.npz, result.json};
`run_grid` runs every unfinished config of a grid (a killed grid redoes only those) and writes
the aggregates (`early_aggregate`); `report` re-analyses finished runs without training.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from tqdm.auto import tqdm

from empirics.launch import Launch, cpus, execute
from empirics.montecarlo.early_aggregate import write_aggregates
from empirics.montecarlo.early_config import (
    HORIZON_QUANTITIES,
    LOSSES,
    LR_GRID,
    SCHEMA_VERSION,
    SWEEP_ACTIVATIONS,
    EarlyConfig,
    check_memory,
)
from empirics.montecarlo.early_kernel import EarlyDiverged, History, train_networks
from empirics.outputs import RecordWriter, atomic_open, atomic_write_json, provenance
from empirics.stats.bands import Series, band, horizon, mean_series, ratio_series, resample_weights
from empirics.train.config import OPTIMIZERS
from theory.registry import Activation


def series_of(hist: History, layer: str, quantity: str, n: int | None = None) -> Series:
    """The per-step Series of one quantity from the first n networks (all by default)."""
    pn = {k: v[:, :n] for k, v in hist.per_network.items() if k[0] == layer}
    if quantity in ("g_pos", "g_neg"):
        side = quantity[2:]
        return ratio_series(pn[(layer, f"{side}_num")], pn[(layer, f"{side}_den")])
    return mean_series(pn[(layer, quantity)])


def summarize_run(cfg: EarlyConfig, hist: History) -> dict[str, Any]:
    """Horizons per layer and quantity at N and at check_factor * N networks, Remark A.2's
    per-step covariance and mean terms with simultaneous bands, and what the verdicts need."""
    layers = [f"layer{k + 1}" for k in range(len(cfg.widths))]
    subsets = {"N": cfg.n_networks, "kN": cfg.total_networks}
    weights = {
        name: resample_weights(n, cfg.bootstrap, cfg.seed + 7_000_001)
        for name, n in subsets.items()
    }
    out: dict[str, Any] = {"layers": {}}
    for layer in layers:
        entry: dict[str, Any] = {
            "nonneg_inputs": bool(hist.per_network[(layer, "input_min")].min() >= 0),
            "horizons": {},
        }
        for quantity in HORIZON_QUANTITIES:
            entry["horizons"][quantity] = {
                name: horizon(
                    series_of(hist, layer, quantity, n),
                    weights[name],
                    alpha=cfg.alpha,
                    decay_fraction=cfg.decay_fraction,
                )
                for name, n in subsets.items()
            }
        out["layers"][layer] = entry
    return out


def write_records(path: Path, cfg: EarlyConfig, hist: History) -> None:
    """Per-step tidy rows (all networks): mean and simultaneous band of every quantity."""
    rows: dict[int, dict[tuple[str, str], float]] = {}
    weights = resample_weights(cfg.total_networks, cfg.bootstrap, cfg.seed + 7_000_001)
    for layer in (f"layer{k + 1}" for k in range(len(cfg.widths))):
        for quantity in (*HORIZON_QUANTITIES, "g_neg", "cov_term", "mean_term"):
            b = band(series_of(hist, layer, quantity), weights, cfg.alpha)
            for t, (m, lo, hi) in enumerate(zip(b["mean"], b["lo"], b["hi"], strict=True)):
                row = rows.setdefault(t, {})
                row[(layer, quantity)] = m
                row[(layer, f"{quantity}_lo")] = lo
                row[(layer, f"{quantity}_hi")] = hi
    for (layer, metric), values in hist.scalars.items():
        for t, v in enumerate(values):
            rows.setdefault(t, {})[(layer, metric)] = v
    with RecordWriter(path, run=cfg.run_name()) as writer:
        for t in sorted(rows):
            writer.write(t, rows[t])


def run_one(cfg: EarlyConfig, out_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Train, write out_dir/records.csv, out_dir/per_network.npz and out_dir/result.json
    (atomically, result last), return the result. A diverged run keeps its records and
    per-network values up to the step that diverged, and its result gives the status, the
    message and that step instead of horizons."""
    cfg = cfg.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    body: dict[str, Any] = {"schema": SCHEMA_VERSION, "config": cfg.record(), "run": cfg.run_name()}
    try:
        hist = train_networks(cfg, progress=progress)
    except EarlyDiverged as exc:
        _write_history(out_dir, cfg, exc.history)
        body.update(status="diverged", message=str(exc), steps=exc.history.steps)
        atomic_write_json(out_dir / "result.json", body)
        return body
    _write_history(out_dir, cfg, hist)
    body.update(summarize_run(cfg, hist))
    body.update(status="completed", steps=hist.steps, seconds=time.perf_counter() - start)
    atomic_write_json(out_dir / "result.json", body)
    return body


def _write_history(out_dir: Path, cfg: EarlyConfig, hist: History) -> None:
    write_records(out_dir / "records.csv", cfg, hist)
    # The per-network values [steps, N] (float32): Remark A.2 pools them over seeds, and any
    # later analysis can rerun without retraining.
    arrays = {f"{k[0]}.{k[1]}": v.astype(np.float32) for k, v in hist.per_network.items()}
    with atomic_open(out_dir / "per_network.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays)


# ------------------------------------------------------------------------------- the grid


def grid(
    base: EarlyConfig,
    *,
    activations: Sequence[Activation | str] = SWEEP_ACTIVATIONS,
    losses: Sequence[str] = LOSSES,
    optimizers: Sequence[str] = OPTIMIZERS,
    lrs: dict[str, Sequence[float]] | None = None,
    seeds: Sequence[int] = (0,),
) -> list[EarlyConfig]:
    """One validated config per grid point (activation x loss x optimizer x lr x seed), every
    one checked before the first step runs."""
    lrs = lrs or LR_GRID
    configs = [
        base.replace(activation=a, loss=lo, optimizer=o, lr=lr, seed=s).validate()
        for a, lo, o, s in itertools.product(activations, losses, optimizers, seeds)
        for lr in lrs[o]
    ]
    names = [c.run_name() for c in configs]
    if len(set(names)) != len(names):
        raise ValueError("two grid points share a run name; give distinct activations/lrs")
    return configs


def _completed(out_dir: Path, cfg: EarlyConfig) -> dict[str, Any] | None:
    try:
        body = json.loads((out_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if body.get("schema") != SCHEMA_VERSION:
        return None
    if body.get("status") in ("completed", "diverged") and body.get("config") == cfg.record():
        return body
    return None


def reanalyze(cfg: EarlyConfig, out_dir: Path) -> dict[str, Any] | None:
    """Recompute a finished run's horizons from its stored per-network values (no training),
    so that a changed analysis reaches old runs; returns the updated result (None if absent)."""
    path = out_dir / "per_network.npz"
    try:
        body = json.loads((out_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if body.get("status") != "completed" or not path.exists():
        return None
    with np.load(path) as z:
        per_net = {tuple(k.split(".", 1)): z[k].astype(np.float64) for k in z.files}
    steps = next(iter(per_net.values())).shape[0] - 1
    body.update(summarize_run(cfg, History(per_network=per_net, scalars={}, steps=steps)))
    body["schema"] = SCHEMA_VERSION
    atomic_write_json(out_dir / "result.json", body)
    return body


def stored_config(fields: dict[str, Any]) -> EarlyConfig:
    """The config a result.json records. Runs recorded before the activation was stored as its
    spec hold a user expression's bare name, which a new process cannot parse; the re-analysis
    needs only the sizes and the band settings, so such a config keeps the name as recorded."""
    try:
        return EarlyConfig(**fields)
    except ValidationError as exc:
        if [err["loc"] for err in exc.errors()] != [("activation",)]:
            raise
    checked = EarlyConfig(**{**fields, "activation": "identity"})
    return checked.model_copy(update={"activation": fields["activation"]})


def report(out: Path) -> list[dict[str, Any]]:
    """Re-analyse every finished run under out/runs (whatever grid made it) and rewrite the
    aggregate JSON files over all of them."""
    results = []
    for path in sorted((out / "runs").glob("*/result.json")):
        body = json.loads(path.read_text())
        redone = reanalyze(stored_config(body["config"]), path.parent)
        if redone is not None:
            results.append(redone)
        elif body.get("status") == "diverged":
            results.append(body)
    write_aggregates(out, results)
    return results


def _worker(configs: list[EarlyConfig], out_dirs: list[str], threads: int) -> None:
    """One launcher job: its share of the grid, one run after the other (a worker pays Python's
    and torch's start-up once for the whole share)."""
    torch.set_num_threads(threads)
    for cfg, out_dir in zip(configs, out_dirs, strict=True):
        run_one(cfg, Path(out_dir))


def run_grid(
    configs: Sequence[EarlyConfig],
    out: Path,
    *,
    jobs: int = 1,
    threads: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every config whose out/runs/NAME/result.json is missing or from another config
    (resume: a killed grid redoes only unfinished runs), then write the aggregate JSON files
    over the finished ones."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    check_memory(configs, jobs)  # before config.json or any run directory is written
    threads = threads or max(1, cpus() // jobs)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / "config.json",
        {
            "configs": [c.record() for c in configs],
            "torch_threads": threads,
            "provenance": provenance(configs[0].device if configs else None),
        },
    )
    todo = [c for c in configs if _completed(out / "runs" / c.run_name(), c) is None]
    bar = tqdm(total=len(todo), disable=not progress, desc="early training grid")
    # The one grid launcher: in this process for one job, else `jobs` local worker processes,
    # each given an even share of the runs (these runs take seconds: a process per run would
    # spend most of its time starting up).
    launch = Launch(
        cluster="debug" if jobs == 1 else "local",
        parallel=jobs,
        threads=threads,
        chunk=max(1, -(-len(todo) // jobs)),
    )

    def job(items: list[EarlyConfig], _own: bool) -> tuple[Any, tuple[Any, ...]]:
        return _worker, (items, [str(out / "runs" / c.run_name()) for c in items], threads)

    def finished(done: Any, items: EarlyConfig | list[EarlyConfig]) -> None:
        done.result()  # a failed run raises here, as it would in this process
        bar.update(len(items) if isinstance(items, list) else 1)

    execute(
        todo,
        launch,
        out / "submitit",
        one=lambda item, own: job([item], own),
        many=job,
        running=lambda item, job_id: None,
        finished=finished,
    )
    bar.close()
    results = [_completed(out / "runs" / c.run_name(), c) for c in configs]
    done = [r for r in results if r is not None]
    write_aggregates(out, done)
    return done
