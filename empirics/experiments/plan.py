"""The pipeline's plan (no torch at import): its scales (`SCALES`), the training runs of each
group (`plan_runs`, `RunSpec`) and the data they read (`check_data`); `python -m
empirics.experiments plan --scale quick` prints it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empirics.cli import activation_slug
from empirics.cli import run_name as make_run_name

if TYPE_CHECKING:
    from theory.registry import Activation

ROOT = Path("results/experiments")
DRIFT_ACTS = ("relu", "gelu", "silu", "tanh")
SPIKE_ACTS = ("relu", "relu2", "relu2_clip", "relu2_clip50", "gelu", "gelu2", "gelu2_clip")
C10_ARCHS = ("mlp", "vit", "gpt_nano", "resnet")
C10_CONTROLS = ("topk", "quantile", "shift")
C10_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
# Activations of the theory group's D(σ, s) table and first-step comparison.
THEORY_ACTS = ("relu", "gelu", "silu", "tanh", "relu2", "gelu2")
GROUPS = ("drift", "synthetic", "mp_senet", "acts", "c10", "early", "theory", "mp_probe")


@dataclass(frozen=True)
class Scale:
    """Everything that sets the size of the pipeline (sample sizes never depend on time).

    `steps` per architecture for the drift/activation runs, `c10_steps` for the controlled-
    sparsity runs (logged every `c10_log_every` steps: their metric is the end state).
    """

    name: str
    preset: str
    seeds: tuple[int, ...]
    c10_seeds: tuple[int, ...]
    steps: Mapping[str, int]
    c10_steps: Mapping[str, int]
    mp_senet_steps: int
    early_steps: int = 300
    log_every_late: int = 25
    c10_log_every: int = 10
    early_training_steps: int = 200
    early_training_networks: int = 16
    # C6 is the optimizer x lr grid (`early_training.grid`: every optimizer at its LR_GRID);
    # ReLU with MSE on non-negative and on zero-mean inputs keeps it within the time budget
    # (Remark A.2 needs the first, reversal shows on the second; the other activations and
    # cross-entropy are the early-training module's own `--sweep`).
    early_training_activations: tuple[str, ...] = ("relu",)
    early_training_losses: tuple[str, ...] = ("mse",)
    early_training_data: tuple[str, ...] = ("halfnormal", "gaussian")
    early_training_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    d_samples: int = 1 << 20
    d_stds: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
    g_networks: int = 1024
    first_step_networks: int = 4096
    c1_networks: int = 2048
    archs: tuple[str, ...] = ("mlp", "resnet", "vit", "gpt_nano")
    synthetic_archs: tuple[str, ...] = ("mlp", "vit", "gpt_nano")
    c10_archs: tuple[str, ...] = C10_ARCHS
    c10_levels: tuple[float, ...] = C10_LEVELS
    spike_acts: tuple[str, ...] = SPIKE_ACTS
    # submitit executor: "debug" runs in this process (smoke runs are shorter than a worker's
    # start-up), "local" one process per run, `jobs` at a time.
    cluster: str = "local"
    # Runs per worker process (the start-up, about 3 s, is paid once per chunk).
    chunk: int = 5

    def record(self) -> dict[str, Any]:
        """The scale as the aggregated JSON files state it: every field, C6's selection written
        as one `early_training_only` entry in the early-training command's flags, the form the
        files have always had."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key == "early_training_activations":
                out["early_training_only"] = [
                    "--activation", ",".join(value),
                    "--loss", ",".join(self.early_training_losses),
                    "--data", ",".join(self.early_training_data),
                ]  # fmt: skip
            elif key not in ("early_training_losses", "early_training_data"):
                out[key] = value
        return out


SCALES: dict[str, Scale] = {
    # Smoke sizes: exercises every path of the pipeline in a few minutes; numbers mean nothing.
    "quick": Scale(
        name="quick",
        preset="smoke",
        seeds=(0, 1, 2),
        c10_seeds=(0,),
        early_training_seeds=(0,),
        steps={"mlp": 20, "resnet": 8, "vit": 10, "gpt_nano": 12},
        c10_steps={"mlp": 10, "resnet": 4, "vit": 6, "gpt_nano": 6},
        mp_senet_steps=3,
        early_steps=300,
        c10_log_every=5,
        early_training_steps=20,
        early_training_networks=4,
        d_samples=1 << 14,
        d_stds=(0.5, 1.0, 2.0),
        g_networks=64,
        first_step_networks=256,
        c1_networks=128,
        cluster="debug",
    ),
    # The `small` presets with shortened step counts, five seeds everywhere, C10 included; one
    # end-to-end `make experiments` took 56 to 57 minutes on two quiet cores (three runs), 30-31
    # of them C10's 415 runs (reference/PROVENANCE.json: each group's time).
    "full": Scale(
        name="full",
        preset="small",
        seeds=(0, 1, 2, 3, 4),
        c10_seeds=(0, 1, 2, 3, 4),
        early_training_networks=32,
        steps={"mlp": 300, "resnet": 200, "vit": 200, "gpt_nano": 300},
        c10_steps={"mlp": 300, "resnet": 150, "vit": 150, "gpt_nano": 200},
        mp_senet_steps=60,
    ),
}


def scale_root(scale: Scale | str, root: Path = ROOT) -> Path:
    return root / (scale if isinstance(scale, str) else scale.name)


