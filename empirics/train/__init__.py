"""The trainer: one run of one architecture on one task, with its metric records.

`config` holds the pydantic run config and its plan, `optim` the optimizers and schedules,
`runtime` devices, threads, checkpoints and resumption, `metrics` the per-layer records, and
`loop` the training loop itself. `python -m empirics.train --help` runs one config.
"""
