"""The one training loop for the five architectures, with drift, sparsity and spike metrics.

`python -m empirics.train --arch gpt_nano --activation relu2_clip --preset small --out DIR`
writes DIR/records.csv (tidy rows, incremental), DIR/config.json and DIR/summary.json;
`torchrun --nproc_per_node N -m empirics.train ...` trains data-parallel; `train(TrainConfig(...))
-> Path` does the same from Python; `python -m empirics.train list keys --arch mlp` lists keys.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from empirics.cli import EXIT_FAILED, EXIT_OK, list_activations
from empirics.data import DataUnavailable
from empirics.models import ARCHS
from empirics.outputs import RecordWriter, atomic_write_json, provenance
from empirics.train.config import (
    OPTIMIZERS,
    PRESET_NAMES,
    RUN_FILES,
    SCHEDULES,
    ConfigError,
    Plan,
    TrainConfig,
    check_memory,
    describe_keys,
    parse_sets,
    resolve,
)
from empirics.train.optim import build_optimizers, lr_multiplier, make_optimizers, schedulers
from empirics.train.runtime import (
    CHECKPOINT,
    BatchStream,
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

__all__ = [
    "CHECKPOINT",
    "OPTIMIZERS",
    "ConfigError",
    "Interrupted",
    "Plan",
    "StopFlag",
    "TrainConfig",
    "TrainingDiverged",
    "build_optimizers",
    "lr_multiplier",
    "main",
    "make_optimizers",
    "parse_sets",
    "plan",
    "train",
]

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
        "activation": cfg.activation,
        "data": cfg.data,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "wall_time_s": time.perf_counter() - t0,
        **extra,
        "feeds": summary.feeds,
        "layers": summary.layers(),
    }
    atomic_write_json(p.out / "summary.json", body)


# ------------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, *, stop: StopFlag | None = None) -> Path:
    """Train one run; returns its output directory (records.csv, config.json, summary.json).

    Every ConfigError (bad field, output directory, memory) is raised before anything is
    written or allocated. Under torchrun every process calls this; rank 0 alone writes. `stop`
    (set by a signal handler, see `main`) ends the run at the next step boundary.
    """
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
    estimate = check_memory(p, dist.world)

    import torch

    from empirics.train.metrics import MODEL_LAYER, MetricsTracker

    device = dist.start(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    lead = dist.lead
    if cfg.preset == "paper" and device == "cpu" and lead:
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
    }
    if lead and mode == "fresh":
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
            "train": cfg.model_dump(mode="json"),
            "given": list(p.given),
            "identity": cfg.identity(),
            "model": dataclasses.asdict(p.model_cfg),
            "runtime": runtime,
            "provenance": provenance(device),
        }
        atomic_write_json(p.out / "config.json", config_body)
    dist.barrier()

    t0 = time.perf_counter()
    summary = RunSummary()
    seed_everything(cfg.seed)
    raw = p.arch.Model(p.model_cfg).to(device)
    raw.train()
    tracker = MetricsTracker(raw)  # hooks first: torch.compile keeps hooks registered before it
    summary.feeds = dict(tracker.feeds)
    model: Any = raw
    if cfg.compile:
        model = torch.compile(model)
    model = dist.wrap(model, device)
    opts = build_optimizers(raw, p)
    scheds = schedulers(opts, p)
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.startswith("cuda"))
    device_type = "cuda" if device.startswith("cuda") else "cpu"

    def autocast() -> Any:
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16)

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

    def evaluate() -> dict[str, float]:
        val_gen = torch.Generator().manual_seed((cfg.seed + VAL_SEED) % 2**63)
        val = p.task.make_data(
            cfg.data,
            p.model_cfg,
            split="val",
            batch_size=cfg.batch_size,
            generator=val_gen,
            device=device,
        )
        limited = (b for _, b in zip(range(cfg.eval_batches), val, strict=False))
        with autocast():
            return {k: float(v) for k, v in p.task.evaluate(raw, limited).items()}

    start, resumed_from = 0, None
    last_loss, val_metrics = math.nan, {}
    ckpt_path = p.out / CHECKPOINT
    state = TrainState(raw, opts, scheds, batches, summary)
    if mode == "resume":
        point = state.load(ckpt_path, device)
        start = resumed_from = point.step
        last_loss, val_metrics = point.last_loss, point.val
        if lead:
            with open(p.out / "records.csv", "r+b") as fh:
                fh.truncate(point.records_bytes)  # rows after the checkpoint go
            print(f"{cfg.run}: resuming from step {start} ({ckpt_path})", file=sys.stderr)

    writer = RecordWriter(p.out / "records.csv", cfg.run, append=mode == "resume") if lead else None

    def checkpoint(next_step: int) -> None:
        if lead:
            state.save(
                ckpt_path,
                step=next_step,
                identity=cfg.identity(),
                records_bytes=writer.size(),  # type: ignore[union-attr]
                last_loss=last_loss,
                val=val_metrics,
            )

    from tqdm.auto import tqdm

    status = "running"
    extra: dict[str, Any] = {"resumed_from": resumed_from} if resumed_from is not None else {}
    if lead:
        _write_summary(p, status, t0, summary, **extra)
    bar = tqdm(
        range(start, cfg.steps),
        desc=cfg.run,
        disable=not (cfg.progress and lead),
        leave=False,
        initial=start,
        total=cfg.steps,
    )
    parts = dist.world * cfg.grad_accum

    def reduce(t: Any, op: str) -> Any:
        return dist.reduce(t.to(device), op).cpu()

    step = start
    try:
        for step in bar:
            batch = next(batches)
            log = is_log_step(step, p)
            if parts == 1:
                micro = [batch]
            else:  # this process's share of the global batch, grad_accum micro-batches
                shards = split_batch(batch, parts)
                micro = shards[dist.rank * cfg.grad_accum : (dist.rank + 1) * cfg.grad_accum]
            totals: dict[str, Any] = {}
            with tracker.collect() if log else contextlib.nullcontext():
                for j, mb in enumerate(micro):
                    sync = j == len(micro) - 1 or not dist.active
                    with contextlib.nullcontext() if sync else model.no_sync():
                        with autocast():
                            loss, batch_metrics = p.task.loss_and_metrics(model, mb)
                        # Equal micro-batches: the step's loss is their mean, so each backward
                        # takes 1/grad_accum of its own (DDP averages over processes).
                        (loss / len(micro) if len(micro) > 1 else loss).backward()
                    totals["loss"] = totals.get("loss", 0.0) + loss.detach().float() / len(micro)
                    for metric, value in batch_metrics.items():
                        if metric != "loss":
                            totals[metric] = totals.get(metric, 0.0) + float(value) / len(micro)
            flag = 0.0 if stop is None or stop.signum is None else 1.0
            scalars = torch.stack(
                [torch.as_tensor(v, dtype=torch.float64).cpu() for v in totals.values()]
                + [torch.tensor(flag, dtype=torch.float64)]
            )
            if dist.active:
                scalars = dist.reduce(scalars.to(device), "sum").cpu()
                scalars[:-1] /= dist.world
            values = dict(zip(totals, scalars[:-1].tolist(), strict=True))
            stopping = bool(scalars[-1] > 0)
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
            last_loss = values.pop("loss")
            rows[(MODEL_LAYER, "loss")] = last_loss
            rows[(MODEL_LAYER, "lr")] = scheds[0].get_last_lr()[0]
            for metric, value in values.items():
                rows[(MODEL_LAYER, f"train_{metric}")] = value
            if not math.isfinite(last_loss):
                if lead:
                    writer.write(step, rows)  # type: ignore[union-attr]
                summary.add(step, rows)
                status = "diverged"
                break
            if cfg.eval_every and step > 0 and step % cfg.eval_every == 0 and lead:
                val_metrics = evaluate()
                rows.update({(MODEL_LAYER, k): v for k, v in val_metrics.items()})
            if lead:
                writer.write(step, rows)  # type: ignore[union-attr]
            summary.add(step, rows)
            if log and lead:
                bar.set_postfix(
                    loss=f"{last_loss:.4g}", sparsity=f"{tracker.mean_sparsity(rows):.3f}"
                )
            for o in opts:
                o.step()
            for o in opts:
                o.zero_grad(set_to_none=True)
            for s in scheds:
                s.step()
            done = step + 1
            if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or stopping):
                if done < cfg.steps:
                    checkpoint(done)
            if stopping:
                raise Interrupted(stop.signum if stop and stop.signum else signal.SIGTERM, done)
        else:
            status = "completed"
    except KeyboardInterrupt as exc:
        status = "interrupted"
        where = exc.step if isinstance(exc, Interrupted) and exc.step >= 0 else step
        extra["message"] = f"interrupted at step {where}" + (
            f" by {signal.Signals(exc.signum).name}" if isinstance(exc, Interrupted) else ""
        )
        if cfg.checkpoint_every and ckpt_path.exists():
            extra["message"] += "; rerun the same command to resume from its checkpoint"
        raise
    except BaseException as exc:
        status = "failed"
        extra["message"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bar.close()
        tracker.remove()
        if status != "completed":
            if writer is not None:
                writer.close()
            if lead:
                if status == "diverged":
                    extra["message"] = (
                        f"loss became {last_loss} at step {step}; records up to it are kept"
                    )
                _write_summary(p, status, t0, summary, final_loss=last_loss, **extra)
            dist.finish()

    if status == "diverged":
        raise TrainingDiverged(
            f"{cfg.run}: loss became {last_loss} at step {step}; stopped. The records logged so "
            f"far are in {p.out / 'records.csv'}; lower lr ({cfg.lr}) or add warmup."
        )
    if lead:
        # Validation after the last update; logged at step = steps (the trained model).
        val_metrics = evaluate()
        writer.write(cfg.steps, {(MODEL_LAYER, k): v for k, v in val_metrics.items()})  # type: ignore[union-attr]
        writer.close()  # type: ignore[union-attr]
        _write_summary(p, status, t0, summary, final_loss=last_loss, val=val_metrics, **extra)
        ckpt_path.unlink(missing_ok=True)  # a completed run needs no resume point
    dist.finish()
    return p.out


# ---------------------------------------------------------------------------------- the CLI


def build_parser() -> argparse.ArgumentParser:
    """Flags for TrainConfig's fields; only the flags given reach it (the rest: preset/default)."""
    d = {k: f.default for k, f in TrainConfig.model_fields.items()}
    ap = argparse.ArgumentParser(
        prog="python -m empirics.train",
        usage="%(prog)s [--arch ARCH] [--preset PRESET] [options]   (--help lists them)",
        description="Train one architecture and log drift, sparsity and spike metrics. "
        "`python -m empirics.train list keys --arch ARCH` and `list activations` list choices.",
        argument_default=argparse.SUPPRESS,
    )
    ap.add_argument("--arch", help=f"one of {', '.join(ARCHS)} (default {d['arch']})")
    ap.add_argument("--activation", help="registry name, family:k=v, or NAME=EXPR in x")
    ap.add_argument("--data", help="real | synthetic (default real)")
    ap.add_argument("--preset", help=f"{' | '.join(PRESET_NAMES)} (default {d['preset']})")
    ap.add_argument("--steps", type=int, help="optimiser steps (default: preset)")
    ap.add_argument("--batch-size", type=int, help="global batch per step (default: preset)")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--adam-lr", type=float, help="AdamW lr for non-matrix params under muon")
    ap.add_argument("--optimizer", help="sgd | adamw | muon (default: preset)")
    ap.add_argument("--momentum", type=float, help=f"sgd (default {d['momentum']})")
    ap.add_argument("--betas", help="AdamW betas as B1,B2 (default: preset, else 0.9,0.95)")
    ap.add_argument("--weight-decay", type=float, help="(default: preset, else 0)")
    ap.add_argument("--warmup", type=int, help="linear warmup steps, at most --steps")
    ap.add_argument("--schedule", help=" | ".join(SCHEDULES) + " (default: preset, else constant)")
    ap.add_argument(
        "--decay-frac",
        "--decay-fraction",  # the early-training CLI's spelling
        dest="decay_frac",
        type=float,
        help="wsd: fraction of steps decaying (0.3)",
    )
    ap.add_argument("--min-lr-frac", type=float)
    ap.add_argument("--seed", type=int, help="0 .. 2**63-1 (default 0)")
    ap.add_argument("--device", help="auto | cpu | cuda[:N] (default auto)")
    ap.add_argument("--out", help="output directory (default results/train/RUN)")
    ap.add_argument(
        "--run",
        "--run-name",  # the spelling torchrun lets through (it takes --run for its --run-path)
        dest="run",
        help="run name: letters, digits, _.+=- (default arch-act-data-sSEED)",
    )
    ap.add_argument("--early-steps", type=int, help=f"(default {d['early_steps']})")
    ap.add_argument("--log-every-early", type=int, help=f"(default {d['log_every_early']})")
    ap.add_argument("--log-every-late", type=int, help=f"(default {d['log_every_late']})")
    ap.add_argument("--eval-every", type=int, help="validate every N steps (default: at the end)")
    ap.add_argument("--eval-batches", type=int, help=f"(default {d['eval_batches']})")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default torch's; recorded)")
    ap.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (0: none)")
    ap.add_argument("--grad-accum", type=int, help="micro-batches per step and process (1)")
    ap.add_argument("--precision", help="auto (bf16 on CUDA) | fp32 | bf16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--overwrite", action="store_true", help="replace a different run in --out")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        metavar="KEY=VALUE",
        help="a field of the architecture's config (repeatable; see `list keys --arch ARCH`)",
    )
    return ap


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = vars(args).copy()
    sets = given.pop("sets", [])
    if "betas" in given:
        given["betas"] = [b.strip() for b in given["betas"].strip("()").split(",")]
    if sets:
        given["model"] = parse_sets(given.get("arch", "mlp"), sets)
    return TrainConfig(**given)


