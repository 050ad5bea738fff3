"""`python -m empirics.montecarlo QUANTITY [options]`: one Monte Carlo estimate from the shell."""

from __future__ import annotations

from empirics.montecarlo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
