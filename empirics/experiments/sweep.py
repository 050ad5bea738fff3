"""Grids of training runs (arch × activation × seed) on submitit, and the drift report over them.

`python -m empirics.experiments.sweep run --arch mlp,vit --activation relu --activation 'sq=x**2/2'
--seeds 0,1
--preset small --out results/sweeps/NAME [--parallel 2] [--cluster slurm --partition gpu ...]`
runs or resumes the grid; `python -m empirics.experiments.sweep report DIR` prints the drift table.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import signal
import sys
import time
import typing
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from empirics.activations import parse_activation
from empirics.cli import InputError, activation_slug, run_name, split_specs
from empirics.cli import parse_seeds as cli_parse_seeds
from empirics.experiments.drift import drift_report, format_table
from empirics.experiments.sweep_jobs import collect, collect_chunk, run_point, run_points
from empirics.experiments.sweep_state import (
    INDEX,
    JOBS,
    LOCKS,
    MARKER,
    POINTS,
    RUNS,
    check_out_dir,
    check_resume,
    entry_from_dir,
    finite,
    held_by_other,
    index_entry,
    read_json,
    resumable,
    run_status,
    summary_fields,
    sweep_lock,
)
from empirics.launch import (
    Launch,
    LaunchError,
    execute,
    sigterm_raises,
)
from empirics.outputs import atomic_write_json, provenance
from empirics.train.config import ConfigError, TrainConfig, parse_sets
from empirics.train.loop import plan
from theory.registry import Activation, RegistryError

# Statuses a run's index entry ends in.
FINISHED = ("completed", "diverged", "failed", "cancelled", "interrupted")


class SweepInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the sweep; its unfinished jobs were cancelled."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def split_values(values: Sequence[str], field: str = "--arch/--activation") -> list[str]:
    """Repeated `--arch`/`--activation` values, each a comma list unless it holds '=' (the one
    list grammar of `empirics.cli.split_specs`: `mlp,,vit` is refused, not read as two)."""
    try:
        return split_specs(values, field)
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def parse_seeds(values: Sequence[str]) -> list[int]:
    """`--seeds 0,1 --seeds 2` -> [0, 1, 2] in the one seed range; ConfigError names the bad
    entry."""
    try:
        return cli_parse_seeds(list(values), "--seeds")
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def parse_activations(specs: Sequence[Activation | str]) -> list[Activation]:
    """Each activation spec parsed once into its Activation object (objects pass through);
    ConfigError names the bad spec as the trainer's check does."""
    out = []
    for spec in specs:
        try:
            out.append(parse_activation(spec))
        except (RegistryError, ValueError) as exc:
            raise ConfigError(f"activation: {exc}") from None
    return out


def grid(
    archs: Sequence[str],
    activations: Sequence[Activation | str],
    seeds: Sequence[int],
    base: TrainConfig,
    root: Path,
    model_sets: Sequence[str] = (),
) -> list[TrainConfig]:
    """One TrainConfig per grid point, each checked (ConfigError) before anything runs."""
    for flag, values in (("--arch", archs), ("--activation", activations), ("--seeds", seeds)):
        if not values:
            raise ConfigError(f"{flag}: no values given, so the grid is empty")
    configs = []
    for arch, act, seed in itertools.product(archs, parse_activations(activations), seeds):
        name = run_name(arch, activation_slug(act), base.data, seed=seed)
        cfg = base.replace(
            arch=arch,
            activation=act,
            seed=seed,
            run=name,
            out=str(Path(root) / RUNS / name),
            progress=False,
            model=parse_sets(arch, model_sets) if model_sets else dict(base.model),
        )
        plan(cfg)
        configs.append(cfg)
    _unique_names(configs)
    return configs


def _unique_names(configs: Sequence[TrainConfig]) -> None:
    names = [c.run for c in configs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"grid: two grid points share the run name(s) {', '.join(repeated)} "
            "(a repeated seed, or two activations with the same name)"
        )


def _describe(entry: dict[str, Any]) -> str:
    parts = [entry["status"]]
    if entry.get("final_loss") is not None:
        parts.append(f"loss {entry['final_loss']:.4g}")
    for key, value in (entry.get("val") or {}).items():
        if isinstance(value, (int, float)):
            parts.append(f"{key} {value:.4g}")
            break
    if entry.get("wall_time_s") is not None:
        parts.append(f"{entry['wall_time_s']:.1f} s")
    if entry.get("message") and entry["status"] != "completed":
        parts.append(entry["message"].splitlines()[0][:200])
    return "  ".join(parts)


