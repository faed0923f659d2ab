"""GeoClusteringTree: rectangular map regions where the model does worst, by recursive binary splits.

Each node's speakers are sorted once per axis (longitude, latitude), and children inherit their
parent's orders by filtering, never re-sorting. Along a sorted axis, prefix sums of errors and words
score every cut in one pass, so a node's best split costs O(speakers) after sorting. Large nodes
score at most ``max_cuts`` candidate cuts per axis, evenly spaced in speaker rank (at 100k speakers
one every ~100 speakers; exact below ``max_cuts`` distinct cuts). Splits maximize the word-weighted
gain of ``search.partition_gain`` (not the raw WER difference, which would chase tiny noisy
regions), with at least ``min_speakers`` speakers a side.

Growth is best-first: the leaf whose best split has the highest gain is tested next, with a
max-statistic permutation test that shuffles the node's speakers' (errors, words) and re-runs the
whole search over both axes. A significant split (p <= alpha) is made; a leaf whose best split is
not significant stays a leaf. Growth ends at ``max_regions`` leaves or when no leaf can be split.
``n_permutations=0`` turns the test off (every best split is made), e.g. to study selection bias.

A cut at threshold t sends coordinate <= t to the left child; t is the midpoint between the two
speakers it separates. Regions are the leaves' rectangles, bounded outside by the fitted speakers'
bounding box; ``predict`` descends the same thresholds, so a speaker outside the box still lands in
the region its side of every cut points to.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import box

from fairspeech.cohorts.base import CohortDiscoverer, records
from fairspeech.cohorts.search import PermutationTest, partition_gain, permutation_test, valid_cuts
from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs

AXES = (schema.LON, schema.LAT)  # axis 0 is x (longitude), axis 1 is y (latitude)
CRS = "EPSG:4326"


def thin(cuts: np.ndarray, max_cuts: int) -> np.ndarray:
    """At most ``max_cuts`` of the sorted candidate cuts, evenly spaced among them."""
    if len(cuts) <= max_cuts:
        return cuts
    return cuts[np.unique(np.linspace(0, len(cuts) - 1, max_cuts).round().astype(np.int64))]


class _NodeSearch:
    """The best-split search of one node, runnable on the observed and on permuted (errors, words).

    Candidate cuts per axis are the valid ones (``min_speakers`` a side, between distinct coordinates),
    thinned to ``max_cuts`` evenly spaced in speaker rank (histogram-style split finding as in
    LightGBM; exact when a node has fewer). Speakers between consecutive candidate cuts form a
    segment: one bincount per row and axis gives segment sums, whose prefix sums score every cut.
    """

    def __init__(self, coords: np.ndarray, errors: np.ndarray, words: np.ndarray, orders: tuple, min_speakers: int, max_cuts: int):
        lon_order, lat_order = orders
        size = len(lon_order)
        # Per-speaker sums in longitude order; permutations shuffle these positions.
        self.errors = errors[lon_order]
        self.words = words[lon_order]
        rank = np.empty(coords.shape[0], dtype=np.int64)
        rank[lon_order] = np.arange(size)
        position_of = (np.arange(size), rank[lat_order])  # per axis: position of the speaker at each rank
        self.segments, self.thresholds = [], []
        for axis, order in enumerate(orders):
            values = coords[order, axis]
            cuts = thin(valid_cuts(values, min_speakers), max_cuts)
            segment = np.empty(size, dtype=np.int64)
            segment[position_of[axis]] = np.searchsorted(cuts, np.arange(size), side="left")
            self.segments.append(segment)
            self.thresholds.append((values[cuts] + values[cuts + 1]) / 2)

    def axis_gains(self, errors: np.ndarray, words: np.ndarray, axis: int) -> np.ndarray:
        """(rows, cuts) gains of the candidate cuts along ``axis`` for each row of per-speaker sums."""
        segment, n_cuts = self.segments[axis], len(self.thresholds[axis])
        e_segments = np.stack([np.bincount(segment, weights=row, minlength=n_cuts + 1) for row in errors])
        w_segments = np.stack([np.bincount(segment, weights=row, minlength=n_cuts + 1) for row in words])
        e_left = np.cumsum(e_segments[:, :n_cuts], axis=1)
        w_left = np.cumsum(w_segments[:, :n_cuts], axis=1)
        return partition_gain(e_left, w_left, e_segments.sum(axis=1, keepdims=True), w_segments.sum(axis=1, keepdims=True))

    def best_gain(self, errors: np.ndarray, words: np.ndarray) -> np.ndarray:
        best = np.zeros(errors.shape[0])
        for axis in (0, 1):
            if len(self.thresholds[axis]):
                best = np.maximum(best, self.axis_gains(errors, words, axis).max(axis=1))
        return best

    def best_cut(self) -> tuple[int, float, float] | None:
        """(axis, threshold, gain) of the observed best split; None when no cut is allowed."""
        best = None
        for axis in (0, 1):
            if not len(self.thresholds[axis]):
                continue
            gains = self.axis_gains(self.errors[None, :], self.words[None, :], axis)[0]
            i = int(np.argmax(gains))
            if best is None or gains[i] > best[2]:
                best = (axis, float(self.thresholds[axis][i]), float(gains[i]))
        return best


@dataclass
class _Node:
    path: str  # "" for the root, then "L"/"R" per level: names the node's random stream
    bounds: tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max
    orders: tuple[np.ndarray, np.ndarray]  # the node's speakers sorted by longitude, by latitude
    axis: int = -1
    threshold: float = np.nan
    children: tuple[int, int] = (-1, -1)
    test: PermutationTest | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.orders[0])


class GeoClusteringTree(CohortDiscoverer):
    """Axis-aligned geographic regions ranked by WER; see the module docstring.

    Learned: ``labels_`` (region per speaker), ``cohorts_`` (regions ranked by WER), ``regions_``
    (GeoDataFrame of region rectangles, EPSG:4326), ``splits_`` (every split tested, with its gain,
    p-value and whether it was made), ``bottom_cohort_``, ``p_value_`` (the largest p-value among
    the splits that carve out the bottom region: each had to pass; the root test's when no split).
    """

    method = "geo"
    features = AXES

    def __init__(
        self,
        min_speakers: int = 20,
        max_regions: int = 8,
        n_permutations: int = 199,
        alpha: float = 0.05,
        max_cuts: int = 1024,
        seed: int = 0,
    ):
        self.min_speakers = min_speakers
        self.max_regions = max_regions
        self.max_cuts = max_cuts
        self.n_permutations = n_permutations
        self.alpha = alpha
        self.seed = seed

    # -- exclusions -------------------------------------------------------------------------
    def _exclusion_reasons(self, speakers: pd.DataFrame) -> dict[str, np.ndarray]:
        lon, lat = (pd.to_numeric(speakers[c], errors="coerce").to_numpy(np.float64) for c in AXES)
        missing = np.isnan(lon) | np.isnan(lat)
        with np.errstate(invalid="ignore"):
            invalid = ~missing & ((np.abs(lon) > 180) | (np.abs(lat) > 90))
        return {"missing_coordinates": missing, "invalid_coordinates": invalid}

    @staticmethod
    def _coords(speakers: pd.DataFrame) -> np.ndarray:
        return np.column_stack([pd.to_numeric(speakers[c], errors="coerce").to_numpy(np.float64) for c in AXES])

    # -- fitting ----------------------------------------------------------------------------
    def _fit(self, speakers: pd.DataFrame) -> tuple[np.ndarray, dict[int, str]]:
        coords = self._coords(speakers)
        errors = speakers[schema.ERRORS].to_numpy(np.float64)
        words = speakers[schema.REF_WORDS].to_numpy(np.float64)
        orders = tuple(np.argsort(coords[:, axis], kind="stable") for axis in (0, 1))
        bounds = (*coords.min(axis=0), *coords.max(axis=0))
        self._nodes = [_Node("", bounds, orders)]
        self._grow(coords, errors, words)
        codes = self._leaf_codes(self._descend(coords))
        self.fitted_points_ = coords  # lon/lat of the fitted speakers, for maps
        return codes, {region: self._describe_region(self._nodes[i]) for region, i in self._regions()}

    def _grow(self, coords: np.ndarray, errors: np.ndarray, words: np.ndarray) -> None:
        """Best-first growth: test the leaf with the highest-gain split, split it if significant."""
        self._splits = []
        frontier: list[tuple[float, int, _NodeSearch, tuple]] = []

        def consider(node_id: int) -> None:
            search = _NodeSearch(coords, errors, words, self._nodes[node_id].orders, self.min_speakers, self.max_cuts)
            cut = search.best_cut()
            if cut is not None:
                heapq.heappush(frontier, (-cut[2], node_id, search, cut))

        consider(0)
        leaves = 1
        while frontier and leaves < self.max_regions:
            _, node_id, search, (axis, threshold, gain) = heapq.heappop(frontier)
            node = self._nodes[node_id]
            test = self._test(node, search)
            accepted = test is None or test.p_value <= self.alpha
            self._record_split(node, axis, threshold, gain, test, accepted, coords)
            if not accepted:
                continue
            node.axis, node.threshold, node.test = axis, threshold, test
            node.children = self._split(node, coords)
            leaves += 1
            for child in node.children:
                consider(child)

    def _test(self, node: _Node, search: _NodeSearch) -> PermutationTest | None:
        if self.n_permutations <= 0:
            return None
        rng = bs.stream(self.seed, f"geo-split/{node.path}")
        return permutation_test(search.errors, search.words, search.best_gain, self.n_permutations, rng, self.alpha)

    def _split(self, node: _Node, coords: np.ndarray) -> tuple[int, int]:
        goes_left = np.zeros(coords.shape[0], dtype=bool)
        members = node.orders[0]
        goes_left[members] = coords[members, node.axis] <= node.threshold
        children = []
        for side, keep in (("L", True), ("R", False)):
            orders = tuple(order[goes_left[order] == keep] for order in node.orders)
            bounds = list(node.bounds)
            bounds[node.axis + (2 if keep else 0)] = node.threshold  # left: new max; right: new min
            self._nodes.append(_Node(node.path + side, tuple(bounds), orders))
            children.append(len(self._nodes) - 1)
        return tuple(children)

    def _record_split(self, node, axis, threshold, gain, test, accepted, coords) -> None:
        members = node.orders[0]
        left = int(np.count_nonzero(coords[members, axis] <= threshold))
        self._splits.append(
            {
                "node": node.path or "root",
                "depth": len(node.path),
                "axis": AXES[axis],
                "threshold": threshold,
                "gain": gain,
                "speakers": node.size,
                "speakers_left": left,
                "speakers_right": node.size - left,
                "p_value": np.nan if test is None else test.p_value,
                "permutations": 0 if test is None else test.permutations,
                "accepted": bool(accepted),
            }
        )

    # -- regions ----------------------------------------------------------------------------
    def _regions(self) -> list[tuple[int, int]]:
        """(region, node id) of the leaves in depth-first, left-first order, regions numbered 0..R-1."""
        leaves, stack = [], [0]
        while stack:
            node_id = stack.pop()
            if self._nodes[node_id].children[0] < 0:
                leaves.append(node_id)
            else:
                stack.extend(reversed(self._nodes[node_id].children))
        return list(enumerate(leaves))

    def _descend(self, coords: np.ndarray) -> np.ndarray:
        """Node id of the leaf each point falls in (children always have larger ids than parents)."""
        at = np.zeros(coords.shape[0], dtype=np.int64)
        for node_id, node in enumerate(self._nodes):
            if node.children[0] < 0:
                continue
            here = at == node_id
            left = coords[here, node.axis] <= node.threshold
            at[here] = np.where(left, node.children[0], node.children[1])
        return at

    def _leaf_codes(self, leaf_nodes: np.ndarray) -> np.ndarray:
        region_of = np.full(len(self._nodes), -1, dtype=np.int64)
        for region, node_id in self._regions():
            region_of[node_id] = region
        return region_of[leaf_nodes]

    @staticmethod
    def _describe_region(node: _Node) -> str:
        lon_min, lat_min, lon_max, lat_max = node.bounds
        return f"lon {lon_min:.2f}..{lon_max:.2f}, lat {lat_min:.2f}..{lat_max:.2f}"

    def _predict(self, speakers: pd.DataFrame) -> np.ndarray:
        return self._leaf_codes(self._descend(self._coords(speakers)))

    def _p_value(self) -> float:
        if self.bottom_cohort_ is None:  # no split was made: report the root test
            return self._splits[0]["p_value"] if self._splits else np.nan
        leaf = self._nodes[dict(self._regions())[self.bottom_cohort_]]
        path_tests = [n.test for n in self._nodes if n.children[0] >= 0 and leaf.path.startswith(n.path)]
        return max((t.p_value for t in path_tests if t is not None), default=np.nan)

    def fit(self, speakers: pd.DataFrame, y=None):
        super().fit(speakers)
        self.splits_ = pd.DataFrame(self._splits)
        self.regions_ = self._region_frame()
        return self

    def _region_frame(self) -> gpd.GeoDataFrame:
        bounds = [self._nodes[node_id].bounds for _, node_id in self._regions()]
        frame = self.cohorts_.copy()
        for i, name in enumerate(("lon_min", "lat_min", "lon_max", "lat_max")):
            frame[name] = [b[i] for b in bounds]
        geometry = [box(*b) for b in bounds]
        return gpd.GeoDataFrame(frame, geometry=geometry, crs=CRS).sort_values("rank")

    def details(self) -> dict:
        return {"regions": int(len(self.cohorts_)), "splits": records(self.splits_)}
