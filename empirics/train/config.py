"""A training run's configuration: one pydantic model, its resolution against a preset, and checks.

`TrainConfig(...)` validates every field (ConfigError names field, value and what is accepted);
`resolve(cfg)` applies the architecture's preset and returns a `Plan` before any compute;
`python -m empirics.train list keys --arch gpt_nano` prints an architecture's `--set` keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

from empirics.activations import ActivationField
from empirics.cli import MAX_SEED, activation_slug, run_name
from empirics.models import ARCHS, get_arch
from empirics.models.common import config_record
from empirics.tasks import get_task

Arch = Literal["mlp", "resnet", "vit", "gpt_nano", "mp_senet"]
# fineweb: modded-nanogpt token shards, read by the text task only (its `check_data` says so).
DATA_KINDS = ("real", "synthetic", "fineweb")
# The one optimiser vocabulary. A training run takes OPTIMIZERS (`empirics.train.optim` builds
# them). The Monte Carlo of one first step (C6) also takes plain `adam` (no weight decay, tiny
# eps: its first step is -lr g/|g|); the ledger rows C6.first_step.*.adam are named by it.
OPTIMIZERS = ("sgd", "adamw", "muon")
FIRST_STEP_OPTIMIZERS = ("sgd", "adam", "muon")
SCHEDULES = ("constant", "cosine", "linear", "wsd")
PRESET_NAMES = ("smoke", "small", "paper")
PRECISIONS = ("auto", "fp32", "bf16")
DataKind = Literal[DATA_KINDS]  # type: ignore[valid-type]
Optimizer = Literal[OPTIMIZERS]  # type: ignore[valid-type]
Schedule = Literal[SCHEDULES]  # type: ignore[valid-type]
Preset = Literal[PRESET_NAMES]  # type: ignore[valid-type]
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]
# A run name becomes a directory name: no separators, no leading dot, so `--run ../../x` cannot
# leave the output directory.
RUN_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.+=-]{0,199}$"

PositiveInt = Annotated[StrictInt, Field(ge=1)]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
UnitOpen = Annotated[float, Field(ge=0, lt=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]

# Fields that say where or how visibly a run happens, not what it computes: a re-run that differs
# only in these is the same run (and may resume it).
NOT_IDENTITY = ("out", "progress", "checkpoint_every", "overwrite", "threads")


class ConfigError(ValueError):
    """A training configuration that cannot run; raised before any model, data or compute."""


def describe(exc: ValidationError, prefix: str = "", *, flags: bool = False) -> str:
    """One line per pydantic error: `field: what is accepted, got VALUE`; with `flags`, the
    field's command-line flag follows its name (`d_in (--d-in): ...`)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        if flags and err["loc"]:
            loc = f"{loc} (--{str(err['loc'][0]).replace('_', '-')})"
        msg = err["msg"].removeprefix("Value error, ")
        if msg[1:2].islower():  # "Input should ..." reads on after a colon; "GPTNano..." not
            msg = msg[:1].lower() + msg[1:]
        where = ".".join(part for part in (prefix, loc) if part)
        if err["type"] == "value_error":  # a model's own check already names field and value
            lines.append(f"{where}: {msg}" if where else msg)
        else:
            got = repr(err["input"])
            got = got if len(got) <= 80 else got[:77] + "..."
            lines.append(f"{where}: {msg}, got {got}")
    return "; ".join(lines)