def _check_grid(configs: Sequence[TrainConfig], root: Path) -> None:
    if not configs:
        raise ConfigError("grid: no grid points (an empty --arch, --activation or --seeds)")
    _unique_names(configs)
    for cfg in configs:  # resume, locks and the index find a run by this layout
        if not cfg.run or Path(cfg.out or "").absolute() != (root / RUNS / cfg.run).absolute():
            raise ConfigError(
                f"grid: run {cfg.run!r} must write to {root / RUNS / str(cfg.run)}, not {cfg.out}"
            )


def _claim(
    root: Path, configs: Sequence[TrainConfig], launch: Launch, say: Callable[[str], None]
) -> None:
    """Refuse runs another process still trains; add this invocation to the marker."""
    for cfg in configs:
        holder = held_by_other(root / LOCKS / f"{cfg.run}.lock")
        if holder is not None and run_status(Path(cfg.out)) != "completed":
            raise ConfigError(
                f"--out {root}: run {cfg.run} is still being trained by process {holder} "
                "(left running by a killed sweep?); stop it or wait, then rerun"
            )
    marker = read_json(root / MARKER)
    history = marker.get("invocations", []) if isinstance(marker, dict) else []
    history.append({"grid": len(configs), "cluster": launch.resolved_cluster, **provenance()})
    atomic_write_json(root / MARKER, {"invocations": history[-50:]})
    if (root / INDEX).exists() and not isinstance(read_json(root / INDEX), dict):
        say(f"{root / INDEX} was unreadable; rewriting it from {root / RUNS}")


class _Index:
    """index.json while the sweep runs: every run of the grid (completed ones skipped, the rest
    pending, cleared of an earlier attempt unless it can resume) and the runs of earlier grids
    found in the directory, saved at every change."""

    def __init__(
        self,
        root: Path,
        configs: Sequence[TrainConfig],
        records: dict[str, dict[str, Any]],
        say: Callable[[str], None],
    ) -> None:
        self.root, self.say = root, say
        self.entries: dict[str, dict[str, Any]] = {}
        in_grid = {cfg.run for cfg in configs}
        for run_dir in sorted((root / RUNS).glob("*")) if (root / RUNS).is_dir() else []:
            if run_dir.name not in in_grid and run_dir.is_dir():
                self.entries[run_dir.name] = {**entry_from_dir(run_dir), "in_grid": False}
        self.todo: list[TrainConfig] = []
        for cfg in configs:
            out = Path(cfg.out)
            if run_status(out) == "completed":
                self.entries[cfg.run] = index_entry(
                    cfg, status="completed", skipped=True, **summary_fields(out)
                )
                continue
            if out.exists() and not resumable(root, out, records[cfg.run]):
                shutil.rmtree(out)
            atomic_write_json(root / POINTS / f"{cfg.run}.json", records[cfg.run])
            self.entries[cfg.run] = index_entry(cfg, status="pending")
            self.todo.append(cfg)
        self.order = [cfg.run for cfg in configs] + sorted(set(self.entries) - in_grid)
        self.finished = 0

    def save(self) -> None:
        runs = [self.entries[name] for name in self.order if name in self.entries]
        pending = sum(1 for e in runs if e["status"] in ("pending", "running"))
        atomic_write_json(self.root / INDEX, finite({"runs": runs, "pending": pending}))

    def running(self, cfg: TrainConfig, job_id: str) -> None:
        self.entries[cfg.run].update(status="running", job_id=job_id)
        self.save()

    def done(self, cfg: TrainConfig, entry: dict[str, Any]) -> None:
        self.finished += 1
        job_id = self.entries[cfg.run].get("job_id")
        self.entries[cfg.run] = index_entry(cfg, **{**entry, "run": cfg.run, "job_id": job_id})
        self.save()
        n = len(self.todo)
        line = _describe(self.entries[cfg.run])
        self.say(f"[{self.finished:>{len(str(n))}}/{n}] {cfg.run}: {line}")

    def cancel_unfinished(self) -> None:
        for name in self.order:
            if self.entries.get(name, {}).get("status") in ("pending", "running"):
                self.entries[name]["status"] = "cancelled"
        self.save()


