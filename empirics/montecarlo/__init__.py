"""Monte Carlo twins of the theory: batched random networks, estimates with CIs, sign tests.

Run one estimate with `python -m empirics.montecarlo QUANTITY [options]` (see `--help`); the
claims ledger calls `montecarlo_for_entry`.
"""
