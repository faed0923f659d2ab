"""Voices, the synthetic zip-level attribute table, and seeded speaker sampling for the demo corpus.

Everything here is a pure function of the seed and the installed ``zipcodes`` data: no audio, no
global random state. Each random choice comes from its own Generator keyed by what it is about
(``[seed, STREAM, zip]``, ``[seed, STREAM, speaker_index]``...), so one item never depends on how
many others were drawn or in which order.

The geography rules (documented in ``data_manifests/demo/README.md``) give the map real structure:

* **urbanicity** comes from real zip density: the number of active standard zips in the 3x3 block of
  0.1-degree cells around a zip (>= 16 urban, < 5 rural, suburban between);
* **majority_language** is spanish / polish / german / italian / portuguese / french for a share of the
  zips inside four language rectangles (more often in urban zips), english elsewhere (plus 1% spanish
  scattered);
* **median_income_band** and **majority_age_band** are drawn per zip from urbanicity-dependent tables;
* a speaker with a non-native espeak-ng accent lives, with probability 0.85, in a zip whose
  majority_language is that accent's language; new_york and caribbean voices favour their metro
  rectangles; every other voice lives anywhere;
* a speaker's age band is the zip's majority_age_band with probability 0.5;
* acoustic conditions per utterance depend on the home zip: noise more often in urban zips,
  telephone more often in rural zips and in the Mountain West rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

ZIP_STREAM = 21
SPEAKER_STREAM = 22
SPLIT_STREAM = 23
UTTERANCE_STREAM = 24

# ----------------------------------------------------------------------------------------------------
# Voices


@dataclass(frozen=True)
class Voice:
    family: str  # flite / festival / espeak-ng
    name: str  # the synthesizer's own voice argument
    accent: str
    gender: str  # female / male
    language: str  # the accent's first language ("english" for native voices)
    weight: float = 1.0  # relative number of speakers

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"


def _espeak(language_code: str, variant: str, accent: str, gender: str, language: str,
            weight: float = 1.0) -> Voice:
    return Voice("espeak-ng", f"{language_code}+{variant}", accent, gender, language, weight)


# Each espeak accent gets its own male and female variant, none shared between accents, so the
# speaker encoder can tell accents apart (with the default variant for all it cannot).
VOICES: tuple[Voice, ...] = (
    Voice("flite", "kal", "us", "male", "english"),
    Voice("flite", "kal16", "us", "male", "english"),
    Voice("flite", "awb", "scottish", "male", "english"),
    Voice("flite", "rms", "us", "male", "english"),
    Voice("flite", "slt", "us", "female", "english"),
    Voice("festival", "kal_diphone", "us", "male", "english"),
    # festvox-kdlpc16k installs this voice under the name ked_diphone.
    Voice("festival", "ked_diphone", "us", "male", "english"),
    Voice("festival", "cmu_us_slt_arctic_hts", "us", "female", "english"),
    _espeak("en-us", "m3", "us", "male", "english"),
    _espeak("en-us", "f2", "us", "female", "english"),
    _espeak("en-us-nyc", "m5", "new_york", "male", "english"),
    _espeak("en-us-nyc", "f4", "new_york", "female", "english"),
    _espeak("en-gb", "m1", "british", "male", "english"),
    _espeak("en-gb", "f1", "british", "female", "english"),
    _espeak("en-gb-x-rp", "m2", "british_rp", "male", "english"),
    _espeak("en-gb-x-rp", "f3", "british_rp", "female", "english"),
    _espeak("en-gb-x-gbclan", "m4", "lancashire", "male", "english"),
    _espeak("en-gb-x-gbclan", "f5", "lancashire", "female", "english"),
    _espeak("en-gb-x-gbcwmd", "m6", "west_midlands", "male", "english"),
    _espeak("en-gb-x-gbcwmd", "Annie", "west_midlands", "female", "english"),
    _espeak("en-gb-scotland", "m7", "scottish", "male", "english"),
    _espeak("en-gb-scotland", "Andrea", "scottish", "female", "english"),
    _espeak("en-029", "m8", "caribbean", "male", "english"),
    _espeak("en-029", "Alicia", "caribbean", "female", "english"),
    # Other-language voices reading English: their own letter-to-sound rules give a foreign accent.
    _espeak("es", "miguel", "spanish", "male", "spanish", 2.0),
    _espeak("es", "belinda", "spanish", "female", "spanish", 2.0),
    _espeak("it", "Marco", "italian", "male", "italian"),
    _espeak("it", "aunty", "italian", "female", "italian"),
    _espeak("pl", "boris", "polish", "male", "polish"),
    _espeak("pl", "linda", "polish", "female", "polish"),
    _espeak("de", "Denis", "german", "male", "german"),
    _espeak("de", "steph", "german", "female", "german"),
    _espeak("fr-fr", "michel", "french", "male", "french"),
    _espeak("fr-fr", "steph2", "french", "female", "french"),
    _espeak("pt-br", "Henrique", "portuguese", "male", "portuguese"),
    _espeak("pt-br", "anika", "portuguese", "female", "portuguese"),
)
FAMILY_SHARES = {"flite": 0.35, "festival": 0.25, "espeak-ng": 0.40}
VOICES_BY_KEY = {v.key: v for v in VOICES}

# ----------------------------------------------------------------------------------------------------
# Geography: rectangles are (south lat, north lat, west lon, east lon).


@dataclass(frozen=True)
class Rectangle:
    name: str
    south: float
    north: float
    west: float
    east: float

    def contains(self, lat, lon):
        return (lat >= self.south) & (lat <= self.north) & (lon >= self.west) & (lon <= self.east)


LANGUAGE_REGIONS: tuple[tuple[Rectangle, tuple[str, ...]], ...] = (
    (Rectangle("southwest_border", 25.8, 34.5, -118.5, -97.0), ("spanish",)),
    (Rectangle("great_lakes", 41.4, 43.3, -88.5, -82.8), ("polish", "german")),
    (Rectangle("northeast_coast", 40.5, 42.0, -74.5, -70.8), ("italian", "portuguese")),
    (Rectangle("acadiana", 29.0, 31.0, -93.5, -90.0), ("french",)),
)
# Metro rectangles some native-English espeak accents favour.
ACCENT_METROS = {
    "new_york": Rectangle("new_york_city", 40.5, 41.0, -74.3, -73.7),
    "caribbean": Rectangle("south_florida", 25.2, 27.0, -81.0, -79.9),
}
METRO_SHARE = 0.7
MOUNTAIN_WEST = Rectangle("mountain_west", 37.0, 49.0, -117.0, -104.0)

URBAN_MIN_NEIGHBOURS = 16
RURAL_MAX_NEIGHBOURS = 4
# Chance that a zip inside a language rectangle has that majority language, by urbanicity.
LANGUAGE_SHARE = {"urban": 0.6, "suburban": 0.45, "rural": 0.3}
SCATTERED_SPANISH_SHARE = 0.01
NATIVE_LANGUAGE_HOME_SHARE = 0.85

AGE_BANDS = ("18-29", "30-44", "45-64", "65+")
INCOME_BANDS = ("low", "middle", "high")
AGE_BAND_PROBS = {
    "urban": (0.35, 0.35, 0.20, 0.10),
    "suburban": (0.15, 0.35, 0.35, 0.15),
    "rural": (0.10, 0.20, 0.40, 0.30),
}
INCOME_BAND_PROBS = {
    "urban": (0.25, 0.40, 0.35),
    "suburban": (0.15, 0.45, 0.40),
    "rural": (0.45, 0.45, 0.10),
}
SPEAKER_AGE_FROM_ZIP_SHARE = 0.5

_US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM "
    "NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY".split()
)


@lru_cache(maxsize=1)
def active_standard_zips() -> pd.DataFrame:
    """Active STANDARD zip codes of the 50 states + DC from ``zipcodes``: zip, city, state, county, lat, lon."""
    try:
        import zipcodes
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the demo corpus needs the 'zipcodes' package (pip install zipcodes)") from exc
    rows = [
        (r["zip_code"], r["city"], r["state"], r["county"], float(r["lat"]), float(r["long"]))
        for r in zipcodes.list_all()
        if r["active"] and r["zip_code_type"] == "STANDARD" and r["state"] in _US_STATES
    ]
    table = pd.DataFrame(rows, columns=["zip", "city", "state", "county", "lat", "lon"])
    return table.sort_values("zip", ignore_index=True)


def _zip_rng(seed: int, zip_code: str) -> np.random.Generator:
    return np.random.default_rng([seed, ZIP_STREAM, int(zip_code)])


def urbanicity(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """urban / suburban / rural from how many zips share the surrounding 3x3 block of 0.1-degree cells."""
    cells = pd.Series(1, index=pd.MultiIndex.from_arrays(
        [np.floor(lat * 10).astype(int), np.floor(lon * 10).astype(int)]))
    counts = cells.groupby(level=[0, 1]).sum().to_dict()
    row, col = np.floor(lat * 10).astype(int), np.floor(lon * 10).astype(int)
    neighbours = np.array([
        sum(counts.get((r + dr, c + dc), 0) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
        for r, c in zip(row, col)
    ])
    return np.where(neighbours >= URBAN_MIN_NEIGHBOURS, "urban",
                    np.where(neighbours <= RURAL_MAX_NEIGHBOURS, "rural", "suburban"))


def zip_attributes(seed: int) -> pd.DataFrame:
    """The SYNTHETIC zip-level attribute table for every active standard zip (rules in the module doc)."""
    table = active_standard_zips().copy()
    table["urbanicity"] = urbanicity(table["lat"].to_numpy(), table["lon"].to_numpy())
    languages, incomes, ages, regions = [], [], [], []
    for zip_code, lat, lon, urban in table[["zip", "lat", "lon", "urbanicity"]].itertuples(index=False):
        draws = _zip_rng(seed, zip_code).random(4)
        region, language = _majority_language(lat, lon, urban, draws[0], draws[1])
        regions.append(region)
        languages.append(language)
        incomes.append(_band(INCOME_BANDS, INCOME_BAND_PROBS[urban], draws[2]))
        ages.append(_band(AGE_BANDS, AGE_BAND_PROBS[urban], draws[3]))
    table["language_region"] = regions
    table["majority_language"] = languages
    table["median_income_band"] = incomes
    table["majority_age_band"] = ages
    return table


def _majority_language(lat: float, lon: float, urban: str, u_share: float, u_pick: float):
    for rectangle, languages in LANGUAGE_REGIONS:
        if rectangle.contains(lat, lon):
            if u_share < LANGUAGE_SHARE[urban]:
                return rectangle.name, languages[int(u_pick * len(languages))]
            return rectangle.name, "english"
    return "", "spanish" if u_share < SCATTERED_SPANISH_SHARE else "english"


def _band(bands, probs, u: float) -> str:
    """The band whose cumulative-probability interval holds ``u``."""
    total = 0.0
    for band, p in zip(bands, probs):
        total += p
        if u < total:
            return band
    return bands[-1]


# ----------------------------------------------------------------------------------------------------
# Speakers


@dataclass(frozen=True)
class Speaker:
    speaker_id: str
    voice: Voice
    zip: str
    age: str
    pitch_cents: float  # sox `pitch`: moves F0 and the spectral envelope together
    tempo: float  # sox `tempo -s`: duration factor 1/tempo, pitch kept
    formant_shift: float  # factor for the formant-emphasis equalizer (see synth.py)
    gain_db: float  # peak level in dBFS after `gain -n`


# Speaking rate by age band (older speakers slower), times a per-speaker factor.
AGE_TEMPO = {"18-29": 1.08, "30-44": 1.0, "45-64": 0.95, "65+": 0.88}


def _largest_remainder(total: int, weights) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``weights`` (ties go to the earlier item)."""
    quotas = np.asarray(weights, dtype=float) / np.sum(weights) * total
    counts = np.floor(quotas).astype(int)
    by_remainder = np.argsort(-(quotas - counts), kind="stable")
    counts[by_remainder[: total - counts.sum()]] += 1
    return counts