def run_sweep(
    configs: Sequence[TrainConfig],
    root: Path,
    launch: Launch | None = None,
    *,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run every config not already completed under root/runs through submitit; keep
    root/index.json current as runs finish and return it.

    Everything is checked before anything is written (ConfigError): the grid, the launch, the
    output directory, and that every completed run in root was made with the same settings. A
    run directory whose summary.json does not say "completed" (killed, diverged, failed) is
    deleted and redone from scratch, so no run mixes records of two attempts. SIGINT/SIGTERM
    cancel the unfinished jobs, wait for their processes, mark them "cancelled" and raise
    SweepInterrupted; rerunning the same call resumes.
    """
    launch = launch if launch is not None else Launch()
    say = echo if echo is not None else (lambda line: None)
    root = Path(root)
    _check_grid(configs, root)
    try:
        launch.check()
    except LaunchError as exc:
        raise ConfigError(str(exc)) from None
    check_out_dir(root)
    records = check_resume(root, configs)
    threads = launch.threads_per_run()
    started = time.perf_counter()
    with sweep_lock(root), sigterm_raises(SweepInterrupted):
        _claim(root, configs, launch, say)
        index = _Index(root, configs, records, say)
        index.save()
        todo = index.todo
        skipped = len(configs) - len(todo)
        say(
            f"sweep {root}: {len(configs)} runs, {skipped} already completed, {len(todo)} to run "
            f"on the {launch.resolved_cluster} executor ({launch.parallel} at a time)"
        )
        try:
            _execute(todo, root, launch, threads, index.running, index.done)
        except KeyboardInterrupt as exc:
            index.cancel_unfinished()
            signum = exc.signum if isinstance(exc, SweepInterrupted) else signal.SIGINT
            raise SweepInterrupted(signum) from None
    body = read_json(root / INDEX)
    in_grid = {cfg.run for cfg in configs}
    counts: dict[str, int] = defaultdict(int)
    for e in body["runs"]:
        if e["run"] in in_grid:
            counts[e["status"]] += 1
    other = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "completed")
    say(
        f"sweep {root}: {counts['completed']}/{len(configs)} completed ({skipped} already done)"
        + (f", {other}" if other else "")
        + f" in {time.perf_counter() - started:.0f} s; index {root / INDEX}"
    )
    return body


def _execute(
    todo: Sequence[TrainConfig],
    root: Path,
    launch: Launch,
    threads: int | None,
    running: Callable[[TrainConfig, str], None],
    done: Callable[[TrainConfig, dict[str, Any]], None],
) -> None:
    """Run the grid's points on the launcher (`empirics.launch.execute`): one `run_point` job
    per point, or `run_points` over a chunk, each holding its point's lock."""

    def lock(cfg: TrainConfig) -> str:
        return str(root / LOCKS / f"{cfg.run}.lock")

    def one(cfg: TrainConfig, own: bool) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return run_point, (cfg, threads, lock(cfg), own)

    def many(part: list[TrainConfig], own: bool) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return run_points, (part, threads, [lock(c) for c in part], own)

    def finished(job: Any, item: TrainConfig | list[TrainConfig]) -> None:
        if isinstance(item, list):
            for cfg, entry in zip(item, collect_chunk(job, item), strict=True):
                done(cfg, entry)
        else:
            done(item, collect(job, item))

    execute(todo, launch, root / JOBS, one=one, many=many, running=running, finished=finished)


PROG = "python -m empirics.experiments.sweep"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the run subcommand's usage alone is a dozen lines."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog=PROG,
        description="Run (or resume) a grid of training runs through submitit; "
        "`report DIR` prints its drift table. Exit codes: 0 all runs completed, 1 a run "
        "failed, diverged or was cancelled, 2 bad input.",
    )
    sub = ap.add_subparsers(
        dest="command", required=True, metavar="{run,report}", parser_class=_Parser
    )
    run = sub.add_parser("run", help="run or resume a grid (arch x activation x seed)")
    run.add_argument(
        "--arch", action="append", required=True, help="architectures (repeatable, or a,b)"
    )
    run.add_argument(
        "--activation",
        action="append",
        required=True,
        help="registry names or NAME=EXPR (repeatable; a value without '=' may be a comma list)",
    )
    run.add_argument("--seeds", action="append", default=None, help="integers (default 0)")
    run.add_argument("--preset", default="small", help="smoke | small | paper")
    run.add_argument("--data", default="real")
    run.add_argument("--steps", type=int)
    run.add_argument("--lr", type=float)
    run.add_argument("--optimizer")
    run.add_argument("--early-steps", type=int)
    run.add_argument(
        "--checkpoint-every",
        type=int,
        help="each run writes a checkpoint every N steps; a killed run then resumes from it",
    )
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--out", required=True, help="sweep directory, e.g. results/sweeps/NAME")
    where = run.add_argument_group("where the runs execute (submitit)")
    where.add_argument(
        "--cluster",
        default="auto",
        help="auto (SLURM if srun exists, else local) | local | slurm | debug (in this process)",
    )
    where.add_argument(
        "--parallel",
        "--jobs",
        dest="parallel",
        type=int,
        default=1,
        help="runs at a time (local processes, or SLURM array tasks)",
    )
    where.add_argument("--threads", type=int, help="torch threads per run (default CPUs/parallel)")
    where.add_argument(
        "--chunk", type=int, default=1, help="runs per local job, in turn (start-up paid once)"
    )
    where.add_argument("--partition", help="SLURM partition")
    where.add_argument("--gpus-per-job", type=int, default=0)
    where.add_argument("--cpus-per-job", type=int, help="SLURM CPUs per task")
    where.add_argument(
        "--time", dest="time_min", type=int, default=24 * 60, help="minutes per run (limit)"
    )
    report = sub.add_parser("report", help="print the drift table of a sweep directory")
    report.add_argument("dir")
    report.add_argument("--step", type=int, help="compare step 0 with this step (default last)")
    return ap


