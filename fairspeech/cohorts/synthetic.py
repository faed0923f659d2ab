"""Synthetic corpora with a planted under-served cohort (or none), for the tests and the scale benchmark.

Each speaker has a true WER drawn from a Beta distribution around the cohort's mean (speakers differ
even within a cohort, as real ones do); each utterance has Poisson reference words and Binomial
errors at the speaker's WER. A "null" corpus is the same with the plant's WER equal to the base WER.
Every generator takes a seed and returns the same corpus for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fairspeech.data import schema

LANGUAGES = ("English", "Spanish", "Chinese", "Vietnamese")
ETHNICITIES = ("White", "Hispanic", "Black", "Asian")


@dataclass
class PlantedCorpus:
    """Utterances plus what was planted: ``planted`` flags the speakers of the under-served cohort."""

    utterances: pd.DataFrame
    planted: pd.Series  # speaker_id -> bool
    truth: dict = field(default_factory=dict)  # generator-specific: plant box, true clusters, ...
    zip_attributes: pd.DataFrame | None = None
    embeddings: pd.DataFrame | None = None


def speaker_ids(n: int) -> np.ndarray:
    return np.array([f"spk{i:06d}" for i in range(n)], dtype=object)


def speaker_wers(mean_wer: np.ndarray, rng: np.random.Generator, concentration: float = 60.0) -> np.ndarray:
    """True per-speaker WERs ~ Beta with the given means; larger concentration = less spread."""
    mean_wer = np.asarray(mean_wer, dtype=np.float64)
    return rng.beta(mean_wer * concentration, (1 - mean_wer) * concentration)


def simulate_utterances(
    speakers: pd.DataFrame, wer: np.ndarray, rng: np.random.Generator, utterances_per_speaker: float = 10, words_per_utterance: float = 12
) -> pd.DataFrame:
    """Per-utterance counts for speakers (index speaker_id); the speakers' columns are copied onto their utterances."""
    n = len(speakers)
    counts = 1 + rng.poisson(utterances_per_speaker - 1, size=n)
    owner = np.repeat(np.arange(n), counts)
    words = 1 + rng.poisson(words_per_utterance - 1, size=len(owner))
    errors = rng.binomial(words, wer[owner])
    frame = speakers.iloc[owner].reset_index()
    frame.insert(0, schema.UTT_ID, np.char.add("utt", np.arange(len(owner)).astype(str)))
    frame[schema.REF_WORDS] = words.astype(np.int32)
    frame[schema.ERRORS] = errors.astype(np.int32)
    return frame


def planted_map(
    n_speakers: int = 1500,
    seed: int = 0,
    plant: tuple[float, float, float, float] = (-100.0, 30.0, -90.0, 38.0),
    area: tuple[float, float, float, float] = (-120.0, 25.0, -70.0, 50.0),
    base_wer: float = 0.10,
    plant_wer: float = 0.25,
    utterances_per_speaker: float = 10,
) -> PlantedCorpus:
    """Speakers uniform over ``area`` (lon_min, lat_min, lon_max, lat_max); those inside ``plant`` have ``plant_wer``."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(area[0], area[2], n_speakers)
    lat = rng.uniform(area[1], area[3], n_speakers)
    inside = (lon >= plant[0]) & (lon <= plant[2]) & (lat >= plant[1]) & (lat <= plant[3])
    speakers = pd.DataFrame({schema.LAT: lat, schema.LON: lon}, index=pd.Index(speaker_ids(n_speakers), name=schema.SPEAKER_ID))
    wer = speaker_wers(np.where(inside, plant_wer, base_wer), rng)
    utterances = simulate_utterances(speakers, wer, rng, utterances_per_speaker)
    return PlantedCorpus(utterances, pd.Series(inside, index=speakers.index), truth={"plant_box": plant})


def planted_clusters(
    n_speakers: int = 1200,
    seed: int = 0,
    k: int = 6,
    dim: int = 32,
    noise: float = 0.5,
    planted_cluster: int = 0,
    base_wer: float = 0.10,
    plant_wer: float = 0.20,
) -> PlantedCorpus:
    """Speaker embeddings around k random unit centres; speakers of ``planted_cluster`` have ``plant_wer``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = rng.integers(0, k, n_speakers)
    vectors = centres[cluster] + noise * rng.normal(size=(n_speakers, dim)) / np.sqrt(dim)
    ids = pd.Index(speaker_ids(n_speakers), name=schema.SPEAKER_ID)
    embeddings = pd.DataFrame(vectors, index=ids, columns=[f"d{i}" for i in range(dim)])
    planted = cluster == planted_cluster
    wer = speaker_wers(np.where(planted, plant_wer, base_wer), rng)
    utterances = simulate_utterances(pd.DataFrame(index=ids), wer, rng)
    return PlantedCorpus(utterances, pd.Series(planted, index=ids), truth={"cluster": pd.Series(cluster, index=ids)}, embeddings=embeddings)


def zip_attribute_table(n_zips: int, rng: np.random.Generator) -> pd.DataFrame:
    """A made-up zip-level table: two categorical majority attributes and two numeric ones (some missing).

    Zips start at 01001 and are stored as integers, as spreadsheets tend to (leading zero lost).
    """
    zips = 1001 + 7 * np.arange(n_zips)
    income = np.round(rng.lognormal(np.log(60_000), 0.35, n_zips), -2)
    income[rng.random(n_zips) < 0.03] = np.nan
    return pd.DataFrame(
        {
            schema.ZIP: zips,
            "majority_language": rng.choice(LANGUAGES, n_zips, p=[0.55, 0.25, 0.1, 0.1]),
            "majority_ethnicity": rng.choice(ETHNICITIES, n_zips, p=[0.5, 0.2, 0.15, 0.15]),
            "median_income": income,
            "pct_over_65": np.round(rng.uniform(5, 30, n_zips), 1),
        }
    )


def planted_zips(
    n_speakers: int = 1200,
    seed: int = 0,
    n_zips: int = 150,
    attribute: str = "majority_language",
    value: str = "Spanish",
    base_wer: float = 0.10,
    plant_wer: float = 0.18,
    missing_zip_share: float = 0.02,
    unknown_zip_share: float = 0.03,
) -> PlantedCorpus:
    """Speakers in random zips of a made-up table; those whose zip has ``attribute == value`` get ``plant_wer``.

    A share of speakers has no zip, and another a zip that is not in the table (both must be counted).
    """
    rng = np.random.default_rng(seed)
    table = zip_attribute_table(n_zips, rng)
    row = rng.integers(0, n_zips, n_speakers)
    zips = pd.Series([f"{z:05d}" for z in table[schema.ZIP].to_numpy()[row]], dtype="string")
    planted = table[attribute].to_numpy()[row] == value
    draw = rng.random(n_speakers)
    unknown = draw < unknown_zip_share
    zips[unknown] = "99999"
    zips[(draw >= unknown_zip_share) & (draw < unknown_zip_share + missing_zip_share)] = pd.NA
    ids = pd.Index(speaker_ids(n_speakers), name=schema.SPEAKER_ID)
    speakers = pd.DataFrame({schema.ZIP: zips.to_numpy()}, index=ids)
    wer = speaker_wers(np.where(planted, plant_wer, base_wer), rng)
    utterances = simulate_utterances(speakers, wer, rng)
    return PlantedCorpus(
        utterances, pd.Series(planted, index=ids), truth={"attribute": attribute, "value": value}, zip_attributes=table
    )
