"""The verdict modules (empirics/ledger/*_verdicts.py): the row rule, honest counts, claim verdicts
computed from evidence, and the claims table that only renders them (and imports no torch).

Run: `.venv/bin/python -m pytest -q tests/test_verdicts.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import empirics.stats.bands as ea
from empirics.ledger import experiment_verdicts, row_verdicts, verdicts, verify
from empirics.ledger.row_verdicts import decide_verdict
from empirics.ledger.rows import attach_montecarlo, drift_entry, gradient_entries
from paper_figures import claims_table
from theory.registry import get_activation

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
    entry = gradient_entries(get_activation("relu"), "mse")[0]
    assert entry.verdict == "confirmed"
    assert attach_montecarlo(entry, _mc("positive")).verdict == "confirmed"
    flipped = replace(entry, symbolic={**entry.symbolic, "sign": "negative"})
    assert attach_montecarlo(flipped, _mc("positive")).verdict == "fail"
    d = drift_entry(get_activation("relu"))
    wrong_value = replace(d, symbolic={**d.symbolic, "value": -d.symbolic["value"]})
    mc = _mc("positive", 0.4, (0.38, 0.42))
    assert attach_montecarlo(d, mc).verdict == "confirmed"
    assert attach_montecarlo(wrong_value, mc).verdict == "fail"


def test_clipped_square_keeps_the_strict_claim_and_shows_where_it_fails():
    pos = gradient_entries(get_activation("relu2_clip"), "mse")[0]
    assert pos.claimed == "positive" and pos.verdict == "refuted"
    assert any("zero" in n and "claim says positive" in n for n in pos.notes)
    assert gradient_entries(get_activation("relu2"), "mse")[0].verdict == "confirmed"


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
    s = row_verdicts.summarize(entries)
    assert s["rows"] == 5 and s["predictions"] == 4
    assert s["by_scope"]["paper"]["confirmed"] == 2  # the shared prediction counts once
    assert s["evidence"]["paper"] == {
        **dict.fromkeys(row_verdicts.EVIDENCE, 0),
        "argument": 1,
        "numeric": 1,
    }
    assert s["by_scope"]["control"]["confirmed"] == 1
    assert s["by_scope"]["extension"]["refuted"] == 1
    # Rows sharing a prediction but disagreeing count once, with the worse verdict.
    entries[1] = entries[1] | {"verdict": "refuted"}
    assert row_verdicts.summarize(entries)["by_scope"]["paper"]["refuted"] == 1


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
    # C6 from the N-stable horizons: a setting that crosses (N and 4N intervals overlapping) in
    # every seed beside one whose intervals lie past the run -> confirmed; every interval past
    # the run -> not-tested; all crossing at overlapping steps -> refuted; an estimate that
    # moves with N (disjoint intervals) never enters.
    out = tmp_path / "experiments" / "quick"
    out.mkdir(parents=True)

    def est(point, lo=None, hi=None):
        return {"point": point, "lo": lo if point is None else point - 3,
                "hi": hi if point is None else point + 3, "steps": 201}  # fmt: skip

    def horizons(cells: dict[tuple[str, float], tuple[list, list]]) -> None:
        rows = [
            {"activation": "relu", "loss": "mse", "optimizer": opt, "lr": lr, "layer": "layer1",
             "quantity": "g_pos", "steps": 200, "n_networks": {"N": 32, "kN": 128},
             "N": {"reversal_est": n, "decay_est": n}, "kN": {"reversal_est": k, "decay_est": k},
             "reversal_agree": [ea.intervals_overlap(a, b) for a, b in zip(n, k, strict=True)],
             "decay_agree": [ea.intervals_overlap(a, b) for a, b in zip(n, k, strict=True)]}
            for (opt, lr), (n, k) in cells.items()
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

    crossing = [est(45), est(47), est(44)]
    never = [est(None)] * 3
    horizons({("adamw", 0.01): (crossing, crossing), ("sgd", 0.1): (never, never)})
    assert rendered_c6()[0] == "confirmed"
    horizons({("adamw", 0.01): (never, never), ("sgd", 0.1): (never, never)})
    verdict, table = rendered_c6()
    assert verdict == "not-tested" and "reached in every seed by 0 of 2" in table
    horizons({("adamw", 0.01): (crossing, crossing), ("sgd", 0.1): (crossing, crossing)})
    assert rendered_c6()[0] == "refuted"
    # the case: no reversal at N, reversal at 4N -> the intervals disagree, no horizon
    horizons({("adamw", 0.01): (never, crossing), ("sgd", 0.1): (never, never)})
    verdict, table = rendered_c6()
    assert verdict == "not-tested" and "overlap in 3 of 6 seed-settings" in table


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


def _a2_row(cov: tuple[float, float], mean: tuple[float, float], steps: int = 30) -> dict:
    return {
        "nonneg_inputs": True,
        "layer": "layer1",
        "alpha": 0.01,
        "cov_term": {"lo": [cov[0]] * steps, "hi": [cov[1]] * steps},
        "mean_term": {"lo": [mean[0]] * steps, "hi": [mean[1]] * steps},
        "summary": {"median_abs_ratio_to_mean_term": abs(sum(cov) / max(sum(mean), 1e-9))},
    }


def test_remark_a2_literal_and_role_have_their_own_rules():
    def got(*rows: dict) -> dict[str, str]:
        return {k: v for k, v, _, _ in experiment_verdicts.verdict_remark_a2({"rows": list(rows)})}

    # around 0 throughout, mean term positive: literally confirmed, C5's sign kept
    assert got(_a2_row((-0.1, 0.1), (5.0, 6.0))) == {"literal": "confirmed", "role": "confirmed"}
    # small (<= 10 % of the mean term) and positive: the theorem's case -> refined, role holds
    assert got(_a2_row((0.05, 0.2), (5.0, 6.0))) == {"literal": "refined", "role": "confirmed"}
    # confidently above 10 % of the mean term but same sign: literally refuted, role holds
    assert got(_a2_row((1.0, 2.0), (5.0, 6.0))) == {"literal": "refuted", "role": "confirmed"}
    # opposite and larger than the mean term: both refuted
    assert got(_a2_row((-9.0, -7.0), (5.0, 6.0))) == {"literal": "refuted", "role": "refuted"}
    # bands too wide to say either
    assert got(_a2_row((-2.0, 3.0), (1.0, 6.0)))["role"] == "not-tested"
    # settings whose inputs are not non-negative do not count; none at all -> no rows
    assert (
        experiment_verdicts.verdict_remark_a2(
            {"rows": [{**_a2_row((1, 2), (5, 6)), "nonneg_inputs": False}]}
        )
        == []
    )


def test_remark_a2_reads_the_pipelines_early_group_when_there_is_no_grid(tmp_path):
    where = tmp_path / "experiments" / "full" / "early_training" / "remark_a2.json"
    where.parent.mkdir(parents=True)
    where.write_text(json.dumps({"rows": [_a2_row((1.0, 2.0), (5.0, 6.0))]}))
    got = {r["id"]: r for r in verdicts.experiment_entries(tmp_path)}
    assert got["C5.remark_a2.literal"]["verdict"] == "refuted"
    assert got["C5.remark_a2.literal"]["experiment"]["source"] == str(where)
    # The early-training module's own grid, where it exists, is read first.
    grid = tmp_path / "montecarlo" / "early_training" / "remark_a2.json"
    grid.parent.mkdir(parents=True)
    grid.write_text(json.dumps({"rows": [_a2_row((-0.1, 0.1), (5.0, 6.0))]}))
    got = {r["id"]: r for r in verdicts.experiment_entries(tmp_path)}
    assert got["C5.remark_a2.literal"]["verdict"] == "confirmed"
    assert got["C5.remark_a2.role"]["experiment"]["source"] == str(grid)


def _c10_block(per_arch: dict[str, list[list[tuple[float, float]]]]) -> dict:
    """A c10_cliff.json with, per arch, one Top-K curve per seed [(sparsity, relative), ...]."""
    from empirics.stats.fits import c10_critical

    points = [
        {"arch": arch, "activation": "relu", "control": "topk", "seed": seed,
         "measured_sparsity": sp, "relative": rel}
        for arch, curves in per_arch.items()
        for seed, curve in enumerate(curves)
        for sp, rel in curve
    ]  # fmt: skip
    return {
        "scale": {"name": "full", "preset": "small", "c10_seeds": [0, 1, 2]},
        "critical": c10_critical(points),
        "diverged": [{"arch": "mlp", "sparsity": "topk:0.95", "seed": 4, "status": "diverged"}],
    }


def test_cliff_verdict_per_architecture_and_control():
    grid = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95)

    def curve(knee: float, jitter: float) -> list[tuple[float, float]]:
        # flat at 1 up to the knee, then a steep fall
        return [(s, 1.0 - max(0.0, s - knee - jitter) * 2.0) for s in grid]

    block = _c10_block(
        {
            # linear fall from 0.5: the 95 % crossing is 0.5 + 0.05 / slope = 0.70, 0.67, 0.73
            "mlp": [[(s, 1.0 - max(0.0, s - 0.5) * c) for s in grid] for c in (0.25, 0.3, 0.22)],
            "vit": [[(s, 1.0) for s in grid]] * 3,  # no loss up to 95 %
            "gpt_nano": [curve(0.1, j) for j in (0.0, 0.01, 0.02)],  # falls early
        }
    )
    got = {k: (v, t) for k, v, t, _ in experiment_verdicts.verdict_cliff(block)}
    assert got["mlp_topk"][0] == "confirmed"
    assert "not completed: topk:0.95 s4 diverged" in got["mlp_topk"][1]
    assert got["vit_topk"][0] == "refuted" and "≥0.95" in got["vit_topk"][1]
    assert got["gpt_nano_topk"][0] == "refuted"
    # one seed: no spread, no verdict
    one = _c10_block({"mlp": [curve(0.5, 0.0)]})
    assert {v for _, v, _, _ in experiment_verdicts.verdict_cliff(one)} == {"not-tested"}


def test_refreshing_a_ledger_twice_replaces_its_experiment_rows_instead_of_adding(
    tmp_path, monkeypatch
):
    # One row per architecture (ids with a suffix, like C8.architectures.vit) must be replaced
    # on every refresh, not kept beside the new ones.
    rows = [
        experiment_verdicts.experiment_row(f"C8.architectures.{a}", "drift", "confirmed", a)
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