class TrainConfig(BaseModel):
    """Everything a run needs. Fields left None take the architecture preset's value.

    Precedence: the defaults here < the preset (`PRESETS[preset]` of the arch module, then its
    `OPTIMIZER_DETAILS[preset]`) < the fields the caller set (pydantic's `model_fields_set`, so a
    value equal to a default still wins over the preset). `model` overrides fields of the
    architecture's Config (strings from `--set` are converted by pydantic against it).

    Logging: metrics every `log_every_early` steps while step < `early_steps` (drift happens in
    the first hundreds of steps), then every `log_every_late`; the last step is always logged.
    Step s is measured on the forward pass of step s, before its update (step 0 = init).
    The schedule multiplies lr: linear warmup over `warmup` steps (at most `steps`, so the set lr
    is reached), then `constant`, `cosine` or `linear` decay to `min_lr_frac`·lr, or `wsd` (flat,
    then linear to `min_lr_frac` over the last `decay_frac` of the steps, the paper's warmdown).
    Muon updates the matrices the model's `optimizer_groups()` names (else 2-D hidden matrices)
    with lr; everything else goes to AdamW with `adam_lr` (default lr).

    Scale: `batch_size` is the global batch of one optimiser step, split into `grad_accum`
    micro-batches on each of the torchrun processes; `checkpoint_every` > 0 writes a resumable
    checkpoint every that many steps; `precision="auto"` is bf16 autocast on CUDA, fp32 on CPU;
    `compile` wraps the model in torch.compile after the metric hooks are registered; `threads`
    sets torch's CPU thread count (results depend on it; None keeps torch's and records it).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    arch: Arch = Field("mlp", description="architecture")
    activation: ActivationField = Field(
        "relu",
        validate_default=True,
        description="registry name, family:k=v, or NAME=EXPR in x",
    )
    data: DataKind = Field("real", description="what the task reads")
    preset: Preset = Field("small", description="sizes and optimiser settings of the arch")
    steps: PositiveInt | None = Field(None, description="optimiser steps (default: preset)")
    batch_size: PositiveInt | None = Field(
        None, description="global batch per step (default: preset)"
    )
    lr: PositiveFloat | None = Field(None, description="learning rate (default: preset)")
    adam_lr: PositiveFloat | None = Field(
        None, description="AdamW lr for non-matrix params under muon (default: preset, else lr)"
    )
    optimizer: Optimizer | None = Field(
        None, description="the optimiser (default: preset, else adamw)"
    )
    momentum: UnitOpen = Field(0.9, description="sgd momentum")
    betas: tuple[UnitOpen, UnitOpen] = Field(
        (0.9, 0.95), description="AdamW betas as B1,B2 (a preset may set them)"
    )
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        0.0, description="weight decay (a preset may set it)"
    )
    warmup: NonNegInt | None = Field(
        None, description="linear warmup steps, at most --steps (default: preset, else 0)"
    )
    schedule: Schedule | None = Field(
        None, description="lr after warmup (default: preset, else constant)"
    )
    decay_frac: Fraction | None = Field(
        None, description="wsd: fraction of steps decaying (default: preset, else 0.3)"
    )
    min_lr_frac: Fraction = Field(0.0, description="where the decay ends, as a fraction of lr")
    seed: Annotated[StrictInt, Field(ge=0, le=MAX_SEED)] = Field(0, description="0 .. 2**63-1")
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] = Field(
        "auto", description="auto | cpu | cuda[:N]"
    )
    out: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="output directory (default results/train/RUN)"
    )
    run: Annotated[str, Field(pattern=RUN_NAME)] | None = Field(
        None, description="run name: letters, digits, _.+=- (default arch-act-data-sSEED)"
    )
    log_every_early: PositiveInt = Field(1, description="steps between records early")
    early_steps: NonNegInt = Field(300, description="how long 'early' lasts, in steps")
    log_every_late: PositiveInt = Field(25, description="steps between records later")
    eval_every: NonNegInt = Field(0, description="validate every N steps (0: at the end only)")
    eval_batches: PositiveInt = Field(8, description="batches per validation")
    progress: bool = Field(True, description="a progress bar on stderr")
    model: dict[str, Any] = Field(default_factory=dict)
    threads: Annotated[StrictInt, Field(ge=1, le=4096)] | None = Field(
        None, description="torch CPU threads (default torch's; recorded)"
    )
    checkpoint_every: NonNegInt = Field(0, description="steps between checkpoints (0: none)")
    grad_accum: PositiveInt = Field(1, description="micro-batches per step and process")
    precision: Precision = Field("auto", description="auto is bf16 on CUDA, fp32 on CPU")
    compile: bool = Field(False, description="torch.compile the model")
    overwrite: bool = Field(False, description="replace a different run in --out")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None

    def given(self) -> dict[str, Any]:
        """The fields the caller set explicitly (what overrides the preset)."""
        return self.model_dump(include=self.model_fields_set)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with `changes` applied; they count as set by the caller."""
        return TrainConfig(**{**self.given(), **changes})

    def identity(self) -> dict[str, Any]:
        """What decides the records: every resolved field but where and how visibly it runs."""
        return self.model_dump(mode="json", exclude=set(NOT_IDENTITY))


