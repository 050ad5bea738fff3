"""The paper's experiments (C6–C12): grids of training runs over seeds, aggregated to JSON with CIs.

`python -m empirics.experiments run --scale quick|full [--jobs 2] [--only drift,c10,...]` trains
(resumable: finished runs are kept) and then aggregates; `python -m empirics.experiments
aggregate --scale full` only reads results/ (no torch) and writes results/experiments/SCALE/*.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from empirics.cli import EXIT_FAILED, InputError, split_list
from empirics.experiments.aggregates import (
    aggregate_c6,
    aggregate_c9,
    aggregate_c12,
    aggregate_first_step,
    aggregate_mp_probe,
    aggregate_spikes,
)
from empirics.experiments.c10 import aggregate_c10
from empirics.experiments.drift import aggregate_drift, resnet_mechanism
from empirics.experiments.plan import (
    GROUPS,
    ROOT,
    SCALES,
    PipelineStopped,
    RunSpec,
    Scale,
    c10_configurations,
    check_data,
    plan_runs,
    scale_root,
)
from empirics.experiments.runs import c10_failed, group_status, load_runs
from empirics.experiments.sweep_state import read_json
from empirics.experiments.theory_runs import run_early, run_mp_probe, run_theory
from empirics.launch import LaunchError
from empirics.outputs import atomic_write_json
from empirics.stats.estimates import CI_LEVEL
from empirics.train.config import ConfigError

SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------- training groups


def _train_config(spec: RunSpec, scale: Scale, root: Path) -> Any:
    from empirics.train.config import TrainConfig

    model = {} if spec.sparsity == "none" else {"sparsity": spec.sparsity}
    return TrainConfig(
        arch=spec.arch,
        activation=spec.activation,
        data=spec.data,
        preset=scale.preset,
        steps=spec.steps,
        seed=spec.seed,
        run=spec.name,
        out=str(root / "runs" / spec.name),
        progress=False,
        early_steps=spec.early_steps,
        log_every_early=spec.log_every_early,
        log_every_late=spec.log_every_late,
        model=model,
    )


def run_group(
    group: str,
    specs: Sequence[RunSpec],
    scale: Scale,
    root: Path,
    jobs: int,
    cluster: str = "local",
) -> dict[str, Any]:
    """Train a group through the sweep runner (submitit; resumes: completed runs are kept).

    One torch thread per run and `jobs` runs at a time: on a 2-core machine two single-thread
    runs finish more work per minute than one run on two threads at these sizes."""
    from empirics.experiments.sweep import run_sweep
    from empirics.launch import Launch
    from empirics.train.loop import plan

    gdir = root / "sweeps" / group
    configs = [_train_config(s, scale, gdir) for s in specs]
    for cfg in configs:
        plan(cfg)  # every ConfigError before the first run starts
    launch = Launch(cluster=cluster, parallel=jobs, threads=1, chunk=scale.chunk)
    return run_sweep(configs, gdir, launch, echo=None)


# ------------------------------------------------------------------------------ the driver


def aggregate(scale: Scale | str, root: Path = ROOT) -> dict[str, Path]:
    """Read every group under root/SCALE and write the claim JSON files; returns their paths."""
    sroot = scale_root(scale, root)
    sweeps = sroot / "sweeps"
    runs = {g: load_runs(sweeps / g) for g in ("drift", "synthetic", "mp_senet", "acts", "c10")}
    status = {g: group_status(sweeps / g) for g in runs if (sweeps / g).exists()}
    meta = {
        "schema_version": SCHEMA_VERSION,
        "scale": scale if isinstance(scale, str) else scale.record(),
        "ci_level": CI_LEVEL,
        "ci_method": "Student t over seeds",
        "run_status": status,
    }
    written: dict[str, Path] = {}

    def write(name: str, body: dict[str, Any]) -> None:
        path = sroot / f"{name}.json"
        atomic_write_json(path, {"claim": name, **meta, **body})
        written[name] = path

    drift_runs = runs["drift"] + runs["synthetic"] + runs["mp_senet"]
    write(
        "drift",
        aggregate_drift(drift_runs)
        | {
            "resnet": resnet_mechanism(runs["drift"]),
            "mp_senet_probe": aggregate_mp_probe(sroot / "mp_senet_probe.json"),
        },
    )
    write("c9_sparsity", aggregate_c9(runs["drift"] + runs["mp_senet"]))
    gpt = [r for r in runs["drift"] if r.arch == "gpt_nano"] + runs["acts"]
    write("c11_spikes", aggregate_spikes(gpt))
    write("c12_val_loss", aggregate_c12(gpt))
    write("c10_cliff", aggregate_c10(runs["c10"], failed=c10_failed(sweeps / "c10")))
    write("c6_persistence", aggregate_c6(sroot / "early_training"))
    write("first_step_trainer", aggregate_first_step(runs["drift"] + runs["mp_senet"]))
    if (
        sweeps / "mp_senet_long"
    ).is_dir():  # trained apart: python -m empirics.experiments.mp_senet_long
        from empirics.experiments import mp_senet_long

        written["mp_senet_long"] = mp_senet_long.aggregate(sroot, mp_senet_long.LongPlan())
    return written


def _stop_if_none_completed(group: str, index: dict[str, Any], total: int) -> None:
    """A group that completed none of its runs stops the pipeline with its first run's reason:
    what follows would only fail the same way, further from the cause."""
    runs = [e for e in index["runs"] if e.get("in_grid", True)]
    if total and not any(e.get("status") == "completed" for e in runs):
        first = next((e for e in runs if e.get("message")), runs[0] if runs else {})
        reason = first.get("message") or first.get("status") or "no run was recorded"
        log = f" (log: {first['log']})" if first.get("log") else ""
        raise PipelineStopped(
            f"{group}: 0/{total} runs completed; the first, {first.get('run', '?')}, "
            f"{first.get('status', 'did not run')}: {reason}{log}"
        )


def run(
    scale: Scale,
    *,
    groups: Sequence[str] = GROUPS,
    jobs: int = 2,
    root: Path = ROOT,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Train every planned group (resuming), run the Monte Carlo and C6 sweeps, aggregate."""
    sroot = scale_root(scale, root)
    timing: dict[str, float] = {}
    check_data(scale, groups)
    plans = plan_runs(scale, groups)
    for group in (g for g in groups if g in plans):  # in the order asked for
        specs = plans[group]
        t0 = time.perf_counter()
        index = run_group(group, specs, scale, sroot, jobs, cluster or scale.cluster)
        timing[group] = time.perf_counter() - t0
        bad = [e["run"] for e in index["runs"] if e.get("status") != "completed"]
        print(f"{group}: {len(specs) - len(bad)}/{len(specs)} runs completed", flush=True)
        _stop_if_none_completed(group, index, len(specs))
    if "early" in groups:
        t0 = time.perf_counter()
        run_early(scale, sroot, jobs)
        timing["early"] = time.perf_counter() - t0
    if "theory" in groups:
        t0 = time.perf_counter()
        run_theory(scale, sroot)
        timing["theory"] = time.perf_counter() - t0
    if "mp_probe" in groups:
        t0 = time.perf_counter()
        run_mp_probe(scale, sroot)
        timing["mp_probe"] = time.perf_counter() - t0
    # Wall times are informative only; nothing the pipeline computes depends on them.
    prev = sroot / "timing.json"
    old = read_json(prev) or {}  # a truncated file must not fail a finished run
    atomic_write_json(prev, {**old, **timing})
    return {"timing": timing, "written": {k: str(v) for k, v in aggregate(scale, root).items()}}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m empirics.experiments",
        usage="%(prog)s {run,aggregate,plan} [--scale quick|full] [--only G,G] [options]",
        description=__doc__,
    )
    ap.add_argument("command", choices=("run", "aggregate", "plan"))
    ap.add_argument("--scale", default="quick", help=f"one of {', '.join(SCALES)}")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"groups: {', '.join(GROUPS)}")
    ap.add_argument("--jobs", type=int, default=2)
    # --out as the other entry points spell it; --root, its former spelling, still works.
    ap.add_argument("--out", "--root", dest="root", type=Path, default=ROOT)
    ap.add_argument("--cluster", help="submitit executor: local | slurm | debug (default: scale's)")
    args = ap.parse_args(argv)
    if args.scale not in SCALES:
        ap.error(f"--scale: unknown value {args.scale!r}; valid: {', '.join(SCALES)}")
    try:
        groups = split_list(args.only, "--only")
    except InputError as exc:
        ap.error(str(exc))
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        ap.error(f"--only: unknown group(s) {', '.join(unknown)}; valid: {', '.join(GROUPS)}")
    if args.jobs < 1:
        ap.error(f"--jobs: expected an integer >= 1, got {args.jobs}")
    scale = SCALES[args.scale]
    if args.command == "plan":
        plans = plan_runs(scale, groups)
        for g, specs in plans.items():
            print(f"{g}: {len(specs)} runs")
        if "c10" in groups:
            print(f"c10 configurations: {len(c10_configurations(scale))}")
        return 0
    if args.command == "aggregate":
        sroot = scale_root(scale, args.root)
        found = [p for p in (sroot / "sweeps", sroot / "early_training") if p.is_dir()]
        found += [p for p in (sroot / "mp_senet_probe.json",) if p.is_file()]
        if not found:
            ap.error(
                f"--out: {str(sroot)!r} holds no experiment results of scale {scale.name!r} "
                "(no sweeps/, early_training/ or mp_senet_probe.json), so there is nothing to "
                f"aggregate; run `python -m empirics.experiments run --scale {scale.name} "
                f"--out {args.root}` first"
            )
        for name, path in aggregate(scale, args.root).items():
            print(f"{name}: {path}")
        return 0
    try:
        result = run(scale, groups=groups, jobs=args.jobs, root=args.root, cluster=args.cluster)
    except PipelineStopped as exc:
        print(f"{ap.prog}: stopped: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (LaunchError, ConfigError) as exc:  # --cluster, or a resume with other settings
        ap.error(str(exc))
    except KeyboardInterrupt as exc:  # the sweep cancelled its jobs; finished runs are kept
        signum = int(getattr(exc, "signum", 2) or 2)
        print("interrupted: finished runs are kept; rerun the same command to resume")
        return 128 + signum
    for name, path in result["written"].items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["SCALES", "Scale", "aggregate", "main", "plan_runs", "run"]
