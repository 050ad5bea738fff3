"""The one training loop for the five architectures, with drift, sparsity and spike metrics.

`python -m empirics.train --arch gpt_nano --activation relu2_clip --preset small --out DIR`
writes DIR/records.csv (tidy rows, incremental), DIR/config.json and DIR/summary.json;
`torchrun --nproc_per_node N -m empirics.train ...` trains data-parallel; `train(TrainConfig(...))
-> Path` does the same from Python; `python -m empirics.train list keys --arch mlp` lists keys.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empirics.models.common import config_record
from empirics.outputs import RecordWriter, atomic_write_json, provenance
from empirics.train.config import (
    RUN_FILES,
    ConfigError,
    MemoryEstimate,
    Plan,
    TrainConfig,
    check_memory,
    resolve,
)
from empirics.train.optim import build_optimizers, schedulers
from empirics.train.runtime import (
    CHECKPOINT,
    BatchStream,
    Dist,
    Interrupted,
    RunSummary,
    StopFlag,
    TrainingDiverged,
    TrainState,
    dist_from_env,
    seed_everything,
    split_batch,
    start_mode,
)

# Seed offsets of the train and validation data streams (fixed: part of what a seed means).
DATA_SEED, VAL_SEED = 1_000_003, 2_000_003


def plan(cfg: TrainConfig) -> Plan:
    """Resolve a config against its preset (ConfigError before any compute)."""
    return resolve(cfg)


def is_log_step(step: int, p: Plan) -> bool:
    """Metrics every step early (drift happens in the first hundreds of steps), sparser later."""
    cfg = p.cfg
    if step == cfg.steps - 1:
        return True
    if step < cfg.early_steps:
        return step % cfg.log_every_early == 0
    return step % cfg.log_every_late == 0


def _write_summary(p: Plan, status: str, t0: float, summary: RunSummary, **extra: Any) -> None:
    cfg = p.cfg
    body = {
        "run": cfg.run,
        "status": status,
        "arch": cfg.arch,
        "activation": cfg.activation.spec,
        "data": cfg.data,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "wall_time_s": time.perf_counter() - t0,
        **extra,
        "feeds": summary.feeds,
        "layers": summary.layers(),
    }
    atomic_write_json(p.out / "summary.json", body)


# ------------------------------------------------------------------------------- set-up


@dataclass
class Run:
    """One run in progress: its plan and process, the objects its steps use, and what the
    steps have produced so far (`step`, `last_loss`, `val_metrics`, `status`, `extra`)."""

    p: Plan
    dist: Dist
    device: str
    raw: Any  # the model itself: metrics hooks, optimisers, checkpoints and evaluation
    model: Any  # what the steps call: `raw`, compiled and/or wrapped for torchrun
    tracker: Any
    opts: list[Any]
    scheds: list[Any]
    batches: BatchStream
    state: TrainState
    writer: RecordWriter | None = None
    bar: Any = None
    t0: float = 0.0
    start: int = 0
    step: int = 0
    last_loss: float = math.nan
    val_metrics: dict[str, float] = field(default_factory=dict)
    status: str = "running"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lead(self) -> bool:
        return self.dist.lead

    @property
    def summary(self) -> RunSummary:
        return self.state.summary

    @property
    def ckpt_path(self) -> Path:
        return self.p.out / CHECKPOINT

    def autocast(self) -> Any:
        import torch

        cfg, cuda = self.p.cfg, self.device.startswith("cuda")
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        return torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=bf16)


def _prepare(cfg: TrainConfig) -> tuple[Plan, Dist, str, MemoryEstimate]:
    """Every check before anything is written or allocated: (plan, processes, 'fresh' or
    'resume', memory estimate); ConfigError otherwise."""
    p = resolve(cfg)
    cfg = p.cfg
    dist = dist_from_env()
    if cfg.batch_size % (dist.world * cfg.grad_accum):
        raise ConfigError(
            f"batch_size: {cfg.batch_size} does not split into {dist.world} process(es) x "
            f"grad_accum {cfg.grad_accum} equal micro-batches; accepted: a multiple of "
            f"{dist.world * cfg.grad_accum}"
        )
    mode = start_mode(p)
    return p, dist, mode, check_memory(p, dist.world)


def _start_process(p: Plan, dist: Dist, estimate: MemoryEstimate) -> tuple[str, dict[str, Any]]:
    """Join the processes and set torch's threads: (this process's device, runtime record)."""
    import torch

    from empirics.host import tune_allocator

    cfg = p.cfg
    allocator = tune_allocator()  # speed only: the records are the same either way
    device = dist.start(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.preset == "paper" and device == "cpu" and dist.lead:
        print(
            f"warning: the paper preset of {cfg.arch} is sized for a GPU ({estimate.params:,} "
            f"parameters, {cfg.steps} steps); on this CPU it will take very long",
            file=sys.stderr,
        )
    runtime = {
        "threads": torch.get_num_threads(),
        "world_size": dist.world,
        "device": device,
        "micro_batch": cfg.batch_size // (dist.world * cfg.grad_accum),
        "memory_estimate_bytes": estimate.total,
        "allocator": allocator,
    }
    return device, runtime


def _start_output(p: Plan, device: str, runtime: dict[str, Any]) -> None:
    """A fresh run's directory: created, files of an earlier attempt removed, config.json."""
    try:
        p.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. under /proc, or a read-only mount os.access cannot see
        raise ConfigError(
            f"out: cannot create {str(p.out)!r} ({exc.strerror or exc}); choose another --out"
        ) from None
    # A run starts clean: files of an earlier attempt must not sit beside the new ones.
    for name in RUN_FILES:
        (p.out / name).unlink(missing_ok=True)
    config_body = {
        "train": p.cfg.model_dump(mode="json"),
        "given": list(p.given),
        "identity": p.cfg.identity(),
        "model": config_record(p.model_cfg),
        "runtime": runtime,
        "provenance": provenance(device),
    }
    atomic_write_json(p.out / "config.json", config_body)