@dataclass
class Plan:
    """A resolved TrainConfig (every None filled from the preset) with what it names looked up.

    `cfg` holds every training field; `arch` the architecture module (Config, Model, PRESETS);
    `task` its task module (data, loss, evaluation); `model_cfg` the architecture's Config;
    `given` the fields the caller set. Nothing here is a second copy of a field.
    """

    cfg: TrainConfig
    arch: types.ModuleType
    task: types.ModuleType
    model_cfg: Any
    given: tuple[str, ...]

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ architecture keys


def model_fields(arch_name: str) -> dict[str, Any]:
    """Field name -> type of the architecture's Config (activation aside)."""
    arch = get_arch(arch_name)
    hints = typing.get_type_hints(arch.Config)
    return {
        f.name: hints[f.name] for f in dataclasses.fields(arch.Config) if f.name != "activation"
    }


def _split_value(text: str) -> str | list[str]:
    """`16,32,64` (or `(16,32)`, `[16,32]`) -> a list for sequence fields; else the text."""
    text = text.strip()
    if "," in text:
        return [p.strip() for p in text.strip("()[]").split(",") if p.strip()]
    return text


def parse_sets(arch_name: str, items: typing.Sequence[str]) -> dict[str, Any]:
    """`key=value` strings -> typed model overrides (pydantic converts by the field's type)."""
    if arch_name not in ARCHS:
        raise ConfigError(f"arch: unknown value {arch_name!r}; valid: {', '.join(ARCHS)}")
    fields = model_fields(arch_name)
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        if key not in fields:
            raise ConfigError(
                f"--set: unknown key {key!r} for {arch_name}; valid: {', '.join(fields)} "
                f"(python -m empirics.train list keys --arch {arch_name})"
            )
        try:
            out[key] = TypeAdapter(fields[key]).validate_python(_split_value(text))
        except ValidationError as exc:
            raise ConfigError(describe(exc, prefix=key)) from None
    return out


def describe_keys(arch_name: str) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(key, type, default, {preset: value}) for every `--set` key of an architecture."""
    arch = get_arch(arch_name)
    fields = model_fields(arch_name)
    defaults = {f.name: f.default for f in dataclasses.fields(arch.Config)}
    rows = []
    for key, tp in fields.items():
        presets = {p: arch.PRESETS[p][key] for p in PRESET_NAMES if key in arch.PRESETS.get(p, {})}
        name = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
        default = defaults[key]
        rows.append((key, name, None if default is dataclasses.MISSING else default, presets))
    return rows


# ------------------------------------------------------------------------------ resolution


def _run_name(cfg: TrainConfig) -> str:
    """The default run name, from the one run-name function every entry point uses."""
    return run_name(cfg.arch, activation_slug(cfg.activation), cfg.data, seed=cfg.seed)


def _split_preset(
    cfg: TrainConfig, arch: types.ModuleType
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The preset's values as (model Config fields, TrainConfig fields); an unknown key or a
    model key the architecture lacks is a ConfigError."""
    fields = model_fields(cfg.arch)
    train_keys = set(TrainConfig.model_fields)
    model_kwargs: dict[str, Any] = {}
    merged: dict[str, Any] = {}
    for key, value in arch.PRESETS.get(cfg.preset, {}).items():
        if key in fields:
            model_kwargs[key] = value
        elif key in train_keys:
            merged[key] = value
        else:
            raise ConfigError(f"preset {cfg.preset!r} of {cfg.arch}: unknown key {key!r}")
    unknown = sorted(set(cfg.model) - set(fields))
    if "activation" in cfg.model:
        raise ConfigError("model: set the activation with the `activation` field, not in model")
    if unknown:
        raise ConfigError(
            f"unknown model key(s) {', '.join(unknown)} for {cfg.arch}; valid: {', '.join(fields)}"
        )
    return model_kwargs, merged


def _model_config(cfg: TrainConfig, arch: types.ModuleType, model_kwargs: dict[str, Any]) -> Any:
    """The architecture's Config: preset values, then `cfg.model`, then the activation (its
    torch function built once here, so an expression torch cannot evaluate is refused)."""
    from empirics.activations import torch_fn
    from theory.registry import RegistryError

    try:
        torch_fn(cfg.activation)
    except RegistryError as exc:
        raise ConfigError(f"activation: {exc}") from None
    kwargs = {**model_kwargs, **cfg.model, "activation": cfg.activation}
    try:
        return TypeAdapter(arch.Config).validate_python(kwargs)
    except ValidationError as exc:
        raise ConfigError(describe(exc, prefix=f"{cfg.arch} config")) from None
    except (TypeError, ValueError) as exc:  # a Config check outside pydantic's wrapping
        raise ConfigError(f"{cfg.arch} config: {exc}") from None


