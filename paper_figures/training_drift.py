"""Mean pre-activation of the activation layers over training, per architecture and activation.

`python paper_figures/training_drift.py --sweep results/sweeps/drift_small --out FILE.png`
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import COLORS, plt, read_json, save, series


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    runs = sorted((args.sweep / "runs").glob("*/summary.json"))
    if not runs:
        raise SystemExit(f"no runs under {args.sweep}: run `make experiments` first")
    by_arch: dict[str, list[tuple[str, Path, dict]]] = {}
    for path in runs:
        summary = read_json(path)
        by_arch.setdefault(summary["arch"], []).append(
            (summary["activation"], path.parent, summary)
        )
    fig, axes = plt.subplots(2, len(by_arch), figsize=(3.4 * len(by_arch), 5.6), squeeze=False)
    for col, (arch, items) in enumerate(sorted(by_arch.items())):
        for act, run_dir, summary in sorted(items):
            acts = set(summary.get("feeds", {}))
            for row, metric in enumerate(("preact_mean", "negative_rate")):
                per_layer = next(iter(series(run_dir / "records.csv", metric).values()), {})
                steps: dict[int, list[float]] = {}
                for layer, points in per_layer.items():
                    if layer in acts:
                        for step, value in points:
                            steps.setdefault(step, []).append(value)
                xs = sorted(steps)
                ys = [sum(steps[s]) / len(steps[s]) for s in xs]
                axes[row][col].plot(xs, ys, label=act, color=COLORS.get(act))
        axes[0][col].set_title(arch)
        axes[1][col].set_xlabel("step")
    axes[0][0].set_ylabel("mean pre-activation")
    axes[1][0].set_ylabel("negative rate")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Activation drift in early training (small preset, averaged over layers)")
    save(fig, args.out)


if __name__ == "__main__":
    main()