def build_list_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m empirics.train list")
    sub = ap.add_subparsers(dest="what", required=True)
    keys = sub.add_parser("keys", help="an architecture's --set keys, defaults and presets")
    keys.add_argument("--arch", required=True, choices=ARCHS)
    sub.add_parser("activations", help="the registry's activation names and expressions")
    return ap


def list_main(argv: Sequence[str]) -> int:
    args = build_list_parser().parse_args(argv)
    if args.what == "keys":
        for key, tp, default, presets in describe_keys(args.arch):
            by_preset = ", ".join(f"{k}={v!r}" for k, v in presets.items())
            print(
                f"{key:<18} {tp:<18} default {default!r}"
                + (f"  ({by_preset})" if by_preset else "")
            )
        return EXIT_OK
    return list_activations()


def _result_line(out: Path) -> str:
    body = json.loads((out / "summary.json").read_text())
    parts = [
        f"{body['run']}: {body['status']} {body['steps']} steps in {body['wall_time_s']:.1f} s"
    ]
    if body.get("final_loss") is not None:
        parts.append(f"final loss {body['final_loss']:.4g}")
    for key, value in (body.get("val") or {}).items():
        if value is not None:
            parts.append(f"{key} {value:.4g}")
    return ", ".join(parts) + f"; wrote {out}/records.csv, config.json, summary.json"


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 diverged or data missing, 2 bad input, 128+signal when stopped."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["list"]:
        return list_main(argv[1:])
    ap = build_parser()
    args = ap.parse_args(argv)  # malformed flags exit 2 here
    stop = StopFlag()
    try:
        cfg = config_from_args(args)
        with stop.installed():
            out = train(cfg, stop=stop)
    except ConfigError as exc:
        ap.error(str(exc))  # exits 2 with the message, before any compute
    except TrainingDiverged as exc:
        print(f"diverged: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except DataUnavailable as exc:
        print(f"data unavailable: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(f"stopped: {exc or 'SIGINT'}; records and summary.json are kept", file=sys.stderr)
        return 128 + int(signum)
    if dist_from_env().lead:
        print(_result_line(out))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