def _build(p: Plan, dist: Dist, device: str) -> Run:
    """Model (seeded), metric hooks, optimisers, schedules and the training batches."""
    import torch

    from empirics.train.metrics import MetricsTracker

    cfg = p.cfg
    summary = RunSummary()
    seed_everything(cfg.seed)
    raw = p.arch.Model(p.model_cfg).to(device)
    raw.train()
    tracker = MetricsTracker(raw)  # hooks first: torch.compile keeps hooks registered before it
    summary.feeds = dict(tracker.feeds)
    model: Any = torch.compile(raw) if cfg.compile else raw
    model = dist.wrap(model, device)
    opts = build_optimizers(raw, p)
    scheds = schedulers(opts, p)
    data_gen = torch.Generator().manual_seed((cfg.seed + DATA_SEED) % 2**63)
    batches = BatchStream(
        lambda: p.task.make_data(
            cfg.data,
            p.model_cfg,
            split="train",
            batch_size=cfg.batch_size,
            generator=data_gen,
            device=device,
        ),
        data_gen,
    )
    state = TrainState(raw, opts, scheds, batches, summary)
    return Run(p, dist, device, raw, model, tracker, opts, scheds, batches, state)


def _resume(run: Run) -> None:
    """Restore the checkpoint's objects and cut records.csv back to the checkpoint's step."""
    point = run.state.load(run.ckpt_path, run.device)
    run.start = run.step = point.step
    run.extra["resumed_from"] = point.step
    run.last_loss, run.val_metrics = point.last_loss, point.val
    if run.lead:
        with open(run.p.out / "records.csv", "r+b") as fh:
            fh.truncate(point.records_bytes)  # rows after the checkpoint go
        print(
            f"{run.p.cfg.run}: resuming from step {point.step} ({run.ckpt_path})", file=sys.stderr
        )


def _set_up(cfg: TrainConfig) -> Run:
    """Checks, then config.json, model, optimisers, data and (resuming) the checkpoint, the
    records writer, a `running` summary.json and the progress bar."""
    from tqdm.auto import tqdm

    p, dist, mode, estimate = _prepare(cfg)
    cfg = p.cfg
    device, runtime = _start_process(p, dist, estimate)
    if dist.lead and mode == "fresh":
        _start_output(p, device, runtime)
    dist.barrier()
    t0 = time.perf_counter()
    run = _build(p, dist, device)
    run.t0 = t0
    if mode == "resume":
        _resume(run)
    if run.lead:
        run.writer = RecordWriter(p.out / "records.csv", cfg.run, append=mode == "resume")
        _write_summary(p, run.status, t0, run.summary, **run.extra)
    run.bar = tqdm(
        range(run.start, cfg.steps),
        desc=cfg.run,
        disable=not (cfg.progress and run.lead),
        leave=False,
        initial=run.start,
        total=cfg.steps,
    )
    return run


# ------------------------------------------------------------------------------- one step