def allocate_voices(n_speakers: int, voices: tuple[Voice, ...] = VOICES) -> list[Voice]:
    """Voice per speaker slot: FAMILY_SHARES across families, then voice weights within each family."""
    families = [f for f in FAMILY_SHARES if any(v.family == f for v in voices)]
    family_counts = _largest_remainder(n_speakers, [FAMILY_SHARES[f] for f in families])
    allocated = []
    for family, family_count in zip(families, family_counts):
        members = [v for v in voices if v.family == family]
        for voice, count in zip(members, _largest_remainder(family_count, [v.weight for v in members])):
            allocated += [voice] * int(count)
    return allocated


def sample_speakers(seed: int, n_speakers: int, zips: pd.DataFrame) -> list[Speaker]:
    """``n_speakers`` speakers: allocated voices in a seeded order, each with its own home and voice shaping."""
    return speakers_for_voices(seed, allocate_voices(n_speakers), zips)


def speakers_for_voices(seed: int, allocated: list[Voice], zips: pd.DataFrame, id_prefix: str = "demo") -> list[Speaker]:
    """One speaker per entry of ``allocated``, the entries taken in a seeded order."""
    order = np.random.default_rng([seed, SPEAKER_STREAM]).permutation(len(allocated))
    return [_make_speaker(seed, i, allocated[order[i]], zips, id_prefix) for i in range(len(allocated))]


