"""The experiment pipeline: C6-C12 over seeds, the GPT-nano ladder, MP-SENet's long run.

`pipeline` drives the groups of `make experiments` (`python -m empirics.experiments`): `plan`
sets their scales and runs, `theory_runs` the groups that are not training runs, `runs` reads
finished runs, `drift`, `aggregates` and `c10` aggregate them (statistics: `empirics.stats`).
`sweep` launches and resumes grids of training runs (on `empirics.launch`, its state in
`sweep_state`), `scale` and `scale_fit` run and fit the ladder `ladder` defines, and
`mp_senet_long` the 600-step MP-SENet run.
"""
