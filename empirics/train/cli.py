"""`python -m empirics.train`: one run from the command line.

The flags are generated from TrainConfig's fields (`empirics.cli.add_config_flags`): a field's
type, bounds and help are written once, in `empirics/train/config.py`. `list keys --arch ARCH` and
`list activations` print the choices.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from empirics.cli import EXIT_FAILED, EXIT_OK, add_config_flags, config_kwargs, list_activations
from empirics.data import DataUnavailable
from empirics.models import ARCHS
from empirics.train.config import (
    ConfigError,
    TrainConfig,
    describe_keys,
    parse_sets,
)
from empirics.train.loop import train
from empirics.train.runtime import (
    Interrupted,
    StopFlag,
    TrainingDiverged,
    dist_from_env,
)

# ---------------------------------------------------------------------------------- the CLI


# Older spellings kept: `--decay-fraction` is the early-training CLI's, `--run-name` the one
# torchrun lets through (it takes `--run` for its own --run-path).
FLAG_ALIASES = {"decay_frac": ["--decay-fraction"], "run": ["--run-name"]}


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field (type, bounds and help from the config), plus `--set`;
    only the flags given reach the config (the rest: preset, then default)."""
    ap = argparse.ArgumentParser(
        prog="python -m empirics.train",
        usage="%(prog)s [--arch ARCH] [--preset PRESET] [options]   (--help lists them)",
        description="Train one architecture and log drift, sparsity and spike metrics. "
        "`python -m empirics.train list keys --arch ARCH` and `list activations` list choices.",
        argument_default=argparse.SUPPRESS,
    )
    add_config_flags(ap, TrainConfig, skip=("model",), aliases=FLAG_ALIASES)
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        metavar="KEY=VALUE",
        help="a field of the architecture's config (repeatable; see `list keys --arch ARCH`)",
    )
    return ap


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the flags given; `--set` values typed against the arch's Config."""
    given = config_kwargs(args, TrainConfig.model_fields)
    sets = getattr(args, "sets", None)
    if sets:
        given["model"] = parse_sets(given.get("arch", "mlp"), sets)
    return TrainConfig(**given)


def build_list_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m empirics.train list")
    sub = ap.add_subparsers(dest="what", required=True)
    keys = sub.add_parser("keys", help="an architecture's --set keys, defaults and presets")
    keys.add_argument("--arch", required=True, choices=ARCHS)
    sub.add_parser("activations", help="the registry's activation names and expressions")
    return ap


def list_main(argv: Sequence[str]) -> int:
    args = build_list_parser().parse_args(argv)
    if args.what == "keys":
        for key, tp, default, presets in describe_keys(args.arch):
            by_preset = ", ".join(f"{k}={v!r}" for k, v in presets.items())
            print(
                f"{key:<18} {tp:<18} default {default!r}"
                + (f"  ({by_preset})" if by_preset else "")
            )
        return EXIT_OK
    return list_activations()


def _result_line(out: Path) -> str:
    body = json.loads((out / "summary.json").read_text())
    parts = [
        f"{body['run']}: {body['status']} {body['steps']} steps in {body['wall_time_s']:.1f} s"
    ]
    if body.get("final_loss") is not None:
        parts.append(f"final loss {body['final_loss']:.4g}")
    for key, value in (body.get("val") or {}).items():
        if value is not None:
            parts.append(f"{key} {value:.4g}")
    return ", ".join(parts) + f"; wrote {out}/records.csv, config.json, summary.json"


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 diverged or data missing, 2 bad input, 128+signal when stopped."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["list"]:
        return list_main(argv[1:])
    ap = build_parser()
    args = ap.parse_args(argv)  # malformed flags exit 2 here
    stop = StopFlag()
    try:
        cfg = config_from_args(args)
        with stop.installed():
            out = train(cfg, stop=stop)
    except ConfigError as exc:
        ap.error(str(exc))  # exits 2 with the message, before any compute
    except TrainingDiverged as exc:
        print(f"diverged: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except DataUnavailable as exc:
        print(f"data unavailable: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(f"stopped: {exc or 'SIGINT'}; records and summary.json are kept", file=sys.stderr)
        return 128 + int(signum)
    if dist_from_env().lead:
        print(_result_line(out))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
