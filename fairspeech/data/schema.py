"""The canonical manifest schema every reader produces and every component consumes.

One row per utterance. Readers map their format's fields onto these names; any other field is kept
as metadata under its own name. ``data_manifests/README.md`` documents the schema for users.
"""

from __future__ import annotations

UTT_ID = "utt_id"
SPEAKER_ID = "speaker_id"
REFERENCE = "reference"
HYPOTHESIS = "hypothesis"
AUDIO_PATH = "audio_path"
DURATION = "duration"
LAT = "lat"
LON = "lon"
ZIP = "zip"
GENDER = "gender"
AGE = "age"
ACCENT = "accent"
SPLIT = "split"

REQUIRED = (UTT_ID, SPEAKER_ID, REFERENCE)
# A hypothesis is required for an audit unless audio and an ASR to run are given.
OPTIONAL = (HYPOTHESIS, AUDIO_PATH, DURATION, LAT, LON, ZIP, GENDER, AGE, ACCENT, SPLIT)
CANONICAL = REQUIRED + OPTIONAL

# Per-utterance alignment counts produced by fairspeech.metrics.wer.
HITS = "hits"
SUBSTITUTIONS = "substitutions"
DELETIONS = "deletions"
INSERTIONS = "insertions"
REF_WORDS = "ref_words"
ERRORS = "errors"
COUNT_COLUMNS = (HITS, SUBSTITUTIONS, DELETIONS, INSERTIONS, REF_WORDS, ERRORS)
# Rows that are already sums over several utterances (the out-of-core engine's reduced units)
# say how many utterances they hold; a row without it is one utterance.
N_UTTERANCES = "n_utterances"
