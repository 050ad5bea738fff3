"""C8 for MP-SENet over a long run: the sign of the pre-activation drift per training stage, and
which parameter carries it (the feeding norm's shift β; the FFN's bias and weights along x̄).

`python -m empirics.experiments.mp_senet_long run [--out results/experiments/full]` trains
(resumable through
the sweep runner) and aggregates; `... aggregate` only reads the runs and writes
`<out>/mp_senet_long.json`, which `verdict` (the ledger's rule for C8.mp_senet_long) reads.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from empirics.cli import EXIT_FAILED, EXIT_OK, InputError, activation_slug, fail, split_list
from empirics.cli import run_name as make_run_name
from empirics.experiments.runs import Run, load_runs
from empirics.outputs import atomic_write_json
from empirics.stats.seeds import mean_ci, paired

SCHEMA = "mp_senet_long/v1"
GROUP = "mp_senet_long"
OUT_NAME = "mp_senet_long.json"
DEFAULT_OUT = Path("results/experiments/full")
CONTROL = "tanh"  # odd activation: no net drift predicted (C4), the paired reference
POSITIVE = ("relu", "gelu", "silu")  # the activations C8 says drift


@dataclass(frozen=True)
class LongPlan:
    """The long MP-SENet group: 10x the pipeline's 60 steps, metrics every step up to
    `early_steps` (the pipeline's whole run), every `log_every_late` after, a resume point every
    `checkpoint_every` steps. `stages` are (start, end) step windows; a window's end is read at
    the last logged step <= end (the last training step is always logged)."""

    preset: str = "small"
    steps: int = 600
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    activations: tuple[str, ...] = ("relu", "gelu", "silu", "tanh")
    stages: tuple[tuple[int, int], ...] = ((0, 60), (60, 200), (200, 600))
    early_steps: int = 60
    log_every_late: int = 10
    checkpoint_every: int = 100
    chunk: int = 3

    def __post_init__(self) -> None:
        if not self.seeds:
            raise InputError("seeds: empty; accepted: one or more integers >= 0")
        if not self.activations:
            raise InputError("activations: empty; accepted: registry names such as relu,tanh")
        prev = None
        for st in self.stages:
            if len(st) != 2 or not 0 <= st[0] < st[1]:
                raise InputError(f"stages: {st!r} is not a window 0 <= start < end")
            if prev is not None and st[0] != prev:
                raise InputError(f"stages: {st!r} does not start where the last ended ({prev})")
            prev = st[1]
        if self.stages and self.stages[-1][1] > self.steps:
            raise InputError(
                f"stages: the last window ends at {self.stages[-1][1]}, beyond steps={self.steps}"
            )


def run_dir(out: Path) -> Path:
    return Path(out) / "sweeps" / GROUP


def configs(lp: LongPlan, out: Path) -> list[Any]:
    """One TrainConfig per (seed, activation), seed-major, so that a run stopped part-way
    leaves whole seeds (every activation, tanh included) to pair."""
    from empirics.train.config import TrainConfig

    root = run_dir(out)
    cfgs = []
    for seed in lp.seeds:
        for act in lp.activations:
            name = make_run_name("mp_senet", activation_slug(act), "real", seed=seed)
            cfgs.append(
                TrainConfig(
                    arch="mp_senet",
                    activation=act,
                    data="real",
                    preset=lp.preset,
                    steps=lp.steps,
                    seed=seed,
                    run=name,
                    out=str(root / "runs" / name),
                    progress=False,
                    early_steps=lp.early_steps,
                    log_every_early=1,
                    log_every_late=lp.log_every_late,
                    checkpoint_every=lp.checkpoint_every,
                )
            )
    return cfgs


def run(lp: LongPlan, out: Path, cluster: str = "local") -> dict[str, Any]:
    """Train the group through the sweep runner: one process, one torch thread (it shares the
    machine with other work); completed runs are kept, killed ones resume from a checkpoint."""
    from empirics.experiments.sweep import run_sweep
    from empirics.launch import Launch
    from empirics.train.loop import plan

    cfgs = configs(lp, out)
    for cfg in cfgs:
        plan(cfg)  # every ConfigError before the first run starts
    launch = Launch(cluster=cluster, parallel=1, threads=1, chunk=lp.chunk)
    return run_sweep(cfgs, run_dir(out), launch, echo=None)


# --------------------------------------------------------------------- aggregation (no torch)


def value_at(series: Mapping[int, float], step: int) -> tuple[int, float] | None:
    """(logged step, value) at the last logged step <= step; None when none is."""
    steps = [s for s in series if s <= step]
    if not steps:
        return None
    s = max(steps)
    return s, series[s]


def _delta(series: Mapping[int, float], start: int, end: int) -> float | None:
    a, b = value_at(series, start), value_at(series, end)
    if a is None or b is None or b[0] <= a[0]:
        return None  # the window holds no logged step after its start: no change measured
    return b[1] - a[1]


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def is_linear_fed(run: Run, act: str) -> bool:
    """A Linear (or conv) feeder logs its weight part along the mean input; a norm does not (its
    gain is 1-D, and its output mean per channel is its shift β whatever comes in)."""
    return "preact_weight_part" in run.layers.get(run.feeds.get(act, ""), {})


def stage_quantities(run: Run, start: int, end: int) -> dict[str, float | None]:
    """One run, one window: the change of the mean pre-activation over every activation layer
    and its exact split into carriers.

    Norm-fed layer (InstanceNorm/LayerNorm feeding the activation): the normalised output has
    mean 0 per channel and instance, so its preact_mean is the mean shift β exactly and
    Δpreact = Δβ. Linear-fed layer (the attention blocks' FFN): preact_mean = mean(b) +
    mean_o (W x̄)_o, so Δpreact = Δbias + Δweight part. With n_norm of n layers norm-fed,
        d_preact_mean = beta_part + linear_bias_part + linear_weight_part + residual,
    beta_part = (n_norm/n)·d_beta; the residuals are what the identities leave (float error).
    """
    acts = [a for a, m in run.layers.items() if "preact_mean" in m]
    norm = [a for a in acts if a in run.feeds and not is_linear_fed(run, a)]
    lin = [a for a in acts if a in run.feeds and is_linear_fed(run, a)]
    d_pre = {a: _delta(run.series(a, "preact_mean"), start, end) for a in acts}
    d_bias = {a: _delta(run.series(run.feeds[a], "bias_mean"), start, end) for a in norm + lin}
    d_w = {a: _delta(run.series(run.feeds[a], "preact_weight_part"), start, end) for a in lin}
    n = len(acts)

    def part(group: Sequence[str], values: Mapping[str, float | None]) -> float | None:
        m = _mean([values[a] for a in group])
        return None if m is None or not n else m * len(group) / n

    resid_norm = [
        abs(d_pre[a] - d_bias[a]) for a in norm if d_pre[a] is not None and d_bias[a] is not None
    ]
    resid_lin = [
        abs(d_pre[a] - d_bias[a] - d_w[a]) for a in lin if None not in (d_pre[a], d_bias[a], d_w[a])
    ]
    grads = [
        _mean([v for s, v in run.series(a, "grad_mean").items() if start <= s < end]) for a in norm
    ]
    return {
        "d_preact_mean": _mean(list(d_pre.values())),
        "d_preact_norm_fed": _mean([d_pre[a] for a in norm]),
        "d_beta": _mean([d_bias[a] for a in norm]),
        "d_preact_linear_fed": _mean([d_pre[a] for a in lin]),
        "d_linear_bias": _mean([d_bias[a] for a in lin]),
        "d_linear_weight_part": _mean([d_w[a] for a in lin]),
        "beta_part": part(norm, d_bias),
        "linear_bias_part": part(lin, d_bias),
        "linear_weight_part": part(lin, d_w),
        "residual_norm_fed": max(resid_norm) if resid_norm else None,
        "residual_linear_fed": max(resid_lin) if resid_lin else None,
        # mean dl/dp over the window's logged steps (norm-fed layers): dl/dβ_c is its sum over
        # a channel's entries, so > 0 is a push that lowers β under gradient descent.
        "grad_mean": _mean(grads),
    }


STAGE_QUANTITIES = (
    "d_preact_mean",
    "d_preact_norm_fed",
    "d_beta",
    "d_preact_linear_fed",
    "d_linear_bias",
    "d_linear_weight_part",
    "beta_part",
    "linear_bias_part",
    "linear_weight_part",
    "residual_norm_fed",
    "residual_linear_fed",
    "grad_mean",
)
PAIRED_QUANTITIES = ("d_preact_mean", "d_beta", "d_preact_linear_fed")
SPLIT = ("beta_part", "linear_bias_part", "linear_weight_part")  # sums to d_preact_mean


def _trajectory(run: Run) -> dict[str, list[float]]:
    """preact_mean averaged over the activation layers, and β over the norm-fed ones, at every
    step all of them logged (for the figure)."""
    acts = [a for a, m in run.layers.items() if "preact_mean" in m]
    norm = [a for a in acts if a in run.feeds and not is_linear_fed(run, a)]
    pre = [run.series(a, "preact_mean") for a in acts]
    beta = [run.series(run.feeds[a], "bias_mean") for a in norm]
    common = set.intersection(*(set(s) for s in pre + beta)) if pre else set()
    steps = sorted(common)
    return {
        "step": steps,
        "preact_mean": [sum(s[t] for s in pre) / len(pre) for t in steps],
        "beta": [sum(s[t] for s in beta) / len(beta) for t in steps] if beta else [],
    }


def stage_label(stage: Sequence[int]) -> str:
    return f"{stage[0]}-{stage[1]}"


def aggregate_runs(runs: Sequence[Run], stages: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Per activation and stage (and the whole run): every stage quantity, mean and 95 % t CI
    over seeds, and the paired (same seed) difference to tanh."""
    by: dict[str, dict[int, Run]] = defaultdict(dict)
    for r in runs:
        if r.arch == "mp_senet":
            by[r.activation][r.seed] = r
    windows = [tuple(s) for s in stages]
    if windows:
        windows.append((windows[0][0], windows[-1][1]))  # the whole run
    per_seed: dict[str, dict[str, dict[int, dict[str, float | None]]]] = {}
    for act, seeds in by.items():
        per_seed[act] = {
            stage_label(w): {s: stage_quantities(r, *w) for s, r in seeds.items()} for w in windows
        }
    acts: dict[str, Any] = {}
    for act in sorted(by):
        rows: dict[str, Any] = {}
        for w in windows:
            label = stage_label(w)
            mine = per_seed[act][label]
            row: dict[str, Any] = {
                q: mean_ci(v[q] for v in mine.values())
                for q in STAGE_QUANTITIES
                if any(v[q] is not None for v in mine.values())
            }
            ref = per_seed.get(CONTROL, {}).get(label)
            if ref is not None and act != CONTROL:
                row["vs_tanh"] = {
                    q: paired(
                        {s: v[q] for s, v in mine.items() if v[q] is not None},
                        {s: v[q] for s, v in ref.items() if v[q] is not None},
                    )
                    for q in PAIRED_QUANTITIES
                }
            rows[label] = row
        first = by[act][min(by[act])]
        names = [a for a, m in first.layers.items() if "preact_mean" in m and a in first.feeds]
        acts[act] = {
            "seeds": sorted(by[act]),
            "norm_fed": [a for a in names if not is_linear_fed(first, a)],
            "linear_fed": [a for a in names if is_linear_fed(first, a)],
            "stages": rows,
            "trajectory": {str(s): _trajectory(r) for s, r in sorted(by[act].items())},
        }
    return {
        "schema": SCHEMA,
        "stages": [stage_label(w) for w in windows[:-1]],
        "whole": stage_label(windows[-1]) if windows else None,
        "activations": acts,
    }


def aggregate(out: Path, lp: LongPlan) -> Path:
    """Read the group's completed runs under out/ and write out/mp_senet_long.json."""
    runs = load_runs(run_dir(out))
    body = aggregate_runs(runs, lp.stages)
    # The plan as trained: the seeds and activations of the runs found (a caller that only
    # aggregates, like the pipeline, passes the default plan, which may name others).
    order = {a: i for i, a in enumerate(lp.activations)}
    found = sorted({r.activation for r in runs}, key=lambda a: (order.get(a, len(order)), a))
    body["plan"] = {**asdict(lp), "seeds": sorted({r.seed for r in runs}), "activations": found}
    body["runs"] = len(runs)
    path = Path(out) / OUT_NAME
    atomic_write_json(path, body)
    return path


# ------------------------------------------------------------------------ the verdict (pure)

# Identity check: Δpreact − Δβ in a norm-fed layer is float rounding (float32 means of ~1e5
# entries, about 1e-7 relative); 1e-4 absolute is far above that and far below the drift.
IDENTITY_TOL = 1e-4
# One ledger row per family of activation layers, each decided on its own quantity: all layers
# (the pipeline's C8 quantity), the norm-fed ones (Δβ, their exact carrier) and the FFN ones.
FAMILIES: dict[str, tuple[str, str]] = {
    "all_layers": ("d_preact_mean", "every activation layer"),
    "norm_fed": ("d_beta", "norm-fed layers, Δpreact = Δβ"),
    "ffn": ("d_preact_linear_fed", "attention-block FFN layers, Δpreact = Δbias + Δ(W·x̄)"),
}


def _ci(stat: Mapping[str, Any] | None) -> tuple[float, float] | None:
    ci = (stat or {}).get("ci") or [None, None]
    if ci[0] is None or ci[1] is None:
        return None
    return float(ci[0]), float(ci[1])


def stage_sign(row: Mapping[str, Any], act: str, quantity: str = "d_preact_mean") -> str:
    """negative / positive / not distinguishable for one activation in one window: the 95 % t
    CI over seeds of `quantity` excludes 0, and (except for the control itself) so does the
    paired difference to tanh, on the same side. Each side is a one-sided 2.5 % test under a
    normal null, and requiring both keeps a false sign at <= 2.5 % per side."""
    own = _ci(row.get(quantity))
    if own is None:
        return "not distinguishable"
    vs = None if act == CONTROL else _ci((row.get("vs_tanh") or {}).get(quantity))
    if act != CONTROL and "vs_tanh" in row and vs is None:
        return "not distinguishable"  # a control exists but cannot be paired: undecided
    if own[1] < 0 and (vs is None or vs[1] < 0):
        return "negative"
    if own[0] > 0 and (vs is None or vs[0] > 0):
        return "positive"
    return "not distinguishable"


def stage_verdict(signs: Mapping[str, str]) -> str:
    """C8 at one stage, over the positively biased activations run: confirmed when every one
    drifts negative, refuted when one drifts positive, not-tested otherwise."""
    mine = [signs[a] for a in POSITIVE if a in signs]
    if not mine:
        return "not-tested"
    if all(s == "negative" for s in mine):
        return "confirmed"
    if "positive" in mine:
        return "refuted"
    return "not-tested"


def combine_stages(verdicts: Mapping[str, str]) -> str:
    """confirmed when every stage is; refined when some are and others not (the drift holds in
    the stages named); refuted when none is confirmed and some is refuted; else not-tested."""
    kinds = set(verdicts.values())
    if kinds == {"confirmed"}:
        return "confirmed"
    if "confirmed" in kinds:
        return "refined"
    if "refuted" in kinds:
        return "refuted"
    return "not-tested"


def _fmt(stat: Mapping[str, Any] | None, digits: int = 2) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    ci = _ci(stat)
    if ci is None:
        return f"{stat['mean']:+.{digits}e}"
    return f"{stat['mean']:+.{digits}e} [{ci[0]:+.{digits}e}, {ci[1]:+.{digits}e}]"


def _cell(row: Mapping[str, Any], act: str, q: str, sign: str) -> str:
    """`relu negative Δ [CI], − tanh Δ [CI]`: the activation's own interval and, beside it, the
    paired difference to the control that the sign also needs."""
    text = f"{act} {sign} {_fmt(row.get(q))}"
    vs = (row.get("vs_tanh") or {}).get(q)
    return text + (f", − tanh {_fmt(vs)}" if vs else "")


def _whole_means(acts: Mapping[str, Any], whole: str, qs: Sequence[str]) -> dict[str, list]:
    out = {}
    for a in sorted(acts):
        w = acts[a]["stages"].get(whole) or {}
        means = [(w.get(q) or {}).get("mean") for q in qs]
        if None not in means:
            out[a] = means
    return out


def verdict(block: Mapping[str, Any] | None) -> list[tuple[str, str, str, dict[str, Any]]]:
    """C8 for MP-SENet from the long runs, by training stage (steps [start, end)), one row per
    family of activation layers (`FAMILIES`): per stage, `stage_verdict` of the `stage_sign`s
    of the family's quantity; over stages, `combine_stages`. Every row names the carrier: in the
    norm-fed layers Δpreact = Δβ (checked to `IDENTITY_TOL`; if it fails the rows say so), in
    the FFN layers Δpreact = Δbias + Δ(W·x̄), over all layers the exact split between them.

    Error rates, replayed (tests/test_mp_senet_long.py, 3 seeds, relu and gelu, 3 stages, seed
    values N(effect, 1)): with no drift a row decides something in 1.9 % of 1000 replays (1.8 %
    refuted, 0.1 % refined; the paired condition keeps it below the 2.5 % per side of each
    interval); with a drift of 6 seed-SDs in every stage some stage is confirmed in 99.7 %."""
    acts = (block or {}).get("activations") or {}
    stages = list((block or {}).get("stages") or [])
    if not acts or not stages or not any(a in acts for a in POSITIVE):
        return []
    whole = (block or {}).get("whole")
    windows = [*stages, whole] if whole else stages
    resid = [
        (v["stages"].get(st) or {}).get("residual_norm_fed", {}).get("values") or []
        for v in acts.values()
        for st in stages
    ]
    worst = max((abs(x) for r in resid for x in r), default=None)
    identity_ok = worst is not None and worst <= IDENTITY_TOL
    carrier = (
        f"in the norm-fed layers Δpreact = Δβ to {worst:.1e} (a norm's output has mean 0 per "
        "channel and instance, so the convolutions cannot move it: β carries it all)"
        if identity_ok
        else f"the norm identity Δpreact = Δβ failed (largest residual {worst})"
    )
    n_seeds = sorted({len(v.get("seeds") or []) for v in acts.values()})
    head = (
        f"MP-SENet long runs, {'/'.join(map(str, n_seeds))} seeds, Δ per stage (steps), mean "
        "[95% t CI] over seeds, paired against tanh"
    )
    rows = []
    for fam, (q, what) in FAMILIES.items():
        signs = {st: {a: stage_sign(v["stages"].get(st) or {}, a, q) for a, v in acts.items()}
                 for st in windows}  # fmt: skip
        verdicts = {st: stage_verdict(signs[st]) for st in stages}
        parts = []
        for st in windows:
            cells = "; ".join(_cell(acts[a]["stages"].get(st) or {}, a, q, signs[st][a])
                              for a in sorted(acts))  # fmt: skip
            parts.append(f"{st} [{verdicts.get(st, 'whole run')}]: {cells}")
        text = f"{head}; {what}: " + " | ".join(parts)
        if fam == "all_layers" and whole:
            split = _whole_means(acts, whole, ("d_preact_mean", *SPLIT))
            text += "; whole run = β part + FFN bias part + FFN W·x̄ part: " + "; ".join(
                f"{a} {m[0]:+.2e} = {m[1]:+.2e} + {m[2]:+.2e} + {m[3]:+.2e}"
                for a, m in split.items()
            )
        elif fam == "norm_fed":
            text += f"; {carrier}"
        elif whole:
            split = _whole_means(acts, whole, ("d_linear_bias", "d_linear_weight_part"))
            text += "; whole run Δbias, Δ(W·x̄): " + "; ".join(
                f"{a} {m[0]:+.2e}, {m[1]:+.2e}" for a, m in split.items()
            )
        overall = combine_stages(verdicts)
        held = [st for st, v in verdicts.items() if v == "confirmed"]
        if overall == "refined":
            text += f"; the drift holds in steps {', '.join(held)} only"
        evidence = {
            "quantity": q,
            "stage_verdicts": verdicts,
            "signs": signs,
            "carrier": "norm shift beta" if identity_ok else None,
            "identity_residual_max": worst,
        }
        rows.append((fam, overall, text, evidence))
    return rows


# ---------------------------------------------------------------------------------- the CLI


def _ints(text: str, field: str) -> tuple[int, ...]:
    out = []
    for item in split_list(text, field):
        if not item.isdigit():
            raise InputError(f"{field}: {item!r} is not an integer >= 0; accepted: e.g. 0,1,2")
        out.append(int(item))
    return tuple(out)


def _stages(text: str) -> tuple[tuple[int, int], ...]:
    bounds = _ints(text, "--stages")
    if len(bounds) < 2:
        raise InputError(f"--stages: {text!r} needs >= 2 step boundaries; accepted: 0,60,200,600")
    return tuple(zip(bounds[:-1], bounds[1:], strict=True))


def build_parser() -> argparse.ArgumentParser:
    d = LongPlan()
    ap = argparse.ArgumentParser(
        prog="python -m empirics.experiments.mp_senet_long", description=__doc__
    )
    ap.add_argument("command", choices=("run", "aggregate"))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"(default {DEFAULT_OUT})")
    ap.add_argument("--preset", choices=("smoke", "small", "paper"), default=d.preset)
    ap.add_argument("--steps", type=int, default=d.steps, help=f"(default {d.steps})")
    ap.add_argument("--seeds", default=",".join(map(str, d.seeds)))
    ap.add_argument("--activation", default=",".join(d.activations), help="comma list")
    bounds = [d.stages[0][0], *(e for _, e in d.stages)]
    ap.add_argument("--stages", default=",".join(map(str, bounds)), help="step boundaries")
    ap.add_argument("--early-steps", type=int, default=d.early_steps)
    ap.add_argument("--log-every-late", type=int, default=d.log_every_late)
    ap.add_argument("--cluster", choices=("local", "debug"), default="local")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "python -m empirics.experiments.mp_senet_long"
    bad: list[dict[str, Any]] = []
    try:
        for name in ("steps", "early_steps", "log_every_late"):
            if getattr(args, name) < 1:
                raise InputError(
                    f"--{name.replace('_', '-')}: {getattr(args, name)}; accepted >= 1"
                )
        lp = LongPlan(
            preset=args.preset,
            steps=args.steps,
            seeds=_ints(args.seeds, "--seeds"),
            activations=tuple(split_list(args.activation, "--activation")),
            stages=_stages(args.stages),
            early_steps=args.early_steps,
            log_every_late=args.log_every_late,
        )
        if args.command == "run":
            from empirics.launch import LaunchError
            from empirics.train.config import ConfigError

            try:
                index = run(lp, args.out, cluster=args.cluster)
            except (ConfigError, LaunchError) as exc:
                raise InputError(str(exc)) from None
            bad = [e for e in index["runs"] if e.get("status") != "completed"]
            for e in bad:
                print(f"{e.get('run')}: {e.get('status')} {e.get('message', '')}", file=sys.stderr)
        elif not run_dir(args.out).is_dir():
            raise InputError(f"--out: {args.out} holds no {GROUP} runs; run it first")
    except InputError as exc:
        return fail(prog, str(exc))
    path = aggregate(args.out, lp)
    print(f"wrote {path}")
    for fam, v, text, _ in verdict(json.loads(path.read_text())):
        print(f"C8.mp_senet_long.{fam}: {v}\n  {text}")
    return EXIT_FAILED if bad else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