def _task(cfg: TrainConfig, arch: types.ModuleType, model_cfg: Any) -> types.ModuleType:
    """The architecture's task, once the data kind is one it reads (and is installed)."""
    task = get_task(arch.TASK)
    if cfg.data not in task.DATA_KINDS:
        *most, last = task.DATA_KINDS
        kinds = f"{', '.join(most)} or {last}" if most else last
        raise ConfigError(f"data: {cfg.arch} reads {kinds} data, not {cfg.data!r}")
    try:
        task.check_data(cfg.data, model_cfg)
    except ValueError as exc:
        raise ConfigError(f"data: {exc}") from None
    return task


def _training_fields(
    cfg: TrainConfig, arch: types.ModuleType, merged: dict[str, Any]
) -> dict[str, Any]:
    """The preset's training fields with its optimiser details, the caller's fields over them,
    and the fallbacks for what neither sets; the warmup must fit in the run."""
    # The optimiser details a preset cannot say with the common keys.
    details = dict(getattr(arch, "OPTIMIZER_DETAILS", {}).get(cfg.preset, {}))
    renamed = {"adam_lr": "adam_lr", "adam_betas": "betas", "weight_decay": "weight_decay"}
    for key, name in renamed.items():
        if key in details:
            merged[name] = tuple(details[key]) if name == "betas" else details[key]
    given = cfg.given()
    merged.update(given)
    for name in ("steps", "batch_size", "lr"):
        if merged.get(name) is None:
            raise ConfigError(
                f"{name}: not set and the {cfg.preset!r} preset of {cfg.arch} has none"
            )
    steps = merged["steps"]
    if "warmdown" in details and "schedule" not in given:
        merged["schedule"] = "wsd"
        if "decay_frac" not in given:
            merged["decay_frac"] = min(float(details["warmdown"]) / steps, 1.0)
    fallbacks = {"optimizer": "adamw", "warmup": 0, "schedule": "constant", "decay_frac": 0.3}
    for key, default in (*fallbacks.items(), ("adam_lr", merged["lr"])):
        if merged.get(key) is None:
            merged[key] = default
    if merged["warmup"] > steps:
        source = "set" if "warmup" in given else f"the {cfg.preset!r} preset's"
        raise ConfigError(
            f"warmup: {merged['warmup']} ({source}) exceeds steps={steps}, so the run would never "
            f"reach lr; accepted: 0 <= warmup <= steps (pass --warmup)"
        )
    return merged


def resolve(cfg: TrainConfig) -> Plan:
    """Apply the preset, resolve activation, model config, device and output directory.

    Pure checks, no compute and nothing written: every ConfigError is raised here.
    """
    from empirics.outputs import resolve_device

    arch = get_arch(cfg.arch)
    model_kwargs, merged = _split_preset(cfg, arch)
    model_cfg = _model_config(cfg, arch, model_kwargs)
    task = _task(cfg, arch, model_cfg)
    merged = _training_fields(cfg, arch, merged)
    try:
        merged["device"] = resolve_device(cfg.device)
    except ValueError as exc:
        raise ConfigError(f"device: {exc}") from None
    merged["run"] = cfg.run or _run_name(cfg)
    merged["out"] = cfg.out or str(Path("results") / "train" / merged["run"])
    merged["model"] = {k: getattr(model_cfg, k) for k in cfg.model}
    resolved = TrainConfig(**merged)  # re-checks the preset's values too
    given = tuple(sorted(cfg.given()))
    return Plan(cfg=resolved, arch=arch, task=task, model_cfg=model_cfg, given=given)


# -------------------------------------------------------------------- output directory checks


RUN_FILES = ("config.json", "records.csv", "summary.json", "checkpoint.pt")


