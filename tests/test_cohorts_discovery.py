"""run_discovery end to end: one report shape for all methods, exclusions by reason, determinism, outputs."""

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from fairspeech.cohorts import run_discovery
from fairspeech.cohorts import synthetic as syn
from fairspeech.cohorts.report import DEFINITIONS

METHODS = ["geo", "geodemo", "embedding"]
FAST = {"n_boot": 200, "n_permutations": 99}


def combined_corpus(seed: int = 0, n: int = 900):
    """Voice cluster 0 is under-served; coordinates and zips are drawn independently of WER.

    5 speakers lose their coordinates and 4 their embedding; the zip generator leaves some without a
    zip and gives some a zip missing from the table.
    """
    voices = syn.planted_clusters(n_speakers=n, seed=seed, k=5)
    coords = syn.planted_map(n_speakers=n, seed=seed + 1).utterances.groupby("speaker_id")[["lat", "lon"]].first()
    zips = syn.planted_zips(n_speakers=n, seed=seed + 2)
    zip_of = zips.utterances.groupby("speaker_id")["zip"].first()
    coords.iloc[:5] = np.nan
    utterances = voices.utterances.join(coords, on="speaker_id").join(zip_of, on="speaker_id")
    embeddings = voices.embeddings.drop(index=voices.embeddings.index[10:14])
    return utterances, zips.zip_attributes, embeddings, voices


@pytest.fixture(scope="module")
def corpus():
    return combined_corpus()


@pytest.fixture(scope="module")
def result(corpus):
    utterances, table, embeddings, _ = corpus
    return run_discovery(utterances, ",".join(METHODS), zip_attributes=table, embeddings=embeddings, seed=0, embedding={"k": 5}, **FAST)


def test_every_method_reported_side_by_side(result, corpus):
    assert result.comparison["method"].tolist() == METHODS
    for column in ("wer_gap_pct", "honest_gap_pct", "bottom_share_speakers_pct", "bottom_share_utterances_pct", "p_value"):
        assert column in result.comparison.columns
    row = result.comparison.set_index("method").loc["embedding"]
    assert row["significant"] and row["wer_gap_pct"] > 30 and row["honest_gap_pct"] > 30
    assert row["honest_gap_low_pct"] <= row["honest_gap_pct"] <= row["honest_gap_high_pct"]
    # The voice plant is found, and the bottom cluster is the planted one.
    voices = corpus[3]
    bottom = result.assignments.set_index("speaker_id")["embedding_is_bottom"].dropna().astype(bool)
    assert adjusted_rand_score(voices.planted.loc[bottom.index], bottom) > 0.9
    assert list(result.agreement.index) == METHODS and np.allclose(np.diag(result.agreement), 1)
    assert "| embedding | cluster" in result.markdown()


def test_exclusions_are_counted_by_reason(result, corpus):
    utterances = corpus[0]
    speakers = utterances.groupby("speaker_id").first()
    report = result.to_dict()["methods"]
    assert report["geo"]["excluded"] == {"missing_coordinates": 5}
    assert report["embedding"]["excluded"] == {"missing_embedding": 4}
    geodemo = report["geodemo"]["excluded"]
    assert geodemo["missing_zip"] == speakers["zip"].isna().sum() > 0
    assert geodemo["zip_not_in_table"] == (speakers["zip"] == "99999").sum() > 0
    for name in METHODS:
        assert report[name]["speakers_included"] + sum(report[name]["excluded"].values()) == len(speakers)
        assert result.assignments[name].isna().sum() == sum(report[name]["excluded"].values())


