"""Figures of the discovery report: the region map and WER bars with bootstrap whiskers.

Built on ``matplotlib.figure.Figure`` directly (no pyplot), so nothing accumulates in pyplot's global
state when an audit makes many figures; save with ``figure.savefig(path)``. geopandas ships no
basemap and no state outlines are available offline: the map shows region rectangles and speakers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from fairspeech.cohorts.base import BOTTOM, TOP
from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs

ROLE_COLOURS = {BOTTOM: "#c0392b", TOP: "#27ae60"}
OTHER_COLOUR = "#95a5a6"
_MAX_POINTS = 20_000


def overall_wer(cohorts: pd.DataFrame) -> float:
    return bs.ratio(cohorts[schema.ERRORS].sum(), cohorts[schema.REF_WORDS].sum()).item()


def region_map(regions: pd.DataFrame, points: np.ndarray | None = None, *, title: str = "WER by region", seed: int = 0) -> Figure:
    """Region rectangles (lon_min/lat_min/lon_max/lat_max, wer, rank) coloured by WER, speakers as dots."""
    figure = Figure(figsize=(9, 6), layout="constrained")
    ax = figure.add_subplot()
    norm = Normalize(vmin=float(regions["wer"].min()), vmax=float(regions["wer"].max()) or 1.0)
    cmap = colormaps["YlOrRd"]
    for _, region in regions.iterrows():
        width, height = region["lon_max"] - region["lon_min"], region["lat_max"] - region["lat_min"]
        ax.add_patch(
            Rectangle((region["lon_min"], region["lat_min"]), width, height, facecolor=cmap(norm(region["wer"])),
                      edgecolor="black", linewidth=1.0, alpha=0.75, zorder=1)
        )
        ax.annotate(f"#{region['rank']}\n{region['wer']:.1%}", (region["lon_min"] + width / 2, region["lat_min"] + height / 2),
                    ha="center", va="center", fontsize=8, zorder=3)
    if points is not None and len(points):
        if len(points) > _MAX_POINTS:  # a seeded subsample keeps the PNG light
            points = points[np.sort(bs.stream(seed, "map-points").choice(len(points), _MAX_POINTS, replace=False))]
        ax.scatter(points[:, 0], points[:, 1], s=2, color="black", alpha=0.35, linewidths=0, zorder=2)
    ax.set_xlim(regions["lon_min"].min(), regions["lon_max"].max())
    ax.set_ylim(regions["lat_min"].min(), regions["lat_max"].max())
    mean_lat = np.deg2rad((regions["lat_min"].min() + regions["lat_max"].max()) / 2)
    ax.set_aspect(1 / max(np.cos(mean_lat), 0.1))  # degrees of longitude shrink with latitude
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title)
    figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="WER", format=PercentFormatter(1.0), shrink=0.8)
    return figure


def cohort_bars(cohorts: pd.DataFrame, *, title: str) -> Figure:
    """Cohort WERs (worst first) with bootstrap whiskers; bottom red, top green; dashed line = overall WER."""
    table = cohorts.sort_values("wer", ascending=False, kind="stable")
    figure = Figure(figsize=(max(5.0, 0.7 * len(table) + 2), 4.5), layout="constrained")
    ax = figure.add_subplot()
    x = np.arange(len(table))
    wer = table["wer"].to_numpy(np.float64)
    whiskers = np.nan_to_num(np.vstack([wer - table["wer_low"].to_numpy(np.float64), table["wer_high"].to_numpy(np.float64) - wer]))
    colours = [ROLE_COLOURS.get(role, OTHER_COLOUR) for role in table["role"].fillna("")]
    ax.bar(x, wer, color=colours, yerr=whiskers, capsize=4, edgecolor="black", linewidth=0.5)
    ax.axhline(overall_wer(table), color="black", linestyle="--", linewidth=1, label="all included speakers")
    ax.set_xticks(x, [f"{d}\n({n} spk)" for d, n in zip(table["description"], table["speakers"])], rotation=30, ha="right", fontsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("WER (95% speaker-bootstrap interval)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return figure