def check_out_dir(out: Path) -> None:
    """The output directory can be created and written: not a file, not under a file, writable."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {str(out)!r} is a file, not a directory; choose another --out")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(
            f"out: {str(out)!r} lies under {str(probe)!r}, which is a file; choose another --out"
        )
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"out: {str(probe)!r} is not writable; choose another --out")


def previous_run(out: Path) -> dict[str, Any] | None:
    """What a directory holds from an earlier run: its config.json body, {} if only records, or
    None if it holds no run. An unreadable config.json is reported as a ConfigError."""
    if not out.is_dir() or not any((out / name).exists() for name in RUN_FILES):
        return None
    path = out / "config.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"out: {str(path)!r} is unreadable ({exc}); pass --overwrite or another --out"
        ) from None


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    """`lr: 0.1 there, 0.2 here; ...` for the first fields that differ."""
    keys = sorted(set(old) | set(new))
    diffs = [
        f"{k}: {old.get(k)!r} there, {new.get(k)!r} here" for k in keys if old.get(k) != new.get(k)
    ]
    more = f" (+{len(diffs) - limit} more)" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


# ------------------------------------------------------------------------- memory estimate


@dataclass
class MemoryEstimate:
    """Bytes a run needs on its device, from a model built on the meta device (no allocation)."""

    params: int  # parameter count
    state_bytes: int  # parameters + gradients + optimiser state
    activation_bytes: int  # outputs of every leaf module for one micro-batch, plus the batch
    available: int | None  # what the device has free, when known

    @property
    def total(self) -> int:
        return self.state_bytes + self.activation_bytes

    def line(self) -> str:
        have = f"; {self.available / 2**30:.1f} GiB available" if self.available else ""
        return (
            f"about {self.total / 2**30:.2f} GiB ({self.params:,} parameters: "
            f"{self.state_bytes / 2**30:.2f} GiB with gradients and optimiser state; "
            f"{self.activation_bytes / 2**30:.2f} GiB of activations per micro-batch{have})"
        )


def available_memory(device: str) -> int | None:
    """Free bytes on the device: CUDA's free memory, or Linux's MemAvailable for the CPU."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_memory(plan: Plan, world_size: int = 1) -> MemoryEstimate:
    """Parameters, gradients, optimiser state and one micro-batch's activations, in bytes.

    The model is built on torch's meta device (shapes only) and run forward on a meta copy of
    a one-example synthetic batch's input; every leaf module's output counts as kept for
    backward, scaled to the micro-batch. An estimate, not a bound: it is meant to refuse sizes
    that are off by orders of magnitude (a width of 10^8) before anything is allocated.
    """
    import torch

    cfg = plan.cfg
    with torch.device("meta"):
        model = plan.arch.Model(plan.model_cfg)
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    per_param = {"sgd": 3, "adamw": 4, "muon": 4}[cfg.optimizer]  # w, grad, 1 or 2 moments
    state = params * 4 * per_param
    micro = max(1, cfg.batch_size // (cfg.grad_accum * world_size))  # type: ignore[operator]
    act_bytes = 0
    try:
        sample = next(
            iter(
                plan.task.make_data(
                    "synthetic",
                    plan.model_cfg,
                    split="train",
                    batch_size=1,
                    generator=torch.Generator().manual_seed(0),
                    device="cpu",
                )
            )
        )
        per_example = sum(t.numel() * t.element_size() for t in sample if torch.is_tensor(t))
        leaves = [m for m in model.modules() if not list(m.children())]
        seen = [0]

        def count(_m: Any, _i: Any, output: Any) -> None:
            outs = output if isinstance(output, (tuple, list)) else (output,)
            seen[0] += sum(o.numel() * o.element_size() for o in outs if torch.is_tensor(o))

        handles = [m.register_forward_hook(count) for m in leaves]
        try:
            meta_batch = tuple(t.to("meta") if torch.is_tensor(t) else t for t in sample)
            model(meta_batch[0])  # every architecture's input is its batch's first tensor
        except Exception:  # noqa: BLE001 -- reading the loss (.item()) or an op without a meta
            pass  # kernel stops the pass; what the hooks counted until then is a lower bound
        finally:
            for h in handles:
                h.remove()
        act_bytes = (seen[0] + per_example) * micro
    except Exception:  # noqa: BLE001 -- no synthetic batch: parameters only
        act_bytes = 0
    return MemoryEstimate(params, state, act_bytes, available_memory(cfg.device))


def check_memory(plan: Plan, world_size: int = 1) -> MemoryEstimate:
    """Refuse (ConfigError) a run whose estimate exceeds the device's free memory."""
    est = estimate_memory(plan, world_size)
    if est.available is not None and est.total > est.available:
        big = ", ".join(
            f"{k}={v}" for k, v in config_record(plan.model_cfg).items() if k in plan.cfg.model
        )
        raise ConfigError(
            f"memory: this run needs {est.line()} on {plan.cfg.device}; lower batch_size "
            f"({plan.cfg.batch_size}){' or ' + big if big else ''}, or use --grad-accum"
        )
    return est
