"""Grids of training runs (arch × activation × seed) and the drift report over them.

`python -m empirics.sweep --arch mlp,vit --activation relu,gelu,silu,tanh --seeds 0,1
--preset small --out results/sweeps/NAME [--jobs N]` runs or resumes the grid;
`python -m empirics.sweep report DIR` prints the drift table (`drift_report(DIR)` its rows).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import itertools
import json
import math
import multiprocessing
import re
import shutil
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from empirics.outputs import atomic_write_json, read_records
from empirics.train import ConfigError, TrainConfig, TrainingDiverged, parse_sets, plan

INDEX = "index.json"


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _slug(activation: str) -> str:
    head = activation.split("=", 1)[0] if "=" in activation.split(":")[0] else activation
    return re.sub(r"[^A-Za-z0-9_.]+", "-", head).strip("-")


def grid(
    archs: Sequence[str],
    activations: Sequence[str],
    seeds: Sequence[int],
    base: TrainConfig,
    root: Path,
    model_sets: Sequence[str] = (),
) -> list[TrainConfig]:
    """One TrainConfig per grid point, each checked (ConfigError) before anything runs."""
    configs = []
    for arch, act, seed in itertools.product(archs, activations, seeds):
        name = f"{arch}-{_slug(act)}-s{seed}"
        cfg = dataclasses.replace(
            base,
            arch=arch,
            activation=act,
            seed=seed,
            run=name,
            out=str(root / "runs" / name),
            progress=False,
            model=parse_sets(arch, model_sets) if model_sets else dict(base.model),
        )
        plan(cfg)
        configs.append(cfg)
    names = [c.run for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"two grid points share a run name: {sorted(names)}")
    return configs


def _status(out: Path) -> str | None:
    try:
        return json.loads((out / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def _run_one(cfg: TrainConfig, threads: int) -> dict[str, Any]:
    """Worker body: one training run; failures become an index entry, not a dead sweep."""
    import torch

    from empirics.train import train

    torch.set_num_threads(threads)
    entry: dict[str, Any] = {"run": cfg.run, "arch": cfg.arch, "activation": cfg.activation}
    entry["seed"] = cfg.seed
    entry["dir"] = str(Path(cfg.out).name)
    try:
        train(cfg)
        entry["status"] = "completed"
    except TrainingDiverged as exc:
        entry["status"], entry["message"] = "diverged", str(exc)
    except Exception as exc:  # noqa: BLE001 -- one bad run must not lose the others' results
        entry["status"], entry["message"] = "failed", f"{type(exc).__name__}: {exc}"
    summary = Path(cfg.out) / "summary.json"
    if summary.exists():
        body = json.loads(summary.read_text())
        entry["final_loss"] = body.get("final_loss")
        entry["val"] = body.get("val")
        entry["wall_time_s"] = body.get("wall_time_s")
    return entry


def run_sweep(
    configs: Sequence[TrainConfig], root: Path, *, jobs: int = 1, threads: int | None = None
) -> dict[str, Any]:
    """Run every config not already completed under root/runs; write root/index.json.

    A run directory whose summary.json does not say "completed" (killed, diverged, failed) is
    deleted and redone from scratch, so no run mixes records of two attempts. `threads` is
    torch's CPU thread count per run (default: the cores divided among the jobs).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs: expected an integer >= 1, got {jobs!r}")
    if threads is None:
        threads = max(1, (multiprocessing.cpu_count() or 1) // jobs)
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads: expected an integer >= 1, got {threads!r}")
    root.mkdir(parents=True, exist_ok=True)
    index_path = root / INDEX
    previous: dict[str, dict[str, Any]] = {}
    if index_path.exists():
        previous = {e["run"]: e for e in json.loads(index_path.read_text()).get("runs", [])}
    entries: dict[str, dict[str, Any]] = {}
    todo = []
    for cfg in configs:
        out = Path(cfg.out)
        if _status(out) == "completed":
            entries[cfg.run] = {**previous.get(cfg.run, {}), "run": cfg.run, "status": "completed"}
            entries[cfg.run].setdefault("dir", out.name)
            entries[cfg.run]["skipped"] = True
            continue
        if out.exists():
            shutil.rmtree(out)
        todo.append(cfg)

    def save() -> None:
        ordered = [entries[c.run] for c in configs if c.run in entries]
        atomic_write_json(index_path, {"runs": ordered, "pending": len(configs) - len(ordered)})

    save()
    if jobs == 1:
        for cfg in todo:
            entries[cfg.run] = _run_one(cfg, threads)
            save()
    else:
        # spawn: a fresh interpreter per worker (torch and fork do not mix); a user activation
        # NAME=EXPR travels inside its config string and is registered again in the worker.
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_run_one, cfg, threads): cfg for cfg in todo}
            for fut in cf.as_completed(futures):
                cfg = futures[fut]
                try:
                    entries[cfg.run] = fut.result()
                except Exception as exc:  # noqa: BLE001 -- a crashed worker is one failed run
                    entries[cfg.run] = {
                        "run": cfg.run,
                        "status": "failed",
                        "message": f"{type(exc).__name__}: {exc}",
                    }
                save()
    save()
    return json.loads(index_path.read_text())


