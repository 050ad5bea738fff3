"""The claims ledger: theory rows, Monte Carlo rows, experiment rows and their verdicts.

`rows` builds the theory and Monte Carlo rows (and owns their seeds), `depth` the issue-9 rows;
the verdict rules live in `row_verdicts`, `claim_verdicts`, `experiment_verdicts` and
`scale_verdicts`, and `verdicts` reads the experiment rows from results. `verify` runs the whole
ledger (`python -m empirics.ledger.verify`), `calibrate` replays the nulls of its statistics, and
`reference` keeps the committed run.
"""
