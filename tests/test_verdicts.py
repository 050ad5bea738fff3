"""The one verdict module: the row rule, honest counts, claim verdicts computed from evidence, and
the claims table that only renders them (and imports no torch).

Run: `.venv/bin/python -m pytest -q tests/test_verdicts.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from empirics import verdicts, verify
from empirics.ledger import attach_montecarlo, drift_entry, gradient_entries
from empirics.verdicts import decide_verdict
from paper_figures import claims_table

REPO = Path(__file__).resolve().parents[1]


def _mc(sign: str, mean: float = 0.1, ci=(0.05, 0.15)) -> dict:
    return {"mean": mean, "stderr": 0.01, "n": 100, "ci": list(ci), "sign": sign}


def test_verdict_rule():
    sym = {"sign": "zero", "method": "sympy", "value": 0.0}
    assert decide_verdict("C1.offdiag", "nonnegative", sym, (), None)[0] == "refined"
    assert decide_verdict("C1.mean", "zero", sym, (), None)[0] == "confirmed"
    assert decide_verdict("C1.mean", "zero", sym, (), _mc("undetermined", 0.0, (-1, 1)))[0] == (
        "confirmed"
    )
    # Own prediction and estimate disagree: sign, or value outside the CI.
    assert decide_verdict("C1.mean", "zero", sym, (), _mc("positive"))[0] == "fail"
    assert decide_verdict("C1.mean", "zero", sym, (), _mc("undetermined", 0.1, (0.05, 0.2)))[0] == (
        "fail"
    )
    und = {"sign": "undetermined", "method": "certified", "value": None}
    pieces = ((-8.0, -0.75, "positive"), (-0.75, 0.0, "negative"))
    assert decide_verdict("C2.g_neg", "nonnegative", und, pieces, None)[0] == "refuted"
    assert decide_verdict("C2.g_neg", "nonnegative", und, (), None)[0] == "not-tested"
    # A decided Monte Carlo sign establishes it when theory does not (strictly sharper: refined).
    assert decide_verdict("C2.g_neg", "nonnegative", und, (), _mc("positive"))[0] == "refined"
    assert decide_verdict("C2.g_neg", "positive", und, (), _mc("positive"))[0] == "confirmed"
    assert decide_verdict("C2.g_neg", "positive", und, (), _mc("negative"))[0] == "refuted"
    assert decide_verdict("C9.x", None, None, (), None)[0] == "not-tested"


def test_wrong_derivation_is_caught_by_the_ledger():
    """Flip the sign of a correct theory result: against an agreeing estimate it must fail."""
    entry = gradient_entries("relu", "mse")[0]
    assert entry.verdict == "confirmed"
    assert attach_montecarlo(entry, _mc("positive")).verdict == "confirmed"
    flipped = replace(entry, symbolic={**entry.symbolic, "sign": "negative"})
    assert attach_montecarlo(flipped, _mc("positive")).verdict == "fail"
    d = drift_entry("relu")
    wrong_value = replace(d, symbolic={**d.symbolic, "value": -d.symbolic["value"]})
    mc = _mc("positive", 0.4, (0.38, 0.42))
    assert attach_montecarlo(d, mc).verdict == "confirmed"
    assert attach_montecarlo(wrong_value, mc).verdict == "fail"


def test_clipped_square_keeps_the_strict_claim_and_shows_where_it_fails():
    pos = gradient_entries("relu2_clip", "mse")[0]
    assert pos.claimed == "positive" and pos.verdict == "refuted"
    assert any("zero" in n and "claim says positive" in n for n in pos.notes)
    assert gradient_entries("relu2", "mse")[0].verdict == "confirmed"


def test_counts_separate_scopes_share_predictions_and_label_numeric_evidence():
    row = {"activation": "relu", "loss": "mse", "verdict": "confirmed", "scope": "paper"}
    entries = [
        # A shared prediction counts under its weakest evidence: the argument, not sympy.
        row | {"id": "C5.first_step.b", "prediction": "p1", "evidence": "sympy"},
        row | {"id": "C5.first_step.b.nonneg", "prediction": "p1", "evidence": "argument"},
        row | {"id": "C4.D", "prediction": "p2", "evidence": "numeric"},
        row | {"id": "C4.D", "activation": "tanh", "scope": "control", "evidence": "sympy"},
        row | {"id": "C2.g_pos", "activation": "relu2", "scope": "extension", "verdict": "refuted"},
    ]
    s = verdicts.summarize(entries)
    assert s["rows"] == 5 and s["predictions"] == 4
    assert s["by_scope"]["paper"]["confirmed"] == 2  # the shared prediction counts once
    assert s["evidence"]["paper"] == {
        **dict.fromkeys(verdicts.EVIDENCE, 0),
        "argument": 1,
        "numeric": 1,
    }
    assert s["by_scope"]["control"]["confirmed"] == 1
    assert s["by_scope"]["extension"]["refuted"] == 1
    # Rows sharing a prediction but disagreeing count once, with the worse verdict.
    entries[1] = entries[1] | {"verdict": "refuted"}
    assert verdicts.summarize(entries)["by_scope"]["paper"]["refuted"] == 1


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> dict:
    """A theory-only ledger of the paper's activations and the controls, with made-up Monte Carlo
    columns that agree with the theory."""
    out = tmp_path_factory.mktemp("ledger") / "ledger.json"
    verify.run_verify(
        only=["relu", "gelu", "silu", "tanh", "identity"],
        json_path=out,
        montecarlo=False,
        results=None,
    )
    return json.loads(out.read_text())


def _claim(ledger: dict, cid: str) -> str:
    table = claims_table.render(ledger)
    row = next(line for line in table.splitlines() if line.startswith(f"| {cid} |"))
    return row.split(" | ")[3]


def test_claims_table_changes_when_the_evidence_does(ledger, tmp_path):
    assert _claim(ledger, "C4") == "confirmed"
    broken = json.loads(json.dumps(ledger))
    for e in broken["entries"]:
        if e["id"] == "C4.D":
            e["verdict"] = "fail"
    assert _claim(broken, "C4") == "fail"
    for e in broken["entries"]:
        if e["id"].startswith("C2.g_pos"):
            e["verdict"] = "refuted"
    assert _claim(broken, "C2") == "refuted"
    # C6 from the early-training horizons: some settings reverse in every seed and some never
    # do -> confirmed; every horizon beyond the run -> not-tested (too short to tell).
    out = tmp_path / "experiments" / "quick"
    out.mkdir(parents=True)

    def horizons(reversals: dict[tuple[str, float], list]) -> None:
        rows = [
            {"activation": "relu", "loss": "mse", "optimizer": opt, "lr": lr, "layer": "layer1",
             "quantity": "g_pos", "steps": 200, "N": {"reversal": hs, "decay": hs},
             "reversal_shift": []}
            for (opt, lr), hs in reversals.items()
        ]  # fmt: skip
        block = {"scale": {"name": "quick", "preset": "smoke", "seeds": [0, 1, 2]}}
        block["early_training"] = {"rows": rows}
        (out / "c6_persistence.json").write_text(json.dumps(block))

    def rendered_c6() -> str:
        with_runs = json.loads(json.dumps(ledger))
        with_runs["entries"] = [e for e in ledger["entries"] if not e["id"].startswith("C6")]
        with_runs["entries"] += [
            e for e in verdicts.experiment_entries(tmp_path) if e["id"] == "C6.optimizer_lr"
        ]
        return _claim(with_runs, "C6"), claims_table.render(with_runs)

    horizons({("adamw", 0.01): [45, 47, 44], ("sgd", 0.1): [None, None, None]})
    assert rendered_c6()[0] == "confirmed"
    horizons({("adamw", 0.01): [None, None, None], ("sgd", 0.1): [None, None, None]})
    verdict, table = rendered_c6()
    assert verdict == "not-tested" and "0 of 2 settings reach it" in table
    horizons({("adamw", 0.01): [45, 47, 44], ("sgd", 0.1): [46, 44, 48]})
    assert rendered_c6()[0] == "refuted"


def test_claims_table_renders_without_torch(ledger, tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps(ledger))
    code = (
        "import sys; from paper_figures import claims_table as c; "
        f"c.main(['--ledger', {str(path)!r}]); "
        "assert 'torch' not in sys.modules, 'the renderer imported torch'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "| C1 |" in done.stdout


def test_readme_rewrite_replaces_only_the_marked_block(ledger, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{claims_table.START}\nold\n{claims_table.END}\ntail\n")
    claims_table.rewrite(readme, claims_table.render(ledger), lambda p, t: p.write_text(t))
    text = readme.read_text()
    assert text.startswith("head\n") and text.endswith("tail\n") and "old" not in text
    assert "| C12 |" in text


def test_remark_a2_verdict_follows_the_covariance_bands():
    def block(lo0: float) -> dict:
        row = {
            "nonneg_inputs": True,
            "cov_term": {"lo": [lo0] + [-1.0] * 30, "hi": [lo0 + 2.0] + [1.0] * 30},
            "summary": {"init_z": 20.0, "median_abs_ratio_to_mean_term": 0.05},
        }
        return {"rows": [row, {**row, "nonneg_inputs": False}]}

    assert verdicts.verdict_remark_a2(block(0.5))[0] == "refuted"  # positive at init
    assert verdicts.verdict_remark_a2(block(-1.0))[0] == "confirmed"  # around 0 throughout
    assert verdicts.verdict_remark_a2({"rows": []})[0] == "not-tested"


def test_remark_a2_reads_the_pipelines_early_group_when_there_is_no_grid(tmp_path):
    row = {
        "nonneg_inputs": True,
        "cov_term": {"lo": [0.5] + [-1.0] * 30, "hi": [2.5] + [1.0] * 30},
        "summary": {"init_z": 20.0, "median_abs_ratio_to_mean_term": 0.05},
    }
    where = tmp_path / "experiments" / "full" / "early_training" / "remark_a2.json"
    where.parent.mkdir(parents=True)
    where.write_text(json.dumps({"rows": [row]}))
    got = {r["id"]: r for r in verdicts.experiment_entries(tmp_path)}["C5.remark_a2"]
    assert got["verdict"] == "refuted" and got["experiment"]["source"] == str(where)
    # The early-training module's own grid, where it exists, is read first.
    grid = tmp_path / "montecarlo" / "early_training" / "remark_a2.json"
    grid.parent.mkdir(parents=True)
    grid.write_text(
        json.dumps({"rows": [{**row, "cov_term": {"lo": [-1.0] * 31, "hi": [1.0] * 31}}]})
    )
    got = {r["id"]: r for r in verdicts.experiment_entries(tmp_path)}["C5.remark_a2"]
    assert got["verdict"] == "confirmed" and got["experiment"]["source"] == str(grid)


def test_refreshing_a_ledger_twice_replaces_its_experiment_rows_instead_of_adding(
    tmp_path, monkeypatch
):
    # One row per architecture (ids with a suffix, like C8.architectures.vit) must be replaced
    # on every refresh, not kept beside the new ones.
    rows = [
        verdicts.experiment_row(f"C8.architectures.{a}", "drift", "confirmed", a)
        for a in ("mlp", "vit")
    ]
    monkeypatch.setattr(verdicts, "experiment_entries", lambda results: list(rows))
    theory = {"id": "C4.D", "verdict": "confirmed", "scope": "paper"}
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"entries": [theory], "summary": {}}))
    monkeypatch.setattr(verdicts, "summarize", lambda entries: {"rows": len(entries)})
    monkeypatch.setattr(verdicts, "claim_rows", lambda entries: [])
    first = verdicts.refresh(path, tmp_path)
    second = verdicts.refresh(path, tmp_path)
    assert [e["id"] for e in first["entries"]] == [e["id"] for e in second["entries"]] == [
        "C4.D", "C8.architectures.mlp", "C8.architectures.vit",
    ]  # fmt: skip