# ------------------------------------------------------------------------------ the report

REPORT_COLUMNS = (
    "arch",
    "activation",
    "runs",
    "step_k",
    "preact_0",
    "preact_k",
    "d_preact",
    "falling",
    "d_sparsity",
    "d_negative_rate",
    "d_weight_part",
    "d_mean_part",
    "d_bias",
    "d_weight_mean",
    "d_weight_meandir",
    "drift_score_k",
    "responsible",
)


def _value_at(series: dict[int, float], step: int) -> float:
    """The value at the last logged step <= step."""
    eligible = [s for s in series if s <= step]
    return series[max(eligible)] if eligible else math.nan


def _run_drift(
    rows: list[dict[str, Any]], feeds: dict[str, str], k: int | None
) -> tuple[int, dict[str, float]] | None:
    series: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in rows:
        series[(r["layer"], r["metric"])][r["step"]] = r["value"]
    act_layers = sorted({layer for layer, metric in series if metric == "preact_mean"})
    if not act_layers:
        return None
    steps = sorted(series[(act_layers[0], "preact_mean")])
    step_k = steps[-1] if k is None else k
    per_layer: dict[str, list[float]] = defaultdict(list)
    for act in act_layers:

        def delta(layer: str, metric: str) -> float:
            s = series.get((layer, metric))
            if not s:
                return math.nan
            return _value_at(s, step_k) - s[min(s)]

        p = series[(act, "preact_mean")]
        per_layer["preact_0"].append(p[min(p)])
        per_layer["preact_k"].append(_value_at(p, step_k))
        per_layer["d_preact"].append(delta(act, "preact_mean"))
        per_layer["d_sparsity"].append(delta(act, "sparsity"))
        per_layer["d_negative_rate"].append(delta(act, "negative_rate"))
        src = feeds.get(act)
        for col, metric in (
            ("d_weight_part", "preact_weight_part"),
            ("d_mean_part", "preact_weight_meanpart"),
            ("d_bias", "bias_mean"),
            ("d_weight_mean", "weight_mean"),
            ("d_weight_meandir", "weight_meandir"),
        ):
            per_layer[col].append(delta(src, metric) if src else math.nan)
        ds = series.get((src, "drift_score")) if src else None
        per_layer["drift_score_k"].append(_value_at(ds, step_k) if ds else math.nan)
    out = {col: _nanmean(vals) for col, vals in per_layer.items()}
    out["falling"] = sum(1 for d in per_layer["d_preact"] if d < 0)
    out["layers"] = len(act_layers)
    return step_k, out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def _responsible(row: dict[str, Any]) -> str:
    """Which part of the pre-activation shift moved most: biases, the weights' plain mean, or
    the weights along the mean input direction x̄ (d_weight_part − d_mean_part)."""
    parts = {
        "biases": row["d_bias"],
        "weights: plain mean": row["d_mean_part"],
        "weights: along x̄": row["d_weight_part"] - row["d_mean_part"],
    }
    finite = {k: v for k, v in parts.items() if not math.isnan(v)}
    if not finite:
        return "n/a"
    return max(finite, key=lambda k: abs(finite[k]))


