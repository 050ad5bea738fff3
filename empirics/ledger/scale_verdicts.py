"""Verdicts of the GPT-nano scaling ladder (C9, C10 for GPT-nano, C11, C12): trends fitted by
`empirics.experiments.scale_fit`, extrapolated to the paper's scale and judged against its numbers
(torch-free).
"""

from __future__ import annotations

import math
from typing import Any

from empirics.ledger.experiment_verdicts import ci_bounds, ci_text

# How narrow a prediction interval at the paper's point must be for the trend to decide a claim
# about a number there: sparsity within 0.2 (C9), a spike ratio within a factor of 10 (C11).
SCALE_DECIDABLE_WIDTH = {"c9": 0.2, "c11": 1.0}


def _ladder_note(agg: dict[str, Any]) -> str:
    lad = agg.get("ladder") or {}
    tokens = lad.get("tokens") or []
    sizes = lad.get("sizes") or {}
    span = f"{min(tokens):.0e}–{max(tokens):.0e} tokens" if tokens else "? tokens"
    params = ", ".join(f"{v.get('block_params', 0) / 1e6:.2g}M" for v in sizes.values())
    return (
        f"[GPT-nano ladder, paper recipe (Muon + Adam, wsd), {len(sizes)} sizes ({params} block "
        f"params), {span}, {len(lad.get('seeds') or [])} seeds]"
    )


def _fit_text(fit: dict[str, Any], unit: str = "") -> str:
    b = fit["coef"]
    ci = fit["coef_ci"]
    size = (
        f", per decade of size {b[2]:+.2g} [{ci[2][0]:+.2g}, {ci[2][1]:+.2g}]"
        if fit.get("size_extrapolated")
        else " (one size: no size trend)"
    )
    return (
        f"trend per decade of tokens {b[1]:+.2g} [{ci[1][0]:+.2g}, {ci[1][1]:+.2g}]{size}{unit}, "
        f"residual SD {fit['resid_sd']:.2g} over {fit['cells']} cells"
    )


def _misspecified(fit: dict[str, Any]) -> str:
    """Why the plane is no basis for an extrapolation (empty when it is): the trend bends in log
    tokens, or its token slope differs by size (each an F test at p < 0.05)."""
    curv, inter = fit.get("curvature_p"), fit.get("interaction_p")
    if curv is not None and curv < 0.05:
        return f"the trend bends (curvature p = {curv:.2g}): no straight-line extrapolation"
    if inter is not None and inter < 0.05:
        return (
            f"the token trend differs by size (interaction p = {inter:.2g}): no plane to "
            "extrapolate"
        )
    return ""


def _beyond_span(fit: dict[str, Any]) -> str:
    """Why the paper's point is too far to decide (empty when it is not): it lies more decades
    beyond the runs, in tokens or in size, than the runs span. The prediction interval is the
    fitted plane's; carried further than it was measured, the plane's shape is an assumption."""
    span, reach = fit.get("span_decades") or {}, fit.get("reach_decades") or {}
    keys = ["tokens"] + (["params"] if fit.get("size_extrapolated") else [])
    far = [
        f"{reach[k]:.1f} decades of {'size' if k == 'params' else k} beyond the runs, which span "
        f"{span[k]:.1f}"
        for k in keys
        if k in span and k in reach and reach[k] > span[k]
    ]
    return ("the paper's point lies " + " and ".join(far)) if far else ""


def _trend_verdict(
    fit: dict[str, Any], paper: float, lo: float, hi: float, width: float
) -> tuple[str, str]:
    """confirmed: the paper's number lies inside the prediction interval at its scale and the
    interval is narrow enough to say (width <= `width`); refuted: outside it, with a measured
    trend (the 95 % CI of the tokens or the size slope excludes 0); not-tested: the trend bends
    (curvature F-test p < 0.05, a straight line is no basis to extrapolate), no size trend was
    measured, the paper's point lies further beyond the runs than they span (`_beyond_span`), the
    interval is too wide, or the metric has not moved over the ladder (a flat line carried
    decades past the runs says where the runs stopped, not where training goes)."""
    bent = _misspecified(fit)
    if bent:
        return "not-tested", bent
    if not fit.get("size_extrapolated"):
        return "not-tested", "measured at one size: no size trend to extrapolate"
    too_far = _beyond_span(fit)
    if too_far:
        side = "inside" if lo <= paper <= hi else "outside"
        return "not-tested", f"the paper's {paper:g} lies {side}, but {too_far}"
    if not lo <= paper <= hi:
        slopes = fit["coef_ci"][1:]
        if not any(a > 0 or b < 0 for a, b in slopes):
            return (
                "not-tested",
                f"the paper's {paper:g} lies outside, but no trend was measured (every slope's "
                "95 % CI contains 0): nothing to extrapolate",
            )
        return "refuted", f"the paper's {paper:g} lies outside"
    if hi - lo > width:
        return "not-tested", f"interval too wide to say (width {hi - lo:.2g} > {width:g})"
    return "confirmed", f"the paper's {paper:g} lies inside"