def _make_speaker(seed: int, index: int, voice: Voice, zips: pd.DataFrame, id_prefix: str = "demo") -> Speaker:
    rng = np.random.default_rng([seed, SPEAKER_STREAM, index])
    home = zips.iloc[_home_zip_position(rng, voice, zips)]
    if rng.random() < SPEAKER_AGE_FROM_ZIP_SHARE:
        age = home["majority_age_band"]
    else:
        age = AGE_BANDS[int(rng.integers(len(AGE_BANDS)))]
    return Speaker(
        speaker_id=f"{id_prefix}-s{index:04d}",
        voice=voice,
        zip=home["zip"],
        age=age,
        pitch_cents=round(float(rng.uniform(-200, 200)), 1),
        tempo=round(AGE_TEMPO[age] * float(rng.uniform(0.94, 1.06)), 3),
        formant_shift=round(float(rng.uniform(0.9, 1.1)), 3),
        gain_db=round(float(rng.uniform(-16, -2)), 1),
    )


def _home_zip_position(rng: np.random.Generator, voice: Voice, zips: pd.DataFrame) -> int:
    candidates = None
    u = rng.random()
    if voice.language != "english" and u < NATIVE_LANGUAGE_HOME_SHARE:
        candidates = np.flatnonzero(zips["majority_language"].to_numpy() == voice.language)
    elif voice.family == "espeak-ng" and voice.accent in ACCENT_METROS and u < METRO_SHARE:
        metro = ACCENT_METROS[voice.accent]
        candidates = np.flatnonzero(metro.contains(zips["lat"].to_numpy(), zips["lon"].to_numpy()))
    if candidates is None or len(candidates) == 0:
        candidates = np.arange(len(zips))
    return int(candidates[rng.integers(len(candidates))])


