"""A single self-contained HTML report (figures inlined as PNG) from an audit's JSON-ready data."""

from __future__ import annotations

import base64
import html

import pandas as pd

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:13px;margin:.6em 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f4f6f7} td:first-child,th:first-child{text-align:left} .note{color:#555;font-size:13px}
img{max-width:100%;border:1px solid #eee;margin:.5em 0} .sig{color:#c0392b;font-weight:600}
"""

DEFINITIONS = """
<ul class="note">
<li><b>WER</b> = sum of errors (substitutions + deletions + insertions) / sum of reference words over a cohort's
utterances; never a mean of per-utterance WERs. Text is normalized identically on both sides (settings below).</li>
<li><b>Interval</b> of a WER: Student-t interval (log scale; degrees of freedom: the effective number of speakers, weighted by their words) from a jackknife that leaves
out one speaker at a time (utterances of one speaker are correlated); it keeps its level in 5-speaker cohorts, where a
percentile bootstrap does not. Differences and ratios to overall: Student-t interval from a jackknife of
log(WER(cohort) / WER(overall)), leaving one speaker out of both at once (the cohort's speakers are part of the overall).</li>
<li><b>p</b>: speaker-level permutation test of |WER(cohort) - WER(rest)|; <b>p adj.</b>: Benjamini-Hochberg within the table.</li>
<li><b>Global test</b>: one permutation p-value per table for "no cohort differs", from the largest standardized
|WER(cohort) - WER(rest)| over the reported cohorts.</li>
<li><b>Gap</b>: worst minus best reported cohort. Worst and best were picked after looking at the data, so its interval is
simultaneous over every pair of reported cohorts (max-t) and holds for the picked pair; the <i>naive</i> bootstrap interval
of that one pair is shown for reference only: selected after looking; not a test.</li>
<li>Cohorts with fewer speakers than the minimum are not shown one by one; they are counted as suppressed and
still count in the overall figures.</li>
</ul>
"""


def _pct(value) -> str:
    return "" if value is None or value != value else f"{100 * value:.2f}"


def _num(value, spec: str = ".2f") -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def _img(figures: dict[str, bytes], name: str) -> str:
    if name not in figures:
        return ""
    data = base64.b64encode(figures[name]).decode()
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def _cohort_table(table: dict) -> str:
    rows = []
    for c in table["cohorts"]:
        sig = ' class="sig"' if c.get("significant") else ""
        rows.append(
            f"<tr><td{sig}>{html.escape(str(c['cohort']))}</td><td>{c['speakers']}</td><td>{c['utterances']}</td>"
            f"<td>{c['ref_words']}</td><td>{_pct(c['wer'])}</td><td>{_pct(c['wer_low'])} - {_pct(c['wer_high'])}</td>"
            f"<td>{_pct(c['diff_overall'])}</td><td>{_num(c['ratio_overall'], '.3f')}</td><td>{_pct(c.get('diff_best'))}</td>"
            f"<td>{_num(c['p_value'], '.4f')}</td><td>{_num(c['p_adjusted'], '.4f')}</td></tr>"
        )
    head = (
        "<tr><th>cohort</th><th>speakers</th><th>utts</th><th>words</th><th>WER %</th><th>95% interval</th>"
        "<th>diff to overall (pts)</th><th>ratio to overall</th><th>diff to best (pts)</th><th>p</th><th>p adj.</th></tr>"
    )
    gap = table.get("gap")
    gap_html = ""
    if gap:
        gap_html = (
            f"<p>Gap: <b>{html.escape(gap['worst'])}</b> {_pct(gap['wer_worst'])}% vs <b>{html.escape(gap['best'])}</b> "
            f"{_pct(gap['wer_best'])}%: difference {_pct(gap['difference'])} pts "
            f"[{_pct(gap['difference_low'])}, {_pct(gap['difference_high'])}], ratio {_num(gap['ratio'])} "
            f"[{_num(gap['ratio_low'])}, {_num(gap['ratio_high'])}] (simultaneous intervals, adjusted for the selection).</p>"
            f"<p class='note'>Naive (selected after looking; not a test): difference "
            f"[{_pct(gap['naive_difference_low'])}, {_pct(gap['naive_difference_high'])}], ratio "
            f"[{_num(gap['naive_ratio_low'])}, {_num(gap['naive_ratio_high'])}].</p>"
        )
    test = table.get("global_test")
    if test:
        gap_html += (
            f"<p>Global test, no cohort differs: <b>p = {_num(test['p_value'], '.4f')}</b> "
            f"(max-statistic permutation test, {test['n_permutations']} permutations of cohort labels over speakers).</p>"
        )
    s = table["suppressed"]
    suppressed = (
        f"<p class='note'>Suppressed (fewer than {table['settings']['min_speakers']} speakers): {s['cohorts']} cohorts, "
        f"{s['speakers']} speakers, {s['utterances']} utterances.</p>"
    )
    return f"<table>{head}{''.join(rows)}</table>{gap_html}{suppressed}"


def _frame_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, na_rep="")


def render_report(result, data: dict, figures: dict[str, bytes]) -> str:
    """HTML for an :class:`~fairspeech.audit.AuditResult` (``data`` is its ``to_dict()``)."""
    inp, overall, settings = data["input"], data["overall"], data["settings"]
    exclusions = "".join(f"<li>{html.escape(r)}: {n}</li>" for r, n in inp["exclusions"].items()) or "<li>none</li>"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>fairspeech audit</title><style>{_CSS}</style></head><body>",
        "<h1>fairspeech audit</h1>",
        f"<p class='note'>{html.escape(inp['path'])} ({inp['format']}): {inp['utterances']} utterances, "
        f"{inp['speakers']} speakers; seed {settings['seed']}, {settings['n_boot']} bootstrap replicates, "
        f"{settings['n_permutations']} permutations; fairspeech {data['fairspeech_version']}.</p>",
        f"<h2>Overall</h2><p>WER <b>{_pct(overall['wer'])}%</b> [{_pct(overall['wer_low'])}, {_pct(overall['wer_high'])}] "
        f"over {overall['ref_words']} reference words.</p>",
        f"<p>Excluded rows: {inp['excluded_rows']}</p><ul class='note'>{exclusions}</ul>",
        DEFINITIONS,
    ]
    for table in data["cohort_tables"]:
        name = f"wer_by_{'_x_'.join(table['by'])}.png"
        parts.append(f"<h2>By {html.escape(table['name'])}</h2>{_img(figures, name)}{_cohort_table(table)}")
    discovery = getattr(result, "discovery", None)
    if discovery is not None:
        parts.append("<h2>Discovered cohorts</h2>")
        definitions = data["discovery"].get("definitions") if isinstance(data.get("discovery"), dict) else None
        if definitions:
            parts.append("<ul class='note'>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in definitions.items()) + "</ul>")
        parts.append(_frame_html(discovery.comparison))
        if getattr(discovery, "agreement", None) is not None and len(discovery.agreement):
            parts.append("<p>Agreement between methods (adjusted Rand index of speaker assignments):</p>")
            parts.append(discovery.agreement.to_html(float_format=lambda v: f"{v:.3f}", border=0))
        for name in figures:
            if name.startswith("discovery_"):
                parts.append(_img(figures, name))
    parts.append(
        f"<h2>Settings</h2><pre>{html.escape(str(settings))}</pre></body></html>"
    )
    return "\n".join(parts)