def verdict_scale_sparsity(agg: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C9 from the ladder: ReLU's largest-layer sparsity, its logit fitted on log tokens and log
    size, extrapolated to the paper's 3.76e9 tokens and 85M block parameters (95 % prediction
    interval); judged by `_trend_verdict` against the paper's 0.90, decidable width 0.2."""
    block = (agg or {}).get("c9") or {}
    fit = block.get("fit") or {}
    series = (block.get("series") or {}).get("sparsity_max") or []
    if not series:
        return "not-tested", "", None
    top = max(r["tokens"] for r in series)
    at_top = ", ".join(
        f"{r['size']} {ci_text(r)}" for r in series if r["tokens"] == top and r.get("n")
    )
    text = f"ReLU largest-layer sparsity {_ladder_note(agg)}: at {top:.0e} tokens {at_top}"
    if not fit.get("ok"):
        return "not-tested", text + f"; no trend fit ({fit.get('reason', '?')})", None
    lo, hi = fit["pi_metric"]
    verdict, why = _trend_verdict(fit, 0.9, lo, hi, SCALE_DECIDABLE_WIDTH["c9"])
    text += (
        f"; logit {_fit_text(fit)}; at the paper's scale {fit['prediction_metric']:.2f} "
        f"[{lo:.2f}, {hi:.2f}] (95 % PI): {why}"
    )
    return verdict, text, {"pi": [lo, hi], "curvature_p": fit.get("curvature_p")}