def _fail(command: str, message: str) -> int:
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    return 2


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        return _fail("report", f"DIR: {root} is not a directory")
    if args.step is not None and args.step < 0:
        return _fail("report", f"--step: expected an integer >= 0, got {args.step}")
    try:
        rows = drift_report(root, step_k=args.step, warn=_warn)
    except FileNotFoundError as exc:
        return _fail("report", f"DIR: {exc}")
    if not rows:
        print(f"{root}: no completed run with activation metrics to report", file=sys.stderr)
        return 1
    print(format_table(rows))
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        archs = split_values(args.arch, "--arch")
        activations = parse_activations(split_values(args.activation, "--activation"))
        seeds = parse_seeds(args.seeds if args.seeds is not None else ["0"])
        launch = Launch(
            cluster=args.cluster,
            parallel=args.parallel,
            threads=args.threads,
            partition=args.partition,
            gpus_per_job=args.gpus_per_job,
            cpus_per_job=args.cpus_per_job,
            time_min=args.time_min,
            chunk=args.chunk,
        )
        given = {
            "preset": args.preset,
            "data": args.data,
            "steps": args.steps,
            "lr": args.lr,
            "optimizer": args.optimizer,
            "early_steps": args.early_steps,
            "checkpoint_every": args.checkpoint_every,
        }
        # Only what was given: a field passed as None would override the preset's value.
        base = TrainConfig(**{k: v for k, v in given.items() if v is not None})
        root = Path(args.out)
        configs = grid(archs, activations, seeds, base, root, args.set)
        index = run_sweep(configs, root, launch, echo=lambda line: print(line, flush=True))
    except (ConfigError, LaunchError) as exc:
        return _fail("run", str(exc))
    except SweepInterrupted as exc:
        print(
            f"{PROG}: interrupted by {exc}; unfinished runs were cancelled. "
            "Run the same command again to resume.",
            file=sys.stderr,
        )
        return 128 + exc.signum  # as a process killed by the signal reports it
    bad = [e for e in index["runs"] if e.get("status") != "completed" and e.get("in_grid", True)]
    for e in bad:
        where = f" (log: {e['log']})" if e.get("log") else ""
        print(f"  {e['run']}: {e['status']}: {e.get('message', '')}{where}", file=sys.stderr)
    rows = drift_report(root, warn=_warn)
    if rows:
        print(format_table(rows))
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("run", "report", "-h", "--help"):
        argv = [
            "run",
            *argv,
        ]  # the form before subcommands: `python -m empirics.experiments.sweep --arch ...`
    args = build_parser().parse_args(argv)
    return _report(args) if args.command == "report" else _run(args)


if __name__ == "__main__":
    raise SystemExit(main())
