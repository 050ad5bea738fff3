"""MP-SENet's long runs: the mean pre-activation and the feeding norms' mean shift β against step.

`python paper_figures/mp_senet_long.py --results results/experiments/full --out F.png` reads
`mp_senet_long.json` (`python -m empirics.experiments.mp_senet_long aggregate`): per activation,
the mean over
seeds with the seeds' min-max as a band; dotted lines mark the stage boundaries of its verdict.
"""

from __future__ import annotations

import numpy as np
from common import color, figure_parser, label, need, plt, save

PANELS = (
    ("preact_mean", "preact_mean (mean over the {n} activation layers)"),
    ("beta", "β (mean shift of the {n_norm} feeding norms)"),
)


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    block = need(args.results / "mp_senet_long.json")
    acts = block.get("activations") or {}
    fig, axes = plt.subplots(1, len(PANELS), figsize=(7.2, 2.8), sharex=True)
    bounds = sorted({int(b) for st in block.get("stages") or [] for b in st.split("-")})
    for ax, (key, title) in zip(axes, PANELS, strict=True):
        for act, body in sorted(acts.items()):
            seeds = [t for t in (body.get("trajectory") or {}).values() if t.get(key)]
            if not seeds:
                continue
            common = sorted(set.intersection(*(set(t["step"]) for t in seeds)))
            vals = np.array(
                [[dict(zip(t["step"], t[key], strict=True))[s] for s in common] for t in seeds]
            )
            steps = np.array(common) + 1  # log axis: step 0 (init) drawn at 1
            ax.plot(steps, vals.mean(0), color=color(act), lw=1.2, label=f"{label(act)}")
            ax.fill_between(steps, vals.min(0), vals.max(0), color=color(act), alpha=0.2, lw=0)
        for b in bounds[1:-1]:
            ax.axvline(b + 1, color="0.5", ls=":", lw=0.8)
        ax.axhline(0, color="0.7", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("training step + 1")
        any_act = next(iter(acts.values()), {})
        n_norm, n_lin = len(any_act.get("norm_fed") or []), len(any_act.get("linear_fed") or [])
        ax.set_title(title.format(n=n_norm + n_lin, n_norm=n_norm))
    n = sorted({len(b.get("seeds") or []) for b in acts.values()})
    axes[0].legend(title=f"mean, min–max over {'/'.join(map(str, n))} seeds", loc="best")
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