def verdict_scale_spikes(agg: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C11 from the ladder: ReLU²'s largest spike_max over ReLU's (paired by seed), log10 of the
    ratio fitted on log tokens and log size, extrapolated to the paper's scale; judged by
    `_trend_verdict` against the paper's 25x, decidable when the interval spans <= a factor 10."""
    block = (agg or {}).get("c11") or {}
    fit = block.get("fit") or {}
    series = block.get("series") or []
    if not series:
        return "not-tested", "", None
    top = max(r["tokens"] for r in series)
    at_top = ", ".join(
        f"{r['size']} ×{ci_text(r, 3)}" for r in series if r["tokens"] == top and r.get("n")
    )
    text = f"spike_max ReLU²/ReLU (largest layer) {_ladder_note(agg)}: at {top:.0e} tokens {at_top}"
    if not fit.get("ok"):
        return "not-tested", text + f"; no trend fit ({fit.get('reason', '?')})", None
    lo, hi = fit["pi"]
    verdict, why = _trend_verdict(fit, math.log10(25.0), lo, hi, SCALE_DECIDABLE_WIDTH["c11"])
    why = why.replace(f"{math.log10(25.0):g}", "25×")
    text += (
        f"; log10 ratio {_fit_text(fit)}; at the paper's scale ×{fit['prediction_metric']:.3g} "
        f"[×{10**lo:.3g}, ×{10**hi:.3g}] (95 % PI): {why}"
    )
    return verdict, text, {"pi_ratio": [10**lo, 10**hi], "curvature_p": fit.get("curvature_p")}


def verdict_scale_pairs(agg: dict[str, Any] | None) -> Any:
    """C12 from the ladder, one row per paired comparison loss(a) - loss(b) (the paper says < 0):
    the cell means fitted on log tokens and log size and extrapolated to the paper's scale;
    confirmed when the 95 % prediction interval lies below 0, refuted when above, not-tested
    when it straddles 0, when the trend bends, or when the pair was measured at one size only.
    "GELU² best": confirmed when every GELU² comparison is confirmed, refuted when one is
    refuted, not-tested otherwise."""
    block = (agg or {}).get("c12") or {}
    pairs = block.get("pairs") or {}
    if not pairs:
        return []
    note = _ladder_note(agg)
    out = []
    for key, c in pairs.items():
        fit, series = c.get("fit") or {}, c.get("series") or []
        label = c["label"]
        if not series:
            out.append((key, "not-tested", f"{label} {note}: not measured", {}))
            continue
        top = max(r["tokens"] for r in series)
        at_top = ", ".join(
            f"{r['size']} {ci_text(r, 2)}" for r in series if r["tokens"] == top and r.get("n")
        )
        text = f"{label}, val-loss difference (nats) {note}: at {top:.0e} tokens {at_top}"
        if not fit.get("ok"):
            out.append((key, "not-tested", text + f"; no fit ({fit.get('reason')})", {}))
            continue
        lo, hi = fit["pi"]
        values = [v for r in series for v in r.get("values") or []]
        if values and all(v == 0.0 for v in values):
            # the same seed, data and init: a clip that never engages trains the same network
            out.append(
                (
                    key,
                    "not-tested",
                    f"{label} {note}: identical val loss at every rung and seed ({len(values)} "
                    f"runs): {c['a']} never differed from {c['b']} at these scales (a clip that "
                    "never engages changes nothing)",
                    {"identical": True},
                )
            )
            continue
        if _misspecified(fit):
            verdict, why = "not-tested", _misspecified(fit)
        elif not fit.get("size_extrapolated"):
            verdict, why = "not-tested", "measured at one size: no size trend to extrapolate"
        elif _beyond_span(fit):
            verdict, why = "not-tested", _beyond_span(fit)
        elif hi < 0:
            verdict, why = "confirmed", "below 0"
        elif lo > 0:
            verdict, why = "refuted", "above 0"
        else:
            verdict, why = "not-tested", f"straddles 0 (width {hi - lo:.2g} nats)"
        text += (
            f"; {_fit_text(fit, ' nats')}; at the paper's scale {fit['prediction']:+.3g} "
            f"[{lo:+.3g}, {hi:+.3g}] (95 % PI): {why}"
        )
        out.append((key, verdict, text, {"pi": [lo, hi]}))
    g2 = [v for k, v, _, _ in out if k.startswith("gelu2_vs_")]
    rank = block.get("ranking") or {}
    best = (
        "confirmed"
        if g2 and all(v == "confirmed" for v in g2)
        else "refuted"
        if "refuted" in g2
        else "not-tested"
    )
    out.append(
        (
            "gelu2_best",
            best,
            f"GELU² best: its comparisons {', '.join(g2) or 'none'}; ranking by mean val loss at "
            f"size {rank.get('size')}, {rank.get('tokens', 0):.0e} tokens (lowest first): "
            + ", ".join(rank.get("order") or []),
            {},
        )
    )
    return out


def verdict_scale_topk(agg: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C10 for GPT-nano from the ladder's Top-K GELU runs: retention = dense val loss / Top-K val
    loss, paired by seed (t interval), per level (fraction zeroed) at each token budget. A cliff
    above ~70 %: retention at level 0.5 has its CI above 0.99 and at 0.9 below 0.95. confirmed
    when that holds at every budget; refuted when at every budget level 0.9 keeps its CI above
    0.99 (no cliff up to 90 %) or level 0.5 falls below 0.95 (loss well before 70 %); not-tested
    otherwise, including budgets that disagree (the cliff moves with training length)."""
    block = (agg or {}).get("c10_gpt") or {}
    if not block:
        return "not-tested", "", None
    by_tokens: dict[int, dict[float, dict]] = {}
    for cell in block.values():
        by_tokens.setdefault(int(cell["tokens"]), {})[float(cell["level"])] = cell
    parts, calls = [], []
    for tokens, levels in sorted(by_tokens.items()):
        cells = ", ".join(
            f"{lv:g}: {ci_text(c['retention'], 3)}" for lv, c in sorted(levels.items())
        )
        parts.append(f"{tokens:.0e} tokens: {cells}")
        lo5, hi9 = (
            ci_bounds((levels.get(0.5) or {}).get("retention")),
            ci_bounds((levels.get(0.9) or {}).get("retention")),
        )
        if lo5 is None or hi9 is None:
            calls.append("not-tested")
        elif lo5[0] >= 0.99 and hi9[1] < 0.95:
            calls.append("confirmed")
        elif hi9[0] >= 0.99 or lo5[1] < 0.95:
            calls.append("refuted")
        else:
            calls.append("not-tested")
    verdict = calls[0] if calls and len(set(calls)) == 1 else "not-tested"
    sizes = sorted({c["size"] for c in block.values()})
    text = (
        f"Top-K GELU retention (dense loss / Top-K loss) by level zeroed, GPT-nano size "
        f"{', '.join(sizes)} {_ladder_note(agg)}: " + "; ".join(parts)
    )
    if len(set(calls)) > 1:
        text += f" (budgets disagree: {', '.join(calls)})"
    crit = (agg or {}).get("c10_gpt_critical") or {}
    shown = []
    for tokens, cell in sorted(crit.items(), key=lambda kv: int(kv[0])):
        parts_t = []
        for thr in ("0.99", "0.95"):
            c = cell.get(thr) or {}
            if c.get("mean") is not None and ci_bounds(c):
                parts_t.append(f"{float(thr):.0%}: {ci_text(c, 2)}")
            else:
                per = c.get("per_seed") or []
                vals = [p.get("value") for p in per if p.get("value") is not None]
                cens = {p.get("censored") for p in per}
                if vals and cens == {"above"}:
                    rng = f"≥ {min(vals):.2f} (kept at every level measured)"
                elif vals and cens == {"below"}:
                    rng = f"< {max(vals):.2f} (lost at the first level)"
                elif vals:
                    rng = f"{min(vals):.2f}–{max(vals):.2f} over seeds (some censored)"
                else:
                    rng = "n/a"
                parts_t.append(f"{float(thr):.0%}: {rng}")
        shown.append(f"{int(tokens):.0e} tokens " + ", ".join(parts_t))
    if shown:
        text += "; critical sparsity " + "; ".join(shown)
    return verdict, text, {"per_budget": calls}
