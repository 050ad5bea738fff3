"""The experiment pipeline: C6-C12 over seeds, the GPT-nano ladder, MP-SENet's long run.

`pipeline` plans and aggregates the groups of `make experiments` (`python -m empirics.experiments`),
`sweep` launches and resumes grids of training runs, `scale` and `scale_fit` run and fit the
ladder, and `mp_senet_long` the 600-step MP-SENet run.
"""
