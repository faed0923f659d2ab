"""GeoClusteringTree: recovers a planted high-WER rectangle; search, exclusions and prediction behave."""

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from fairspeech.cohorts import CannotDiscover, GeoClusteringTree
from fairspeech.cohorts import synthetic as syn
from fairspeech.cohorts.geo_tree import _NodeSearch, thin
from fairspeech.data.speakers import speaker_table


def planted_speakers(seed: int, **kwargs) -> tuple[pd.DataFrame, syn.PlantedCorpus]:
    corpus = syn.planted_map(seed=seed, **kwargs)
    return speaker_table(corpus.utterances, ["lat", "lon"]), corpus


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_worst_region_recovers_planted_rectangle(seed):
    speakers, corpus = planted_speakers(seed)
    tree = GeoClusteringTree(seed=seed).fit(speakers)
    worst = tree.regions_.iloc[0]  # ranked by WER
    assert worst["rank"] == 1 and tree.bottom_cohort_ == tree.regions_.index[0]
    plant = box(*corpus.truth["plant_box"])
    iou = worst.geometry.intersection(plant).area / worst.geometry.union(plant).area
    assert iou >= 0.8, (iou, worst["description"])
    assert tree.significant_ and tree.p_value_ <= 0.05
    assert tree.regions_.crs.to_epsg() == 4326
    # Every region respects the size floor, and regions tile the fitted speakers exactly once.
    assert (tree.regions_["speakers"] >= tree.min_speakers).all()
    assert tree.regions_["speakers"].sum() == tree.n_speakers_ == len(speakers)


def test_search_matches_brute_force_gain():
    speakers, _ = planted_speakers(5, n_speakers=300)
    coords = speakers[["lon", "lat"]].to_numpy()
    e, w = speakers["errors"].to_numpy(float), speakers["ref_words"].to_numpy(float)
    orders = tuple(np.argsort(coords[:, a], kind="stable") for a in (0, 1))
    axis, threshold, gain = _NodeSearch(coords, e, w, orders, min_speakers=15, max_cuts=1024).best_cut()

    def brute(a, t):
        left = coords[:, a] <= t
        if min(left.sum(), (~left).sum()) < 15:
            return -1.0
        wl, wr = w[left].sum(), w[~left].sum()
        return wl * wr / w.sum() * (e[left].sum() / wl - e[~left].sum() / wr) ** 2

    candidates = [(brute(a, t), a, t) for a in (0, 1) for t in np.unique(coords[:, a])]
    best = max(candidates)
    assert gain == pytest.approx(best[0], rel=1e-9)
    assert axis == best[1]
    assert brute(axis, threshold) == pytest.approx(gain, rel=1e-9)


def test_thinned_cuts_are_an_even_subset_and_the_search_scores_exactly_those():
    cuts = np.arange(10, 990)
    kept = thin(cuts, 64)
    assert len(kept) == 64 and kept[0] == cuts[0] and kept[-1] == cuts[-1] and np.isin(kept, cuts).all()
    assert np.array_equal(thin(cuts, 5000), cuts)
    speakers, _ = planted_speakers(8, n_speakers=400)
    coords = speakers[["lon", "lat"]].to_numpy()
    e, w = speakers["errors"].to_numpy(float), speakers["ref_words"].to_numpy(float)
    orders = tuple(np.argsort(coords[:, a], kind="stable") for a in (0, 1))
    search = _NodeSearch(coords, e, w, orders, min_speakers=10, max_cuts=16)
    for axis in (0, 1):
        gains = search.axis_gains(search.errors[None, :], search.words[None, :], axis)[0]
        assert len(gains) == len(search.thresholds[axis]) == 16
        for threshold, gain in zip(search.thresholds[axis], gains):
            left = coords[:, axis] <= threshold
            wl, wr = w[left].sum(), w[~left].sum()
            assert gain == pytest.approx(wl * wr / w.sum() * (e[left].sum() / wl - e[~left].sum() / wr) ** 2, rel=1e-9)


def test_predict_reproduces_fitted_labels_and_thresholds():
    speakers, _ = planted_speakers(3)
    tree = GeoClusteringTree(seed=3).fit(speakers)
    assert tree.predict(speakers).equals(tree.labels_)
    # Points inside a region's rectangle are predicted into it, also for unseen coordinates.
    region = tree.regions_.iloc[0]
    centre = pd.DataFrame(
        {"lon": [(region["lon_min"] + region["lon_max"]) / 2], "lat": [(region["lat_min"] + region["lat_max"]) / 2],
         "errors": [1], "ref_words": [10], "utterances": [1]},
        index=pd.Index(["new"], name="speaker_id"),
    )
    assert tree.predict(centre).iloc[0] == tree.regions_.index[0]


def test_speakers_without_usable_coordinates_are_counted_and_excluded():
    speakers, _ = planted_speakers(4, n_speakers=600)
    speakers = speakers.copy()
    speakers.iloc[:7, speakers.columns.get_loc("lat")] = np.nan
    speakers.iloc[7:10, speakers.columns.get_loc("lon")] = 250.0
    speakers.iloc[10:12, speakers.columns.get_loc("ref_words")] = 0
    speakers.iloc[10:12, speakers.columns.get_loc("errors")] = 0
    tree = GeoClusteringTree(n_permutations=49).fit(speakers)
    assert tree.excluded_ == {"invalid_coordinates": 3, "missing_coordinates": 7, "no_reference_words": 2}
    assert tree.labels_.isna().sum() == 12 and tree.n_speakers_ == len(speakers) - 12
    assert tree.predict(speakers).isna().sum() == 12


def test_growth_limits_and_forced_splits():
    speakers, _ = planted_speakers(6, n_speakers=800)
    forced = GeoClusteringTree(n_permutations=0, max_regions=5, min_speakers=30).fit(speakers)
    assert len(forced.regions_) == 5 and forced.splits_["accepted"].all()
    assert forced.significant_ is None  # untested
    assert (forced.regions_["speakers"] >= 30).all()
    with pytest.raises(CannotDiscover):
        GeoClusteringTree(min_speakers=500).fit(speakers)


def test_regions_are_rectangles_that_tile_the_bounding_box():
    speakers, _ = planted_speakers(7)
    tree = GeoClusteringTree(seed=7).fit(speakers)
    union = tree.regions_.geometry.union_all()
    bbox = box(speakers["lon"].min(), speakers["lat"].min(), speakers["lon"].max(), speakers["lat"].max())
    assert union.symmetric_difference(bbox).area < 1e-9
    assert sum(region.area for region in tree.regions_.geometry) == pytest.approx(bbox.area)
