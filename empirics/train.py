"""The one training loop for the five architectures, with drift, sparsity and spike metrics.

`python -m empirics.train --arch gpt_nano --activation relu2_clip --preset small --out DIR`
writes DIR/records.csv (tidy rows, incremental), DIR/config.json and DIR/summary.json;
`train(TrainConfig(...)) -> Path` does the same from Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import time
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empirics.data import DataUnavailable
from empirics.outputs import RecordWriter, atomic_write_json, provenance, resolve_device
from empirics.models import ARCHS, get_arch

DATA_KINDS = ("real", "synthetic")
OPTIMIZERS = ("sgd", "adamw", "muon")
SCHEDULES = ("constant", "cosine", "linear", "wsd")
PRESET_NAMES = ("smoke", "small", "paper")


class ConfigError(ValueError):
    """A training configuration that cannot run; raised before any model, data or compute."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; records so far and summary.json (status "diverged") are kept."""


@dataclass
class TrainConfig:
    """Everything a run needs. Fields left None take the architecture preset's value.

    Order of precedence: TrainConfig defaults < preset (`PRESETS[preset]` of the arch module)
    < fields given here. `model` overrides fields of the architecture's Config (typed values;
    strings from the CLI are converted by the field's annotation in `main`).

    Logging: metrics every `log_every_early` steps while step < `early_steps` (drift happens in
    the first hundreds of steps), then every `log_every_late`; the last step is always logged.
    Step s is measured on the forward pass of step s, before its update (step 0 = init).
    The schedule multiplies lr: linear warmup over `warmup` steps, then `constant`, `cosine`
    or `linear` decay to `min_lr_frac`·lr, or `wsd` (flat, then linear to `min_lr_frac` over the
    last `decay_frac` of the steps, the paper's GPT-nano warmdown).
    Muon (`optimizer="muon"`) updates 2-D hidden matrices with lr; everything else (embeddings,
    norms, biases, conv kernels, the output head) goes to AdamW with `adam_lr` (default lr). A
    model with `optimizer_groups() -> {"muon": [...], "adamw": [...]}` decides the split itself.
    An arch module's `OPTIMIZER_DETAILS[preset]` (optional) supplies adam_lr, adam_betas,
    weight_decay and warmdown (-> schedule "wsd") where the fields here are left None/default.
    """

    arch: str = "mlp"
    activation: str = "relu"
    data: str = "real"
    preset: str = "small"
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    adam_lr: float | None = None
    optimizer: str | None = None
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup: int | None = None
    schedule: str | None = None
    decay_frac: float | None = None
    min_lr_frac: float = 0.0
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    run: str | None = None
    log_every_early: int = 1
    early_steps: int = 300
    log_every_late: int = 25
    eval_every: int = 0
    eval_batches: int = 8
    progress: bool = True
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice("arch", self.arch, ARCHS)
        _choice("data", self.data, DATA_KINDS)
        _choice("preset", self.preset, PRESET_NAMES)
        if self.schedule is not None:
            _choice("schedule", self.schedule, SCHEDULES)
        if self.optimizer is not None:
            _choice("optimizer", self.optimizer, OPTIMIZERS)
        if not isinstance(self.activation, str) or not self.activation.strip():
            raise ConfigError(
                f"activation: expected a registry name or NAME=EXPR, got {self.activation!r}"
            )
        for name in ("steps", "batch_size"):
            _int_at_least(name, getattr(self, name), 1, optional=True)
        _int_at_least("warmup", self.warmup, 0, optional=True)
        for name in ("log_every_early", "log_every_late", "eval_batches"):
            _int_at_least(name, getattr(self, name), 1)
        for name in ("early_steps", "eval_every", "seed"):
            _int_at_least(name, getattr(self, name), 0)
        for name in ("lr", "adam_lr"):
            value = getattr(self, name)
            if value is not None:
                _positive_float(name, value)
        _float_in("momentum", self.momentum, 0.0, 1.0, hi_open=True)
        _float_in("weight_decay", self.weight_decay, 0.0, math.inf)
        if self.decay_frac is not None:
            _float_in("decay_frac", self.decay_frac, 0.0, 1.0)
        _float_in("min_lr_frac", self.min_lr_frac, 0.0, 1.0)
        if len(tuple(self.betas)) != 2:
            raise ConfigError(f"betas: expected two numbers, got {self.betas!r}")
        for i, b in enumerate(self.betas):
            _float_in(f"betas[{i}]", b, 0.0, 1.0, hi_open=True)
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if not isinstance(self.device, str):
            raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if not isinstance(self.model, Mapping):
            raise ConfigError(
                f"model: expected a dict of model config overrides, got {self.model!r}"
            )
        if "activation" in self.model:
            raise ConfigError("model: set the activation with the `activation` field, not in model")