# ----------------------------------------------------------------------------------------------------
# Splits and per-utterance conditions

# Every run of 20 speakers (ordered by voice) gets 14 train, 3 dev and 3 test by this fixed pattern.
SPLIT_PATTERN = ("train", "train", "train", "dev", "train", "train", "test", "train", "train", "train",
                 "dev", "train", "train", "test", "train", "train", "dev", "train", "train", "test")


def assign_splits(seed: int, speakers: list[Speaker], voices: tuple[Voice, ...] = VOICES,
                  pattern: tuple[str, ...] = SPLIT_PATTERN) -> dict[str, str]:
    """speaker_id -> train / dev / test (70/15/15), stratified by voice.

    Speakers are lined up voice by voice (each voice's speakers in a seeded order) and the line is cut
    by SPLIT_PATTERN, so every voice family, and every voice with enough speakers, lands in all three
    splits, and even a 20-speaker build has all three. No speaker is in two splits.
    """
    line: list[str] = []
    for voice_index, voice in enumerate(voices):
        members = sorted(s.speaker_id for s in speakers if s.voice == voice)
        rng = np.random.default_rng([seed, SPLIT_STREAM, voice_index])
        line += [members[i] for i in rng.permutation(len(members))]
    return {speaker_id: pattern[position % len(pattern)] for position, speaker_id in enumerate(line)}


CONDITIONS = ("clean", "noise", "telephone", "reverb")
BASE_CONDITION_PROBS = {"clean": 0.45, "noise": 0.25, "telephone": 0.15, "reverb": 0.15}
NOISE_COLORS = ("white", "pink", "brown")


def condition_probabilities(urban: str, lat: float, lon: float) -> np.ndarray:
    """Condition mix for a home zip: noise x2 in urban zips, telephone x2 in rural ones and x2.5 in the
    Mountain West rectangle; renormalized."""
    weights = dict(BASE_CONDITION_PROBS)
    if urban == "urban":
        weights["noise"] *= 2.0
    if urban == "rural":
        weights["telephone"] *= 2.0
    if MOUNTAIN_WEST.contains(lat, lon):
        weights["telephone"] *= 2.5
    probs = np.array([weights[c] for c in CONDITIONS])
    return probs / probs.sum()


@dataclass(frozen=True)
class Condition:
    name: str
    snr_db: float = float("nan")  # noise only
    noise_color: str = ""  # noise only
    noise_seed: int = -1  # noise only: seeds the numpy Generator that makes the noise
    reverberance: float = float("nan")  # reverb only: sox reverb's reverberance (%)
    room_scale: float = float("nan")  # reverb only: sox reverb's room-scale (%)


def sample_condition(seed: int, speaker_index: int, utterance_index: int, zip_row) -> Condition:
    rng = np.random.default_rng([seed, UTTERANCE_STREAM, speaker_index, utterance_index])
    probs = condition_probabilities(zip_row["urbanicity"], zip_row["lat"], zip_row["lon"])
    name = CONDITIONS[int(rng.choice(len(CONDITIONS), p=probs))]
    if name == "noise":
        # Urban noise is louder relative to speech (pocketsphinx degrades fast below ~15 dB).
        low = 8.0 if zip_row["urbanicity"] == "urban" else 14.0
        return Condition(
            name,
            snr_db=round(float(rng.uniform(low, low + 12.0)), 1),
            noise_color=NOISE_COLORS[int(rng.integers(len(NOISE_COLORS)))],
            noise_seed=int(rng.integers(2**31 - 1)),
        )
    if name == "reverb":
        return Condition(
            name,
            reverberance=round(float(rng.uniform(20, 70)), 1),
            room_scale=round(float(rng.uniform(30, 90)), 1),
        )
    return Condition(name)