@dataclass
class RunSpec:
    """One training run of the pipeline (turned into a TrainConfig when it runs)."""

    group: str
    arch: str
    activation: Activation  # a spec string is parsed once, here
    seed: int
    data: str
    steps: int
    sparsity: str = "none"
    early_steps: int = 300
    log_every_early: int = 1
    log_every_late: int = 25

    def __post_init__(self) -> None:
        from empirics.activations import parse_activation  # torch: planning runs needs it

        self.activation = parse_activation(self.activation)

    @property
    def name(self) -> str:
        """From the one run-name function (empirics.cli), the sparsity control after the
        activation: `mlp-relu-topk0.5-real-s0`."""
        ctl = None if self.sparsity == "none" else self.sparsity.replace(":", "")
        act = activation_slug(self.activation)
        return make_run_name(self.arch, act, ctl, self.data, seed=self.seed)


def c10_configurations(scale: Scale) -> list[tuple[str, str, str]]:
    """(arch, activation, sparsity) of the C10 grid: every control x level x arch with ReLU,
    Top-K GELU levels in GPT-nano (the paper's Top-K GELU), and the uncontrolled baselines."""
    out = [
        (arch, "relu", f"{kind}:{level:g}")
        for arch in scale.c10_archs
        for kind in C10_CONTROLS
        for level in scale.c10_levels
    ]
    out += [(arch, "relu", "none") for arch in scale.c10_archs]
    if "gpt_nano" in scale.c10_archs:
        out += [("gpt_nano", "gelu", f"topk:{level:g}") for level in scale.c10_levels]
        out += [("gpt_nano", "gelu", "none")]
    return out


def plan_runs(scale: Scale, groups: Sequence[str] = GROUPS) -> dict[str, list[RunSpec]]:
    """The training runs of each group (early/theory are not training runs and plan none)."""
    log = dict(early_steps=scale.early_steps, log_every_late=scale.log_every_late)
    plans: dict[str, list[RunSpec]] = {}
    if "drift" in groups:
        plans["drift"] = [
            RunSpec("drift", a, act, s, "real", scale.steps[a], **log)
            for a in scale.archs
            for act in DRIFT_ACTS
            for s in scale.seeds
        ]
    if "synthetic" in groups:
        plans["synthetic"] = [
            RunSpec("synthetic", a, act, s, "synthetic", scale.steps[a], **log)
            for a in scale.synthetic_archs
            for act in ("relu", "tanh")
            for s in scale.seeds
        ]
    if "mp_senet" in groups:
        plans["mp_senet"] = [
            RunSpec("mp_senet", "mp_senet", act, s, "real", scale.mp_senet_steps, **log)
            for act in DRIFT_ACTS
            for s in scale.seeds
        ]
    if "acts" in groups:  # relu and gelu come from the drift group (same config, same seeds)
        plans["acts"] = [
            RunSpec("acts", "gpt_nano", act, s, "real", scale.steps["gpt_nano"], **log)
            for act in scale.spike_acts
            if act not in DRIFT_ACTS
            for s in scale.seeds
        ]
    if "c10" in groups:
        plans["c10"] = [
            RunSpec(
                "c10",
                arch,
                act,
                s,
                "real",
                scale.c10_steps[arch],
                sparsity=sp,
                early_steps=0,
                log_every_early=scale.c10_log_every,
                log_every_late=scale.c10_log_every,
            )
            for arch, act, sp in c10_configurations(scale)
            for s in scale.c10_seeds
        ]
    return plans


class PipelineStopped(RuntimeError):
    """The data a group needs is not installed, or a group completed none of its runs: the
    pipeline stops there (exit 1) with the reason, instead of carrying on to a traceback."""


# Which data each group's runs read: (arch, data kind) of its runs, or a source named directly.
_SPEECH_GROUPS = ("mp_senet", "mp_probe")


def data_needed(scale: Scale, groups: Sequence[str]) -> dict[str, list[str]]:
    """Data source -> the groups that read it (fashion_mnist, kjv_text, speech)."""
    need: dict[str, list[str]] = defaultdict(list)
    source = {"mlp": "fashion_mnist", "resnet": "fashion_mnist", "vit": "fashion_mnist"}
    source |= {"gpt_nano": "kjv_text", "mp_senet": "speech"}
    for group, specs in plan_runs(scale, groups).items():
        for src in sorted({source[s.arch] for s in specs if s.data == "real"}):
            need[src].append(group)
    for group in groups:
        if group in _SPEECH_GROUPS and group not in need["speech"]:
            need["speech"].append(group)
    if "early" in groups and "fashion_mnist" in scale.early_training_data:
        need["fashion_mnist"].append("early")
    return {k: v for k, v in need.items() if v}


def check_data(scale: Scale, groups: Sequence[str]) -> None:
    """Load each data source the planned groups read, before any run: PipelineStopped lists what
    is missing, which groups need it, and `make data` (the Debian packages)."""
    from empirics.data import DataUnavailable

    def fashion() -> None:
        from empirics.data.images import load_fashion_mnist

        load_fashion_mnist("train")

    def kjv() -> None:
        from empirics.data.text import load_kjv_text

        load_kjv_text()

    def speech() -> None:
        from empirics.data.speech import load_clean_corpus, load_heldout_corpus

        load_heldout_corpus()
        load_clean_corpus()

    loaders = {"fashion_mnist": fashion, "kjv_text": kjv, "speech": speech}
    missing = []
    for src, users in data_needed(scale, groups).items():
        try:
            loaders[src]()
        except DataUnavailable as exc:
            missing.append(f"{src} (groups {', '.join(users)}): {exc}")
    if missing:
        raise PipelineStopped(
            "data unavailable, so no run was started: "
            + "; ".join(missing)
            + ". Install the offline Debian data packages with `make data` (as root), or leave "
            "these groups out with --only"
        )
