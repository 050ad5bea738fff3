"""Early training's configuration: one pydantic model whose fields carry their bounds and help.

`EarlyConfig(...)` checks every field on construction (the command line's flags are generated
from it, `empirics.montecarlo.early_cli`); `cfg.validate()` adds what needs the machine (the
device) and the data (fashion_mnist fixes d_in); `check_memory` refuses sizes that would not fit
before anything is allocated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from empirics.activations import ActivationField
from empirics.cli import MAX_SEED, activation_slug
from empirics.cli import run_name as make_run_name
from empirics.montecarlo.sampler import DTYPES, INIT_LAWS, INPUT_LAWS, NetConfig
from empirics.outputs import resolve_device
from empirics.train.config import OPTIMIZERS, available_memory
from theory import registry

DATA = (*INPUT_LAWS, "fashion_mnist")
LOSSES = registry.BUILTIN_LOSSES  # the losses the batched networks implement
# Learning-rate grid of the sweep: two per optimizer, a tenfold apart.
LR_GRID: dict[str, tuple[float, ...]] = {
    "sgd": (0.01, 0.1),
    "adamw": (1e-3, 1e-2),
    "muon": (5e-3, 5e-2),
}
SWEEP_ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
DEFAULT_OUT = Path("results/montecarlo/early_training")
FASHION_DIM = 28 * 28
# Quantities whose horizons are reported, per hidden layer.
HORIZON_QUANTITIES = ("g_pos", "g_all", "delta_b", "delta_w")
# The layers' non-negative inputs make E[dW] carry the drift (C5); recorded, not assumed.
SCHEMA_VERSION = 2  # 2: bootstrap-t bands (1 had Bonferroni-t, miscalibrated under skew)
# Upper bounds checked before the memory estimate (whose arithmetic they keep small).
MAX_NETWORKS = 2**24
MAX_CHECK_FACTOR = 64
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"

UnitOpen = Annotated[float, Field(ge=0, lt=1)]
PositiveInt = Annotated[int, Field(ge=1)]


class EarlyConfig(BaseModel):
    """`n_networks * check_factor` independent MLPs d_in -> widths -> n_out, trained `steps` steps.

    The networks come from `empirics.montecarlo.sampler` (the Monte Carlo's init laws, batched
    forward pass and loss): weights i.i.d. zero-mean with variance w_gain / fan_in, biases with
    std bias_std. Each network draws its own mini-batch of `batch_size` fresh inputs per step
    (random class labels for synthetic data). The per-step statistics are measured before each
    update on a separate fresh batch of `measure_batch` inputs per network (same parameters, no
    update from it). Horizons are computed twice: from the first `n_networks` networks and from
    all `n_networks * check_factor` (the N-check: a horizon that measures the sign, not the
    power, must not move). `alpha` is the family-wise error rate of each simultaneous band over
    the steps, built from `bootstrap` resamples of the networks (see
    `empirics.stats.bands.horizon`). Optimizers use the trainer's vocabulary
    (`empirics.train.optim`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    activation: ActivationField = Field(
        "relu", validate_default=True, description="a registry name, family:k=v or NAME=EXPR"
    )
    loss: Literal[LOSSES] = Field("mse", description="the loss of every network")
    optimizer: Literal[OPTIMIZERS] = Field("sgd", description="the trainer's optimizer")
    lr: float = Field(0.05, gt=0, allow_inf_nan=False, description="learning rate, > 0")
    steps: int = Field(200, ge=1, description="updates; step 0 (init) is measured too")
    n_networks: int = Field(
        32, ge=3, le=MAX_NETWORKS, description="N, the networks the horizons are read from"
    )
    check_factor: int = Field(
        4, ge=1, le=MAX_CHECK_FACTOR, description="the N-check also reads check_factor * N"
    )
    d_in: int = Field(32, ge=1, description="input dimension (fashion_mnist: 784)")
    widths: tuple[PositiveInt, ...] = Field(
        (64, 64), min_length=1, description="hidden widths, comma-separated, each >= 1"
    )
    n_out: int = Field(10, ge=1, description="outputs (classes)")
    batch_size: int = Field(32, ge=1, description="training inputs per network and step")
    measure_batch: int = Field(
        64, ge=2, description="fresh inputs per network and step the statistics are measured on"
    )
    data: Literal[DATA] = Field("halfnormal", description="the input law or data set")
    init: Literal[INIT_LAWS] = Field("gaussian", description="the weights' law")
    w_gain: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="a variance factor: Var W = w_gain / fan_in"
    )
    bias_std: float = Field(0.0, ge=0, allow_inf_nan=False, description="std of the init biases")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum, in [0, 1)")
    betas: tuple[UnitOpen, UnitOpen] = Field(
        (0.9, 0.95), description="AdamW's two betas, each in [0, 1)"
    )
    alpha: float = Field(0.01, gt=0, lt=1, description="family-wise error rate of each band")
    decay_fraction: float = Field(
        0.1, gt=0, lt=1, description="decay: below this fraction of the start, in (0, 1)"
    )
    bootstrap: int = Field(4000, ge=1, description="bootstrap resamples of the networks")
    dtype: Literal[tuple(DTYPES)] = Field("float32", description="the networks' float type")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="auto, cpu or cuda[:N]")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="the run's seed")

    @model_validator(mode="after")
    def _enough_resamples(self) -> EarlyConfig:
        if self.bootstrap * self.alpha < 20:
            raise ValueError(
                "bootstrap must leave >= 20 resamples beyond the band (bootstrap * alpha >= 20), "
                f"got bootstrap={self.bootstrap}, alpha={self.alpha}"
            )
        return self

    def fields(self) -> dict[str, Any]:
        """The field values as held (the activation as its object)."""
        return {name: getattr(self, name) for name in type(self).model_fields}

    def replace(self, **changes: Any) -> EarlyConfig:
        """A copy with `changes`, checked like a new config (pydantic's model_copy is not)."""
        return type(self)(**{**self.fields(), **changes})

    def record(self) -> dict[str, Any]:
        """The config as result.json and config.json store it (the activation as its spec)."""
        return self.model_dump(mode="json")

    def validate(self) -> EarlyConfig:  # type: ignore[override]
        """The checks that need the machine or the data, before any compute: the device is
        resolved, fashion_mnist fixes d_in to 784, and the networks' description is checked."""
        d_in = FASHION_DIM if self.data == "fashion_mnist" else self.d_in
        cfg = self.replace(d_in=d_in)
        cfg.net_config().validate()  # d_in, widths, n_out, w_gain, bias_std, dtype
        return cfg.replace(device=resolve_device(self.device))

    def net_config(self) -> NetConfig:
        """The Monte Carlo's description of these networks (init law, sizes, loss, inputs)."""
        return NetConfig(
            activation=self.activation,
            loss=self.loss,
            d_in=self.d_in,
            widths=tuple(self.widths),
            n_out=self.n_out,
            inputs_per_net=self.batch_size,
            init=self.init,
            w_gain=self.w_gain,
            bias_std=self.bias_std,
            inputs=self.data if self.data in INPUT_LAWS else "gaussian",
            labels="class",
            dtype=self.dtype,
            device=self.device,
        )

    @property
    def total_networks(self) -> int:
        return self.n_networks * self.check_factor

    def run_name(self) -> str:
        """From the one run-name function (empirics.cli): family parameters stay in the name,
        so leaky_relu:slope=0.2 and :slope=0.3 are two runs."""
        act = activation_slug(self.activation)
        parts = (act, self.loss, self.optimizer, f"lr{self.lr:g}", self.data)
        return make_run_name(*parts, seed=self.seed)