def _evaluate(run: Run) -> dict[str, float]:
    """Validation metrics of the model as it is now, on `eval_batches` fixed batches."""
    import torch

    cfg, p = run.p.cfg, run.p
    val_gen = torch.Generator().manual_seed((cfg.seed + VAL_SEED) % 2**63)
    val = p.task.make_data(
        cfg.data,
        p.model_cfg,
        split="val",
        batch_size=cfg.batch_size,
        generator=val_gen,
        device=run.device,
    )
    limited = (b for _, b in zip(range(cfg.eval_batches), val, strict=False))
    with run.autocast():
        return {k: float(v) for k, v in p.task.evaluate(run.raw, limited).items()}


def _forward_backward(run: Run, batch: Any, log: bool) -> dict[str, Any]:
    """This process's micro-batches of one step, forward and backward: the step's mean loss
    (a tensor) and mean batch metrics."""
    cfg, dist = run.p.cfg, run.dist
    if dist.world * cfg.grad_accum == 1:
        micro = [batch]
    else:  # this process's share of the global batch, grad_accum micro-batches
        shards = split_batch(batch, dist.world * cfg.grad_accum)
        micro = shards[dist.rank * cfg.grad_accum : (dist.rank + 1) * cfg.grad_accum]
    totals: dict[str, Any] = {}
    with run.tracker.collect() if log else contextlib.nullcontext():
        for j, mb in enumerate(micro):
            sync = j == len(micro) - 1 or not dist.active
            with contextlib.nullcontext() if sync else run.model.no_sync():
                with run.autocast():
                    loss, batch_metrics = run.p.task.loss_and_metrics(run.model, mb)
                # Equal micro-batches: the step's loss is their mean, so each backward
                # takes 1/grad_accum of its own (DDP averages over processes).
                (loss / len(micro) if len(micro) > 1 else loss).backward()
            totals["loss"] = totals.get("loss", 0.0) + loss.detach().float() / len(micro)
            for metric, value in batch_metrics.items():
                if metric != "loss":
                    totals[metric] = totals.get(metric, 0.0) + float(value) / len(micro)
    return totals


def _combine(run: Run, totals: dict[str, Any], stop: StopFlag | None) -> tuple[dict, bool]:
    """The step's metrics averaged over the processes, and whether any process was asked to
    stop (so that all stop at the same step)."""
    import torch

    dist = run.dist
    flag = 0.0 if stop is None or stop.signum is None else 1.0
    scalars = torch.stack(
        [torch.as_tensor(v, dtype=torch.float64).cpu() for v in totals.values()]
        + [torch.tensor(flag, dtype=torch.float64)]
    )
    if dist.active:
        scalars = dist.reduce(scalars.to(run.device), "sum").cpu()
        scalars[:-1] /= dist.world
    values = dict(zip(totals, scalars[:-1].tolist(), strict=True))
    return values, bool(scalars[-1] > 0)


def _measure(run: Run, values: dict[str, float], log: bool) -> dict[tuple[str, str], float]:
    """The step's rows: per-layer metrics on a log step, then loss, lr and batch metrics."""
    from empirics.train.metrics import MODEL_LAYER

    dist, tracker = run.dist, run.tracker

    def reduce(t: Any, op: str) -> Any:
        return dist.reduce(t.to(run.device), op).cpu()

    rows: dict[tuple[str, str], float] = {}
    if log:
        if dist.active:
            tracker.reduce_across(reduce)
        rows.update(tracker.measure())
        # The gradient-sign probe (grad_pos/neg/mean) exists only after backward. Under
        # torchrun each process backpropagates its own shard's mean loss, whose dl/dp
        # is world_size times that of the global batch's mean loss: scaled back here.
        grads = tracker.measure_grads(reduce if dist.active else None)
        rows.update({k: v / dist.world for k, v in grads.items()})
    run.last_loss = values.pop("loss")
    rows[(MODEL_LAYER, "loss")] = run.last_loss
    rows[(MODEL_LAYER, "lr")] = run.scheds[0].get_last_lr()[0]
    for metric, value in values.items():
        rows[(MODEL_LAYER, f"train_{metric}")] = value
    return rows


def _record(run: Run, step: int, rows: dict[tuple[str, str], float]) -> None:
    if run.writer is not None:
        run.writer.write(step, rows)
    run.summary.add(step, rows)