def _choice(name: str, value: object, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ConfigError(f"{name}: unknown value {value!r}; valid: {', '.join(valid)}")


def _int_at_least(name: str, value: object, lo: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{name}: expected an integer >= {lo}, got {value!r}")


def _positive_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: expected a finite number > 0, got {value!r}")


def _float_in(name: str, value: object, lo: float, hi: float, *, hi_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if value < lo or value > hi or (hi_open and value == hi):
        bound = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise ConfigError(f"{name}: expected a number in {bound}, got {value!r}")


# ---------------------------------------------------------------------------- resolution


@dataclass
class Plan:
    """A TrainConfig with the preset applied and every name resolved; built before compute."""

    cfg: TrainConfig
    arch: types.ModuleType
    model_cfg: Any
    steps: int
    batch_size: int
    lr: float
    adam_lr: float
    optimizer: str
    warmup: int
    device: str
    run: str
    out: Path


def model_fields(arch: types.ModuleType) -> dict[str, Any]:
    """Field name -> resolved type annotation of the architecture's Config (activation aside)."""
    hints = typing.get_type_hints(arch.Config)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(arch.Config)}


def parse_value(key: str, text: str, annotation: Any) -> Any:
    """Convert a `--set key=value` string by the field's annotation; ConfigError says why not."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(key, text, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin in (tuple, list):
        parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
        inner = args[0] if args else str
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(parts) != len(args):
                raise ConfigError(
                    f"{key}: expected {len(args)} comma-separated values, got {text!r}"
                )
            return tuple(parse_value(key, p, a) for p, a in zip(parts, args, strict=True))
        values = [parse_value(key, p, inner) for p in parts]
        return tuple(values) if origin is tuple else values
    text = text.strip()
    if annotation is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {text!r}")
    if annotation is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    if annotation is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {text!r}") from None
    if origin is typing.Literal:
        for option in args:
            if str(option) == text:
                return option
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {text!r}")
    return text


def _run_name(cfg: TrainConfig) -> str:
    act = cfg.activation.split("=", 1)[0] if "=" in cfg.activation.split(":")[0] else cfg.activation
    act = re.sub(r"[^A-Za-z0-9_.]+", "-", act).strip("-")
    return f"{cfg.arch}-{act}-{cfg.data}-s{cfg.seed}"


def plan(cfg: TrainConfig) -> Plan:
    """Apply the preset, resolve activation, model config, optimizer and device; no compute."""
    from empirics.activations import RegistryError, make_activation

    arch = get_arch(cfg.arch)
    preset = dict(arch.PRESETS.get(cfg.preset, {}))
    details = dict(getattr(arch, "OPTIMIZER_DETAILS", {}).get(cfg.preset, {}))
    fields = model_fields(arch)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_kwargs: dict[str, Any] = {}
    train_defaults: dict[str, Any] = {}
    for key, value in preset.items():
        if key in fields:
            model_kwargs[key] = value
        elif key in train_fields:
            train_defaults[key] = value
        else:
            raise ConfigError(f"preset {cfg.preset!r} of {cfg.arch}: unknown key {key!r}")
    unknown = sorted(set(cfg.model) - set(fields))
    if unknown:
        valid = ", ".join(k for k in fields if k != "activation")
        raise ConfigError(
            f"unknown model key(s) {', '.join(unknown)} for {cfg.arch}; valid: {valid}"
        )
    model_kwargs.update(cfg.model)
    try:
        make_activation(cfg.activation)  # registers NAME=EXPR, lists valid names otherwise
    except RegistryError as exc:
        raise ConfigError(f"activation: {exc}") from exc
    model_kwargs["activation"] = cfg.activation
    try:
        model_cfg = arch.Config(**model_kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cfg.arch} config: {exc}") from exc

    def pick(name: str, fallback: Any = None) -> Any:
        value = getattr(cfg, name)
        return value if value is not None else train_defaults.get(name, fallback)

    steps = pick("steps")
    schedule, decay_frac = cfg.schedule, cfg.decay_frac
    if schedule is None and "warmdown" in details and isinstance(steps, int) and steps > 0:
        schedule = "wsd"
        decay_frac = (
            min(float(details["warmdown"]) / steps, 1.0) if decay_frac is None else decay_frac
        )
    resolved = dataclasses.replace(
        cfg,
        steps=steps,
        batch_size=pick("batch_size"),
        lr=pick("lr"),
        optimizer=pick("optimizer", "adamw"),
        warmup=pick("warmup", 0),
        adam_lr=cfg.adam_lr if cfg.adam_lr is not None else details.get("adam_lr"),
        schedule=schedule or "constant",
        decay_frac=0.3 if decay_frac is None else decay_frac,
        betas=tuple(details.get("adam_betas", cfg.betas))
        if cfg.betas == TrainConfig.betas
        else cfg.betas,
        weight_decay=float(details.get("weight_decay", cfg.weight_decay))
        if cfg.weight_decay == TrainConfig.weight_decay
        else cfg.weight_decay,
    )  # re-runs the field checks on the preset's values
    for name in ("steps", "batch_size", "lr"):
        if getattr(resolved, name) is None:
            raise ConfigError(
                f"{name}: not set and the {cfg.preset!r} preset of {cfg.arch} has none"
            )
    try:
        device = resolve_device(cfg.device)
    except ValueError as exc:
        raise ConfigError(f"device: {exc}") from exc
    run = cfg.run or _run_name(cfg)
    out = Path(cfg.out) if cfg.out else Path("results") / "train" / run
    return Plan(
        cfg=resolved,
        arch=arch,
        model_cfg=model_cfg,
        steps=resolved.steps,
        batch_size=resolved.batch_size,
        lr=float(resolved.lr),
        adam_lr=float(resolved.adam_lr if resolved.adam_lr is not None else resolved.lr),
        optimizer=resolved.optimizer,
        warmup=resolved.warmup,
        device=device,
        run=run,
        out=out,
    )


# --------------------------------------------------------------------- optimisation pieces


def _embedding_and_head(model: Any) -> set[int]:
    """ids of parameters Muon must not take: embeddings and the output head.

    The head is the last nn.Linear registered in the model (for a tied GPT head it is the
    embedding matrix itself). Muon orthogonalises hidden matrices only.
    """
    from torch import nn

    excluded: set[int] = set()
    last_linear = None
    for module in model.modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            excluded.update(id(p) for p in module.parameters(recurse=False))
        elif isinstance(module, nn.Linear):
            last_linear = module
    if last_linear is not None:
        excluded.add(id(last_linear.weight))
    return excluded


def make_optimizers(
    optimizer: str,
    params: Sequence[Any],
    lr: float,
    *,
    matrices: Sequence[Any] = (),
    rest: Sequence[Any] = (),
    adam_lr: float | None = None,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.95),
    weight_decay: float = 0.0,
) -> list[Any]:
    """The optimizer vocabulary (OPTIMIZERS), shared with `empirics.early_training`: `sgd` or
    `adamw` on `params`; `muon` on `matrices` (hidden 2-D matrices) with AdamW at `adam_lr`
    (default lr) on `rest`."""
    import torch

    _choice("optimizer", optimizer, OPTIMIZERS)
    if optimizer == "sgd":
        return [torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)]
    if optimizer == "adamw":
        return [torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)]
    opts: list[Any] = []
    if matrices:
        # momentum 0.95 with Nesterov is torch's default and the paper's setting.
        opts.append(torch.optim.Muon(matrices, lr=lr, weight_decay=weight_decay))
    if rest:
        opts.append(
            torch.optim.AdamW(
                rest, lr=lr if adam_lr is None else adam_lr, betas=betas, weight_decay=weight_decay
            )
        )
    return opts


def build_optimizers(model: Any, p: Plan) -> list[Any]:
    cfg = p.cfg
    params = [q for q in model.parameters() if q.requires_grad]
    hyper = dict(momentum=cfg.momentum, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if p.optimizer != "muon":
        return make_optimizers(p.optimizer, params, p.lr, **hyper)
    if hasattr(model, "optimizer_groups"):
        groups = model.optimizer_groups()
        matrices, rest = list(groups["muon"]), list(groups["adamw"])
        if {id(q) for q in matrices + rest} != {id(q) for q in params}:
            raise RuntimeError(f"{type(model).__name__}.optimizer_groups() misses parameters")
    else:
        excluded = _embedding_and_head(model)
        matrices = [q for q in params if q.dim() == 2 and id(q) not in excluded]
        rest = [q for q in params if q.dim() != 2 or id(q) in excluded]
    return make_optimizers(
        "muon", params, p.lr, matrices=matrices, rest=rest, adam_lr=p.adam_lr, **hyper
    )


def lr_multiplier(step: int, p: Plan) -> float:
    """The schedule's factor on lr at `step` (0-based): warmup, then the chosen decay."""
    cfg, total, warm = p.cfg, p.steps, p.warmup
    if warm > 0 and step < warm:
        return (step + 1) / warm
    span = max(total - warm, 1)
    progress = min(max((step - warm) / span, 0.0), 1.0)
    floor = cfg.min_lr_frac
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return 1.0 - (1.0 - floor) * progress
    decay_start = total - int(round(cfg.decay_frac * total))  # wsd
    if step < decay_start:
        return 1.0
    return 1.0 - (1.0 - floor) * (step - decay_start + 1) / max(total - decay_start, 1)


def is_log_step(step: int, p: Plan) -> bool:
    cfg = p.cfg
    if step == p.steps - 1:
        return True
    if step < cfg.early_steps:
        return step % cfg.log_every_early == 0
    return step % cfg.log_every_late == 0


# ------------------------------------------------------------------------------- the loop


class _Summary:
    """first/last value of every (layer, metric) logged, for summary.json."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], tuple[int, float]] = {}
        self.last: dict[tuple[str, str], tuple[int, float]] = {}
        self.feeds: dict[str, str] = {}  # activation layer -> the layer feeding it

    def add(self, step: int, values: Mapping[tuple[str, str], float]) -> None:
        for key, value in values.items():
            self.first.setdefault(key, (step, value))
            self.last[key] = (step, value)

    def layers(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for key, (s0, v0) in self.first.items():
            s1, v1 = self.last[key]
            out.setdefault(key[0], {})[key[1]] = {
                "first_step": s0,
                "first": v0,
                "last_step": s1,
                "last": v1,
            }
        return out


def _write_summary(p: Plan, status: str, t0: float, summary: _Summary, **extra: Any) -> None:
    body = {
        "run": p.run,
        "status": status,
        "arch": p.cfg.arch,
        "activation": p.cfg.activation,
        "data": p.cfg.data,
        "seed": p.cfg.seed,
        "steps": p.steps,
        "wall_time_s": time.perf_counter() - t0,
        **extra,
        "feeds": summary.feeds,
        "layers": summary.layers(),
    }
    atomic_write_json(p.out / "summary.json", body)


def _cycle(factory: Any) -> Iterator[Any]:
    """Train batches forever, even from a make_data that returns a finite iterator."""
    while True:
        empty = True
        for batch in factory():
            empty = False
            yield batch
        if empty:
            raise RuntimeError("make_data(split='train') yielded no batches")


def train(cfg: TrainConfig) -> Path:
    """Train one run; returns its output directory (records.csv, config.json, summary.json)."""
    p = plan(cfg)  # every ConfigError is raised here, before any tensor is made
    import torch

    from empirics.metrics import MODEL_LAYER, MetricsTracker

    p.out.mkdir(parents=True, exist_ok=True)
    # A re-run into the same directory starts clean: stale files must not mix with new ones.
    (p.out / "summary.json").unlink(missing_ok=True)
    config_body = {
        "train": dataclasses.asdict(p.cfg),
        "resolved": {
            "steps": p.steps,
            "batch_size": p.batch_size,
            "lr": p.lr,
            "adam_lr": p.adam_lr,
            "optimizer": p.optimizer,
            "warmup": p.warmup,
            "run": p.run,
        },
        "model": dataclasses.asdict(p.model_cfg),
        "provenance": provenance(p.device),
    }
    atomic_write_json(p.out / "config.json", config_body)

    t0 = time.perf_counter()
    summary = _Summary()
    torch.manual_seed(p.cfg.seed)
    model = p.arch.Model(p.model_cfg).to(p.device)
    model.train()
    tracker = MetricsTracker(model)
    summary.feeds = dict(tracker.feeds)
    opts = build_optimizers(model, p)
    scheds = [
        torch.optim.lr_scheduler.LambdaLR(o, lambda s, p=p: lr_multiplier(s, p)) for o in opts
    ]
    data_gen = torch.Generator().manual_seed(p.cfg.seed + 1_000_003)
    batches = _cycle(
        lambda: p.arch.make_data(
            p.cfg.data,
            p.model_cfg,
            split="train",
            batch_size=p.batch_size,
            generator=data_gen,
            device=p.device,
        )
    )

    def evaluate() -> dict[str, float]:
        val_gen = torch.Generator().manual_seed(p.cfg.seed + 2_000_003)
        val = p.arch.make_data(
            p.cfg.data,
            p.model_cfg,
            split="val",
            batch_size=p.batch_size,
            generator=val_gen,
            device=p.device,
        )
        limited = (b for i, b in zip(range(p.cfg.eval_batches), val, strict=False))
        return {k: float(v) for k, v in p.arch.evaluate(model, limited).items()}

    from tqdm.auto import tqdm

    writer = RecordWriter(p.out / "records.csv", p.run)
    status, last_loss, val_metrics = "running", math.nan, {}
    _write_summary(p, status, t0, summary)
    bar = tqdm(range(p.steps), desc=p.run, disable=not p.cfg.progress, leave=False)
    step = 0
    try:
        for step in bar:
            batch = next(batches)
            log = is_log_step(step, p)
            rows: dict[tuple[str, str], float] = {}
            if log:
                with tracker.collect():
                    loss, batch_metrics = p.arch.loss_and_metrics(model, batch)
                rows.update(tracker.measure())
            else:
                loss, batch_metrics = p.arch.loss_and_metrics(model, batch)
            last_loss = float(loss.detach())
            rows[(MODEL_LAYER, "loss")] = last_loss
            rows[(MODEL_LAYER, "lr")] = scheds[0].get_last_lr()[0]
            for metric, value in batch_metrics.items():
                if metric != "loss":  # already logged from the loss tensor
                    rows[(MODEL_LAYER, f"train_{metric}")] = float(value)
            if not math.isfinite(last_loss):
                writer.write(step, rows)
                summary.add(step, rows)
                status = "diverged"
                break
            if p.cfg.eval_every and step > 0 and step % p.cfg.eval_every == 0:
                val_metrics = evaluate()
                rows.update({(MODEL_LAYER, k): v for k, v in val_metrics.items()})
            writer.write(step, rows)
            summary.add(step, rows)
            if log:
                mean_sp = tracker.mean_sparsity(rows)
                bar.set_postfix(loss=f"{last_loss:.4g}", sparsity=f"{mean_sp:.3f}")
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            if log:
                # The gradient-sign probe (grad_pos/neg/mean) exists only after backward.
                grad_rows = tracker.measure_grads()
                writer.write(step, grad_rows)
                summary.add(step, grad_rows)
            for o in opts:
                o.step()
            for s in scheds:
                s.step()
        else:
            status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        status = "failed"
        _write_summary(p, status, t0, summary, message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        bar.close()
        tracker.remove()
        if status != "completed":
            writer.close()
            if status != "failed":
                message = (
                    f"loss became {last_loss} at step {step}; records up to it are kept"
                    if status == "diverged"
                    else f"interrupted at step {step}"
                )
                _write_summary(p, status, t0, summary, final_loss=last_loss, message=message)

    if status == "diverged":
        raise TrainingDiverged(
            f"{p.run}: loss became {last_loss} at step {step}; stopped. The records logged so far "
            f"are in {p.out / 'records.csv'}; lower lr ({p.lr}) or add warmup."
        )
    # Validation after the last update; logged at step = steps (the trained model).
    val_metrics = evaluate()
    writer.write(p.steps, {(MODEL_LAYER, k): v for k, v in val_metrics.items()})
    writer.close()
    _write_summary(p, status, t0, summary, final_loss=last_loss, val=val_metrics)
    return p.out


# ---------------------------------------------------------------------------------- the CLI


def parse_sets(arch_name: str, items: Sequence[str]) -> dict[str, Any]:
    """`key=value` strings -> typed model overrides; unknown keys list the valid ones."""
    _choice("arch", arch_name, ARCHS)
    fields = model_fields(get_arch(arch_name))
    fields.pop("activation", None)
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        if key not in fields:
            raise ConfigError(
                f"--set: unknown key {key!r} for {arch_name}; valid: {', '.join(fields)}"
            )
        out[key] = parse_value(key, text, fields[key])
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m empirics.train",
        description="Train one architecture and log drift, sparsity and spike metrics.",
    )
    d = TrainConfig()
    ap.add_argument("--arch", default=d.arch, help=f"one of {', '.join(ARCHS)}")
    ap.add_argument("--activation", default=d.activation, help="registry name, or NAME=EXPR in x")
    ap.add_argument("--data", default=d.data, help="real | synthetic")
    ap.add_argument("--preset", default=d.preset, help="smoke | small | paper")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--adam-lr", type=float, help="AdamW lr for non-matrix params under muon")
    ap.add_argument("--optimizer", help="sgd | adamw | muon")
    ap.add_argument("--momentum", type=float, default=d.momentum)
    ap.add_argument("--weight-decay", type=float, default=d.weight_decay)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--schedule", help=" | ".join(SCHEDULES) + " (default: preset, else constant)")
    ap.add_argument("--decay-frac", type=float, help="wsd: fraction of steps decaying (0.3)")
    ap.add_argument("--min-lr-frac", type=float, default=d.min_lr_frac)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--device", default=d.device)
    ap.add_argument("--out", help="output directory (default results/train/RUN)")
    ap.add_argument("--run", help="run name in records.csv (default arch-activation-data-sSEED)")
    ap.add_argument("--early-steps", type=int, default=d.early_steps)
    ap.add_argument("--log-every-early", type=int, default=d.log_every_early)
    ap.add_argument("--log-every-late", type=int, default=d.log_every_late)
    ap.add_argument("--eval-every", type=int, default=d.eval_every)
    ap.add_argument("--eval-batches", type=int, default=d.eval_batches)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the architecture's config (repeatable)",
    )
    return ap


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        arch=args.arch,
        activation=args.activation,
        data=args.data,
        preset=args.preset,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        adam_lr=args.adam_lr,
        optimizer=args.optimizer,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        schedule=args.schedule,
        decay_frac=args.decay_frac,
        min_lr_frac=args.min_lr_frac,
        seed=args.seed,
        device=args.device,
        out=args.out,
        run=args.run,
        early_steps=args.early_steps,
        log_every_early=args.log_every_early,
        log_every_late=args.log_every_late,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        progress=not args.no_progress,
        model=parse_sets(args.arch, args.set),
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        cfg = config_from_args(args)
        p = plan(cfg)
    except ConfigError as exc:
        ap.error(str(exc))  # exits 2 with the message, before any compute
    try:
        out = train(cfg)
    except TrainingDiverged as exc:
        print(f"diverged: {exc}", file=sys.stderr)
        return 1
    except DataUnavailable as exc:
        print(f"data unavailable: {exc}", file=sys.stderr)
        return 1
    print(f"{p.run}: wrote {out}/records.csv, config.json, summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
