"""Flags generated from pydantic configs (`empirics.cli.add_config_flags`): every field reaches
its entry point's parser with the config's type, help and defaults, and nothing else does.

Run: `.venv/bin/python -m pytest -q tests/test_cli_flags.py` (seconds; no training).
"""

from __future__ import annotations

import argparse
import typing

import pytest

from empirics.cli import add_config_flags
from empirics.montecarlo import cli as MC
from empirics.train import cli as TC
from empirics.train.config import FIRST_STEP_OPTIMIZERS, OPTIMIZERS, ConfigError, TrainConfig
from theory.registry import Activation

# The trainer's flag spellings before its parser was generated (scripts and Makefiles use them).
TRAIN_FLAGS = (
    "--arch --activation --data --preset --steps --batch-size --lr --adam-lr --optimizer "
    "--momentum --betas --weight-decay --warmup --schedule --decay-frac --decay-fraction "
    "--min-lr-frac --seed --device --out --run --run-name --early-steps --log-every-early "
    "--log-every-late --eval-every --eval-batches --threads --checkpoint-every --grad-accum "
    "--precision --compile --overwrite --no-progress --set"
).split()


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings} - {"-h", "--help"}


def test_the_trainer_keeps_every_flag_spelling_and_adds_none() -> None:
    assert _option_strings(TC.build_parser()) == set(TRAIN_FLAGS)


def test_every_config_field_is_one_flag_with_its_description() -> None:
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    names = add_config_flags(parser, TrainConfig, skip=("model",))
    assert names == [n for n in TrainConfig.model_fields if n != "model"]
    helps = {a.dest: a.help or "" for a in parser._actions}
    for name in names:
        field = TrainConfig.model_fields[name]
        assert field.description, f"{name} has no description"
        assert field.description in helps[name]
    assert all(c in helps["optimizer"] for c in OPTIMIZERS)  # a Literal's choices are listed
    assert parser.parse_args([]) == argparse.Namespace()  # defaults stay the config's


def test_a_command_line_gives_the_config_written_directly() -> None:
    argv = [
        "--arch", "gpt_nano", "--activation", "leaky_relu:slope=0.2", "--steps", "7",
        "--lr", "0.01", "--betas", "0.8,0.9", "--optimizer", "muon", "--decay-fraction", "0.5",
        "--run-name", "r1", "--no-progress", "--compile", "--set", "n_embd=32",
    ]  # fmt: skip
    cfg = TC.config_from_args(TC.build_parser().parse_args(argv))
    want = TrainConfig(
        arch="gpt_nano",
        activation="leaky_relu:slope=0.2",
        steps=7,
        lr=0.01,
        betas=(0.8, 0.9),
        optimizer="muon",
        decay_frac=0.5,
        run="r1",
        progress=False,
        compile=True,
        model={"n_embd": 32},
    )
    assert cfg == want and cfg.given() == want.given()
    # Only the flags given count as set: the preset fills the rest.
    assert set(cfg.model_fields_set) == set(want.model_fields_set)


@pytest.mark.parametrize("text", ["(0.8,0.9)", "[0.8, 0.9]", " 0.8 , 0.9 "])
def test_a_tuple_may_be_written_with_brackets_and_spaces(text: str) -> None:
    cfg = TC.config_from_args(TC.build_parser().parse_args(["--betas", text]))
    assert cfg.betas == (0.8, 0.9)


@pytest.mark.parametrize(
    ("main", "argv", "flag"),
    [
        (TC.main, ["--betas", "0.9,,0.95"], "--betas"),
        (TC.main, ["--betas", "0.9,"], "--betas"),
        (MC.main, ["g_pos", "--widths", "8,,8"], "--widths"),
        (MC.main, ["g_pos", "--widths", ",8"], "--widths"),
    ],
)
def test_an_empty_list_item_is_refused_naming_the_flag_once(main, argv, flag, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "empty item" in err and repr(argv[-1]) in err
    assert err.count(flag) == 1, err  # the usage line names neither list flag


def test_the_activation_is_held_as_its_object_and_written_as_its_spec() -> None:
    spec = "leaky_relu:slope=0.2"
    cfg = TrainConfig(activation=spec)
    assert isinstance(cfg.activation, Activation) and cfg.activation.spec == spec
    assert cfg.model_dump(mode="json")["activation"] == spec
    assert cfg.identity()["activation"] == spec
    assert cfg.replace(seed=3).activation.spec == spec  # given() round-trips through the spec
    assert TrainConfig().activation.spec == "relu"  # the default is parsed too
    with pytest.raises(ConfigError, match="activation: unknown activation 'nope'"):
        TrainConfig(activation="nope")


def test_one_optimizer_vocabulary() -> None:
    field = TrainConfig.model_fields["optimizer"]
    literal = typing.get_args(field.annotation)[0]
    assert typing.get_args(literal) == OPTIMIZERS
    # The first-step Monte Carlo differs only where plain Adam stands for AdamW.
    assert [o for o in FIRST_STEP_OPTIMIZERS if o not in OPTIMIZERS] == ["adam"]
    assert [o for o in OPTIMIZERS if o not in FIRST_STEP_OPTIMIZERS] == ["adamw"]


def test_montecarlo_options_come_from_one_model() -> None:
    parser = MC.build_parser()
    flags = _option_strings(parser)
    for name, field in MC.Options.model_fields.items():
        assert field.description, f"{name} has no description"
        if name == "quantity":
            continue
        dashed = name.replace("_", "-")
        assert f"--{dashed}" in flags or f"--no-{dashed}" in flags, name
    opts = MC.parse_options(
        ["D", "--data", "sphere", "--no-antithetic", "--widths", "8,4", "--activation", "gelu"]
    )
    assert opts == MC.Options(
        quantity="D", inputs="sphere", antithetic=False, widths=(8, 4), activation=["gelu"]
    )
    assert MC.parse_options(["g_pos"]) == MC.Options(quantity="g_pos")
    assert [a.spec for a in MC.Options(quantity="g_pos").activation] == ["relu"]