def default(name: str) -> Any:
    """A field's default value (a pydantic model's class has no field attributes)."""
    return EarlyConfig.model_fields[name].default


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def describe(exc: ValidationError) -> str:
    """One clause per refused field: `--flag: field should ..., got VALUE` (the flag and the
    field name both, so a message reads the same from the command line and from code)."""
    lines = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "value_error":  # the model's own check names field and value
            lines.append(f"{flag(name)}: {msg}" if name else msg)
            continue
        got = repr(err["input"])
        got = got if len(got) <= 80 else got[:77] + "..."
        item = name + "".join(f"[{part}]" for part in err["loc"][1:])
        what = msg[6:] if msg.startswith("Input ") else f": {msg[:1].lower()}{msg[1:]}"
        line = f"{flag(name)}: {item}{' ' * (what[:1] != ':')}{what}, got {got}"
        field = EarlyConfig.model_fields.get(name)
        if err["type"] == "string_pattern_mismatch" and field is not None:
            line += f"; accepted: {field.description}"
        lines.append(line)
    return "; ".join(lines)


# ------------------------------------------------------------------------------ memory


def estimate_memory(cfg: EarlyConfig) -> int:
    """Bytes one run of `cfg` needs, about: parameters with gradients, optimiser state and the
    pre-update copies (5 per parameter); four [networks, batch, width] tensors per layer for
    the training and the measure batch; the per-network history (float64, ~13 quantities per
    layer and step) and the bootstrap weights. An estimate meant to refuse sizes off by orders
    of magnitude (a width of 10^9) before anything is allocated or written."""
    n = cfg.total_networks
    item = 8 if cfg.dtype == "float64" else 4
    sizes = (cfg.d_in, *cfg.widths, cfg.n_out)
    params = n * sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    acts = 4 * n * (cfg.batch_size + cfg.measure_batch) * sum(sizes)
    history = 8 * (cfg.steps + 1) * n * (13 * len(cfg.widths) + 4)
    bootstrap = 8 * cfg.bootstrap * n
    return item * (5 * params + acts) + history + bootstrap


def check_memory(configs: Sequence[EarlyConfig], jobs: int = 1) -> None:
    """ValueError naming the sizes when the largest run (times the runs at once) exceeds the
    device's free memory."""
    if not configs:
        return
    big = max(configs, key=estimate_memory)
    need = estimate_memory(big) * min(jobs, len(configs))
    have = available_memory(resolve_device(big.device))
    if have is not None and need > have:
        raise ValueError(
            f"memory: {big.total_networks} networks of widths {','.join(map(str, big.widths))} "
            f"(d_in {big.d_in}, batch {big.batch_size} + measure {big.measure_batch}, "
            f"{big.steps} steps, {min(jobs, len(configs))} at once) need about "
            f"{need / 2**30:.1f} GiB, {have / 2**30:.1f} GiB are available; lower --widths, "
            "--n-networks, --check-factor, --steps or --jobs"
        )