def test_outputs_are_json_ready_with_definitions_figures_and_regions(result, tmp_path):
    payload = result.to_dict()
    text = json.dumps(payload, allow_nan=False)
    assert set(payload["definitions"]) == set(DEFINITIONS)
    for name in METHODS:
        method = payload["methods"][name]
        assert method["status"] == "ok" and method["cohorts"] and method["params"]
        assert {"gap_vs_top", "gap_vs_rest", "share_speakers", "share_utterances"} <= set(method["gap"])
        assert len(method["cross_fit_folds"]) == 2
    assert payload["methods"]["geodemo"]["params"]["zip_attributes"]["rows"] > 0  # summarized, not dumped
    assert len(text) < 200_000
    assert set(result.figures) == {"geo_regions", "geodemo_partition", "embedding_clusters"}
    assert isinstance(result.regions, gpd.GeoDataFrame) and {"wer", "wer_low", "wer_high", "speakers"} <= set(result.regions.columns)
    paths = result.save(tmp_path)
    saved = pd.read_parquet(paths["assignments"])
    assert list(saved.columns) == ["speaker_id"] + [c for m in METHODS for c in (m, f"{m}_is_bottom")]
    assert str(saved["geo"].dtype) == "Int64" and str(saved["geo_is_bottom"].dtype) == "boolean"
    assert all(p.exists() for p in paths.values())


def test_same_seed_same_cohorts_and_numbers(corpus, result):
    utterances, table, embeddings, _ = corpus
    again = run_discovery(utterances, METHODS, zip_attributes=table, embeddings=embeddings, seed=0, embedding={"k": 5}, make_figures=False, **FAST)
    assert json.dumps(again.to_dict()) == json.dumps(result.to_dict())
    pd.testing.assert_frame_equal(again.assignments, result.assignments)
    other = run_discovery(utterances, ["embedding"], embeddings=embeddings, seed=1, embedding={"k": 5}, make_figures=False, **FAST)
    assert other.to_dict()["methods"]["embedding"]["honest_gap"] != result.to_dict()["methods"]["embedding"]["honest_gap"]


def test_unusable_method_is_reported_not_fatal(corpus):
    utterances, table, embeddings, _ = corpus
    result = run_discovery(utterances, ["geo", "embedding"], embeddings=embeddings, min_speakers=600, make_figures=False, **FAST)
    assert result.comparison.set_index("method").loc["geo", "status"] == "unavailable"
    assert "min_speakers" in result.to_dict()["methods"]["geo"]["reason"]


def test_configuration_errors_are_explicit(corpus):
    utterances, table, embeddings, _ = corpus
    with pytest.raises(ValueError, match="unknown discovery methods"):
        run_discovery(utterances, "geo,voronoi")
    with pytest.raises(ValueError, match="zip_attributes"):
        run_discovery(utterances, "geodemo")
    with pytest.raises(ValueError, match="lat"):
        run_discovery(utterances.drop(columns=["lat"]), "geo")
    with pytest.raises(TypeError, match="per-method parameters"):
        run_discovery(utterances, "geo", max_regions=3)


def test_embedding_list_column_in_manifest_is_averaged_per_speaker(corpus):
    utterances, _, embeddings, _ = corpus
    vectors = embeddings.reindex(utterances["speaker_id"]).to_numpy()
    manifest = utterances.assign(embedding=[None if np.isnan(v).any() else v for v in vectors])
    from_manifest = run_discovery(manifest, "embedding", seed=0, embedding={"k": 5}, make_figures=False, **FAST)
    from_table = run_discovery(utterances, "embedding", embeddings=embeddings, seed=0, embedding={"k": 5}, make_figures=False, **FAST)
    pd.testing.assert_frame_equal(from_manifest.assignments, from_table.assignments)


def test_embeddings_as_one_vector_column_with_speaker_id_column(corpus):
    utterances, _, embeddings, _ = corpus
    vectors = pd.DataFrame({"speaker_id": embeddings.index, "embedding": list(embeddings.to_numpy())})
    as_vectors = run_discovery(utterances, "embedding", embeddings=vectors, seed=0, embedding={"k": 5}, make_figures=False, **FAST)
    as_columns = run_discovery(utterances, "embedding", embeddings=embeddings, seed=0, embedding={"k": 5}, make_figures=False, **FAST)
    pd.testing.assert_frame_equal(as_vectors.assignments, as_columns.assignments)