def drift_report(sweep_dir: str | Path, *, step_k: int | None = None) -> list[dict[str, Any]]:
    """Per arch × activation (seeds and activation layers averaged): preact_mean at step 0 vs
    step k (default the last logged step), the sparsity / negative_rate change, and the
    weight/bias metric deltas of the feeding layers with which part moved the pre-activation.

    `falling` counts activation layers (summed over seeds) whose preact_mean went down.
    """
    root = Path(sweep_dir)
    index_path = root / INDEX
    if not index_path.exists():
        raise FileNotFoundError(f"{root} has no {INDEX}; run `python -m empirics.sweep` first")
    runs = json.loads(index_path.read_text())["runs"]
    groups: dict[tuple[str, str], list[tuple[int, dict[str, float]]]] = defaultdict(list)
    for entry in runs:
        if entry.get("status") != "completed":
            continue
        run_dir = root / "runs" / entry["dir"]
        config = json.loads((run_dir / "config.json").read_text())["train"]
        feeds = json.loads((run_dir / "summary.json").read_text()).get("feeds", {})
        got = _run_drift(read_records(run_dir / "records.csv"), feeds, step_k)
        if got is not None:
            groups[(config["arch"], config["activation"])].append(got)
    rows = []
    for (arch, act), results in groups.items():
        row: dict[str, Any] = {"arch": arch, "activation": act, "runs": len(results)}
        row["step_k"] = min(k for k, _ in results)
        for col in REPORT_COLUMNS[4:-1]:
            if col == "falling":
                continue
            row[col] = _nanmean([r[col] for _, r in results])
        falling = sum(r["falling"] for _, r in results)
        row["falling"] = f"{falling}/{sum(r['layers'] for _, r in results)}"
        row["responsible"] = _responsible(row)
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:+.4g}"
        return str(v)

    table = [list(REPORT_COLUMNS)] + [[cell(r[c]) for c in REPORT_COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(REPORT_COLUMNS))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in table
    )


# ---------------------------------------------------------------------------------- the CLI


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        rp = argparse.ArgumentParser(prog="python -m empirics.sweep report")
        rp.add_argument("dir")
        rp.add_argument("--step", type=int, help="compare step 0 with this step (default last)")
        args = rp.parse_args(argv[1:])
        try:
            rows = drift_report(args.dir, step_k=args.step)
        except FileNotFoundError as exc:
            rp.error(str(exc))
        print(format_table(rows))
        return 0
    ap = argparse.ArgumentParser(
        prog="python -m empirics.sweep",
        description="Run (or resume) a grid of training runs; `report DIR` prints the drift table.",
    )
    ap.add_argument("--arch", required=True, help="comma-separated architectures")
    ap.add_argument("--activation", required=True, help="comma-separated names or NAME=EXPR")
    ap.add_argument("--seeds", default="0", help="comma-separated integers")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--data", default="real")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--optimizer")
    ap.add_argument("--early-steps", type=int, default=TrainConfig.early_steps)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", required=True, help="sweep directory, e.g. results/sweeps/NAME")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, help="torch threads per run (default cores/jobs)")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in _split(args.seeds)]
    except ValueError:
        ap.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    try:
        base = TrainConfig(
            preset=args.preset,
            data=args.data,
            steps=args.steps,
            lr=args.lr,
            optimizer=args.optimizer,
            early_steps=args.early_steps,
        )
        root = Path(args.out)
        configs = grid(_split(args.arch), _split(args.activation), seeds, base, root, args.set)
        if args.jobs < 1:
            raise ConfigError(f"--jobs: expected an integer >= 1, got {args.jobs}")
    except ConfigError as exc:
        ap.error(str(exc))
    try:
        index = run_sweep(configs, root, jobs=args.jobs, threads=args.threads)
    except ConfigError as exc:
        ap.error(str(exc))
    bad = [e for e in index["runs"] if e.get("status") != "completed"]
    done = len(index["runs"]) - len(bad)
    print(f"{done}/{len(configs)} runs completed; index in {root / INDEX}")
    for e in bad:
        print(f"  {e['run']}: {e['status']}: {e.get('message', '')}", file=sys.stderr)
    if done:
        print(format_table(drift_report(root)))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
