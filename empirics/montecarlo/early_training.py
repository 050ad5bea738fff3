"""Early training of many random MLPs at once: how long the sign of E[dl/dp | p > 0] and drift
hold. The entry point of `python -m empirics.montecarlo.early_training`.

One configuration: `python -m empirics.montecarlo.early_training --activation relu --optimizer
sgd --lr 0.1`; the grid behind the C6 and Remark A.2 rows (activations x losses x optimizers x lrs
x seeds): `python -m empirics.montecarlo.early_training --sweep --seeds 0,1,2,3,4`.

The work is split by what it does, and each name is imported from where it lives:
- `early_config`: `EarlyConfig` (fields, bounds, help), the memory estimate;
- `early_kernel`: the batched networks, `train_early`, `per_network_stats`;
- `empirics.stats.bands`: series over networks, simultaneous bands, horizons;
- `early_grid`: one run, the grid (through the one launcher), resume and re-analysis;
- `early_aggregate`: horizons.json and remark_a2.json over a grid;
- `early_cli`: the command line (`main`).
"""

from __future__ import annotations

import sys

from empirics.montecarlo.early_cli import main

if __name__ == "__main__":
    sys.exit(main())