def _update(run: Run, done: int, stopping: bool, stop: StopFlag | None) -> None:
    """Optimiser and schedule steps; a checkpoint when one is due (or the run is stopping,
    then Interrupted). `done` is the number of steps completed."""
    for o in run.opts:
        o.step()
    for o in run.opts:
        o.zero_grad(set_to_none=True)
    for s in run.scheds:
        s.step()
    cfg = run.p.cfg
    due = cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or stopping)
    if due and done < cfg.steps and run.lead:
        run.state.save(
            run.ckpt_path,
            step=done,
            identity=cfg.identity(),
            records_bytes=run.writer.size(),  # type: ignore[union-attr]
            last_loss=run.last_loss,
            val=run.val_metrics,
        )
    if stopping:
        raise Interrupted(stop.signum if stop and stop.signum else signal.SIGTERM, done)


def _run_steps(run: Run, stop: StopFlag | None) -> None:
    """Steps from `run.start` to the end; `run.status` becomes completed or diverged."""
    from empirics.train.metrics import MODEL_LAYER

    cfg = run.p.cfg
    for step in run.bar:
        run.step = step
        log = is_log_step(step, run.p)
        totals = _forward_backward(run, next(run.batches), log)
        values, stopping = _combine(run, totals, stop)
        rows = _measure(run, values, log)
        if not math.isfinite(run.last_loss):
            _record(run, step, rows)
            run.status = "diverged"
            return
        if cfg.eval_every and step > 0 and step % cfg.eval_every == 0 and run.lead:
            run.val_metrics = _evaluate(run)
            rows.update({(MODEL_LAYER, k): v for k, v in run.val_metrics.items()})
        _record(run, step, rows)
        if log and run.lead:
            sparsity = run.tracker.mean_sparsity(rows)
            run.bar.set_postfix(loss=f"{run.last_loss:.4g}", sparsity=f"{sparsity:.3f}")
        _update(run, step + 1, stopping, stop)
    run.status = "completed"


# ------------------------------------------------------------------------------- finish


def _stopped(run: Run, exc: BaseException) -> None:
    """Status and message of a run an exception ends (the exception goes on)."""
    if not isinstance(exc, KeyboardInterrupt):
        run.status = "failed"
        run.extra["message"] = f"{type(exc).__name__}: {exc}"
        return
    run.status = "interrupted"
    stopped = isinstance(exc, Interrupted)
    where = exc.step if stopped and exc.step >= 0 else run.step
    run.extra["message"] = f"interrupted at step {where}" + (
        f" by {signal.Signals(exc.signum).name}" if stopped else ""
    )
    if run.p.cfg.checkpoint_every and run.ckpt_path.exists():
        run.extra["message"] += "; rerun the same command to resume from its checkpoint"


def _close_unfinished(run: Run) -> None:
    """A run that did not complete keeps its records and says why in summary.json."""
    if run.writer is not None:
        run.writer.close()
    if run.lead:
        if run.status == "diverged":
            run.extra["message"] = (
                f"loss became {run.last_loss} at step {run.step}; records up to it are kept"
            )
        _write_summary(
            run.p, run.status, run.t0, run.summary, final_loss=run.last_loss, **run.extra
        )
    run.dist.finish()


def _finish(run: Run) -> None:
    """A completed run: validation after the last update (logged at step = steps, the trained
    model), the final summary, and its checkpoint removed (nothing left to resume)."""
    from empirics.train.metrics import MODEL_LAYER

    p = run.p
    if run.writer is not None:  # the lead process
        val_metrics = _evaluate(run)
        run.writer.write(p.cfg.steps, {(MODEL_LAYER, k): v for k, v in val_metrics.items()})
        run.writer.close()
        _write_summary(
            p,
            run.status,
            run.t0,
            run.summary,
            final_loss=run.last_loss,
            val=val_metrics,
            **run.extra,
        )
        run.ckpt_path.unlink(missing_ok=True)
    run.dist.finish()


def train(cfg: TrainConfig, *, stop: StopFlag | None = None) -> Path:
    """Train one run; returns its output directory (records.csv, config.json, summary.json).

    Every ConfigError (bad field, output directory, memory) is raised before anything is
    written or allocated. Under torchrun every process calls this; rank 0 alone writes. `stop`
    (set by a signal handler, see `main`) ends the run at the next step boundary.
    """
    run = _set_up(cfg)
    try:
        _run_steps(run, stop)
    except BaseException as exc:
        _stopped(run, exc)
        raise
    finally:
        run.bar.close()
        run.tracker.remove()
        if run.status != "completed":
            _close_unfinished(run)
    if run.status == "diverged":
        raise TrainingDiverged(
            f"{run.p.cfg.run}: loss became {run.last_loss} at step {run.step}; stopped. The "
            f"records logged so far are in {run.p.out / 'records.csv'}; lower lr "
            f"({run.p.cfg.lr}) or add warmup."
        )
    _finish(run)
    return run.p.out
