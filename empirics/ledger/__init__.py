"""The claims ledger: theory rows, Monte Carlo rows, experiment rows and their verdicts.

`rows` builds the theory and Monte Carlo rows, `depth` the depth-sweep rows, `verdicts` decides
every verdict from evidence, `verify` runs the whole ledger (`python -m empirics.ledger.verify`),
`calibrate` replays the nulls of its statistics, and `reference` keeps the committed run.
"""
