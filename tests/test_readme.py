"""README.md and docs/FINDINGS.md are the rendering of reference/; the reference mechanism
(update, which results the ledger reads) and the renderer's placeholders, on fake data in tmp."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import empirics.ledger.claim_verdicts as claim_verdicts
import empirics.ledger.verdicts as verdicts
from empirics.ledger.reference import PROVENANCE, choose_results, describe, update_reference
from paper_figures import documents

ROOT = Path(__file__).resolve().parents[1]


def test_committed_documents_are_the_rendering_of_reference():
    assert documents.stale() == [], "run `make reference` (or edit docs/templates/, then render)"


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def _fake_reference(tmp_path: Path, mean: float) -> Path:
    ref = tmp_path / "reference"
    (ref / "experiments" / "full").mkdir(parents=True)
    ledger = {
        "entries": [
            {"id": "C1.diag", "activation": None, "loss": None, "verdict": "confirmed",
             "scope": "paper", "evidence": "argument", "montecarlo": {"mean": mean}},
        ],
        "summary": {"montecarlo_rows": 7},
    }  # fmt: skip
    (ref / "ledger.json").write_text(json.dumps(ledger))
    rows = {"rows": [{"arch": "vit", "v": 1.0}, {"arch": "mlp", "v": mean / 3}]}
    (ref / "experiments" / "full" / "x.json").write_text(json.dumps(rows))
    return ref


def test_placeholders_render_the_evidence_and_follow_it(tmp_path):
    template = (
        "a {{ledger:entries[id=C1.diag].montecarlo.mean|.3f}} "
        "b {{file:experiments/full/x.json:rows[arch=mlp].v|.2g}} "
        "c {{ledger:summary.montecarlo_rows|d}} d {{file:experiments/full/gone.json:a}} "
        "e {{ledger:entries[id=C9.none].montecarlo.mean}}"
    )
    for mean in (0.25, 0.75):
        ref = _fake_reference(tmp_path / str(mean), mean)
        text = documents.render(template, ref)
        want = f"a {mean:.3f} b {mean / 3:.2g} c 7 d n/a e n/a"
        assert text == want


@pytest.mark.parametrize(
    ("placeholder", "named"),
    [
        ("{{nonsense}}", "unknown placeholder"),
        ("{{ledger:summary.montecarlo_rows|__import__}}", "format"),
        ("{{file:../secret.json:a}}", "inside the reference"),
        ("{{ledger:entries[id]}}", "key=value"),
    ],
)
def test_bad_placeholders_are_refused_naming_them(tmp_path, placeholder, named):
    ref = _fake_reference(tmp_path, 0.5)
    with pytest.raises(documents.RenderError, match=named):
        documents.render(placeholder, ref)


def test_check_sees_a_readme_edited_by_hand(tmp_path):
    for tpl in documents.DOCUMENTS.values():
        (tmp_path / tpl).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / tpl, tmp_path / tpl)
    ref = _fake_reference(tmp_path, 0.5)
    for rel, text in documents.render_all(tmp_path, ref).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert documents.stale(tmp_path, ref) == []
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| C1 |", "| C1 (typed) |"))
    assert documents.stale(tmp_path, ref) == ["README.md"]
    # Evidence that changes makes the committed text stale too.
    (ref / "ledger.json").write_text(json.dumps({"entries": [], "summary": {}}))
    assert "docs/FINDINGS.md" in documents.stale(tmp_path, ref)


def _fake_results(tmp_path: Path) -> tuple[Path, list[Path]]:
    results = tmp_path / "results"
    read = [
        results / "experiments" / "full" / "drift.json",
        results / "montecarlo" / "early_training" / "remark_a2.json",
    ]
    for path in read:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"claim": path.stem}))
    unread = results / "experiments" / "full" / "sweeps" / "raw.json"
    unread.parent.mkdir(parents=True)
    unread.write_text("{}")
    (results / "experiments" / "full" / "timing.json").write_text('{"drift": 60, "c10": 120.5}')
    entries = [
        {"id": f"C{i}.x", "verdict": "confirmed", "experiment": {"source": str(p)}}
        for i, p in enumerate(read)
    ]
    ledger = {"provenance": {"git": {"commit": "abc", "dirty": False}}, "entries": entries}
    (results / "verify").mkdir()
    (results / "verify" / "ledger.json").write_text(json.dumps(ledger))
    return results, read


def test_update_copies_exactly_what_the_ledger_read(tmp_path):
    results, read = _fake_results(tmp_path)
    ref = tmp_path / "reference"
    prov = update_reference(results, ref, machine="test box")
    copied = {str(p.relative_to(ref)) for p in ref.rglob("*.json")}
    want = {str(p.relative_to(results)) for p in read} | {"ledger.json", PROVENANCE}
    assert copied == want
    ledger = json.loads((ref / "ledger.json").read_text())
    assert [e["experiment"]["source"] for e in ledger["entries"]] == [
        f"reference/{p.relative_to(results)}" for p in read
    ]
    assert ledger["experiment_results"] == (
        f"C6-C12 from the {len(read)} experiment files copied into reference/ with this ledger"
    )
    assert prov["commit"] == "abc" and prov["scale"] == "full" and prov["machine"] == "test box"
    assert prov["wall_seconds"] == pytest.approx(60 + 120.5)
    assert sum(prov["group_seconds"].values()) == pytest.approx(60 + 120.5)
    assert "(the pipeline's groups, min: " in describe(prov)
    measured = update_reference(results, ref, wall_seconds=300.0)
    assert measured["wall_seconds"] == 300.0 and describe(measured).count("wall time 5 min (") == 1
    assert prov["total_bytes"] == sum(prov["files"].values()) > 0
    # A later ledger that reads one file fewer leaves no stale copy behind.
    ledger_path = results / "verify" / "ledger.json"
    small = json.loads(ledger_path.read_text())
    small["entries"] = small["entries"][:1]
    ledger_path.write_text(json.dumps(small))
    update_reference(results, ref)
    assert not (ref / read[1].relative_to(results)).exists()


def _sources(monkeypatch, paths: list[Path]) -> None:
    rows = [{"id": "C9.x", "experiment": {"source": str(p)}} for p in paths]
    monkeypatch.setattr(verdicts, "experiment_entries", lambda results: rows)


def test_choose_results_reads_the_reference_unless_results_are_newer(tmp_path, monkeypatch):
    results, ref = tmp_path / "results", tmp_path / "reference"
    _sources(monkeypatch, [])
    assert choose_results(results, ref)[0] == results  # nothing anywhere: results, not-tested
    ref.mkdir()
    prov = {"scale": "full", "finished_unix": 1000.0, "finished": "then", "commit": "abc"}
    (ref / PROVENANCE).write_text(json.dumps(prov))
    root, note = choose_results(results, ref)
    assert root == ref and "reference run" in note and "no experiment results" in note
    full = results / "experiments" / "full" / "drift.json"
    quick = results / "experiments" / "quick" / "drift.json"
    for p in (full, quick):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
    _sources(monkeypatch, [full])
    assert choose_results(results, ref)[0] == results  # written now, after 1000 s past epoch
    os.utime(full, (500.0, 500.0))
    root, note = choose_results(results, ref)
    assert root == ref and "older" in note
    _sources(monkeypatch, [quick])  # newer, but a smoke run never replaces a full reference
    root, note = choose_results(results, ref)
    assert root == ref and "smaller scale" in note


def test_c1_row_reads_as_its_evidence():
    def row(eid, verdict, value=0.0, exact=None, mc=None):
        sym = {"sign": "zero", "method": "argument", "value": value}
        if exact:
            sym["exact"] = exact
        return {"id": eid, "activation": None, "loss": None, "verdict": verdict, "scope": "paper",
                "symbolic": sym, "montecarlo": mc}  # fmt: skip

    big = 4294967295 / 17179869184
    entries = [
        row("C1.mean", "confirmed"),
        row("C1.offdiag", "refined"),
        row("C1.diag", "confirmed", big, "4294967295/17179869184"),
        row(
            "C1.init_exponential.cond_offdiag",
            "refuted",
            None,
            None,
            {"mean": -0.004, "stderr": 0.0006},
        ),  # fmt: skip
    ]
    verdict, text = claim_verdicts._claim_c1(entries)
    assert "17179869184" not in text and f"{big:.10g}" in text
    assert "None" not in text and "MC -0.004" in text
    assert "some i.i.d. zero-mean" in verdict and "any" not in verdict


def test_a_claim_judged_in_many_parts_shows_counts_in_the_readme_row():
    few = "confirmed on mlp; refuted on vit"
    assert documents.short_verdict(few) == few
    many = "; ".join(
        ["refuted on a", "confirmed on b", "not-tested on c", "refuted on d", "refuted on e"]
    )
    assert documents.short_verdict(many) == "by part, 5 parts: confirmed 1, refuted 3, not-tested 1"
