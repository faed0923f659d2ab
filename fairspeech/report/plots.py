"""Figures for the audit report (matplotlib, no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fairspeech.metrics.cohort_frame import CohortFrame, _label  # noqa: E402


def cohort_bars(frame: CohortFrame, title: str | None = None) -> plt.Figure:
    """Horizontal bars of cohort WER (worst on top) with interval whiskers and the overall line."""
    table = frame.by_group.sort_values("wer")
    labels = [_label(i) for i in table.index]
    wer = table["wer"].to_numpy() * 100
    low = table["wer_low"].to_numpy() * 100
    high = table["wer_high"].to_numpy() * 100
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.32 * max(len(labels), 2)))
    colors = np.where(table.get("significant", False), "#c0392b", "#7f8c8d")
    ax.barh(labels, wer, color=colors, alpha=0.85)
    ax.errorbar(wer, labels, xerr=[wer - low, high - wer], fmt="none", ecolor="black", capsize=3, lw=1)
    overall = frame.overall["wer"] * 100
    ax.axvline(overall, color="#2c3e50", ls="--", lw=1, label=f"overall {overall:.1f}%")
    ax.set_xlabel(f"WER % ({int((1 - frame.alpha) * 100)}% speaker-jackknife t interval)")
    ax.set_title(title or f"WER by {frame.name}  (red: significant after BH)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def png_bytes(fig: plt.Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
