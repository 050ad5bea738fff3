"""The before/after table of two experiment runs (empirics.ledger.compare)."""

from __future__ import annotations

import json
from pathlib import Path

from empirics.ledger.compare import compare, compare_files, compare_ledgers, main, render


def _est(mean: float, lo: float, hi: float) -> dict:
    return {"n": 5, "mean": mean, "ci": [lo, hi]}


def test_identical_files_have_nothing_moved() -> None:
    doc = {"rows": [{"a": 1.5, "b": _est(0.1, 0.0, 0.2)}], "provenance": {"t": 3.0}}
    out = compare_files(doc, json.loads(json.dumps(doc)))
    assert out["numbers"] == out["numbers_identical"] == 5  # a; b: n, mean and its two ends
    assert (out["estimates"], out["estimates_moved"], out["estimates_outside"]) == (1, 0, [])


def test_a_moved_estimate_is_counted_and_one_outside_the_other_interval_is_listed() -> None:
    before = {"x": _est(0.10, 0.0, 0.2), "y": _est(1.0, 0.9, 1.1), "provenance": {"t": 1.0}}
    after = {"x": _est(0.12, 0.02, 0.22), "y": _est(1.5, 1.4, 1.6), "provenance": {"t": 9.0}}
    out = compare_files(before, after)
    assert out["estimates_moved"] == 2
    assert [o["path"] for o in out["estimates_outside"]] == ["/y"]
    # provenance is not a result: its changed number is not counted
    assert out["numbers"] == 8 and out["numbers_identical"] == 2  # the two n's
    assert (out["only_before"], out["only_after"]) == (0, 0)
    extra = compare_files(before, {**after, "z": 1.0})
    assert extra["only_after"] == 1
    table = {"before": "b", "after": "a", "files": {"f.json": extra}, "rows": []}
    assert "found in one run only: before 0, after 1" in render(table)


def test_ledger_rows_report_verdict_changes() -> None:
    def ledger(verdict: str, detail: str) -> dict:
        return {"entries": [
            {"id": "C7.x", "verdict": verdict, "detail": detail, "experiment": {"source": "s"}},
            {"id": "C1.y", "verdict": "confirmed", "detail": "d", "experiment": None},
        ]}  # fmt: skip

    rows = compare_ledgers(ledger("confirmed", "a"), ledger("refuted", "b"))
    assert rows == [{"id": "C7.x", "before": "confirmed", "after": "refuted", "detail_same": False}]
    assert "C7.x: confirmed -> refuted" in render(
        {"before": "b", "after": "a", "files": {}, "rows": rows}
    )


def test_folders_end_to_end_and_bad_input(tmp_path: Path, capsys) -> None:
    src = "reference/experiments/full/drift.json"
    entry = {"id": "C7.a", "verdict": "confirmed", "detail": "d", "experiment": {"source": src}}
    before, after = tmp_path / "ref", tmp_path / "res"
    for root, mean in ((before, 0.1), (after, 0.1)):
        (root / "experiments/full").mkdir(parents=True)
        (root / "experiments/full/drift.json").write_text(json.dumps({"m": _est(mean, 0, 1)}))
    (before / "ledger.json").write_text(json.dumps({"entries": [entry]}))
    (after / "verify").mkdir()
    (after / "verify/ledger.json").write_text(json.dumps({"entries": [entry]}))
    table = compare(before, after)
    assert table["files"]["experiments/full/drift.json"]["estimates_moved"] == 0
    # a source outside reference/ is reported, never compared with itself
    (tmp_path / "elsewhere.json").write_text(json.dumps({"m": _est(0.1, 0, 1)}))  # exists
    odd = {**entry, "id": "C7.b", "experiment": {"source": str(tmp_path / "elsewhere.json")}}
    (before / "ledger.json").write_text(json.dumps({"entries": [entry, odd]}))
    assert "missing" in compare(before, after)["files"][str(tmp_path / "elsewhere.json")]
    assert main(["--before", str(before), "--after", str(after)]) == 0
    assert main(["--before", str(tmp_path / "nowhere"), "--after", str(after)]) == 2
    assert "--before" in capsys.readouterr().err
