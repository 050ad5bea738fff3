"""The project's statistics, torch-free (numpy, scipy), one package:

- `estimates`: Monte Carlo estimates and the one-look sign test (`Estimate`, `RatioAccumulator`,
  `SignTest`, `fixed_interval`);
- `seeds`: over seeds, t intervals, paired tests and Holm (`mean_ci`, `paired`, `sign_flip_p`,
  `holm`);
- `fits`: the critical sparsity, the hinge and cliff fits, the nested F test;
- `bands`: per-step series over networks, simultaneous bootstrap bands, change points and
  horizons (early training's reading of how long a sign holds).
"""
